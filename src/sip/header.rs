//! Header names (long and compact forms) and the small lexical helpers that
//! every header accessor shares: token classes, comma lists, name-addr parts
//! and header parameters. Everything here borrows; nothing allocates.

/// A header the edge looks at, recognised by its long or compact name
/// (RFC 3261 §7.3.3), case-insensitively. Everything else is `Other` and is
/// still available through [`crate::sip::Msg::header_by_name`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum HeaderName {
    /// `Via` / `v`.
    Via,
    /// `From` / `f`.
    From,
    /// `To` / `t`.
    To,
    /// `Call-ID` / `i`.
    CallId,
    /// `CSeq`.
    CSeq,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Content-Length` / `l`.
    ContentLength,
    /// `Content-Type` / `c`.
    ContentType,
    /// `Contact` / `m`.
    Contact,
    /// `Route`.
    Route,
    /// `Record-Route`.
    RecordRoute,
    /// `P-Asserted-Identity` (RFC 3325).
    PAssertedIdentity,
    /// `Supported` / `k`.
    Supported,
    /// `Subject` / `s`.
    Subject,
    /// `Require`.
    Require,
    /// `Proxy-Require`.
    ProxyRequire,
    /// `Allow`.
    Allow,
    /// `Server`.
    Server,
    /// `User-Agent`.
    UserAgent,
    /// `Retry-After`.
    RetryAfter,
    /// Any other header (including the compact `e`, `o`, `r`, `u`).
    Other,
}

impl HeaderName {
    /// Maps a raw header name (long or compact form, any case) to the enum.
    /// Dispatches on length first so the common case is one or two compares.
    pub fn from_bytes(n: &[u8]) -> HeaderName {
        use HeaderName::*;
        // Our names hold only letters and `-`. `c | 0x20` equals a lower-case
        // letter only for that letter in either case, and equals `-` only for
        // `-` or CR, which no token contains; so this is an exact
        // case-insensitive compare. Folding without early exit lets the
        // compiler unroll it. `lit` must be lower-case.
        let eq = |lit: &str| {
            lit.len() == n.len() && n.iter().zip(lit.as_bytes()).fold(0u8, |acc, (a, b)| acc | ((a | 0x20) ^ b)) == 0
        };
        let Some(first) = n.first().map(|c| c | 0x20) else {
            return Other;
        };
        if n.len() == 1 {
            return match first {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'k' => Supported,
                b's' => Subject,
                _ => Other,
            };
        }
        match (first, n.len()) {
            (b't', 2) if eq("to") => To,
            (b'v', 3) if eq("via") => Via,
            (b'f', 4) if eq("from") => From,
            (b'c', 4) if eq("cseq") => CSeq,
            (b'r', 5) if eq("route") => Route,
            (b'a', 5) if eq("allow") => Allow,
            (b's', 6) if eq("server") => Server,
            (b'c', 7) if eq("call-id") => CallId,
            (b'c', 7) if eq("contact") => Contact,
            (b's', 7) if eq("subject") => Subject,
            (b'r', 7) if eq("require") => Require,
            (b's', 9) if eq("supported") => Supported,
            (b'u', 10) if eq("user-agent") => UserAgent,
            (b'r', 11) if eq("retry-after") => RetryAfter,
            (b'm', 12) if eq("max-forwards") => MaxForwards,
            (b'c', 12) if eq("content-type") => ContentType,
            (b'r', 12) if eq("record-route") => RecordRoute,
            (b'p', 13) if eq("proxy-require") => ProxyRequire,
            (b'c', 14) if eq("content-length") => ContentLength,
            (b'p', 19) if eq("p-asserted-identity") => PAssertedIdentity,
            _ => Other,
        }
    }

    /// The canonical long form, as we write it (`""` for `Other`).
    pub fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            Contact => "Contact",
            Route => "Route",
            RecordRoute => "Record-Route",
            PAssertedIdentity => "P-Asserted-Identity",
            Supported => "Supported",
            Subject => "Subject",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Allow => "Allow",
            Server => "Server",
            UserAgent => "User-Agent",
            RetryAfter => "Retry-After",
            Other => "",
        }
    }
}

/// The compact letter of a header name given in long or compact form
/// (RFC 3261 §7.3.3 plus the registered `e`, `o`, `r`, `u`), lower-cased.
fn compact_letter(name: &[u8]) -> Option<u8> {
    const TABLE: [(&str, u8); 13] = [
        ("Via", b'v'),
        ("From", b'f'),
        ("To", b't'),
        ("Call-ID", b'i'),
        ("Contact", b'm'),
        ("Content-Length", b'l'),
        ("Content-Type", b'c'),
        ("Supported", b'k'),
        ("Subject", b's'),
        ("Content-Encoding", b'e'),
        ("Event", b'o'),
        ("Refer-To", b'r'),
        ("Allow-Events", b'u'),
    ];
    if let [c] = name {
        let c = c.to_ascii_lowercase();
        return TABLE.iter().any(|&(_, l)| l == c).then_some(c);
    }
    TABLE.iter().find(|(long, _)| long.as_bytes().eq_ignore_ascii_case(name)).map(|&(_, l)| l)
}

/// Whether two header names denote the same header: equal ignoring case, or
/// one is the compact form of the other (`i` and `Call-ID`).
pub(crate) fn names_match(a: &[u8], b: &[u8]) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    // Only a one-letter name can be a compact alias; skip the table otherwise.
    if a.len() != 1 && b.len() != 1 {
        return false;
    }
    matches!((compact_letter(a), compact_letter(b)), (Some(x), Some(y)) if x == y)
}

/// A byte class as a lookup table: ASCII alphanumerics plus `extra`.
#[allow(clippy::indexing_slicing)] // const evaluation: an out-of-range index fails the build, not at run time
pub(crate) const fn class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

/// RFC 3261 `token`: alphanum and `-.!%*_+`'~`.
pub(crate) static TOKEN: [bool; 256] = class(b"-.!%*_+`'~");
/// A parameter value without quotes: token, host or IPv6 reference.
pub(crate) static PARAM_VALUE: [bool; 256] = class(b"-.!%*_+`'~:[]");
/// A host name or IPv4 address (`_` tolerated).
pub(crate) static HOST: [bool; 256] = class(b"-._");

