//! The only socket code: UDP, TCP and TLS listeners, the per-shard driver loops
//! that feed `proxy::Core`, and the TCP connection registry.
//!
//! Every message of one call goes to the same shard (by a hash of its
//! Call-ID), so its messages are handled, and its answers sent, in order.

pub mod bind_probe;
pub mod flood;
pub mod shard;
pub mod tcp;
pub mod tls;
pub mod udp;

use bytes::Bytes;
use std::hash::{BuildHasher, Hasher};

use crate::proxy::Peer;

/// Something for a shard to do.
pub enum ShardInput {
    /// A message received by another shard's socket or a TCP connection.
    Message(Peer, Bytes),
    /// This message could not be delivered to this peer (connect refused,
    /// unreachable); it goes to the shard that owns the message's call.
    SendError(Peer, Bytes),
    /// This address is unreachable (ICMP); which message failed is not known.
    Unreachable(Peer),
    /// A new core configuration (reload).
    Config(std::sync::Arc<crate::proxy::CoreConfig>),
    /// The shared admission's answer for one of this shard's calls (cluster mode).
    Admit(u64, crate::cluster::Verdict),
}

/// Hands `input` to shard `index`'s queue without waiting. A full (or
/// missing) queue drops it and counts it in `sipedge_queue_dropped_total`:
/// a message is then retransmitted by its sender, a notice about a call
/// (send error, ICMP, admit verdict) is covered by that call's own timer.
pub fn offer(shards: &[tokio::sync::mpsc::Sender<ShardInput>], index: usize, input: ShardInput) {
    if !shards.get(index).is_some_and(|tx| tx.try_send(input).is_ok()) {
        metrics::counter!(crate::metrics::QUEUE_DROPS_TOTAL).increment(1);
    }
}

/// Finds the Call-ID value in a raw message without parsing it (long or
/// compact form, any case). Only used to pick a shard; the parser validates.
pub fn call_id_hint(buf: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    while let Some(nl) = memchr::memchr(b'\n', buf.get(pos..)?) {
        let start = pos + nl + 1;
        let line = buf.get(start..)?;
        if line.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            return None; // end of headers
        }
        let name_len = if line.len() >= 7 && line.get(..7).is_some_and(|n| n.eq_ignore_ascii_case(b"call-id")) {
            7
        } else if line.first().is_some_and(|b| *b == b'i' || *b == b'I')
            && line.get(1).is_some_and(|b| *b == b':' || *b == b' ' || *b == b'\t')
        {
            1
        } else {
            pos = start;
            continue;
        };
        let rest = line.get(name_len..)?;
        let rest = trim_start(rest);
        let Some(rest) = rest.strip_prefix(b":") else {
            pos = start;
            continue;
        };
        let rest = trim_start(rest);
        let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
        return rest.get(..end).map(trim_end);
    }
    None
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    b.get(n..).unwrap_or_default()
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|c| **c == b' ' || **c == b'\t').count();
    b.get(..b.len() - n).unwrap_or_default()
}

/// The shard a message belongs to. Health-probe answers go to shard 0.
pub fn shard_of(buf: &[u8], shards: usize, hasher: &ahash::RandomState) -> usize {
    if shards <= 1 {
        return 0;
    }
    match call_id_hint(buf) {
        Some(id) if id.starts_with(crate::proxy::PROBE_CALL_ID_PREFIX.as_bytes()) => 0,
        Some(id) => {
            let mut h = hasher.build_hasher();
            h.write(id);
            (h.finish() % shards as u64) as usize
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_call_id_in_long_and_compact_form() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID:  abc@host \r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(call_id_hint(m), Some(&b"abc@host"[..]));
        let m = b"INVITE sip:a@b SIP/2.0\r\nv: x\r\ni : zz\r\n\r\n";
        assert_eq!(call_id_hint(m), Some(&b"zz"[..]));
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\ni: body\r\n";
        assert_eq!(call_id_hint(m), None);
        assert_eq!(call_id_hint(b""), None);
    }

    #[test]
    fn same_call_same_shard() {
        let h = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let a = b"INVITE x SIP/2.0\r\nCall-ID: c1\r\n\r\n";
        let b = b"SIP/2.0 200 OK\r\ni: c1\r\n\r\n";
        assert_eq!(shard_of(a, 4, &h), shard_of(b, 4, &h));
        let p = b"SIP/2.0 200 OK\r\nCall-ID: hc-1-2\r\n\r\n";
        assert_eq!(shard_of(p, 4, &h), 0);
    }
}
