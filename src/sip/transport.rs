//! The SIP transports the edge speaks.

use std::fmt;

/// UDP, TCP or TLS (WebSocket is not offered on the carrier side).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Datagrams; RFC 3261 retransmission timers apply.
    #[default]
    Udp,
    /// Streams framed by Content-Length; no retransmissions.
    Tcp,
    /// TCP with TLS on top (RFC 3261 §26.3.1): framed and timed like TCP.
    Tls,
}

impl Transport {
    /// Lower-case name, as in config and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
    /// Upper-case name, as in a Via header (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
    /// Whether messages may be lost and must be retransmitted (RFC 3261 §17).
    pub fn is_unreliable(self) -> bool {
        self == Transport::Udp
    }
    /// Whether it is a connection (TCP or TLS): framed by Content-Length,
    /// answers go back on the connection the request came in on.
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
