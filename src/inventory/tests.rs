use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::routing::{CarrierPeers, PeerLink, Route};
use crate::sip::{NumberKind, Transport};

const T0: u64 = 1_700_000_000;
const DAY: u64 = 24 * 3600;

fn n(s: &str) -> E164 {
    E164::parse_dialed(s).unwrap()
}
const TF: &str = "+18005550100";
const TF2: &str = "+18885550101";
const DID: &str = "+12065550100";

fn peers() -> Arc<Peers> {
    let link = |addr: &str| PeerLink::new("az1", addr.parse().unwrap(), Transport::Udp);
    let carrier =
        |name: &str, addr: &str| CarrierPeers { name: Arc::from(name), links: vec![link(addr)], sources: vec![] };
    Arc::new(Peers::new(
        vec![carrier("a", "127.0.0.2:5060"), carrier("b", "127.0.0.3:5060")],
        vec![link("127.0.0.10:5060")],
    ))
}

fn spec(flow: &str, carriers: &[&str]) -> ClaimSpec {
    ClaimSpec {
        flow: Some(flow.into()),
        carriers: carriers.iter().map(|s| s.to_string()).collect(),
        ..ClaimSpec::default()
    }
}

fn open(dir: &Path) -> Inventory {
    Inventory::open(dir, peers(), None).unwrap().0
}

fn port_req(direction: PortDirection, numbers: &[&str], carriers: &[&str]) -> PortRequest {
    PortRequest {
        direction,
        numbers: numbers.iter().map(|s| s.to_string()).collect(),
        carriers: carriers.iter().map(|s| s.to_string()).collect(),
        flow: Some("port-flow".into()),
        window_start: None,
    }
}

/// Everything observable: records (JSON, sorted) and port orders.
fn contents(inv: &Inventory) -> (Vec<String>, Vec<PortOrder>) {
    let snap = inv.table().load();
    let mut recs: Vec<String> = snap.numbers.iter().map(|r| serde_json::to_string(&r).unwrap()).collect();
    recs.sort();
    (recs, inv.ports())
}

/// What a call to `s` gets, by name (the record itself is checked elsewhere).
fn route(inv: &Inventory, s: &str) -> &'static str {
    match inv.table().load().route(n(s)) {
        Route::Routable(r) if r.e164 == n(s) => "routable",
        Route::Routable(_) => "routable to the wrong record",
        Route::NoFlow(_) => "no flow",
        Route::Released => "released",
        Route::NotFound => "not found",
    }
}

fn is_routable(inv: &Inventory, s: &str) -> bool {
    route(inv, s) == "routable"
}

#[test]
fn claim_then_route() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    let r = inv.claim(n(TF), spec("f1", &["a", "b"]), T0).unwrap();
    assert_eq!(r.kind, NumberKind::TollFree);
    assert_eq!(r.state, NumberState::Active);
    assert!(is_routable(&inv, TF));
    let d = inv.claim(n(DID), ClaimSpec { flow: None, ..spec("", &["b"]) }, T0).unwrap();
    assert_eq!(d.kind, NumberKind::Did);
    assert_eq!(route(&inv, DID), "no flow");
    inv.set_flow(n(DID), "f2".into(), T0).unwrap();
    assert!(is_routable(&inv, DID));
    assert_eq!(inv.table().swaps(), 3);
}

