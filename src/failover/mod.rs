//! Serial failover across next hops (SPEC §5): which hops to try and in what order
//! ([`plan()`]), what to do with each attempt's outcome ([`classify()`]), and which hops
//! are down ([`Health`]). Pure and sans-IO: the proxy core drives all three.
//!
//! There is no error enum here: nothing in this module can fail.

pub mod classify;
pub mod health;
pub mod plan;

pub use classify::{classify, Outcome, Step};
pub use health::{Change, Health, LINK_UP};
pub use plan::{plan, HopCandidate, HopKey, Plan, FLOW_ENGINE};
