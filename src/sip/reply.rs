//! What we could read of a message that failed to parse: enough to answer
//! it with a 400 (SPEC §5), found by a lenient second scan that runs only on
//! the error path.

use bytes::Bytes;
use smallvec::SmallVec;

use super::header::{name_addr, param, HeaderName};

/// The header lines needed to answer a bad request (RFC 3261 §8.2.6.2):
/// every Via, From, To, Call-ID and CSeq, each as the whole raw line
/// (`name: value`, folds included, without the final CRLF), sliced from the
/// received buffer without copying.
#[derive(Debug, Clone)]
pub struct ReplyCtx {
    /// Every Via line, in order (never empty).
    pub vias: SmallVec<[Bytes; 4]>,
    /// The first From line, if found.
    pub from: Option<Bytes>,
    /// The first To line, if found.
    pub to: Option<Bytes>,
    /// The first Call-ID line, if found.
    pub call_id: Option<Bytes>,
    /// The first CSeq line, if found.
    pub cseq: Option<Bytes>,
    /// Whether the start line looks like a request (else: a response,
    /// which is never answered).
    pub is_request: bool,
    /// Whether the request is an ACK (never answered, RFC 3261 §17.2.1).
    pub is_ack: bool,
}

/// Whether a raw (possibly folded) line is safe to echo: CR only as part of
/// CRLF, LF only as a fold (followed by SP/HT), no NUL.
fn echo_safe(line: &[u8]) -> bool {
    line.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => line.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && line.get(i - 1) == Some(&b'\r') && matches!(line.get(i + 1), Some(b' ' | b'\t')),
        0 => false,
        _ => true,
    })
}

impl ReplyCtx {
    /// Locates the reply headers in a message that failed to parse. `None`
    /// when no Via line can be read: such a message is dropped and counted.
    pub fn locate(buf: &Bytes) -> Option<ReplyCtx> {
        let b: &[u8] = buf;
        let line_end = |from: usize| -> usize {
            b.get(from..).and_then(|r| memchr::memchr(b'\n', r)).map_or(b.len(), |i| from + i)
        };
        let strip_cr =
            |start: usize, end: usize| if end > start && b.get(end - 1) == Some(&b'\r') { end - 1 } else { end };
        let sl_end = line_end(0);
        let start_line = b.get(..sl_end).unwrap_or_default();
        let is_request = !start_line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"));
        let is_ack = start_line.starts_with(b"ACK ");
        let mut ctx =
            ReplyCtx { vias: SmallVec::new(), from: None, to: None, call_id: None, cseq: None, is_request, is_ack };
        let mut pos = sl_end + 1;
        while pos < b.len() {
            let mut end = line_end(pos);
            if strip_cr(pos, end) == pos {
                break; // empty line: end of headers
            }
            // Continuation lines belong to this header.
            while matches!(b.get(end + 1), Some(b' ' | b'\t')) {
                end = line_end(end + 1);
            }
            let line = strip_cr(pos, end);
            let next = end + 1;
            let raw = b.get(pos..line).unwrap_or_default();
            if let Some(colon) = memchr::memchr(b':', raw) {
                let name = raw.get(..colon).unwrap_or_default().trim_ascii();
                let slot = match HeaderName::from_bytes(name) {
                    HeaderName::Via => None,
                    HeaderName::From => Some(&mut ctx.from),
                    HeaderName::To => Some(&mut ctx.to),
                    HeaderName::CallId => Some(&mut ctx.call_id),
                    HeaderName::CSeq => Some(&mut ctx.cseq),
                    _ => {
                        pos = next;
                        continue;
                    }
                };
                if echo_safe(raw) {
                    let bytes = buf.slice(pos..line);
                    match slot {
                        None if ctx.vias.len() < 64 => ctx.vias.push(bytes),
                        None => {}
                        Some(s) => {
                            s.get_or_insert(bytes);
                        }
                    }
                }
            }
            pos = next;
        }
        (!ctx.vias.is_empty()).then_some(ctx)
    }

    /// Whether the To line already carries a tag.
    pub fn to_has_tag(&self) -> bool {
        let Some(to) = &self.to else { return false };
        let value = to
            .iter()
            .position(|&c| c == b':')
            .and_then(|i| to.get(i + 1..))
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("");
        name_addr(value.trim()).is_some_and(|na| param(na.params, "tag").is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_even_with_bare_lf_and_folds() {
        let raw = "INVITE sip:a@b SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP\r\n  h2\r\nTo: <sip:a@b>\r\ni: x\r\n\r\n";
        let ctx = ReplyCtx::locate(&Bytes::from(raw)).unwrap();
        assert_eq!(ctx.vias.len(), 2);
        assert_eq!(&ctx.vias[0][..], b"v: SIP/2.0/UDP h;branch=z9hG4bK1");
        assert_eq!(&ctx.vias[1][..], b"Via: SIP/2.0/UDP\r\n  h2");
        assert_eq!(ctx.call_id.as_deref(), Some(&b"i: x"[..]));
        assert!(ctx.from.is_none() && ctx.cseq.is_none());
        assert!(ctx.is_request && !ctx.is_ack && !ctx.to_has_tag());
    }

    #[test]
    fn no_via_means_no_context() {
        assert!(ReplyCtx::locate(&Bytes::from_static(b"ACK sip:a@b SIP/2.0\r\nTo: x\r\n\r\n")).is_none());
        assert!(ReplyCtx::locate(&Bytes::new()).is_none());
    }

    #[test]
    fn unsafe_lines_are_not_echoed() {
        let raw = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\rX: y\r\nVia: SIP/2.0/UDP ok\r\n\r\n";
        let ctx = ReplyCtx::locate(&Bytes::from(raw)).unwrap();
        assert_eq!(ctx.vias.len(), 1);
        assert_eq!(&ctx.vias[0][..], b"Via: SIP/2.0/UDP ok");
    }
}
