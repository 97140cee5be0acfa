//! SIP wire format. Sans-IO: no sockets, no clock, no tokio.
//!
//! # Layout
//! - [`parse`]: bytes → [`Msg`] | [`ParseError`] (with a [`ReplyCtx`] to answer 400s)
//! - [`msg`]: the parsed message and its typed accessors; [`Method`], [`CSeq`]
//! - [`header`]: [`HeaderName`] (long and compact forms) and lexical helpers
//! - [`via`]: one Via value ([`Via`])
//! - [`uri`]: a borrowed SIP/tel URI view ([`UriParts`])
//! - [`build`]: responses, forwarded requests/responses, ACK, CANCEL, probes
//! - [`framing`]: Content-Length framing of TCP streams
//! - [`number`], [`transport`]: E.164 numbers and transports
//!
//! rsip 0.4, the parser named in the design, matches header names in long
//! form only, so compact forms (`v:`, `i:`, `f:`, …) come out as unknown
//! headers; its URI parser rejects IPv6 hosts and `tel:` numbers. The
//! scanner here handles both; `tests::rsip_findings` records rsip's
//! behaviour, and `benches/parse.rs` compares the two.

pub mod build;
pub mod framing;
pub mod header;
pub mod msg;
pub mod number;
pub mod parse;
pub mod reply;
pub mod transport;
pub mod uri;
pub mod via;

#[cfg(test)]
mod tests;

pub use header::HeaderName;
pub use msg::{CSeq, Method, Msg};
pub use number::{NumberError, NumberKind, E164};
pub use parse::{ParseError, ParseErrorKind};
pub use reply::ReplyCtx;
pub use transport::Transport;
pub use uri::{parse_uri, user_unescaped, UriParts};
pub use via::Via;
