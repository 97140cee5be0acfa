use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::*;
use crate::sip::{NumberKind, Transport, E164};

fn num(d: u64) -> E164 {
    E164::from_u64(d).unwrap()
}

fn rec(n: E164, flow: &str) -> NumberRecord {
    NumberRecord {
        e164: n,
        kind: n.default_kind(),
        flow: Some(Arc::from(flow)),
        carriers: vec![Arc::from("a")],
        max_concurrent: None,
        cnam: None,
        state: NumberState::Active,
    }
}

fn link(az: &str, addr: &str) -> PeerLink {
    PeerLink::new(az, addr.parse().unwrap(), Transport::Udp)
}

fn peers() -> Peers {
    Peers::new(
        vec![
            CarrierPeers {
                name: Arc::from("a"),
                links: vec![link("az1", "127.0.0.2:5060"), link("az2", "127.0.0.3:5060")],
                sources: vec![("10.1.0.0".parse().unwrap(), 16), ("10.1.2.0".parse().unwrap(), 24)],
            },
            CarrierPeers {
                name: Arc::from("b"),
                links: vec![link("az1", "127.0.0.4:5060")],
                sources: vec![("10.1.2.128".parse().unwrap(), 25), ("2001:db8::".parse().unwrap(), 32)],
            },
        ],
        vec![link("az1", "127.0.0.10:5060")],
    )
}

