//! Telephone numbers: the dialed string → E.164, and toll-free vs DID (SPEC §2).
//!
//! An E.164 number has at most 15 digits, so it fits in a `u64`; the routing
//! table and the admission counters key on that integer (8 bytes, cheap to
//! hash) instead of a heap string.

use std::fmt;
use std::str::FromStr;

/// A number in E.164, stored as its digits (without the `+`) in a `u64`.
/// The digit count is kept so that leading-zero country codes cannot occur
/// (E.164 country codes never start with 0), making the integer unambiguous.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct E164(u64);

/// Why a dialed string is not a number we can route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Nothing left after removing visual separators.
    #[error("empty number")]
    Empty,
    /// A character that is neither a digit, a leading `+`, nor a visual separator.
    #[error("number contains a character that is not a digit")]
    NotDigits,
    /// Too short or too long for E.164 (or not 10/11 digits for a national NANP form).
    #[error("number has the wrong length for E.164")]
    BadLength,
    /// E.164 country codes never start with 0.
    #[error("number starts with 0")]
    LeadingZero,
}

/// Toll-free or direct-in-dial (SPEC §2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumberKind {
    /// Reachable at no charge to the caller; may have several carriers.
    TollFree,
    /// Direct-in-dial; exactly one carrier.
    Did,
}

impl NumberKind {
    /// The wire / config spelling: `toll-free` or `did`.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberKind::TollFree => "toll-free",
            NumberKind::Did => "did",
        }
    }
}

impl FromStr for NumberKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "toll-free" | "tollfree" | "toll_free" => Ok(NumberKind::TollFree),
            "did" => Ok(NumberKind::Did),
            _ => Err(()),
        }
    }
}

/// NANP toll-free area codes (SPEC §2).
const TOLL_FREE_NPAS: [u64; 7] = [800, 833, 844, 855, 866, 877, 888];

/// Visual separators that RFC 3966 allows inside a phone number.
fn is_visual_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')' | b' ')
}

impl E164 {
    /// Normalises a dialed string (a Request-URI user part, a `tel:` number,
    /// a CSV or API field): `+1...`, `1...` and 10-digit NANP forms, visual
    /// separators removed. Other country codes need the leading `+`.
    pub fn parse_dialed(s: &str) -> Result<E164, NumberError> {
        let b = s.as_bytes();
        let (plus, rest) = match b.first() {
            Some(b'+') => (true, b.get(1..).unwrap_or_default()),
            _ => (false, b),
        };
        let mut value: u64 = 0;
        let mut digits = 0u32;
        let mut first = None;
        for &c in rest {
            if c.is_ascii_digit() {
                if digits >= 15 {
                    return Err(NumberError::BadLength);
                }
                if first.is_none() {
                    first = Some(c);
                }
                value = value * 10 + u64::from(c - b'0');
                digits += 1;
            } else if is_visual_separator(c) {
                continue;
            } else {
                return Err(NumberError::NotDigits);
            }
        }
        if digits == 0 {
            return Err(NumberError::Empty);
        }
        if plus {
            if first == Some(b'0') {
                return Err(NumberError::LeadingZero);
            }
            if digits < 8 {
                return Err(NumberError::BadLength);
            }
            return Ok(E164(value));
        }
        // No '+': only NANP national forms are accepted.
        match (digits, first) {
            (10, Some(c)) if c != b'0' && c != b'1' => Ok(E164(10_000_000_000 + value)),
            (11, Some(b'1')) => Ok(E164(value)),
            (_, Some(b'0')) => Err(NumberError::LeadingZero),
            _ => Err(NumberError::BadLength),
        }
    }

    /// Builds from the digits as an integer (no validation beyond range).
    pub fn from_u64(digits: u64) -> Option<E164> {
        (10_000_000..=999_999_999_999_999).contains(&digits).then_some(E164(digits))
    }

    /// The digits as an integer (`+18005550100` → `18005550100`).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Toll-free when a NANP number's area code is one of SPEC §2's prefixes.
    pub fn default_kind(self) -> NumberKind {
        if (10_000_000_000..20_000_000_000).contains(&self.0) {
            let npa = (self.0 / 10_000_000) % 1000;
            if TOLL_FREE_NPAS.contains(&npa) {
                return NumberKind::TollFree;
            }
        }
        NumberKind::Did
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl FromStr for E164 {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, NumberError> {
        E164::parse_dialed(s.trim())
    }
}

impl serde::Serialize for E164 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for E164 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        E164::parse_dialed(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanp_forms_normalise_to_the_same_number() {
        let want = E164::parse_dialed("+18005550100").unwrap();
        for s in ["18005550100", "8005550100", "+1 (800) 555-0100", "1.800.555.0100"] {
            assert_eq!(E164::parse_dialed(s).unwrap(), want, "{s}");
        }
        assert_eq!(want.to_string(), "+18005550100");
    }

    #[test]
    fn kinds_follow_the_toll_free_prefixes() {
        for p in ["800", "833", "844", "855", "866", "877", "888"] {
            let n = E164::parse_dialed(&format!("+1{p}5550100")).unwrap();
            assert_eq!(n.default_kind(), NumberKind::TollFree, "{p}");
        }
        assert_eq!(E164::parse_dialed("+12065550100").unwrap().default_kind(), NumberKind::Did);
        assert_eq!(E164::parse_dialed("+448005550100").unwrap().default_kind(), NumberKind::Did);
    }

    #[test]
    fn bad_numbers_are_refused_with_a_reason() {
        assert_eq!(E164::parse_dialed(""), Err(NumberError::Empty));
        assert_eq!(E164::parse_dialed("alice"), Err(NumberError::NotDigits));
        assert_eq!(E164::parse_dialed("12345"), Err(NumberError::BadLength));
        assert_eq!(E164::parse_dialed("+0123456789"), Err(NumberError::LeadingZero));
        assert_eq!(E164::parse_dialed("+1234567890123456"), Err(NumberError::BadLength));
        assert_eq!(E164::parse_dialed("0800555010"), Err(NumberError::LeadingZero));
    }
}
