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
        let eq = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
        match n.len() {
            1 => match n.first().map(u8::to_ascii_lowercase) {
                Some(b'v') => Via,
                Some(b'f') => From,
                Some(b't') => To,
                Some(b'i') => CallId,
                Some(b'm') => Contact,
                Some(b'l') => ContentLength,
                Some(b'c') => ContentType,
                Some(b'k') => Supported,
                Some(b's') => Subject,
                _ => Other,
            },
            2 if eq("To") => To,
            3 if eq("Via") => Via,
            4 if eq("From") => From,
            4 if eq("CSeq") => CSeq,
            5 if eq("Route") => Route,
            5 if eq("Allow") => Allow,
            6 if eq("Server") => Server,
            7 if eq("Call-ID") => CallId,
            7 if eq("Contact") => Contact,
            7 if eq("Subject") => Subject,
            7 if eq("Require") => Require,
            9 if eq("Supported") => Supported,
            10 if eq("User-Agent") => UserAgent,
            11 if eq("Retry-After") => RetryAfter,
            12 if eq("Max-Forwards") => MaxForwards,
            12 if eq("Content-Type") => ContentType,
            12 if eq("Record-Route") => RecordRoute,
            13 if eq("Proxy-Require") => ProxyRequire,
            14 if eq("Content-Length") => ContentLength,
            19 if eq("P-Asserted-Identity") => PAssertedIdentity,
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
    TABLE
        .iter()
        .find(|(long, _)| long.as_bytes().eq_ignore_ascii_case(name))
        .map(|&(_, l)| l)
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

/// Whether `c` may appear in an RFC 3261 token: alphanum and `-.!%*_+`'~`.
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// Whether `s` is a non-empty token.
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_token(c))
}

/// Linear white space inside one (unfolded) header line.
#[inline]
pub(crate) fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Trims SP/HT (and, for safety on raw input, CR/LF) from both ends.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
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
        let mut angle = false;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => {
                    // An unterminated quote swallows the rest; validators catch it.
                    i = quoted_end(b, i).unwrap_or(b.len());
                    continue;
                }
                b'<' => angle = true,
                b'>' => angle = false,
                b',' if !angle => {
                    self.pos = i + 1;
                    return Some(trim(self.s.get(start..i).unwrap_or("")));
                }
                _ => {}
            }
            i += 1;
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
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i = quoted_end(b, i)?;
                quoted = true;
                continue;
            }
            b'<' => {
                let close = i + 1 + memchr::memchr(b'>', b.get(i + 1..)?)?;
                return Some(NameAddr {
                    display: trim(elem.get(..i)?),
                    uri: elem.get(i + 1..close)?,
                    params: trim(elem.get(close + 1..)?),
                    angled: true,
                });
            }
            b';' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    if quoted {
        // A display name must be followed by `<uri>`.
        return None;
    }
    Some(NameAddr {
        display: "",
        uri: trim(elem.get(..i)?),
        params: trim(elem.get(i..)?),
        angled: false,
    })
}

/// Iterator over `;name[=value]` parameters as `(name, value)` pairs, names
/// and values trimmed of LWS; quoted values keep their quotes. Stops at the
/// first malformed parameter (see [`params_valid`] to detect that).
pub(crate) struct Params<'a> {
    s: &'a str,
}

impl<'a> Params<'a> {
    /// `s` is the text from the first `;` (leading LWS allowed).
    pub(crate) fn new(s: &'a str) -> Self {
        Params { s }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);
    fn next(&mut self) -> Option<Self::Item> {
        let s = trim(self.s);
        let rest = s.strip_prefix(';')?;
        let b = rest.as_bytes();
        // The parameter runs to the next `;` outside a quoted string.
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => i = quoted_end(b, i).unwrap_or(b.len()),
                b';' => break,
                _ => i += 1,
            }
        }
        let (param, tail) = rest.split_at(i.min(rest.len()));
        self.s = tail;
        Some(match param.split_once('=') {
            Some((n, v)) => (trim(n), Some(trim(v))),
            None => (trim(param), None),
        })
    }
}

/// The value of header parameter `name` (case-insensitive) in `params`.
/// A parameter present without a value yields `Some("")`.
pub(crate) fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    Params::new(params)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.unwrap_or(""))
}

/// Whether a parameter value is acceptable: a token (plus `:`, `[`, `]` for
/// IPv6 `received`/`maddr`) or a complete quoted string.
fn param_value_valid(v: &str) -> bool {
    let b = v.as_bytes();
    if b.first() == Some(&b'"') {
        return quoted_end(b, 0) == Some(b.len());
    }
    !b.is_empty() && b.iter().all(|&c| is_token(c) || matches!(c, b':' | b'[' | b']'))
}