fn table(recs: Vec<NumberRecord>, opts: TableOptions) -> RoutingTable {
    RoutingTable::with_options(RoutingSnapshot::new(NumberMap::from_records(recs), Arc::new(peers())), opts)
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn check_all(snap: &RoutingSnapshot, model: &HashMap<u64, NumberRecord>, keys: u64) {
    assert_eq!(snap.len(), model.len());
    for k in 0..keys {
        let n = num(12_065_550_000 + k);
        assert_eq!(snap.record(n), model.get(&n.as_u64()).map(NumberRef::from), "key {k}");
    }
    let mut seen: Vec<u64> = snap.numbers.iter().map(|r| r.e164.as_u64()).collect();
    seen.sort_unstable();
    let mut want: Vec<u64> = model.keys().copied().collect();
    want.sort_unstable();
    assert_eq!(seen, want, "iter yields every live record once");
}

/// Random inserts, updates and deletes against a model `HashMap`, with the
/// compaction threshold small enough that it runs ~150 times.
fn random_ops(opts: TableOptions) -> RoutingTable {
    const KEYS: u64 = 3000;
    let mut model: HashMap<u64, NumberRecord> = HashMap::new();
    let initial: Vec<NumberRecord> = (0..KEYS / 2).map(|k| rec(num(12_065_550_000 + k * 2), "f0")).collect();
    for r in &initial {
        model.insert(r.e164.as_u64(), r.clone());
    }
    let t = table(initial, opts);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..10_000u64 {
        let n = num(12_065_550_000 + rng.next() % KEYS);
        let change = if rng.next() % 3 == 0 { None } else { Some(rec(n, &format!("f{i}"))) };
        match &change {
            Some(r) => model.insert(n.as_u64(), r.clone()),
            None => model.remove(&n.as_u64()),
        };
        t.apply(&[(n, change)]);
        let snap = t.load();
        assert_eq!(snap.record(n), model.get(&n.as_u64()).map(NumberRef::from), "op {i}");
        assert_eq!(snap.len(), model.len(), "op {i}");
        if i % 1000 == 999 {
            check_all(&snap, &model, KEYS);
        }
    }
    t.wait_for_compaction();
    check_all(&t.load(), &model, KEYS);
    assert_eq!(t.swaps(), 10_000, "compaction is not counted as a swap");
    t
}

#[test]
fn overlay_matches_a_model_with_inline_compaction() {
    let t = random_ops(TableOptions { compact_threshold: 64, background: None });
    assert!(t.compactions() > 50, "compactions: {}", t.compactions());
    assert!(t.load().numbers.delta_len() < 64);
}

#[test]
fn overlay_matches_a_model_with_background_compaction() {
    let t =
        random_ops(TableOptions { compact_threshold: 64, background: Some(crate::inventory::compaction_on_a_thread) });
    assert!(t.compactions() > 0);
}

#[test]
fn a_held_snapshot_keeps_its_values_across_changes_and_compaction() {
    let n = num(18_005_550_100);
    let t = table(vec![rec(n, "old")], TableOptions { compact_threshold: 2, background: None });
    let held = t.load_full();
    t.apply(&[(n, Some(rec(n, "new")))]);
    t.apply(&[(num(18_005_550_101), Some(rec(num(18_005_550_101), "x")))]); // compacts
    t.apply(&[(n, None)]);
    assert!(t.compactions() >= 1);
    assert_eq!(held.record(n).and_then(|r| r.flow.map(|f| &**f)), Some("old"));
    assert_eq!(held.generation, 0);
    assert_eq!(t.load().record(n), None);
    assert_eq!(t.load().generation, 3);
}

#[test]
fn a_batch_is_one_swap() {
    let t = table(vec![], TableOptions::default());
    let (a, b) = (num(18_005_550_100), num(18_005_550_101));
    t.apply(&[(a, Some(rec(a, "f"))), (b, Some(rec(b, "f")))]);
    assert_eq!(t.swaps(), 1);
    assert_eq!(t.load().generation, 1);
    assert_eq!(t.load().len(), 2);
    t.apply(&[]);
    assert_eq!(t.swaps(), 1, "an empty batch publishes nothing");
}

#[test]
fn set_peers_keeps_the_numbers() {
    let n = num(18_005_550_100);
    let t = table(vec![rec(n, "f")], TableOptions::default());
    t.set_peers(Arc::new(Peers::default()));
    let s = t.load();
    assert!(s.peers.carriers.is_empty());
    assert_eq!(s.record(n).unwrap().flow.map(|f| &**f), Some("f"));
    assert_eq!((s.generation, t.swaps()), (1, 1));
}

#[test]
fn route_follows_the_lifecycle_state() {
    let n = num(18_005_550_100);
    let mut r = rec(n, "f");
    let snap = |r: &NumberRecord| RoutingSnapshot::new(NumberMap::from_records([r.clone()]), Arc::default());
    assert!(matches!(snap(&r).route(n), Route::Routable(x) if x.e164 == n));
    r.state = NumberState::PortOutPending { order: 1 };
    assert!(matches!(snap(&r).route(n), Route::Routable(_)));
    r.flow = None;
    assert!(matches!(snap(&r).route(n), Route::NoFlow(_)));
    r.state = NumberState::Released { released_at_unix_s: 5 };
    assert_eq!(snap(&r).route(n), Route::Released);
    r.state = NumberState::PortInPending { order: 1 };
    assert_eq!(snap(&r).route(n), Route::NotFound);
    assert_eq!(snap(&r).route(num(18_005_550_199)), Route::NotFound);
}

#[test]
fn map_with_leaves_the_original_alone() {
    let (a, b) = (num(18_005_550_100), num(18_005_550_101));
    let m = NumberMap::from_records([rec(a, "f")]);
    let m2 = m.with(b, Some(Arc::new(rec(b, "g")))).with(a, None);
    assert_eq!((m.len(), m2.len()), (1, 1));
    assert!(m.get(a).is_some() && m.get(b).is_none());
    assert!(m2.get(a).is_none() && m2.get(b).is_some());
    // Removing something that never existed keeps the count right.
    assert_eq!(m2.with(num(18_005_550_199), None).len(), 1);
}

#[test]
fn record_json_has_a_flat_state() {
    let n = num(18_005_550_100);
    let mut r = rec(n, "f");
    r.state = NumberState::Released { released_at_unix_s: 7 };
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["e164"], "+18005550100");
    assert_eq!(v["kind"], "toll-free");
    assert_eq!(v["flow"], "f");
    assert_eq!(v["carriers"][0], "a");
    assert_eq!(v["state"], "released");
    assert_eq!(v["released_at_unix_s"], 7);
}

