//! The TLS load driver (examples/tls_load) works: a few calls and a few
//! handshakes over TLS and over TCP through the real edge, each offered one
//! completed. Its code is compiled in here (`#[path]`), so the figures in
//! docs/PERFORMANCE.md come from a driver this test exercises. No speed asserted.

#[allow(dead_code)] // the driver's Tally fields and helpers the smoke run does not read
#[path = "../../examples/tls_load/calls.rs"]
mod calls;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use calls::{Net, Offer, Wire};

use crate::support::{Block, Edge, EdgeSpec};

#[test]
fn tls_load_driver_completes_every_call_and_handshake_it_offers() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let net = Arc::new(Net {
        edge_ip: b.ip(1),
        tls_port: 5061,
        uas: b.addr(10, 5060),
        uac_ips: vec![b.ip(33), b.ip(34)],
        uac_cidr: format!("{}/28", b.ip(32)),
    });
    let certs = calls::make_certs(dir.path(), net.edge_ip).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sock = rt.block_on(tokio::net::UdpSocket::bind(net.uas)).unwrap();
    let uas = rt.spawn(calls::uas(sock));
    let numbers = 20;
    let _edge = Edge::start(
        b,
        EdgeSpec {
            toml: calls::edge_toml(&net, &certs),
            numbers: calls::seed_rows(numbers),
            edge_extra: "workers = 1\nunknown_source = \"drop\"\n".into(),
            ..EdgeSpec::default()
        },
    );
    let tls = calls::client_config(&certs.ca_file, false).unwrap();
    let offer = Offer { rate: 20.0, total: 10, conns: 2, numbers, grace: Duration::from_secs(5) };
    for wire in [Wire::Tls, Wire::Tcp] {
        let t = rt.block_on(calls::run_calls(net.clone(), wire, tls.clone(), offer));
        let (o, c, f) =
            (t.offered.load(Ordering::Relaxed), t.completed.load(Ordering::Relaxed), t.failed.load(Ordering::Relaxed));
        assert_eq!((o, c, f), (10, 10, 0), "{wire:?} calls: offered, completed, failed");
        let t = rt.block_on(calls::run_handshakes(net.clone(), wire, tls.clone(), Offer { total: 5, ..offer }));
        let (o, c, f) =
            (t.offered.load(Ordering::Relaxed), t.completed.load(Ordering::Relaxed), t.failed.load(Ordering::Relaxed));
        assert_eq!((o, c, f), (5, 5, 0), "{wire:?} handshakes: offered, completed, failed");
    }
    uas.abort();
}