#[test]
fn bad_input_changes_neither_store_nor_table() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    inv.claim(n(TF), spec("f", &["a"]), T0).unwrap();
    inv.claim(n(TF2), spec("f", &["a"]), T0).unwrap();
    inv.release(n(TF2), T0).unwrap();
    let mut future = port_req(PortDirection::In, &["+12065550199"], &["a"]);
    future.window_start = Some(T0 + DAY);
    let pid = inv.create_port(future, T0).unwrap().id;
    let done = inv.create_port(port_req(PortDirection::In, &["+12065550198"], &["a"]), T0).unwrap().id;
    inv.complete_port(done, T0).unwrap();

    let before = contents(&inv);
    let swaps = inv.table().swaps();
    let cases: Vec<(u16, Result<(), InventoryError>)> = vec![
        (400, inv.claim(n(DID), spec("f", &["a", "b"]), T0).map(drop)),
        (400, inv.claim(n(DID), spec("f", &["zz"]), T0).map(drop)),
        (400, inv.claim(n(DID), spec("f", &[]), T0).map(drop)),
        (400, inv.claim(n(DID), spec("bad flow", &["a"]), T0).map(drop)),
        (409, inv.claim(n(TF), spec("f", &["a"]), T0).map(drop)),
        (409, inv.claim(n(TF2), spec("f", &["a"]), T0).map(drop)),
        (409, inv.claim(n("+12065550199"), spec("f", &["a"]), T0).map(drop)),
        (404, inv.release(n(DID), T0).map(drop)),
        (409, inv.release(n(TF2), T0).map(drop)),
        (409, inv.release(n("+12065550199"), T0).map(drop)),
        (409, inv.restore(n(TF), T0).map(drop)),
        (404, inv.restore(n(DID), T0).map(drop)),
        (400, inv.set_flow(n(TF), "".into(), T0).map(drop)),
        (400, inv.set_flow(n(TF), "a\r\nb".into(), T0).map(drop)),
        (404, inv.set_flow(n(DID), "f".into(), T0).map(drop)),
        (409, inv.set_flow(n(TF2), "f".into(), T0).map(drop)),
        (409, inv.create_port(port_req(PortDirection::In, &[DID, TF], &["a"]), T0).map(drop)),
        (400, inv.create_port(port_req(PortDirection::In, &[DID], &["a", "b"]), T0).map(drop)),
        (400, inv.create_port(port_req(PortDirection::In, &[DID], &["nope"]), T0).map(drop)),
        (404, inv.create_port(port_req(PortDirection::Out, &[TF, DID], &[]), T0).map(drop)),
        (409, inv.create_port(port_req(PortDirection::Out, &[TF2], &[]), T0).map(drop)),
        (400, inv.create_port(port_req(PortDirection::Out, &[TF, "alice"], &[]), T0).map(drop)),
        (400, inv.create_port(port_req(PortDirection::Out, &[], &[]), T0).map(drop)),
        (400, inv.create_port(port_req(PortDirection::Out, &[TF, "18005550100"], &[]), T0).map(drop)),
        (404, inv.cancel_port(99).map(drop)),
        (404, inv.complete_port(99, T0).map(drop)),
        (409, inv.complete_port(pid, T0).map(drop)),
        (409, inv.cancel_port(done).map(drop)),
        (409, inv.complete_port(done, T0).map(drop)),
    ];
    for (i, (status, res)) in cases.into_iter().enumerate() {
        let err = res.expect_err(&format!("case {i} must fail"));
        assert_eq!(crate::admin::error::store_status(&err), status, "case {i}: {err}");
    }
    assert_eq!(contents(&inv), before, "table unchanged");
    assert_eq!(inv.table().swaps(), swaps, "nothing published");
    drop(inv);
    assert_eq!(contents(&open(dir.path())), before, "store unchanged");
}

