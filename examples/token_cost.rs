//! Cost of the Record-Route token (issue 12): seals and opens `N` tokens, for
//! `valgrind --tool=callgrind target/release/examples/token_cost [N]`;
//! divide the instruction count (minus a run with N = 0) by N.
use sipedge::proxy::token::{open, seal, DialogKey, Token, TokenPeer};
use sipedge::sip::Transport;

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let key = DialogKey::new([7; 32]);
    let mut ok = 0u32;
    for i in 0..n {
        let port = 5060 + (i % 1000) as u16;
        let peers = Token {
            boot: i,
            peers: [
                TokenPeer { addr: std::net::SocketAddr::from(([127, 0, 0, 2], port)), transport: Transport::Udp },
                TokenPeer { addr: std::net::SocketAddr::from(([127, 0, 0, 10], 5060)), transport: Transport::Udp },
            ],
        };
        let t = seal(&key, &peers);
        if open(&key, std::hint::black_box(&t)) == Some(peers) {
            ok += 1;
        }
    }
    println!("{ok} of {n} tokens round-tripped");
}
