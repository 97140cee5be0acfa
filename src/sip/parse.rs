//! The scanner: bytes → [`Msg`] or [`ParseError`].
//!
//! One pass over the header section with `memchr` finds every line; each
//! line is split into name and value ranges and the name is mapped to a
//! [`HeaderName`] (long or compact form). Then the mandatory headers are
//! validated (RFC 3261 §8.1.1, RFC 4475): start line, Via, From, To,
//! Call-ID, CSeq, Max-Forwards, Content-Length. Folded lines (RFC 3261
//! §7.3.1) are rare, so the fast path does not handle them: on the first
//! fold we copy the buffer once, turn each folding CRLF into two spaces
//! (offsets are unchanged) and scan again.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::header::{is_token_str, is_ws, name_addr_tag, name_addr_valid, run_end, ListIter, TOKEN};
use super::msg::{CSeq, Header, HeaderName, Mandatory, Method, Msg, Span, StartLine, TopVia};
use super::uri::parse_uri;
use super::via::parse_via_parm;

pub use super::reply::ReplyCtx;

/// Largest message we parse. A UDP datagram is at most 64 KiB; streams are
/// capped by the framing limit, which should not exceed this.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// Most header lines we accept in one message.
pub const MAX_HEADERS: usize = 256;

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Nothing but (at most) CRLFs.
    #[error("empty message")]
    Empty,
    /// Larger than [`MAX_MESSAGE_LEN`] or more than [`MAX_HEADERS`] headers.
    #[error("message too large")]
    TooLarge,
    /// No empty line ends the header section.
    #[error("header section not terminated")]
    Unterminated,
    /// The request or status line is malformed (extra spaces, bad method
    /// token, missing parts; RFC 4475 lwsstart, trws, lwsruri).
    #[error("malformed start line")]
    BadStartLine,
    /// A SIP version other than SIP/2.0 (RFC 4475 badvers).
    #[error("unsupported SIP version")]
    UnsupportedVersion,
    /// The status code is not three digits in 100..=699 (RFC 4475 bigcode).
    #[error("bad status code")]
    BadStatusCode,
    /// The Request-URI is malformed or carries URI headers (RFC 4475
    /// ltgtruri, escruri; RFC 5118 ipv6-bad).
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// The Request-URI scheme is not sip, sips or tel (RFC 4475 unkscm).
    #[error("unsupported URI scheme")]
    UnsupportedUriScheme,
    /// The header section is not UTF-8 (bodies may be anything).
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// A header line has no name or colon, a line ends in a bare LF, a CR
    /// occurs outside a line end, or a continuation line has nothing to
    /// continue.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A mandatory header is absent (RFC 4475 insuf).
    #[error("missing {} header", .0.as_str())]
    MissingHeader(HeaderName),
    /// A single-valued header occurs twice (RFC 4475 multi01, mcl01).
    #[error("multiple {} headers", .0.as_str())]
    DuplicateHeader(HeaderName),
    /// A Via value is malformed (RFC 4475 badinv01).
    #[error("malformed Via")]
    BadVia,
    /// The From value is malformed (RFC 4475 baddn, badaspec).
    #[error("malformed From")]
    BadFrom,
    /// The To value is malformed (RFC 4475 quotbal, badaspec).
    #[error("malformed To")]
    BadTo,
    /// A Contact value is malformed, e.g. a URI with `?` outside `<>`
    /// (RFC 4475 regbadct).
    #[error("malformed Contact")]
    BadContact,
    /// The Call-ID is empty or contains white space.
    #[error("malformed Call-ID")]
    BadCallId,
    /// CSeq is not `number method` or the number exceeds 32 bits
    /// (RFC 4475 scalar02, scalarlg).
    #[error("malformed CSeq")]
    BadCSeq,
    /// The CSeq method differs from the request method (RFC 4475 mismatch01/02).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Content-Length is not a non-negative decimal number (RFC 4475 ncl).
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Content-Length exceeds the bytes received (RFC 4475 clerr).
    #[error("body shorter than Content-Length")]
    BodyTooShort,
    /// Max-Forwards is not a number in 0..=255 (RFC 4475 scalar02).
    #[error("malformed Max-Forwards")]
    BadMaxForwards,
}