#[test]
fn reopening_rebuilds_exactly_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    let mut s = spec("f", &["a", "b"]);
    s.cnam = Some("Acme Support".into());
    s.max_concurrent = Some(7);
    inv.claim(n(TF), s, T0).unwrap();
    inv.claim(n(TF2), spec("g", &["b"]), T0).unwrap();
    inv.claim(n(DID), spec("h", &["a"]), T0).unwrap();
    inv.release(n(TF2), T0 + 5).unwrap();
    let p1 = inv.create_port(port_req(PortDirection::In, &["+12065550111", "+18445550112"], &["a"]), T0).unwrap();
    let p2 = inv.create_port(port_req(PortDirection::Out, &[DID], &[]), T0).unwrap();
    let before = contents(&inv);
    drop(inv);

    let inv = open(dir.path());
    assert_eq!(contents(&inv), before);
    assert_eq!(inv.port(p1.id), Some(p1.clone()));
    assert_eq!(inv.port(p2.id).map(|p| p.direction), Some(PortDirection::Out));
    assert_eq!(route(&inv, TF2), "released");
    // The released index and the port counter are rebuilt too.
    assert_eq!(inv.expire(T0 + 5 + RELEASE_WINDOW_S).unwrap(), 1);
    let p3 = inv.create_port(port_req(PortDirection::Out, &[TF], &[]), T0).unwrap();
    assert_eq!(p3.id, p2.id + 1);
    let carrier = &inv.get(n(TF)).unwrap().carriers[0];
    assert!(Arc::ptr_eq(carrier, &inv.table().load().peers.carriers[0].name), "names interned from peers");
}

#[test]
fn seed_is_imported_once_into_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vec![(n(TF), spec("s1", &["a", "b"])), (n(DID), spec("s2", &["b"]))];
    let (inv, table) = Inventory::open(dir.path(), peers(), Some(seed)).unwrap();
    assert_eq!(table.load().len(), 2);
    assert!(is_routable(&inv, DID));
    inv.release(n(DID), T0).unwrap();
    inv.expire(T0 + RELEASE_WINDOW_S).unwrap();
    inv.release(n(TF), T0).unwrap();
    inv.expire(T0 + RELEASE_WINDOW_S).unwrap();
    assert_eq!(table.load().len(), 0);
    drop(inv);

    // Even though the store is now empty, it was seeded: a seed is ignored.
    let other = vec![(n(TF2), spec("s3", &["a"]))];
    let (inv, table) = Inventory::open(dir.path(), peers(), Some(other)).unwrap();
    assert_eq!(table.load().len(), 0);
    assert!(inv.get(n(TF2)).is_none());
}

#[test]
fn seed_is_ignored_when_the_store_has_numbers_and_refused_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).claim(n(TF), spec("f", &["a"]), T0).unwrap();
    let (_, table) = Inventory::open(dir.path(), peers(), Some(vec![(n(DID), spec("s", &["a"]))])).unwrap();
    assert_eq!(table.load().len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let bad = vec![(n(TF), spec("s", &["a"])), (n(DID), spec("s", &["a", "b"]))];
    let err = Inventory::open(dir.path(), peers(), Some(bad)).err().unwrap();
    assert!(matches!(err, InventoryError::Seed { number, .. } if number == n(DID)), "{err}");
    // Nothing of it was written; a good seed is still imported later.
    let (_, table) = Inventory::open(dir.path(), peers(), Some(vec![(n(DID), spec("s", &["a"]))])).unwrap();
    assert_eq!(table.load().len(), 1);
}

#[test]
fn release_restore_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    let claimed = inv.claim(n(TF), spec("f", &["a", "b"]), T0).unwrap();
    let r = inv.release(n(TF), T0 + 10).unwrap();
    assert_eq!(r.state, NumberState::Released { released_at_unix_s: T0 + 10 });
    assert_eq!(route(&inv, TF), "released");
    assert_eq!(
        inv.claim(n(TF), spec("g", &["a"]), T0 + 11).unwrap_err().to_string(),
        RoutingError::InDeletionQueue(n(TF)).to_string()
    );
    let back = inv.restore(n(TF), T0 + 10 + RELEASE_WINDOW_S - 1).unwrap();
    assert_eq!(back, claimed, "restored with its old record");
    assert!(is_routable(&inv, TF));

    inv.release(n(TF), T0 + 100).unwrap();
    let late = inv.restore(n(TF), T0 + 100 + RELEASE_WINDOW_S).unwrap_err();
    assert!(matches!(late, InventoryError::Routing(RoutingError::RestoreWindowOver(_))), "{late}");
    assert_eq!(inv.expire(T0 + 100 + RELEASE_WINDOW_S - 1).unwrap(), 0, "not yet");
    assert_eq!(route(&inv, TF), "released");
    assert_eq!(inv.expire(T0 + 100 + RELEASE_WINDOW_S).unwrap(), 1);
    assert_eq!(route(&inv, TF), "not found");
    assert!(inv.get(n(TF)).is_none());
    let again = inv.claim(n(TF), spec("new", &["b"]), T0 + 200 + RELEASE_WINDOW_S).unwrap();
    assert_eq!(again.flow.as_deref(), Some("new"));
    drop(inv);
    assert_eq!(open(dir.path()).get(n(TF)), Some(again));
}

