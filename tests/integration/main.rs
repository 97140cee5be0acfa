//! Black-box tests against the real `sipedge` binary on loopback.
//! Each test gets its own 127.x.y.0/24 block, so they run in parallel.

mod support;

mod sip_answers;
mod sipp;

mod churn;
mod control_plane;
mod durability;
mod reload;
mod flood;
mod hostile;
mod torture;
mod caps;
mod failover;
mod chaos;
mod early_dialog;