/// A message that could not be parsed, with what we could read of it.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// What is wrong.
    pub kind: ParseErrorKind,
    /// Enough to answer with [`crate::sip::build::response_from_ctx`];
    /// `None` when no Via line could be read (drop and count it).
    pub reply: Option<ReplyCtx>,
}

impl ParseError {
    /// The status to answer with: 505 for the SIP version, 416 for an
    /// unsupported Request-URI scheme, 513 for oversize, else 400.
    pub fn status(&self) -> u16 {
        match self.kind {
            ParseErrorKind::UnsupportedVersion => 505,
            ParseErrorKind::UnsupportedUriScheme => 416,
            ParseErrorKind::TooLarge => 513,
            _ => 400,
        }
    }

    /// A reason phrase naming the problem, e.g. `Bad Request - missing
    /// Call-ID header`. Never contains CR or LF.
    pub fn reason_phrase(&self) -> String {
        match self.status() {
            505 => "Version Not Supported".to_owned(),
            416 => "Unsupported URI Scheme".to_owned(),
            513 => "Message Too Large".to_owned(),
            _ => format!("Bad Request - {}", self.kind),
        }
    }
}

/// Why a scan stopped.
enum Fail {
    /// A folded line: unfold and scan again.
    Fold,
    Bad(ParseErrorKind),
}

impl From<ParseErrorKind> for Fail {
    fn from(k: ParseErrorKind) -> Fail {
        Fail::Bad(k)
    }
}

/// Entry point behind [`Msg::parse`].
#[allow(clippy::result_large_err)] // see `Msg::parse`
pub(crate) fn parse(buf: Bytes) -> Result<Msg, ParseError> {
    let lead = leading_crlfs(&buf);
    let buf = if lead > 0 { buf.slice(lead..) } else { buf };
    let fail = match scan(&buf) {
        Ok(msg) => return Ok(Msg { buf, ..msg }),
        Err(Fail::Fold) => {
            let unfolded = unfold(&buf);
            match scan(&unfolded) {
                Ok(msg) => return Ok(Msg { buf: unfolded, ..msg }),
                Err(Fail::Fold) => ParseErrorKind::BadHeaderLine,
                Err(Fail::Bad(k)) => k,
            }
        }
        Err(Fail::Bad(k)) => k,
    };
    Err(ParseError { kind: fail, reply: ReplyCtx::locate(&buf) })
}

/// Number of leading bytes that are CRLF pairs (keep-alives, RFC 3261 §7.5).
pub(crate) fn leading_crlfs(b: &[u8]) -> usize {
    let mut n = 0;
    while b.get(n..n + 2) == Some(b"\r\n") {
        n += 2;
    }
    n
}

