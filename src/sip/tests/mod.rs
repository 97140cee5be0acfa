//! Tests of the `sip` module that span several files.

mod builders;
mod header;
mod parse;
mod rsip_findings;
mod torture;

use bytes::Bytes;

use super::Msg;

/// Reads a fixture under `tests/fixtures/sip/`.
pub(crate) fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/sip/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses text with `\n` line ends turned into CRLF.
#[allow(clippy::result_large_err)] // as `Msg::parse`
pub(crate) fn parse_text(s: &str) -> Result<Msg, super::ParseError> {
    Msg::parse(Bytes::from(s.replace('\n', "\r\n")))
}

/// A typical carrier INVITE, with compact forms, as used by several tests.
pub(crate) const INVITE: &str = "INVITE sip:+18005550100@10.0.0.1:5060;user=phone SIP/2.0
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa0
Via: SIP/2.0/TCP 192.0.2.8:5070;branch=z9hG4bKzz;received=192.0.2.80
Max-Forwards: 70
Route: <sip:10.0.0.1;lr>, <sip:10.0.0.2;lr>
Route: <sip:10.0.0.3;lr>
Record-Route: <sip:192.0.2.1;lr>
f: \"Caller\" <sip:+13125550199@carrier.example;user=phone>;tag=ft1
t: <sip:+18005550100@carrier.example>
i: call-1@192.0.2.1
CSeq: 7 INVITE
m: <sip:+13125550199@192.0.2.1:5060>
P-Asserted-Identity: \"X\" <sip:+13125550199@carrier.example>, <tel:+13125550199>
X-Flow-Id: spoofed
c: application/sdp
l: 4

v=0
";
