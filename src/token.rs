//! The control plane's bearer token (`[admin].token_file`): read at start,
//! by `sipedge check` and on every reload, kept in `Shared::admin_token`.
//! Its own module so the state, reload and check do not depend on the HTTP
//! handlers in `admin`.

use std::net::SocketAddr;

use crate::config::{Config, ConfigError};

/// A bearer token the control plane requires.
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from its text (surrounding whitespace removed); `None` when empty.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.to_owned()))
    }

    /// Whether an `Authorization` header value carries this token. Compares
    /// in time independent of where the bytes differ (no timing oracle).
    pub fn accepts(&self, authorization: &[u8]) -> bool {
        let Some(given) = strip_bearer(authorization) else { return false };
        let want = self.0.as_bytes();
        if given.len() != want.len() {
            return false;
        }
        given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// The credentials of `Bearer <token>` (scheme case-insensitive).
fn strip_bearer(v: &[u8]) -> Option<&[u8]> {
    let scheme = v.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let rest = v.get(7..)?;
    let start = rest.iter().position(|b| *b != b' ')?;
    let end = rest.iter().rposition(|b| *b != b' ')?;
    rest.get(start..=end)
}

/// Reads `[admin].token_file` of `cfg`: `Ok(None)` when unset; an error
/// naming the file when it cannot be read or is empty.
pub fn load_token(cfg: &Config) -> Result<Option<Token>, ConfigError> {
    let Some(p) = cfg.admin.token_file.as_ref() else { return Ok(None) };
    let path = cfg.resolve(p);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new("admin.token_file", format!("cannot read {}: {e}", path.display())))?;
    let token = Token::new(&text)
        .ok_or_else(|| ConfigError::new("admin.token_file", format!("{} is empty", path.display())))?;
    warn_if_readable_by_others(&path);
    Ok(Some(token))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o004 != 0 {
            tracing::warn!("admin token file {} is readable by every user (chmod 600 it)", path.display());
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &std::path::Path) {}

/// Logs a loud warning when the control plane listens beyond loopback with
/// no token (see `admin::auth` for why this does not refuse to start).
pub fn warn_if_exposed(addr: SocketAddr, has_token: bool) {
    if !has_token && !addr.ip().is_loopback() {
        tracing::warn!(
            "SECURITY: the control plane listens on {addr}, which is not loopback, and [admin].token_file \
             is not set: anyone who can reach it can claim, release and port numbers. Set token_file or \
             bind [admin].addr to 127.0.0.1."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        let t = Token::new(" s3cret\n").unwrap();
        assert!(t.accepts(b"Bearer s3cret"));
        assert!(t.accepts(b"bearer  s3cret "));
        assert!(!t.accepts(b"Bearer s3cre"));
        assert!(!t.accepts(b"Bearer s3cretX"));
        assert!(!t.accepts(b"Basic s3cret"));
        assert!(!t.accepts(b"Bearer "));
        assert!(!t.accepts(b"s3cret"));
        assert!(Token::new(" \n").is_none());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }
}