#[test]
fn an_expired_release_can_be_claimed_before_the_purge() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    inv.claim(n(TF), spec("f", &["a"]), T0).unwrap();
    inv.release(n(TF), T0).unwrap();
    inv.claim(n(TF), spec("g", &["b"]), T0 + RELEASE_WINDOW_S).unwrap();
    assert_eq!(inv.expire(T0 + 30 * DAY).unwrap(), 0, "the new claim is not expired");
    assert!(is_routable(&inv, TF));
}

#[test]
fn port_in_is_404_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    let mut req = port_req(PortDirection::In, &["(206) 555-0100", TF], &["a"]);
    req.window_start = Some(T0 + DAY);
    let swaps = inv.table().swaps();
    let order = inv.create_port(req, T0).unwrap();
    assert_eq!(inv.table().swaps(), swaps + 1, "one swap for the whole order");
    assert_eq!(order.numbers, vec![n(DID), n(TF)]);
    assert_eq!(route(&inv, DID), "not found");
    assert_eq!(route(&inv, TF), "not found");
    assert_eq!(inv.get(n(DID)).unwrap().state, NumberState::PortInPending { order: order.id });
    let early = inv.complete_port(order.id, T0 + DAY - 1).unwrap_err();
    assert!(matches!(early, InventoryError::Routing(RoutingError::PortWindowNotOpen { .. })), "{early}");
    let done = inv.complete_port(order.id, T0 + DAY).unwrap();
    assert_eq!(done.status, PortStatus::Completed);
    assert!(is_routable(&inv, DID) && is_routable(&inv, TF));
    assert_eq!(inv.get(n(TF)).unwrap().flow.as_deref(), Some("port-flow"));
    assert_eq!(inv.port(order.id).unwrap().status, PortStatus::Completed);
}

#[test]
fn port_in_of_a_did_needs_one_known_carrier() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    let two = inv.create_port(port_req(PortDirection::In, &[DID], &["a", "b"]), T0).unwrap_err();
    assert!(matches!(two, InventoryError::Routing(RoutingError::DidCarrierCount { count: 2, .. })), "{two}");
    let unknown = inv.create_port(port_req(PortDirection::In, &[TF], &["x"]), T0).unwrap_err();
    assert!(matches!(unknown, InventoryError::Routing(RoutingError::UnknownCarrier(ref c)) if c == "x"), "{unknown}");
    assert!(inv.ports().is_empty());
}

#[test]
fn cancel_port_in_removes_the_pending_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    let order = inv.create_port(port_req(PortDirection::In, &[TF, TF2], &["a", "b"]), T0).unwrap();
    assert_eq!(inv.cancel_port(order.id).unwrap().status, PortStatus::Cancelled);
    assert!(inv.get(n(TF)).is_none() && inv.get(n(TF2)).is_none());
    inv.claim(n(TF), spec("f", &["a"]), T0).unwrap();
}

#[test]
fn port_out_is_routable_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    inv.claim(n(TF), spec("f", &["a"]), T0).unwrap();
    inv.claim(n(DID), spec("f", &["a"]), T0).unwrap();
    let order = inv.create_port(port_req(PortDirection::Out, &[TF, DID], &[]), T0).unwrap();
    assert!(is_routable(&inv, TF) && is_routable(&inv, DID));
    assert!(inv.get(n(TF)).unwrap().is_active());
    assert!(matches!(
        inv.create_port(port_req(PortDirection::Out, &[TF], &[]), T0).unwrap_err(),
        InventoryError::Routing(RoutingError::NumberBusyInPort(_))
    ));
    inv.complete_port(order.id, T0).unwrap();
    assert_eq!(route(&inv, TF), "not found");
    assert_eq!(route(&inv, DID), "not found");
    drop(inv);
    let inv = open(dir.path());
    assert!(inv.get(n(TF)).is_none());
    assert_eq!(inv.port(order.id).unwrap().status, PortStatus::Completed);
}

