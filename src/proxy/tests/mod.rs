//! The core on a virtual network: scripted peers, a virtual clock, no sockets.

mod calls;
mod cluster;
mod early;
mod failover;
mod harness;
mod lifecycle;
mod listeners;
mod records;
mod refused;
mod timers;
mod token;
mod trunk;