/// Whether `params` is a well-formed `*( ";" name [ "=" value ] )` sequence.
pub(crate) fn params_valid(params: &str) -> bool {
    let mut rest = trim(params);
    while !rest.is_empty() {
        if !rest.starts_with(';') {
            return false;
        }
        let mut it = Params::new(rest);
        let Some((name, value)) = it.next() else {
            return false;
        };
        if !is_token_str(name.as_bytes()) || value.is_some_and(|v| !param_value_valid(v)) {
            return false;
        }
        rest = trim(it.s);
    }
    true
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
        && !b.iter().any(|&c| c <= b' ' || matches!(c, b'<' | b'>' | b'"' | 0x7f))
}

/// Validates a From/To value: balanced quotes (quotbal), a display name of
/// tokens or one quoted string (baddn), a URI without spaces (badaspec) and
/// well-formed parameters.
pub(crate) fn name_addr_valid(value: &str) -> bool {
    let Some(na) = name_addr(value) else {
        return false;
    };
    let display_ok = if na.display.starts_with('"') {
        quoted_end(na.display.as_bytes(), 0) == Some(na.display.len())
    } else {
        na.display.bytes().all(|c| is_token(c) || is_ws(c))
    };
    // RFC 3261 §20: a URI holding `,`, `?` or `;` must be in `<>`; `;`
    // already ended the addr-spec, so `,` and `?` are what is left to check.
    let bare_ok = na.angled || !na.uri.contains([',', '?']);
    display_ok && bare_ok && uri_shape_valid(na.uri) && params_valid(na.params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_compact_names_map_to_the_same_header() {
        for (a, b) in [
            ("Via", "v"),
            ("from", "F"),
            ("TO", "t"),
            ("call-id", "I"),
            ("Contact", "m"),
            ("content-length", "L"),
            ("Content-Type", "c"),
            ("Supported", "k"),
            ("Subject", "s"),
        ] {
            let x = HeaderName::from_bytes(a.as_bytes());
            assert_ne!(x, HeaderName::Other, "{a}");
            assert_eq!(x, HeaderName::from_bytes(b.as_bytes()), "{a} vs {b}");
            assert!(names_match(a.as_bytes(), b.as_bytes()));
        }
        assert_eq!(HeaderName::from_bytes(b"x"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"P-ASSERTED-IDENTITY"), HeaderName::PAssertedIdentity);
        assert!(names_match(b"Event", b"o"));
        assert!(names_match(b"r", b"Refer-To"));
        assert!(!names_match(b"X-Flow-Id", b"x"));
        assert!(!names_match(b"o", b"u"));
    }

    #[test]
    fn list_splits_outside_quotes_and_angles() {
        let v = r#""a,b" <sip:x@y;p=1,2>;tag=1 , <sip:z>,,"#;
        let got: Vec<_> = ListIter::new(v).collect();
        assert_eq!(got, vec![r#""a,b" <sip:x@y;p=1,2>;tag=1"#, "<sip:z>", "", ""]);
    }

    #[test]
    fn name_addr_forms() {
        let na = name_addr(r#""J \"R\"" <sip:j@x.com;lr>;tag=9"#).unwrap();
        assert_eq!((na.display, na.uri, na.params), (r#""J \"R\"""#, "sip:j@x.com;lr", ";tag=9"));
        let na = name_addr("sip:j@x.com ;  tag = 7").unwrap();
        assert_eq!((na.uri, param(na.params, "TAG")), ("sip:j@x.com", Some("7")));
        assert!(name_addr(r#""unterminated <sip:a@b>"#).is_none());
        assert!(name_addr(r#""only display""#).is_none());
    }

    #[test]
    fn name_addr_validation_matches_rfc4475() {
        assert!(name_addr_valid("caller<sip:caller@example.com>;tag=323"));
        assert!(name_addr_valid("isbn:2983792873"));
        assert!(!name_addr_valid("Bell, Alexander <sip:a.g.bell@example.com>;tag=43"));
        assert!(!name_addr_valid(r#""Watson, Thomas" < sip:t.watson@example.org >"#));
        assert!(!name_addr_valid(r#""Mr. J. User <sip:j.user@example.com>"#));
        assert!(!name_addr_valid("<sip:a@b>;;tag=1"));
        assert!(!name_addr_valid("<sip:a@b>;tag="));
    }
}