#[test]
fn classify_by_exact_ip_then_most_specific_cidr() {
    let p = peers();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(p.classify(ip("127.0.0.2")), Source::Carrier(0));
    assert_eq!(p.classify(ip("127.0.0.3")), Source::Carrier(0));
    assert_eq!(p.classify(ip("127.0.0.4")), Source::Carrier(1));
    assert_eq!(p.classify(ip("127.0.0.10")), Source::Platform);
    assert_eq!(p.classify(ip("::ffff:127.0.0.10")), Source::Platform, "v4-mapped v6");
    assert_eq!(p.classify(ip("127.0.0.99")), Source::Unknown);
    assert_eq!(p.classify(ip("10.1.200.7")), Source::Carrier(0), "/16");
    assert_eq!(p.classify(ip("10.1.2.7")), Source::Carrier(0), "/24");
    assert_eq!(p.classify(ip("10.1.2.200")), Source::Carrier(1), "/25 beats /24 and /16");
    assert_eq!(p.classify(ip("10.2.0.1")), Source::Unknown);
    assert_eq!(p.classify(ip("2001:db8:1::5")), Source::Carrier(1));
    assert_eq!(p.classify(ip("2001:db9::5")), Source::Unknown);
    assert!(p.conflicts().is_empty());
}

#[test]
fn peer_lookups() {
    let p = peers();
    assert_eq!(p.carrier("b").map(|(i, c)| (i, &*c.name)), Some((1, "b")));
    assert!(p.carrier("c").is_none());
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(p.is_peer_addr(sa("127.0.0.3:5060")));
    assert!(p.is_peer_addr(sa("127.0.0.10:5060")));
    assert!(p.is_peer_addr(sa("[::ffff:127.0.0.10]:5060")));
    assert!(!p.is_peer_addr(sa("127.0.0.3:5061")), "port matters");
    assert!(!p.is_peer_addr(sa("10.1.2.7:5060")), "a source range is not a next hop");
}

#[test]
fn an_ip_claimed_twice_is_reported_and_the_first_claim_wins() {
    let c = |name: &str, addr: &str| CarrierPeers {
        name: Arc::from(name),
        links: vec![link("az1", addr)],
        sources: vec![],
    };
    let p = Peers::new(vec![c("a", "127.0.0.2:5060"), c("b", "127.0.0.2:5070")], vec![link("az1", "127.0.0.2:5080")]);
    assert_eq!(p.classify("127.0.0.2".parse().unwrap()), Source::Carrier(0));
    let dropped: Vec<Source> = p.conflicts().iter().map(|c| c.dropped).collect();
    assert_eq!(dropped, vec![Source::Carrier(1), Source::Platform]);
}

fn spec(carriers: &[&str]) -> ClaimSpec {
    ClaimSpec {
        flow: Some("flow-1".into()),
        carriers: carriers.iter().map(|s| s.to_string()).collect(),
        ..ClaimSpec::default()
    }
}

#[test]
fn build_record_checks_carriers_kind_and_strings() {
    let p = peers();
    let tf = num(18_005_550_100);
    let did = num(12_065_550_100);
    let r = build_record(tf, &spec(&["a", "b"]), &p, NumberState::Active).unwrap();
    assert_eq!(r.kind, NumberKind::TollFree);
    assert_eq!(r.carriers.len(), 2);
    assert!(Arc::ptr_eq(&r.carriers[0], &p.carriers[0].name), "carrier names are shared");
    assert_eq!(build_record(did, &spec(&["a"]), &p, NumberState::Active).unwrap().kind, NumberKind::Did);

    let err = |n, s: ClaimSpec| build_record(n, &s, &p, NumberState::Active).unwrap_err();
    assert_eq!(err(did, spec(&["a", "b"])), RoutingError::DidCarrierCount { number: did, count: 2 });
    let mut s = spec(&["a", "b"]);
    s.kind = Some(NumberKind::Did);
    assert_eq!(err(tf, s), RoutingError::DidCarrierCount { number: tf, count: 2 });
    assert_eq!(err(tf, spec(&[])), RoutingError::NoCarriers(tf));
    assert_eq!(err(tf, spec(&["a", "zz"])), RoutingError::UnknownCarrier("zz".into()));
    assert_eq!(err(tf, spec(&["a", "a"])), RoutingError::DuplicateCarrier("a".into()));
    let mut s = spec(&["a"]);
    s.cnam = Some("ABCDEFGHIJKLMNOP".into());
    assert_eq!(err(tf, s.clone()), RoutingError::CnamTooLong(tf));
    s.cnam = Some("Évian Café Øst".into()); // 14 characters, more bytes
    assert!(build_record(tf, &s, &p, NumberState::Active).is_ok());
    s.cnam = Some("a\r\nVia: x".into());
    assert_eq!(err(tf, s), RoutingError::BadCnam(tf));
    let mut s = spec(&["a"]);
    s.flow = Some("".into());
    assert_eq!(err(tf, s.clone()), RoutingError::EmptyFlow);
    s.flow = Some("f\r\nX-Evil: 1".into());
    assert!(matches!(err(tf, s), RoutingError::BadFlow(_)));
}

