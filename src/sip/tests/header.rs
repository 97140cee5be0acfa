//! Lexical helpers of `header.rs`: names, lists, name-addr.
use crate::sip::header::*;

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
