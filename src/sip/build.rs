//! Message builders. Each writes into one `BytesMut` sized up front and
//! copies header lines byte-for-byte from the parsed message where it can;
//! nothing is allocated per header.
//!
//! Text supplied by the caller (reasons, display names, extra headers) has
//! CR, LF and NUL replaced by spaces so it can never inject a header line.

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{name_addr, names_match, HeaderName, ListIter};
use super::msg::{Header, Method, Msg};
use super::reply::ReplyCtx;

/// Max-Forwards of a request the edge starts (RFC 3261 §8.1.1.6), and the
/// value a forwarded request without one is treated as having.
pub const MAX_FORWARDS: u32 = 70;
/// The header line of [`MAX_FORWARDS`], written as bytes once.
const MAX_FORWARDS_LINE: &[u8] = b"Max-Forwards: 70\r\n";

/// Appends `s`, replacing CR, LF and NUL by SP (header-injection guard).
fn put_clean(out: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    if memchr::memchr3(b'\r', b'\n', 0, b).is_none() {
        out.put_slice(b);
        return;
    }
    out.extend(b.iter().map(|&c| if matches!(c, b'\r' | b'\n' | 0) { b' ' } else { c }));
}

/// Appends a decimal number without going through `fmt`.
fn put_num(out: &mut BytesMut, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(d) = tmp.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put_slice(tmp.get(i..).unwrap_or_default());
}

/// Appends `Name: value CRLF` from caller-supplied text.
fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    put_clean(out, name);
    out.put_slice(b": ");
    put_clean(out, value);
    out.put_slice(b"\r\n");
}

/// Appends a received header line verbatim, with its CRLF.
fn put_line(out: &mut BytesMut, msg: &Msg, h: &Header) {
    out.put_slice(msg.buf.get(h.line.range()).unwrap_or_default());
    out.put_slice(b"\r\n");
}

/// Total length of the lines of `msg` with this name (for capacity).
fn lines_len(msg: &Msg, name: HeaderName) -> usize {
    msg.headers.iter().filter(|h| h.name == name).map(|h| h.line.range().len() + 2).sum()
}

fn first(msg: &Msg, name: HeaderName) -> Option<&Header> {
    msg.headers.iter().find(|h| h.name == name)
}

/// Appends the To line of `msg`, adding `;tag=` when asked and absent.
fn put_to(out: &mut BytesMut, msg: &Msg, to_tag: Option<&str>) {
    let Some(h) = first(msg, HeaderName::To) else { return };
    match to_tag {
        Some(tag) if msg.to_tag().is_none() => {
            // Up to the end of the value, so the tag is not after trailing LWS.
            out.put_slice(msg.buf.get(h.line.start as usize..h.value.end as usize).unwrap_or_default());
            out.put_slice(b";tag=");
            put_clean(out, tag);
            out.put_slice(b"\r\n");
        }
        _ => put_line(out, msg, h),
    }
}

fn put_status_line(out: &mut BytesMut, code: u16, reason: &str) {
    out.put_slice(b"SIP/2.0 ");
    put_num(out, u64::from(code));
    out.put_u8(b' ');
    put_clean(out, reason);
    out.put_slice(b"\r\n");
}

