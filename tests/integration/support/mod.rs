//! Test support: spawn the edge, scripted SIP peers, loopback address blocks.

pub mod edge;
pub mod net;
pub mod peer;

pub use edge::{standard, Edge, EdgeSpec};
pub use net::Block;
pub use peer::Peer;