#[test]
fn cancel_port_out_makes_numbers_active_again() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    let claimed = inv.claim(n(TF), spec("f", &["a"]), T0).unwrap();
    let order = inv.create_port(port_req(PortDirection::Out, &[TF], &[]), T0).unwrap();
    inv.cancel_port(order.id).unwrap();
    assert_eq!(inv.get(n(TF)), Some(claimed));
}

#[test]
fn a_number_released_during_a_port_out_follows_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    inv.claim(n(TF), spec("f", &["a"]), T0).unwrap();
    inv.claim(n(TF2), spec("f", &["a"]), T0).unwrap();
    let order = inv.create_port(port_req(PortDirection::Out, &[TF, TF2], &[]), T0).unwrap();
    inv.release(n(TF), T0).unwrap();
    inv.release(n(TF2), T0).unwrap();
    let back = inv.restore(n(TF), T0 + 1).unwrap();
    assert_eq!(back.state, NumberState::PortOutPending { order: order.id });
    inv.complete_port(order.id, T0 + 2).unwrap();
    assert!(inv.get(n(TF)).is_none(), "ported out");
    assert!(inv.get(n(TF2)).is_none(), "left while in the deletion queue");
    assert_eq!(inv.expire(T0 + 30 * DAY).unwrap(), 0, "nothing left to expire");
}

#[test]
fn set_peers_republishes_without_touching_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let inv = open(dir.path());
    inv.claim(n(TF), spec("f", &["a"]), T0).unwrap();
    inv.set_peers(Arc::new(Peers::default()));
    assert!(inv.table().load().peers.carriers.is_empty());
    assert!(is_routable(&inv, TF));
    // New claims are checked against the new peers.
    let e = inv.claim(n(TF2), spec("f", &["a"]), T0).unwrap_err();
    assert!(matches!(e, InventoryError::Routing(RoutingError::UnknownCarrier(_))));
}

#[test]
fn inventory_and_table_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Inventory>();
    shared::<RoutingTable>();
    shared::<crate::routing::RoutingSnapshot>();
}

#[test]
fn a_format_1_store_of_json_records_opens_unchanged_and_new_records_are_written_binary() {
    use redb::TableDefinition;
    const NUMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("numbers");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    // What format 1 wrote: serde_json of the stored record, meta version 1.
    let old = NumberRecord {
        cnam: Some(Arc::from("OLD")),
        ..build_record(n(TF), &spec("old-flow", &["a", "b"]), &peers(), NumberState::Active).unwrap()
    };
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let json = serde_json::to_vec(&store::StoredRecord::from(&old)).unwrap();
            txn.open_table(NUMBERS).unwrap().insert(n(TF).as_u64(), json.as_slice()).unwrap();
            txn.open_table(META).unwrap().insert("version", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let inv = open(dir.path());
    assert_eq!(inv.get(n(TF)).unwrap(), old);
    inv.claim(n(DID), spec("new-flow", &["a"]), T0).unwrap();
    inv.release(n(TF), T0).unwrap();
    let before = contents(&inv);
    drop(inv);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let nums = txn.open_table(NUMBERS).unwrap();
        for k in [n(TF), n(DID)] {
            assert_eq!(nums.get(k.as_u64()).unwrap().unwrap().value().first(), Some(&codec::BINARY), "{k}");
        }
        assert_eq!(txn.open_table(META).unwrap().get("version").unwrap().unwrap().value(), 2);
    }
    assert_eq!(contents(&open(dir.path())), before);
}
