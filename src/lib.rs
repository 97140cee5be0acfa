//! sipedge: the carrier-facing SIP edge of a contact-center platform.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod inventory;
pub mod routing;
pub mod sip;
