//! The dialog key (SPEC §9): the secret under which our Record-Route tokens
//! are sealed, read once at start.
//!
//! `[edge].dialog_key_file` names a file shared by the instances that must
//! route each other's dialogs. Unset, `<data_dir>/dialog.key` is used and
//! made on first start (32 random bytes, mode 0600), so a restart on the same
//! `data_dir` keeps routing the calls set up before it.
//!
//! The file holds at least 32 bytes of secret (`head -c 32 /dev/urandom`);
//! the key is SHA-256 of its contents, so any length from 32 bytes to 4 KiB
//! works and a trailing newline does no harm.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError};
use crate::proxy::token::DialogKey;

/// Fewest secret bytes a key file may hold.
pub const MIN_KEY_BYTES: usize = 32;
/// Most bytes read from a key file (a bigger one is a mistake, not a key).
pub const MAX_KEY_BYTES: usize = 4096;
/// The key's file name inside `data_dir` when `dialog_key_file` is unset.
pub const DEFAULT_NAME: &str = "dialog.key";

const FIELD: &str = "edge.dialog_key_file";

/// The key file this config uses.
pub fn path_of(cfg: &Config) -> PathBuf {
    match &cfg.edge.dialog_key_file {
        Some(p) => cfg.resolve(p),
        None => cfg.resolve(&cfg.edge.data_dir).join(DEFAULT_NAME),
    }
}

/// What `sipedge check` says of the key: an error for a configured file that
/// cannot serve, nothing for a default one not made yet (start makes it).
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    let path = path_of(cfg);
    if cfg.edge.dialog_key_file.is_none() && !path.exists() {
        return Ok(());
    }
    read(&path).map(|_| ())
}

/// The key for this config: read from its file, or (default file only) made.
pub fn load_or_create(cfg: &Config) -> Result<DialogKey, ConfigError> {
    let path = path_of(cfg);
    if cfg.edge.dialog_key_file.is_none() && !path.exists() {
        create(&path)?;
        tracing::info!(path = %path.display(), "made a new dialog key (keep it: calls up across a restart need it)");
    }
    read(&path)
}

/// Reads and checks a key file: private to its owner, 32 bytes to 4 KiB.
fn read(path: &Path) -> Result<DialogKey, ConfigError> {
    let err = |what: String| ConfigError::new(FIELD, format!("{}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if let Some(mode) = others_can_read(&meta) {
        return Err(err(format!("mode {mode:o} lets other users read the key (chmod 600 it)")));
    }
    if meta.len() > MAX_KEY_BYTES as u64 {
        return Err(err(format!("{} bytes: a key file holds at most {MAX_KEY_BYTES}", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(err(format!(
            "{} bytes: too short, a key needs at least {MIN_KEY_BYTES} (head -c 32 /dev/urandom > file)",
            bytes.len()
        )));
    }
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    Ok(DialogKey::new(digest))
}

#[cfg(unix)]
fn others_can_read(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn others_can_read(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Makes a new key file with 32 random bytes, readable by its owner only.
/// `create_new`: two edges starting on one `data_dir` never overwrite a key.
fn create(path: &Path) -> Result<(), ConfigError> {
    let err = |what: String| ConfigError::new(FIELD, format!("{}: {what}", path.display()));
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| err(format!("no randomness for a new key: {e}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot make {}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => f.write_all(&secret).and_then(|()| f.sync_all()).map_err(|e| err(format!("cannot write: {e}"))),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(format!("cannot create: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::token::{open, seal, Token, TokenPeer};
    use crate::sip::Transport;

    fn config(dir: &Path, key_file: Option<&Path>) -> Config {
        let mut toml = format!("[edge]\ndata_dir = \"{}\"\n", dir.join("data").display());
        if let Some(k) = key_file {
            toml.push_str(&format!("dialog_key_file = \"{}\"\n", k.display()));
        }
        toml.push_str(
            "[[listen]]\naddr = \"127.0.0.1:5060\"\ntransport = \"udp\"\n\
             [[carrier]]\nname = \"c\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"127.0.0.2:5060\"\n\
             [[flow_engine]]\naz = \"az1\"\naddr = \"127.0.0.3:5060\"\n",
        );
        Config::from_toml_str(&toml).unwrap()
    }

    fn peers() -> Token {
        let p = |a: &str| TokenPeer { addr: a.parse().unwrap(), transport: Transport::Udp };
        Token { boot: 7, peers: [p("127.0.0.2:5060"), p("127.0.0.3:5060")] }
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn default_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), None);
        assert!(check(&cfg).is_ok(), "a default key not made yet is no error");
        let k1 = load_or_create(&cfg).unwrap();
        let path = path_of(&cfg);
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let k2 = load_or_create(&cfg).unwrap();
        let t = seal(&k1, &peers());
        assert_eq!(open(&k2, &t), Some(peers()), "a restart reads the same key");
        check(&cfg).unwrap();
    }

    #[test]
    fn configured_file_is_shared_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shared.key");
        let cfg = config(dir.path(), Some(&file));
        let e = check(&cfg).unwrap_err();
        assert_eq!(e.field, FIELD);
        assert!(e.to_string().contains("cannot read"), "{e}");
        assert!(load_or_create(&cfg).is_err(), "a configured key is never made up");

        let write = |bytes: &[u8], mode: u32| {
            std::fs::write(&file, bytes).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        };
        write(&[1; 31], 0o600);
        assert!(check(&cfg).unwrap_err().to_string().contains("too short"));
        write(&[1; 5000], 0o600);
        assert!(check(&cfg).unwrap_err().to_string().contains("at most"));
        #[cfg(unix)]
        {
            write(&[1; 32], 0o644);
            assert!(check(&cfg).unwrap_err().to_string().contains("other users"));
        }
        write(&[1; 32], 0o600);
        check(&cfg).unwrap();
        let a = load_or_create(&cfg).unwrap();
        let b = load_or_create(&config(&dir.path().join("other"), Some(&file))).unwrap();
        assert_eq!(open(&b, &seal(&a, &peers())), Some(peers()), "two instances, one file, one key");
        write(&[2; 32], 0o600);
        let c = load_or_create(&cfg).unwrap();
        assert_eq!(open(&c, &seal(&a, &peers())), None, "another key does not open the token");
    }
}
