//! A parsed SIP message: the received bytes plus byte ranges of the start
//! line and of every header line. Accessors borrow from the buffer; the
//! typed ones (top Via, CSeq, tags, routes) read their header on demand.
//!
//! Building a `Msg` only records ranges (no per-header allocation); see
//! `parse.rs` for the scanner and the validation it performs.

use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;
use smallvec::SmallVec;

pub use super::header::HeaderName;
use super::header::{name_addr, names_match, ListIter};
use super::parse::ParseError;
use super::uri::{parse_uri, UriParts};
pub use super::via::Via;

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1); anything not
/// listed is `Other` and its text is available from [`Msg::method_str`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// UPDATE (RFC 3311).
    Update,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other (extension) method.
    Other,
}

impl Method {
    /// The method as written on the wire; `""` for `Other`.
    pub fn as_str(&self) -> &'static str {
        use Method::*;
        match self {
            Invite => "INVITE",
            Ack => "ACK",
            Bye => "BYE",
            Cancel => "CANCEL",
            Options => "OPTIONS",
            Register => "REGISTER",
            Update => "UPDATE",
            Info => "INFO",
            Prack => "PRACK",
            Subscribe => "SUBSCRIBE",
            Notify => "NOTIFY",
            Refer => "REFER",
            Message => "MESSAGE",
            Publish => "PUBLISH",
            Other => "",
        }
    }

    /// The method for a token (exact, case-sensitive match).
    pub fn from_token(s: &[u8]) -> Method {
        use Method::*;
        match s {
            b"INVITE" => Invite,
            b"ACK" => Ack,
            b"BYE" => Bye,
            b"CANCEL" => Cancel,
            b"OPTIONS" => Options,
            b"REGISTER" => Register,
            b"UPDATE" => Update,
            b"INFO" => Info,
            b"PRACK" => Prack,
            b"SUBSCRIBE" => Subscribe,
            b"NOTIFY" => Notify,
            b"REFER" => Refer,
            b"MESSAGE" => Message,
            b"PUBLISH" => Publish,
            _ => Other,
        }
    }
}

/// The CSeq header: sequence number and method (RFC 3261 §20.16).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct CSeq {
    /// Sequence number (fits in 32 bits; larger is a parse error).
    pub seq: u32,
    /// Method named in the CSeq.
    pub method: Method,
}

/// A byte range of the buffer; `u32` keeps `Header` at 20 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        // Messages are capped far below 4 GiB (parse::MAX_MESSAGE_LEN).
        Span { start: start as u32, end: end as u32 }
    }
    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header line: its name, the whole line (without CRLF) and the value
/// (trimmed of surrounding LWS).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub name: HeaderName,
    pub line: Span,
    pub name_end: u32,
    pub value: Span,
}

/// Request line or status line.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StartLine {
    Request { method: Method, method_span: Span, uri: Span },
    Response { status: u16, reason: Span },
}

/// Indices (into `headers`) of the headers every message has after a
/// successful parse.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mandatory {
    pub from: u16,
    pub to: u16,
    pub call_id: u16,
}

/// The top via-parm, read once during parsing (every transaction lookup
/// needs its branch).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TopVia {
    pub transport: Span,
    pub host: Span,
    pub port: Option<u16>,
    pub branch: Option<Span>,
    pub rport: bool,
    pub received: Option<Span>,
    pub raw: Span,
}

/// A parsed SIP request or response.
#[derive(Clone, Debug)]
pub struct Msg {
    pub(crate) buf: Bytes,
    /// `buf` up to `head_end`, validated as UTF-8 once while parsing: the
    /// accessors slice it without validating each range again.
    pub(crate) head: ByteString,
    pub(crate) start: StartLine,
    pub(crate) headers: SmallVec<[Header; 24]>,
    /// Offset of the first byte after the empty line ending the headers.
    pub(crate) head_end: u32,
    pub(crate) body: Span,
    pub(crate) idx: Mandatory,
    pub(crate) top_via: TopVia,
    pub(crate) from_tag: Option<Span>,
    pub(crate) to_tag: Option<Span>,
    pub(crate) cseq: CSeq,
    pub(crate) max_forwards: Option<u32>,
    pub(crate) via_count: u32,
    pub(crate) has_content_length: bool,
}

impl Msg {
    /// Parses one message from a datagram (or a frame cut by
    /// [`crate::sip::framing::next_frame`]). Leading CRLFs are skipped;
    /// folded header lines are unfolded (each CRLF of a fold becomes two
    /// spaces, keeping every offset), so [`Msg::buf`] may be such a copy.
    #[allow(clippy::result_large_err)] // `Msg` (the Ok side) is larger still: boxing the error would not shrink the Result
    pub fn parse(buf: Bytes) -> Result<Msg, ParseError> {
        super::parse::parse(buf)
    }

    /// The message bytes the ranges refer to: the received buffer without
    /// leading CRLFs (unfolded if it had folds), possibly followed by bytes
    /// beyond Content-Length that are not part of the message.
    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    /// Gives the message its own copy of its bytes. A received message shares
    /// the driver's receive chunk (hundreds of KB); one kept for a
    /// transaction's life would keep the whole chunk alive. Offsets are
    /// unchanged, so every accessor gives the same answers.
    pub fn detach(&mut self) {
        self.buf = Bytes::copy_from_slice(&self.buf);
        let head = self.buf.slice(..(self.head_end as usize).min(self.buf.len()));
        // Same bytes as the head validated during parsing.
        self.head = ByteString::try_from(head).unwrap_or_default();
    }

