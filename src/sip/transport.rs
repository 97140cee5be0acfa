//! The SIP transports the edge speaks.

use std::fmt;

/// UDP or TCP (TLS and WebSocket are not offered on the carrier side).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Datagrams; RFC 3261 retransmission timers apply.
    #[default]
    Udp,
    /// Streams framed by Content-Length; no retransmissions.
    Tcp,
}

impl Transport {
    /// Lower-case name, as in config and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
    /// Upper-case name, as in a Via header (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
    /// Whether messages may be lost and must be retransmitted (RFC 3261 §17).
    pub fn is_unreliable(self) -> bool {
        self == Transport::Udp
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