/// Whether `c` is in the class `t`.
#[inline]
pub(crate) fn in_class(t: &[bool; 256], c: u8) -> bool {
    // `u8` is always in range; the `get` compiles to a plain load.
    t.get(usize::from(c)).copied().unwrap_or(false)
}

/// The index of the first byte at or after `i` that is not in class `t`.
#[inline]
pub(crate) fn run_end(b: &[u8], i: usize, t: &[bool; 256]) -> usize {
    b.get(i..).map_or(i, |r| i + r.iter().position(|&c| !in_class(t, c)).unwrap_or(r.len()))
}

/// Whether `c` may appear in an RFC 3261 token.
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    in_class(&TOKEN, c)
}

/// Whether `s` is a non-empty token.
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && run_end(s, 0, &TOKEN) == s.len()
}

/// Linear white space inside one (unfolded) header line.
#[inline]
pub(crate) fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Trims SP/HT (and, for safety on raw input, CR/LF) from both ends.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let lws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let start = b.iter().position(|&c| !lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !lws(c)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or("")
}

/// Index of the first byte at or after `i` that is not SP/HT.
#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// Index just past a quoted string that starts at `start` (which must be a
/// `"`), honouring `\` escapes; `None` if it is not terminated.
pub(crate) fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Iterator over the elements of a comma-separated header value, splitting
/// only at commas outside quoted strings and `<...>`. Elements are trimmed;
/// empty elements are yielded (as `""`) so validators can reject them.
pub(crate) struct ListIter<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> ListIter<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        ListIter { s, pos: 0, done: false }
    }

    /// The elements not yet yielded, as raw text (trimmed); `None` once the
    /// last element has been yielded.
    pub(crate) fn rest(&self) -> Option<&'a str> {
        (!self.done).then(|| trim(self.s.get(self.pos..).unwrap_or("")))
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        // Jump between the only bytes that matter: quotes, `<` and commas.
        while let Some(off) = b.get(i..).and_then(|r| memchr::memchr3(b'"', b'<', b',', r)) {
            i += off;
            match b.get(i) {
                // An unterminated quote or `<` swallows the rest; validators catch it.
                Some(b'"') => i = quoted_end(b, i).unwrap_or(b.len()),
                Some(b'<') => i = b.get(i..).and_then(|r| memchr::memchr(b'>', r)).map_or(b.len(), |j| i + j + 1),
                _ => {
                    self.pos = i + 1;
                    return Some(trim(self.s.get(start..i).unwrap_or("")));
                }
            }
        }
        self.done = true;
        Some(trim(self.s.get(start..).unwrap_or("")))
    }
}

/// A name-addr or addr-spec split into its parts (RFC 3261 §20.10 grammar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameAddr<'a> {
    /// Display name as written (quoted or tokens), trimmed; may be empty.
    pub display: &'a str,
    /// The URI (inside `<>` when angled).
    pub uri: &'a str,
    /// Header parameters, starting at `;` (or empty).
    pub params: &'a str,
    /// Whether the URI was enclosed in `<>`.
    pub angled: bool,
}

