//! Test support: spawn the edge, scripted SIP peers, loopback address blocks.
// Shared by every test module; not each uses every helper.
#![allow(dead_code)]

pub mod edge;
pub mod net;
pub mod peer;

pub use edge::{standard, Edge, EdgeSpec};
pub use net::Block;
pub use peer::Peer;