/// A response to `req` (RFC 3261 §8.2.6): status line, every Via line
/// verbatim and in order, From, To (with `;tag=<to_tag>` appended when
/// given and To has none), Call-ID, CSeq, `extra`, `Content-Length: 0`.
pub fn response(req: &Msg, code: u16, reason: &str, to_tag: Option<&str>, extra: &[(&str, &str)]) -> Bytes {
    let cap = 64
        + reason.len()
        + lines_len(req, HeaderName::Via)
        + lines_len(req, HeaderName::From)
        + lines_len(req, HeaderName::To)
        + lines_len(req, HeaderName::CallId)
        + lines_len(req, HeaderName::CSeq)
        + to_tag.map_or(0, |t| t.len() + 5)
        + extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>();
    let mut out = BytesMut::with_capacity(cap);
    put_status_line(&mut out, code, reason);
    for h in req.headers.iter().filter(|h| h.name == HeaderName::Via) {
        put_line(&mut out, req, h);
    }
    if let Some(h) = first(req, HeaderName::From) {
        put_line(&mut out, req, h);
    }
    put_to(&mut out, req, to_tag);
    for name in [HeaderName::CallId, HeaderName::CSeq] {
        if let Some(h) = first(req, name) {
            put_line(&mut out, req, h);
        }
    }
    for (n, v) in extra {
        put_header(&mut out, n, v);
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// A response built from what a failed parse could locate (SPEC §5: a 400
/// naming the problem). Lines that were not found are left out.
pub fn response_from_ctx(ctx: &ReplyCtx, code: u16, reason: &str, to_tag: Option<&str>) -> Bytes {
    let lines = ctx.vias.iter().chain([&ctx.from, &ctx.to, &ctx.call_id, &ctx.cseq].into_iter().flatten());
    let cap = 64 + reason.len() + lines.map(|l| l.len() + 2).sum::<usize>() + to_tag.map_or(0, |t| t.len() + 5);
    let mut out = BytesMut::with_capacity(cap);
    put_status_line(&mut out, code, reason);
    for v in &ctx.vias {
        out.put_slice(v);
        out.put_slice(b"\r\n");
    }
    if let Some(from) = &ctx.from {
        out.put_slice(from);
        out.put_slice(b"\r\n");
    }
    if let Some(to) = &ctx.to {
        out.put_slice(to.trim_ascii_end());
        if let Some(tag) = to_tag.filter(|_| !ctx.to_has_tag()) {
            out.put_slice(b";tag=");
            put_clean(&mut out, tag);
        }
        out.put_slice(b"\r\n");
    }
    for line in [&ctx.call_id, &ctx.cseq].into_iter().flatten() {
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// How [`forward_request`] changes a request on its way through the proxy
/// (RFC 3261 §16.6). Everything not named here is copied byte-for-byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardEdits<'a> {
    /// Replaces the Request-URI.
    pub request_uri: Option<&'a str>,
    /// Full value of our new top Via, e.g. `SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK...`.
    pub via: &'a str,
    /// Full value of our Record-Route, e.g. `<sip:127.0.0.1:5060;lr>`, inserted first.
    pub record_route: Option<&'a str>,
    /// Removes this many leading Route URIs (our own), across comma lists.
    pub pop_routes: usize,
    /// Written as Max-Forwards (added when absent). The caller decrements.
    pub max_forwards: u32,
    /// Extra headers appended before Content-Length (X-Flow-Id, ...).
    pub add: &'a [(&'a str, &'a str)],
    /// Header names to drop (case-insensitive; compact forms match too),
    /// e.g. an incoming X-Flow-Id.
    pub remove: &'a [&'a str],
    /// Display name for From (and P-Asserted-Identity when present). Given
    /// bare (`ACME`) it is quoted and escaped; given already quoted
    /// (`"ACME"`) it is used as is.
    pub from_display: Option<&'a str>,
    /// Replaces the sender's top via-parm: [`super::via::stamped`], its
    /// `received` and `rport` filled in from the packet's source.
    pub upstream_via: Option<&'a str>,
}

/// Appends `display` as a quoted-string.
fn put_display(out: &mut BytesMut, display: &str) {
    let d = display.trim();
    if d.len() >= 2 && d.starts_with('"') && d.ends_with('"') {
        put_clean(out, d);
        return;
    }
    out.put_u8(b'"');
    for &c in d.as_bytes() {
        match c {
            b'"' | b'\\' => out.put_slice(&[b'\\', c]),
            b'\r' | b'\n' | 0 => out.put_u8(b' '),
            _ => out.put_u8(c),
        }
    }
    out.put_u8(b'"');
}

/// Appends `Name: "display" <uri>;params` for each element of a name-addr
/// list value (From, P-Asserted-Identity).
fn put_with_display(out: &mut BytesMut, name: HeaderName, value: &str, display: &str) {
    out.put_slice(name.as_str().as_bytes());
    out.put_slice(b": ");
    for (i, elem) in ListIter::new(value).enumerate() {
        if i > 0 {
            out.put_slice(b", ");
        }
        match name_addr(elem) {
            Some(na) => {
                put_display(out, display);
                out.put_slice(b" <");
                out.put_slice(na.uri.as_bytes());
                out.put_u8(b'>');
                out.put_slice(na.params.as_bytes());
            }
            None => out.put_slice(elem.as_bytes()),
        }
    }
    out.put_slice(b"\r\n");
}

/// Appends what is left of a Route line after popping up to `*to_pop`
/// leading URIs; the whole line goes when every URI is popped.
fn put_route_popped(out: &mut BytesMut, req: &Msg, h: &Header, to_pop: &mut usize) {
    let mut it = ListIter::new(req.value_of(h));
    while *to_pop > 0 {
        match it.next() {
            Some("") => {}
            Some(_) => *to_pop -= 1,
            None => return,
        }
    }
    if let Some(rest) = it.rest().filter(|r| !r.is_empty()) {
        out.put_slice(req.name_of(h));
        out.put_slice(b": ");
        out.put_slice(rest.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// The request to send to the next hop (RFC 3261 §16.6): our Via on top,
/// our Record-Route first, our Route entries popped, Max-Forwards set,
/// `remove`d headers dropped, `add`ed headers and the real Content-Length
/// at the end, body unchanged. Every other line is copied byte-for-byte.
pub fn forward_request(req: &Msg, edits: &ForwardEdits<'_>) -> Bytes {
    let body = req.body();
    let cap = req.head_end as usize
        + body.len()
        + edits.request_uri.map_or(0, str::len)
        + edits.via.len()
        + edits.record_route.map_or(0, str::len)
        + edits.from_display.map_or(0, |d| 2 * d.len() + 8)
        + edits.add.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>()
        + edits.upstream_via.map_or(0, str::len)
        + 96;
    let mut out = BytesMut::with_capacity(cap);
    out.put_slice(req.method_str().as_bytes());
    out.put_u8(b' ');
    match edits.request_uri {
        Some(uri) => put_clean(&mut out, uri),
        None => out.put_slice(req.request_uri().unwrap_or_default().as_bytes()),
    }
    out.put_slice(b" SIP/2.0\r\n");
    put_header(&mut out, "Via", edits.via);
    let has_rr = req.headers.iter().any(|h| h.name == HeaderName::RecordRoute);
    let mut rr_pending = edits.record_route;
    if !has_rr {
        if let Some(rr) = rr_pending.take() {
            put_header(&mut out, "Record-Route", rr);
        }
    }
    let put_mf = |out: &mut BytesMut| {
        out.put_slice(b"Max-Forwards: ");
        put_num(out, u64::from(edits.max_forwards));
        out.put_slice(b"\r\n");
    };
    if req.max_forwards.is_none() {
        put_mf(&mut out);
    }
    let mut to_pop = edits.pop_routes;
    let mut via_pending = edits.upstream_via;
    // A name we recognise can only match a line of that same header; any
    // other name (X-Flow-Id, ...) only lines we do not recognise either.
    let remove: smallvec::SmallVec<[(HeaderName, &str); 4]> =
        edits.remove.iter().map(|r| (HeaderName::from_bytes(r.as_bytes()), *r)).collect();
    for h in &req.headers {
        match h.name {
            HeaderName::ContentLength => continue,
            // Ours to set, whatever `remove` says.
            HeaderName::MaxForwards => {
                put_mf(&mut out);
                continue;
            }
            HeaderName::RecordRoute => {
                if let Some(rr) = rr_pending.take() {
                    put_header(&mut out, "Record-Route", rr);
                }
            }
            _ => {}
        }
        if remove.iter().any(|&(n, r)| n == h.name && names_match(req.name_of(h), r.as_bytes())) {
            continue;
        }
        match (h.name, edits.from_display) {
            (HeaderName::Via, _) if via_pending.is_some() => {
                let mut it = ListIter::new(req.value_of(h));
                it.next();
                out.put_slice(b"Via: ");
                put_clean(&mut out, via_pending.take().unwrap_or_default());
                if let Some(rest) = it.rest() {
                    out.put_slice(b", ");
                    out.put_slice(rest.as_bytes());
                }
                out.put_slice(b"\r\n");
            }
            (HeaderName::Route, _) if to_pop > 0 => put_route_popped(&mut out, req, h, &mut to_pop),
            (HeaderName::From | HeaderName::PAssertedIdentity, Some(d)) => {
                put_with_display(&mut out, h.name, req.value_of(h), d);
            }
            _ => put_line(&mut out, req, h),
        }
    }
    for (n, v) in edits.add {
        put_header(&mut out, n, v);
    }
    out.put_slice(b"Content-Length: ");
    put_num(&mut out, body.len() as u64);
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
    out.freeze()
}

/// The response to relay upstream (RFC 3261 §16.7 step 3): the first
/// via-parm removed (the whole line if it holds only that one, else just
/// that element of the comma list), everything else byte-for-byte. A
/// Content-Length is added when the response had none (so it can go out
/// on a stream).
pub fn forward_response(resp: &Msg) -> Bytes {
    let body = resp.body();
    let Some(h) = first(resp, HeaderName::Via) else {
        return resp.buf.slice(..resp.body.end as usize);
    };
    let mut out = BytesMut::with_capacity(resp.head_end as usize + body.len() + 24);
    out.put_slice(resp.buf.get(..h.line.start as usize).unwrap_or_default());
    let mut it = ListIter::new(resp.value_of(h));
    it.next();
    if let Some(rest) = it.rest() {
        out.put_slice(resp.name_of(h));
        out.put_slice(b": ");
        out.put_slice(rest.as_bytes());
        out.put_slice(b"\r\n");
    }
    // The remaining header lines, up to (not including) the empty line.
    let tail_start = h.line.end as usize + 2;
    let tail_end = (resp.head_end as usize).saturating_sub(2);
    out.put_slice(resp.buf.get(tail_start..tail_end).unwrap_or_default());
    if !resp.has_content_length {
        out.put_slice(b"Content-Length: ");
        put_num(&mut out, body.len() as u64);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// The first line of `name` of `msg`, verbatim, if present.
fn put_first(out: &mut BytesMut, msg: &Msg, name: HeaderName) {
    if let Some(h) = first(msg, name) {
        put_line(out, msg, h);
    }
}

/// Shared shape of ACK (non-2xx) and CANCEL: Request-URI, top Via, Route,
/// From, Call-ID of the INVITE; the given To line; `CSeq: n METHOD`.
fn invite_derived(invite: &Msg, method: Method, to_from: &Msg) -> Bytes {
    let uri = invite.request_uri().unwrap_or_default();
    let via = invite.top_via().map_or("", |v| v.raw);
    let cap = 160
        + uri.len()
        + via.len()
        + lines_len(invite, HeaderName::Route)
        + lines_len(invite, HeaderName::From)
        + lines_len(to_from, HeaderName::To)
        + lines_len(invite, HeaderName::CallId);
    let mut out = BytesMut::with_capacity(cap);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(uri.as_bytes());
    out.put_slice(b" SIP/2.0\r\nVia: ");
    out.put_slice(via.as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(MAX_FORWARDS_LINE);
    for h in invite.headers.iter().filter(|h| h.name == HeaderName::Route) {
        put_line(&mut out, invite, h);
    }
    put_first(&mut out, invite, HeaderName::From);
    put_first(&mut out, to_from, HeaderName::To);
    put_first(&mut out, invite, HeaderName::CallId);
    out.put_slice(b"CSeq: ");
    put_num(&mut out, u64::from(invite.cseq().seq));
    out.put_u8(b' ');
    out.put_slice(method.as_str().as_bytes());
    out.put_slice(b"\r\nContent-Length: 0\r\n\r\n");
    out.freeze()
}

/// The ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3):
/// Request-URI, top Via, Call-ID, From and Route of the INVITE; To of the
/// response; `CSeq: <n> ACK`; Max-Forwards 70; no body.
pub fn ack_for_non2xx(invite: &Msg, resp: &Msg) -> Bytes {
    invite_derived(invite, Method::Ack, resp)
}

/// The CANCEL for `invite` (RFC 3261 §9.1): Request-URI, top Via only,
/// Call-ID, From, To and Route of the INVITE; `CSeq: <n> CANCEL`;
/// Max-Forwards 70; no body.
pub fn cancel_for(invite: &Msg) -> Bytes {
    invite_derived(invite, Method::Cancel, invite)
}

/// A new request (OPTIONS probes, edge-originated BYE). Arguments are full
/// header values; Max-Forwards 70 and Content-Length 0 are added.
#[allow(clippy::too_many_arguments)] // mirrors the mandatory headers one-to-one
pub fn request(
    method: Method,
    uri: &str,
    via: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    extra: &[(&str, &str)],
) -> Bytes {
    let cap = 128
        + uri.len()
        + via.len()
        + from.len()
        + to.len()
        + call_id.len()
        + extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>();
    let mut out = BytesMut::with_capacity(cap);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    put_clean(&mut out, uri);
    out.put_slice(b" SIP/2.0\r\n");
    put_header(&mut out, "Via", via);
    out.put_slice(MAX_FORWARDS_LINE);
    put_header(&mut out, "From", from);
    put_header(&mut out, "To", to);
    put_header(&mut out, "Call-ID", call_id);
    out.put_slice(b"CSeq: ");
    put_num(&mut out, u64::from(cseq));
    out.put_u8(b' ');
    out.put_slice(method.as_str().as_bytes());
    out.put_slice(b"\r\n");
    for (n, v) in extra {
        put_header(&mut out, n, v);
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

#[cfg(test)]
mod max_forwards_tests {
    use super::{MAX_FORWARDS, MAX_FORWARDS_LINE};

    #[test]
    fn the_header_line_says_the_constant() {
        assert_eq!(MAX_FORWARDS_LINE, format!("Max-Forwards: {MAX_FORWARDS}\r\n").as_bytes());
    }
}
