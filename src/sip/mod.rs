//! SIP wire format. Sans-IO: no sockets, no clock, no tokio.

pub mod number;
pub mod transport;

pub use number::{E164, NumberError, NumberKind};
pub use transport::Transport;