#[test]
fn claim_spec_json_rejects_unknown_fields() {
    let s: ClaimSpec = serde_json::from_str(r#"{"flow":"f","carriers":["a"],"kind":"did"}"#).unwrap();
    assert_eq!(s.kind, Some(NumberKind::Did));
    assert!(serde_json::from_str::<ClaimSpec>(r#"{"flow":"f","carrier":["a"]}"#).is_err());
}

#[test]
fn small_tables_compact_sooner() {
    let recs = |count: u64| (0..count).map(|k| rec(num(12_065_550_000 + k), "f")).collect::<Vec<_>>();
    assert_eq!(table(vec![], TableOptions::default()).compaction_threshold(), 256);
    assert_eq!(table(recs(10_000), TableOptions::default()).compaction_threshold(), 625);
    assert_eq!(table(recs(140_000), TableOptions::default()).compaction_threshold(), 8192);
    let small = TableOptions { compact_threshold: 64, background: None };
    assert_eq!(table(recs(10_000), small).compaction_threshold(), 64);
}

#[test]
fn compact_base_grows_overwrites_folds_and_shares_profiles() {
    // Start too small so the builder rehashes several times.
    let mut b = NumberMap::builder(1);
    for d in 0..5000u64 {
        b.insert(rec(num(18_005_550_000 + d), &format!("f{}", d % 7)));
    }
    // A later record for the same number wins.
    b.insert(rec(num(18_005_550_000), "last"));
    let m = b.finish();
    assert_eq!(m.len(), 5000);
    assert_eq!(m.get(num(18_005_550_000)).and_then(|r| r.flow.map(|f| &**f)), Some("last"));
    assert_eq!(m.get(num(18_005_550_003)).and_then(|r| r.flow.map(|f| &**f)), Some("f3"));
    assert!(m.get(num(18_005_560_000)).is_none());
    // 5000 numbers, 8 flows, one profile: the arrays are slots plus two small tables.
    assert!(m.base_heap_bytes() < 5000 * 22 + 1024, "{} bytes", m.base_heap_bytes());

    // Removing, changing and adding through the overlay, then folding.
    let t = RoutingTable::with_options(
        RoutingSnapshot::new(m, Arc::new(peers())),
        TableOptions { compact_threshold: 100, background: None },
    );
    let mut changes = Vec::new();
    for d in 0..300u64 {
        let n = num(18_005_550_000 + d * 3);
        changes.push((n, if d % 2 == 0 { None } else { Some(rec(n, "moved")) }));
    }
    changes.push((num(18_005_570_000), Some(rec(num(18_005_570_000), "new"))));
    t.apply(&changes);
    t.wait_for_compaction();
    assert!(t.compactions() >= 1);
    let s = t.load();
    assert_eq!(s.numbers.len(), 5000 - 150 + 1);
    assert!(s.record(num(18_005_550_000)).is_none());
    assert_eq!(s.record(num(18_005_550_003)).and_then(|r| r.flow.map(|f| &**f)), Some("moved"));
    assert_eq!(s.record(num(18_005_550_004)).and_then(|r| r.flow.map(|f| &**f)), Some("f4"));
    assert_eq!(s.record(num(18_005_570_000)).and_then(|r| r.flow.map(|f| &**f)), Some("new"));
    assert_eq!(s.numbers.iter().count(), s.numbers.len());
}