/// A copy of `buf` with every folding CRLF of the header section replaced
/// by two spaces (RFC 3261 §7.3.1: folding is equivalent to SP).
fn unfold(buf: &Bytes) -> Bytes {
    let end = memchr::memmem::find(buf, b"\r\n\r\n").unwrap_or(buf.len());
    let mut out = BytesMut::from(buf.as_ref());
    let mut i = 0;
    while i < end {
        let is_fold = out.get(i..i + 2) == Some(b"\r\n") && out.get(i + 2).is_some_and(|&c| is_ws(c));
        if is_fold {
            if let Some(pair) = out.get_mut(i..i + 2) {
                pair.copy_from_slice(b"  ");
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    out.freeze()
}

#[inline]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Singletons we track while scanning: index of the first occurrence.
#[derive(Default)]
struct Seen {
    via: Option<u16>,
    from: Option<u16>,
    to: Option<u16>,
    call_id: Option<u16>,
    cseq: Option<u16>,
    max_forwards: Option<u16>,
    content_length: Option<u16>,
}

impl Seen {
    /// Records header `i`; a second From/To/Call-ID/CSeq/Max-Forwards/
    /// Content-Length is an error (RFC 4475 multi01, mcl01).
    fn record(&mut self, name: HeaderName, i: u16) -> Result<(), ParseErrorKind> {
        let slot = match name {
            HeaderName::Via => {
                self.via.get_or_insert(i);
                return Ok(());
            }
            HeaderName::From => &mut self.from,
            HeaderName::To => &mut self.to,
            HeaderName::CallId => &mut self.call_id,
            HeaderName::CSeq => &mut self.cseq,
            HeaderName::MaxForwards => &mut self.max_forwards,
            HeaderName::ContentLength => &mut self.content_length,
            _ => return Ok(()),
        };
        if slot.is_some() {
            return Err(ParseErrorKind::DuplicateHeader(name));
        }
        *slot = Some(i);
        Ok(())
    }
}

fn scan(buf: &Bytes) -> Result<Msg, Fail> {
    use ParseErrorKind as K;
    let b: &[u8] = buf;
    if b.is_empty() {
        return Err(K::Empty.into());
    }
    if b.len() > MAX_MESSAGE_LEN {
        return Err(K::TooLarge.into());
    }
    let sl_nl = memchr::memchr(b'\n', b).ok_or(K::Unterminated)?;
    if sl_nl == 0 || at(b, sl_nl - 1) != b'\r' {
        return Err(K::BadStartLine.into());
    }
    let sl_end = sl_nl - 1;
    let mut pos = sl_nl + 1;
    let mut headers: SmallVec<[Header; 24]> = SmallVec::new();
    let mut seen = Seen::default();
    let head_end = loop {
        let nl = pos + memchr::memchr(b'\n', b.get(pos..).unwrap_or_default()).ok_or(K::Unterminated)?;
        if nl == pos || at(b, nl - 1) != b'\r' {
            return Err(K::BadHeaderLine.into());
        }
        let line_end = nl - 1;
        if line_end == pos {
            break nl + 1;
        }
        if is_ws(at(b, pos)) {
            return Err(if headers.is_empty() { K::BadHeaderLine.into() } else { Fail::Fold });
        }
        let name_end = run_end(b, pos, &TOKEN).min(line_end);
        let mut i = name_end;
        while i < line_end && is_ws(at(b, i)) {
            i += 1;
        }
        if name_end == pos || i >= line_end || at(b, i) != b':' {
            return Err(K::BadHeaderLine.into());
        }
        i += 1;
        while i < line_end && is_ws(at(b, i)) {
            i += 1;
        }
        let mut ve = line_end;
        while ve > i && is_ws(at(b, ve - 1)) {
            ve -= 1;
        }
        let name = HeaderName::from_bytes(b.get(pos..name_end).unwrap_or_default());
        if headers.len() >= MAX_HEADERS {
            return Err(K::TooLarge.into());
        }
        seen.record(name, headers.len() as u16)?;
        headers.push(Header {
            name,
            line: Span::new(pos, line_end),
            name_end: name_end as u32,
            value: Span::new(i, ve),
        });
        pos = nl + 1;
    };
    let head_bytes = b.get(..head_end).unwrap_or_default();
    // CR only as part of a line end: a bare CR inside a value would be
    // copied into forwarded messages, where some parsers end the line at it
    // (header injection). Lines are the start line, the headers and the
    // empty line.
    if count_cr(head_bytes) != headers.len() + 2 {
        return Err(K::BadHeaderLine.into());
    }
    // Validated once, kept in the Msg: its accessors slice it for free.
    let head_str = bytestring::ByteString::try_from(buf.slice(..head_end)).map_err(|_| K::NotUtf8)?;
    let head: &str = &head_str;
    let start = start_line(head.get(..sl_end).unwrap_or(""))?;
    let text = |h: Option<u16>, missing: HeaderName| -> Result<(u16, &str), ParseErrorKind> {
        let i = h.ok_or(K::MissingHeader(missing))?;
        let hd = headers.get(usize::from(i)).ok_or(K::MissingHeader(missing))?;
        Ok((i, head.get(hd.value.range()).unwrap_or("")))
    };
    text(seen.via, HeaderName::Via)?;
    let (from, from_v) = text(seen.from, HeaderName::From)?;
    let (to, to_v) = text(seen.to, HeaderName::To)?;
    let (call_id, call_id_v) = text(seen.call_id, HeaderName::CallId)?;
    let (_, cseq_v) = text(seen.cseq, HeaderName::CSeq)?;

    if call_id_v.is_empty() || call_id_v.bytes().any(|c| c <= b' ') {
        return Err(K::BadCallId.into());
    }
    let (seq, cseq_method) = parse_cseq(cseq_v).ok_or(K::BadCSeq)?;
    if let StartLine::Request { method_span, .. } = start {
        if head.get(method_span.range()) != Some(cseq_method) {
            return Err(K::CSeqMethodMismatch.into());
        }
    }
    let cseq = CSeq { seq, method: Method::from_token(cseq_method.as_bytes()) };
    let span = |sub: &str| span_in(head, sub);
    let from_tag = name_addr_tag(from_v).ok_or(K::BadFrom)?.map(span);
    let to_tag = name_addr_tag(to_v).ok_or(K::BadTo)?.map(span);
    let mut via_count = 0u32;
    let mut top_via = TopVia::default();
    for h in headers.iter().filter(|h| h.name == HeaderName::Via) {
        for parm in ListIter::new(head.get(h.value.range()).unwrap_or("")) {
            let v = parse_via_parm(parm).ok_or(K::BadVia)?;
            if via_count == 0 {
                top_via = TopVia {
                    transport: span(v.transport),
                    host: span(v.host),
                    port: v.port,
                    branch: v.branch.map(span),
                    rport: v.rport,
                    received: v.received.map(span),
                    raw: span(v.raw),
                };
            }
            via_count += 1;
        }
    }
    for h in headers.iter().filter(|h| h.name == HeaderName::Contact) {
        let v = head.get(h.value.range()).unwrap_or("");
        if v != "*" && !ListIter::new(v).all(name_addr_valid) {
            return Err(K::BadContact.into());
        }
    }
    let max_forwards = match seen.max_forwards {
        Some(i) => {
            let v = headers.get(usize::from(i)).and_then(|h| head.get(h.value.range())).unwrap_or("");
            Some(small_number(v).filter(|&n| n <= 255).ok_or(K::BadMaxForwards)?)
        }
        None => None,
    };
    let available = b.len() - head_end;
    let body_len = match seen.content_length {
        Some(i) => {
            let v = headers.get(usize::from(i)).and_then(|h| head.get(h.value.range())).unwrap_or("");
            let n = small_number(v).ok_or(K::BadContentLength)? as usize;
            if n > available {
                return Err(K::BodyTooShort.into());
            }
            n
        }
        // Datagram rule (RFC 3261 §18.3): without Content-Length the body
        // is the rest of the datagram.
        None => available,
    };
    Ok(Msg {
        // Moved in by the caller, saving a reference-count round trip.
        buf: Bytes::new(),
        head: head_str,
        start,
        headers,
        head_end: head_end as u32,
        body: Span::new(head_end, head_end + body_len),
        idx: Mandatory { from, to, call_id },
        top_via,
        from_tag,
        to_tag,
        cseq,
        max_forwards,
        via_count,
        has_content_length: seen.content_length.is_some(),
    })
}

/// Number of CR bytes in `b`. Counted per 64-byte block into a `u8` (at
/// most 64, no overflow) so the compiler turns each block into a few SIMD
/// compares and one horizontal add.
pub(crate) fn count_cr(b: &[u8]) -> usize {
    let mut blocks = b.chunks_exact(64);
    let mut n = 0usize;
    for block in &mut blocks {
        n += usize::from(block.iter().fold(0u8, |acc, &c| acc.wrapping_add(u8::from(c == b'\r'))));
    }
    n + blocks.remainder().iter().filter(|&&c| c == b'\r').count()
}

/// The range of `sub` within `base` (it must be a slice of it; otherwise
/// an empty range, which reads as `""`).
fn span_in(base: &str, sub: &str) -> Span {
    let off = (sub.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match off.checked_add(sub.len()) {
        Some(end) if end <= base.len() => Span::new(off, end),
        _ => Span::default(),
    }
}

/// A decimal number of at most 9 digits (so it fits in `u32` without
/// overflow checks); anything else, including a sign, is `None`.
fn small_number(v: &str) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// `1*DIGIT LWS Method`, the number fitting in 32 bits.
fn parse_cseq(v: &str) -> Option<(u32, &str)> {
    let digits_end = v.bytes().position(|c| !c.is_ascii_digit())?;
    let (num, rest) = v.split_at(digits_end);
    if num.is_empty() || num.len() > 10 || !rest.starts_with([' ', '\t']) {
        return None;
    }
    let method = rest.trim_start_matches([' ', '\t']);
    if !is_token_str(method.as_bytes()) {
        return None;
    }
    Some((num.parse().ok()?, method))
}

/// Parses `Method SP Request-URI SP SIP/2.0` or `SIP/2.0 SP code SP reason`.
fn start_line(line: &str) -> Result<StartLine, ParseErrorKind> {
    use ParseErrorKind as K;
    if line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")) {
        // Status-Line; RFC 4475 noreason has an empty reason after the SP.
        let (version, rest) = line.split_once(' ').ok_or(K::BadStartLine)?;
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(if is_sip_version(version) { K::UnsupportedVersion } else { K::BadStartLine });
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(K::BadStatusCode);
        }
        let status: u16 = code.parse().map_err(|_| K::BadStatusCode)?;
        if !(100..=699).contains(&status) {
            return Err(K::BadStatusCode);
        }
        if reason.bytes().any(|c| c < b' ' && c != b'\t') {
            return Err(K::BadStartLine);
        }
        let reason_start = line.len() - reason.len();
        return Ok(StartLine::Response { status, reason: Span::new(reason_start, line.len()) });
    }
    // Exactly `Method SP Request-URI SP SIP-Version`: a doubled or trailing
    // SP leaves an empty part or a version with a space in it (RFC 4475
    // lwsstart, trws, lwsruri).
    let b = line.as_bytes();
    let sp1 = memchr::memchr(b' ', b).ok_or(K::BadStartLine)?;
    let sp2 = sp1 + 1 + memchr::memchr(b' ', b.get(sp1 + 1..).unwrap_or_default()).ok_or(K::BadStartLine)?;
    let (method, uri, version) =
        (line.get(..sp1).unwrap_or(""), line.get(sp1 + 1..sp2).unwrap_or(""), line.get(sp2 + 1..).unwrap_or(""));
    if !is_token_str(method.as_bytes()) || uri.is_empty() {
        return Err(K::BadStartLine);
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(if is_sip_version(version) { K::UnsupportedVersion } else { K::BadStartLine });
    }
    let u = parse_uri(uri).ok_or(K::BadRequestUri)?;
    if !u.is_sip() && !u.is_tel() {
        return Err(K::UnsupportedUriScheme);
    }
    if !u.headers.is_empty() {
        return Err(K::BadRequestUri);
    }
    let uri_start = method.len() + 1;
    Ok(StartLine::Request {
        method: Method::from_token(method.as_bytes()),
        method_span: Span::new(0, method.len()),
        uri: Span::new(uri_start, uri_start + uri.len()),
    })
}

/// `"SIP/" 1*DIGIT "." 1*DIGIT`.
fn is_sip_version(v: &str) -> bool {
    let Some(rest) = v.get(..4).filter(|p| p.eq_ignore_ascii_case("SIP/")).and_then(|_| v.get(4..)) else {
        return false;
    };
    rest.split_once('.')
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
}