/// Splits one list element of From/To/Contact/Route/P-Asserted-Identity.
/// In addr-spec form (no `<>`) a `;` ends the URI: the parameters belong to
/// the header (RFC 3261 §20.10).
pub(crate) fn name_addr(elem: &str) -> Option<NameAddr<'_>> {
    let b = elem.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    loop {
        let Some(off) = b.get(i..).and_then(|r| memchr::memchr3(b'"', b'<', b';', r)) else {
            i = b.len();
            break;
        };
        i += off;
        match b.get(i) {
            Some(b'"') => {
                i = quoted_end(b, i)?;
                quoted = true;
            }
            Some(b'<') => {
                let close = i + 1 + memchr::memchr(b'>', b.get(i + 1..)?)?;
                return Some(NameAddr {
                    display: trim(elem.get(..i)?),
                    uri: elem.get(i + 1..close)?,
                    params: trim(elem.get(close + 1..)?),
                    angled: true,
                });
            }
            _ if quoted => i += 1,
            _ => break,
        }
    }
    if quoted {
        // A display name must be followed by `<uri>`.
        return None;
    }
    Some(NameAddr { display: "", uri: trim(elem.get(..i)?), params: trim(elem.get(i..)?), angled: false })
}

/// Walks `*( LWS ";" LWS name [ LWS "=" LWS value ] ) LWS` in one pass,
/// calling `f(name, value)` for each parameter until it returns `false`.
/// A value is a token (plus `:`, `[`, `]` for IPv6 `received`/`maddr`) or
/// a quoted string (kept with its quotes). Returns whether the text is
/// well-formed (up to where `f` stopped the walk).
pub(crate) fn walk_params<'a>(s: &'a str, mut f: impl FnMut(&'a str, Option<&'a str>) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = skip_ws(b, 0);
    while i < b.len() {
        if b.get(i) != Some(&b';') {
            return false;
        }
        i = skip_ws(b, i + 1);
        let name_start = i;
        i = run_end(b, i, &TOKEN);
        let Some(name) = s.get(name_start..i).filter(|n| !n.is_empty()) else {
            return false;
        };
        i = skip_ws(b, i);
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            i = skip_ws(b, i + 1);
            let value_start = i;
            if b.get(i) == Some(&b'"') {
                let Some(end) = quoted_end(b, i) else { return false };
                i = end;
            } else {
                i = run_end(b, i, &PARAM_VALUE);
            }
            value = s.get(value_start..i).filter(|v| !v.is_empty());
            if value.is_none() {
                return false;
            }
            i = skip_ws(b, i);
        }
        if !f(name, value) {
            return true;
        }
    }
    true
}

/// The value of header parameter `name` (case-insensitive) in `params`.
/// A parameter present without a value yields `Some("")`.
pub(crate) fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    let mut found = None;
    walk_params(params, |n, v| {
        if n.eq_ignore_ascii_case(name) {
            found = Some(v.unwrap_or(""));
        }
        found.is_none()
    });
    found
}

/// Whether `s` looks like a URI we can carry: `scheme ":" rest` with no
/// white space, angle brackets or quotes (RFC 4475 badaspec).
fn uri_shape_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(colon) = memchr::memchr(b':', b) else {
        return false;
    };
    let scheme = b.get(..colon).unwrap_or_default();
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        && b.get(colon + 1..).is_some_and(|r| !r.is_empty())
        && super::uri::uri_chars_ok(b)
}

/// Validates a From/To/Contact element and returns its `tag` parameter
/// (`Some(None)` when there is none); `None` when it is malformed:
/// unbalanced quotes (quotbal), a display name that is neither tokens nor
/// one quoted string (baddn), a URI with spaces (badaspec) or, outside
/// `<>`, with `,` or `?` (regbadct), malformed parameters.
pub(crate) fn name_addr_tag(value: &str) -> Option<Option<&str>> {
    let na = name_addr(value)?;
    let display_ok = if na.display.starts_with('"') {
        quoted_end(na.display.as_bytes(), 0) == Some(na.display.len())
    } else {
        na.display.bytes().all(|c| is_token(c) || is_ws(c))
    };
    // RFC 3261 §20: a URI holding `,`, `?` or `;` must be in `<>`; `;`
    // already ended the addr-spec, so `,` and `?` are what is left to check.
    let bare_ok = na.angled || memchr::memchr2(b',', b'?', na.uri.as_bytes()).is_none();
    if !display_ok || !bare_ok || !uri_shape_valid(na.uri) {
        return None;
    }
    let mut tag = None;
    let params_ok = walk_params(na.params, |n, v| {
        if tag.is_none() && n.eq_ignore_ascii_case("tag") {
            tag = Some(v.unwrap_or(""));
        }
        true
    });
    params_ok.then_some(tag)
}

/// Whether a From/To/Contact element is well-formed (see [`name_addr_tag`]).
pub(crate) fn name_addr_valid(value: &str) -> bool {
    name_addr_tag(value).is_some()
}
