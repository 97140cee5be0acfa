//! Framing of SIP over a byte stream (RFC 3261 §18.3): the header section
//! ends at the first CRLFCRLF and Content-Length (or `l:`) is mandatory and
//! gives the body length. CRLFs between messages are keep-alives (RFC 5626
//! §3.5.1) and are reported separately so the caller can skip them (and
//! answer a double-CRLF ping with a CRLF pong).

use super::header::{is_ws, HeaderName};
use super::parse::leading_crlfs;

/// Why a stream cannot be framed; the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The header section or the whole message exceeds the limit.
    #[error("message too large")]
    TooLarge,
    /// No Content-Length header: required on streams.
    #[error("missing Content-Length on a stream")]
    MissingContentLength,
    /// Content-Length is not a decimal number, or two disagree.
    #[error("malformed Content-Length")]
    BadContentLength,
}

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes (headers and body).
    Complete(usize),
    /// This many bytes of leading CRLFs (keep-alive) to skip.
    KeepAlive(usize),
    /// More bytes are needed.
    Incomplete,
    /// The stream is broken; close it.
    Invalid(FramingError),
}

/// Frames the next message at the front of `buf`, allowing at most
/// `max_message` bytes for headers plus body.
pub fn next_frame(buf: &[u8], max_message: usize) -> Frame {
    let lead = leading_crlfs(buf);
    if lead > 0 {
        return Frame::KeepAlive(lead);
    }
    if buf.is_empty() || buf == b"\r" {
        return Frame::Incomplete;
    }
    let window = buf.get(..buf.len().min(max_message)).unwrap_or_default();
    let Some(end) = memchr::memmem::find(window, b"\r\n\r\n") else {
        return if buf.len() >= max_message { Frame::Invalid(FramingError::TooLarge) } else { Frame::Incomplete };
    };
    let head_len = end + 4;
    let body_len = match content_length(buf.get(..end + 2).unwrap_or_default()) {
        Ok(n) => n,
        Err(e) => return Frame::Invalid(e),
    };
    let Some(total) = head_len.checked_add(body_len).filter(|&t| t <= max_message) else {
        return Frame::Invalid(FramingError::TooLarge);
    };
    if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Incomplete
    }
}

/// The Content-Length of a header section (lines ending in CRLF). Folded
/// values are joined; repeated headers must agree.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    let mut pos = memchr::memchr(b'\n', head).map_or(head.len(), |i| i + 1);
    while pos < head.len() {
        let mut end = head.get(pos..).and_then(|r| memchr::memchr(b'\n', r)).map_or(head.len(), |i| pos + i);
        while head.get(end + 1).copied().is_some_and(is_ws) {
            end = head.get(end + 1..).and_then(|r| memchr::memchr(b'\n', r)).map_or(head.len(), |i| end + 1 + i);
        }
        let line = head.get(pos..end).unwrap_or_default();
        pos = end + 1;
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if HeaderName::from_bytes(name) != HeaderName::ContentLength {
            continue;
        }
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength);
        }
        let n = value.iter().fold(0usize, |acc, &d| acc * 10 + usize::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(FramingError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nl: 4\r\n\r\nbody";

    #[test]
    fn frames_two_messages_and_keepalives() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        assert_eq!(next_frame(&stream, 4096), Frame::KeepAlive(4));
        let rest = &stream[4..];
        assert_eq!(next_frame(rest, 4096), Frame::Complete(MSG.len()));
        assert_eq!(next_frame(&rest[MSG.len()..], 4096), Frame::Complete(MSG.len()));
    }

    #[test]
    fn incomplete_until_every_byte_arrived() {
        for cut in 0..MSG.len() {
            assert_eq!(next_frame(&MSG[..cut], 4096), Frame::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn content_length_rules() {
        let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n";
        assert_eq!(next_frame(no_cl, 4096), Frame::Invalid(FramingError::MissingContentLength));
        let bad = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(next_frame(bad, 4096), Frame::Invalid(FramingError::BadContentLength));
        let two = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab";
        assert_eq!(next_frame(two, 4096), Frame::Invalid(FramingError::BadContentLength));
        let folded = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length :\r\n 2\r\n\r\nab";
        assert_eq!(next_frame(folded, 4096), Frame::Complete(folded.len()));
    }

    #[test]
    fn size_limits() {
        assert_eq!(next_frame(MSG, MSG.len()), Frame::Complete(MSG.len()));
        assert_eq!(next_frame(MSG, MSG.len() - 1), Frame::Invalid(FramingError::TooLarge));
        let endless = vec![b'a'; 100];
        assert_eq!(next_frame(&endless, 50), Frame::Invalid(FramingError::TooLarge));
        assert_eq!(next_frame(&endless, 500), Frame::Incomplete);
    }
}