    /// The text of a range of the header section (ranges end on ASCII
    /// delimiters, so on character boundaries).
    pub(crate) fn text(&self, s: Span) -> &str {
        self.head.get(s.range()).unwrap_or("")
    }

    pub(crate) fn value_of(&self, h: &Header) -> &str {
        self.text(h.value)
    }

    pub(crate) fn name_of(&self, h: &Header) -> &[u8] {
        self.buf.get(h.line.start as usize..h.name_end as usize).unwrap_or_default()
    }

    fn mandatory(&self, i: u16) -> &str {
        self.headers.get(usize::from(i)).map(|h| self.value_of(h)).unwrap_or("")
    }

    /// Whether this is a request (else a response).
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method; `None` for responses.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method as written (`""` for responses).
    pub fn method_str(&self) -> &str {
        match self.start {
            StartLine::Request { method_span, .. } => self.text(method_span),
            StartLine::Response { .. } => "",
        }
    }

    /// The Request-URI text; `None` for responses.
    pub fn request_uri(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI split into parts (validated during parsing).
    pub fn request_uri_parts(&self) -> Option<UriParts<'_>> {
        self.request_uri().and_then(parse_uri)
    }

    /// The status code; `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase (possibly empty); `None` for requests.
    pub fn reason(&self) -> Option<&str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// The value of the first header with this name, trimmed.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.iter().find(|h| h.name == name).map(|h| self.value_of(h))
    }

    /// The value of every header line with this name, in order.
    pub fn headers(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.headers.iter().filter(move |h| h.name == name).map(move |h| self.value_of(h))
    }

    /// The first header with this name (case-insensitive; compact forms
    /// match their long names), for headers without an enum variant.
    pub fn header_by_name(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| names_match(self.name_of(h), name.as_bytes())).map(|h| self.value_of(h))
    }

    /// The first via-parm of the first Via line. Always `Some` after a
    /// successful parse.
    pub fn top_via(&self) -> Option<Via<'_>> {
        let t = &self.top_via;
        Some(Via {
            transport: self.text(t.transport),
            host: self.text(t.host),
            port: t.port,
            branch: t.branch.map(|s| self.text(s)),
            rport: t.rport,
            received: t.received.map(|s| self.text(s)),
            raw: self.text(t.raw),
        })
    }

    /// The `branch` of the top via-parm (what [`Msg::top_via`] gives, without
    /// building the rest of it).
    pub fn branch(&self) -> Option<&str> {
        self.top_via.branch.map(|s| self.text(s))
    }

    /// The number of via-parms over all Via lines.
    pub fn via_count(&self) -> usize {
        self.via_count as usize
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        self.mandatory(self.idx.call_id)
    }

    /// The CSeq.
    pub fn cseq(&self) -> CSeq {
        self.cseq
    }

    /// The `tag` parameter of From.
    pub fn from_tag(&self) -> Option<&str> {
        self.from_tag.map(|s| self.text(s))
    }

    /// The `tag` parameter of To.
    pub fn to_tag(&self) -> Option<&str> {
        self.to_tag.map(|s| self.text(s))
    }

    /// The URI of From (the addr-spec, with or without `<>` in the header).
    pub fn from_uri(&self) -> Option<&str> {
        name_addr(self.mandatory(self.idx.from)).map(|na| na.uri)
    }

    /// The URI of To.
    pub fn to_uri(&self) -> Option<&str> {
        name_addr(self.mandatory(self.idx.to)).map(|na| na.uri)
    }

    /// Max-Forwards, if present (validated 0..=255 during parsing).
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    /// Every Route URI, in order over all Route lines and comma lists.
    pub fn routes(&self) -> impl Iterator<Item = &str> {
        uris(self.headers(HeaderName::Route))
    }

    /// Every Record-Route URI, in order.
    pub fn record_routes(&self) -> impl Iterator<Item = &str> {
        uris(self.headers(HeaderName::RecordRoute))
    }

    /// The URI of the first Contact (`None` for `*` or no Contact).
    pub fn contact_uri(&self) -> Option<&str> {
        first_uri(self.header(HeaderName::Contact)?)
    }

    /// The URI of the first P-Asserted-Identity value.
    pub fn p_asserted_identity_uri(&self) -> Option<&str> {
        first_uri(self.header(HeaderName::PAssertedIdentity)?)
    }

    /// The body: Content-Length bytes after the header section, or the rest
    /// of the datagram when Content-Length is absent.
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.body.range()).unwrap_or_default()
    }
}

/// The URI of the first element of a name-addr list, if it looks like one.
fn first_uri(value: &str) -> Option<&str> {
    ListIter::new(value).next().and_then(name_addr).map(|na| na.uri).filter(|u| u.contains(':'))
}

/// The URIs of every element of every value (Route, Record-Route).
fn uris<'a>(values: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    values.flat_map(ListIter::new).filter_map(|e| name_addr(e).map(|na| na.uri)).filter(|u| !u.is_empty())
}
