//! Fuzz harnesses shared by `tools/fuzz` (cargo-fuzz targets) and
//! `tests/fuzz_replay.rs` (corpus and crash replay under `cargo test`).
//!
//! Each harness takes arbitrary bytes and panics only when an invariant of
//! the edge is broken, so a fuzzer's "crash" is always a real finding:
//!
//! - [`parse_one`]: `Msg::parse` and everything the core does with a parsed
//!   message (accessors, builders); what the builders emit must parse again.
//! - [`frame_stream`]: TCP framing over a random chunking of the stream must
//!   give the same messages as framing the whole stream at once.
//! - [`core_sequence`]: a `proxy::Core` driven by a sequence of datagrams from
//!   several peers (carriers, flow engines, a stranger) on a virtual clock.
//!   Nothing is ever sent to an address that is neither a configured peer nor
//!   the source of a packet (no open relay), strangers only ever get
//!   responses, and once the clock has run long enough every call, dialog and
//!   concurrency slot is gone (no leak).
//!
//! Not part of the product API; hidden from the docs.
//
// Harness code: a panic is how it reports a finding, and indexing is on
// buffers it sized itself. Nothing here is reachable from the network.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod core;
mod input;

pub use self::core::{core_sequence, core_sequence_with, raw_program, CoreFuzzReport};
pub use input::{mutate, Input, Rng};

use bytes::Bytes;

use crate::sip::build::{self, ForwardEdits};
use crate::sip::framing::{next_frame, Frame};
use crate::sip::{Method, Msg};

/// Parses one datagram and exercises what the core does with a message.
/// Panics if the parser panics, or if a builder turns a parsed request into
/// bytes that no longer parse (the edge would forward garbage).
pub fn parse_one(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    match Msg::parse(bytes) {
        Ok(m) => exercise(&m),
        Err(e) => {
            let _ = (e.status(), e.reason_phrase());
            if let Some(ctx) = &e.reply {
                let _ = build::response_from_ctx(ctx, e.status(), &e.reason_phrase(), Some("t"));
            }
        }
    }
}

/// Every accessor and builder the proxy core uses on a parsed message.
fn exercise(m: &Msg) {
    let _ = (m.top_via(), m.via_count(), m.from_tag(), m.to_tag(), m.from_uri(), m.to_uri());
    let _ = (m.contact_uri(), m.p_asserted_identity_uri(), m.max_forwards(), m.cseq(), m.call_id());
    let _ = (m.routes().count(), m.record_routes().count(), m.request_uri_parts(), m.body().len());
    if let Some(u) = m.request_uri() {
        let _ = crate::sip::parse_uri(u).map(|p| p.user.map(crate::sip::user_unescaped));
    }
    let _ = crate::transport::call_id_hint(m.buf());
    if m.is_request() {
        let r = build::response(m, 503, "Service Unavailable", Some("t"), &[("Retry-After", "5")]);
        reparse("response", &r, m);
        let edits = ForwardEdits {
            request_uri: Some("sip:+18005550100@127.0.0.10:5060"),
            via: "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-fz",
            record_route: Some("<sip:127.0.0.1:5060;lr>"),
            pop_routes: 1,
            max_forwards: m.max_forwards().unwrap_or(crate::sip::build::MAX_FORWARDS).saturating_sub(1),
            add: &[("X-Flow-Id", "f")],
            remove: &["X-Flow-Id"],
            from_display: Some("ACME"),
            upstream_via: None,
        };
        if let Some(f) = reparse("forwarded request", &build::forward_request(m, &edits), m) {
            assert_eq!(f.via_count(), m.via_count() + 1, "forwarding adds exactly one Via");
            assert_eq!(f.body(), m.body(), "forwarding keeps the body");
        }
        if m.method() == Some(Method::Invite) {
            reparse("CANCEL", &build::cancel_for(m), m);
            let _ = build::ack_for_non2xx(m, m);
        }
    } else if m.via_count() > 1 {
        if let Some(f) = reparse("forwarded response", &build::forward_response(m), m) {
            assert_eq!(f.via_count(), m.via_count() - 1, "forwarding a response pops one Via");
        }
    } else {
        let _ = build::forward_response(m);
    }
}

fn reparse(what: &str, out: &Bytes, from: &Msg) -> Option<Msg> {
    match Msg::parse(out.clone()) {
        Ok(m) => Some(m),
        // Our size and header-count caps are policy, not well-formedness: a
        // message just under them may exceed them once we add our headers.
        Err(e) if e.kind == crate::sip::ParseErrorKind::TooLarge => None,
        Err(e) => panic!(
            "{what} built from a parsed message does not parse: {e:?}\ninput: {:?}\noutput: {:?}",
            String::from_utf8_lossy(from.buf()),
            String::from_utf8_lossy(out)
        ),
    }
}

/// The stream limit `frame_stream` uses for a selector byte.
fn max_message(sel: u8) -> usize {
    [16, 64, 300, 1024, 4096, 65_535][usize::from(sel) % 6]
}

/// Frames a TCP byte stream the way the TCP driver does, fed in random chunks
/// (sizes drawn from the first bytes), and checks the result against
/// framing the whole stream at once: the same messages, the same verdict.
/// Every framed message is also parsed.
pub fn frame_stream(data: &[u8]) {
    let mut inp = Input::new(data);
    let max = max_message(inp.u8());
    let mut rng = Rng::new(u64::from(inp.u16()) | 1);
    let stream = inp.rest();
    let whole = frame_all(stream, max, &mut |_| stream.len());
    let chunked = frame_all(stream, max, &mut |left| 1 + rng.below(left.min(97)));
    assert_eq!(whole, chunked, "framing depends on how the stream was chunked");
    for m in &whole.0 {
        parse_one(m);
    }
}

/// What framing a stream gave: the messages, and whether it ended broken.
type Framed = (Vec<Vec<u8>>, Option<crate::sip::framing::FramingError>);

fn frame_all(stream: &[u8], max: usize, chunk: &mut dyn FnMut(usize) -> usize) -> Framed {
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut msgs = Vec::new();
    loop {
        // Drain the buffer like `TcpHub::read_loop`.
        loop {
            match next_frame(&buf, max) {
                Frame::Complete(n) => {
                    assert!(n > 0 && n <= buf.len() && n <= max, "Complete({n}) of a {}-byte buffer", buf.len());
                    msgs.push(buf.drain(..n).collect());
                }
                Frame::KeepAlive(n) => {
                    assert!(n > 0 && n <= buf.len(), "KeepAlive({n}) of a {}-byte buffer", buf.len());
                    assert!(buf[..n].iter().all(|b| *b == b'\r' || *b == b'\n'), "keep-alive that is not CRLF");
                    buf.drain(..n);
                }
                Frame::Incomplete => break,
                Frame::Invalid(e) => return (msgs, Some(e)),
            }
        }
        if fed == stream.len() {
            // Leading CRLFs that never became a message are not a message either.
            return (msgs, None);
        }
        let n = chunk(stream.len() - fed).clamp(1, stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
    }
}
