//! CIDR networks for a carrier's `sources`, and the address matching the
//! source-IP classification and the one-IP-one-peer check rely on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a `sources` entry is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("'{0}' is not an IP address")]
    BadAddress(String),
    /// The prefix length is not a number, or longer than the address.
    #[error("prefix length '{0}' is not 0-32 (IPv4) or 0-128 (IPv6)")]
    BadPrefix(String),
    /// Bits are set after the prefix: probably a typo, so it is refused.
    #[error("address has bits set beyond the /{prefix} prefix (did you mean {network}/{prefix}?)")]
    HostBits {
        /// The network address the operator probably meant.
        network: IpAddr,
        /// The prefix length given.
        prefix: u8,
    },
}

/// A CIDR (IPv4 or IPv6) from a carrier's `sources`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address (no bits set beyond the prefix).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (ip_text, prefix_text) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip_text.parse().map_err(|_| CidrError::BadAddress(ip_text.to_owned()))?;
        let max = Self::bits(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(CidrError::BadPrefix(p.to_owned())),
            },
        };
        let network = Self::mask(addr, prefix);
        if network != addr {
            return Err(CidrError::HostBits { network, prefix });
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`, as a dual-stack socket reports it) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => Self::mask(ip, self.prefix) == self.addr,
            _ => false,
        }
    }

    /// Whether the two networks share any address (one then contains the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    fn bits(ip: IpAddr) -> u8 {
        if ip.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
            }
            IpAddr::V6(v6) => {
                let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; others unchanged.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.255.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()), "v4-mapped v6 is v4");
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert_eq!(host.prefix, 32);
        assert!(host.contains("192.0.2.7".parse().unwrap()) && !host.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()) && !v6.contains("2001:db9::1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("255.255.255.255".parse().unwrap()));
        assert_eq!(Cidr::parse("::/0").unwrap().prefix, 0);
        assert!(matches!(Cidr::parse("10.0.0.1/8"), Err(CidrError::HostBits { prefix: 8, .. })));
        assert!(matches!(Cidr::parse("10.0.0.0/33"), Err(CidrError::BadPrefix(_))));
        assert!(matches!(Cidr::parse("10.0.0.0/x"), Err(CidrError::BadPrefix(_))));
        assert!(matches!(Cidr::parse("2001:db8::/129"), Err(CidrError::BadPrefix(_))));
        assert!(matches!(Cidr::parse("ten/8"), Err(CidrError::BadAddress(_))));
        assert!(Cidr::parse("10.0.0.0/8").unwrap().overlaps(&Cidr::parse("10.9.0.0/16").unwrap()));
        assert!(!Cidr::parse("10.0.0.0/16").unwrap().overlaps(&Cidr::parse("10.1.0.0/16").unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        let _: IpAddr = c.addr;
    }
}
