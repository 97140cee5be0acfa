//! TOML text or file → [`Config`]: parse, then validate, then check the seed file.

use std::path::{Path, PathBuf};

use super::{load_seed, Config, ConfigError, ConfigErrors};

/// Field name for problems that belong to no key (TOML syntax, the file itself).
const ROOT: &str = "config";

impl Config {
    /// Parses and validates a config; does no I/O, so the seed file is not read
    /// (see [`Config::load`]). Every validation problem is listed; a parse error
    /// is reported alone, because serde stops at the first one.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigErrors> {
        let config = parse(s)?;
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads the file at `path`, parses and validates it, remembers the path in
    /// `source_path` (for reload), and, when `[numbers].seed_file` is set, reads
    /// that CSV and checks its numbers against the carriers. Relative paths,
    /// `path` and the seed file alike, are taken from the current directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let (config, mut errors) = Config::read(path)?;
        errors.extend(config.validate_seed());
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// [`Config::load`] without reading the seed file: what the running edge
    /// loads at start and on reload. The seed is imported only into an empty
    /// store, and the start checks it then (`app::seed_of`); at 10 M numbers
    /// reading it anyway cost ~40 % of a populated start's CPU and ~2 GiB of
    /// peak memory (issue 17). `sipedge check` still reads it.
    pub fn load_without_seed(path: &Path) -> Result<Config, ConfigErrors> {
        let (config, errors) = Config::read(path)?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads, parses and validates the file; the validation problems are returned beside it.
    fn read(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read the config file: {e}")))?;
        let mut config = parse(&text)?;
        config.source_path = Some(path.to_path_buf());
        let errors = config.validate();
        Ok((config, errors))
    }

    /// The path `p` as the edge uses it: absolute paths as they are, relative
    /// ones from the directory the edge was started in (SPEC §4).
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        // If the current directory is gone, the relative path is the best we have.
        std::env::current_dir().map_or_else(|_| p.to_path_buf(), |cwd| cwd.join(p))
    }

    /// Reads the seed file (if set) and checks its numbers against the carriers.
    fn validate_seed(&self) -> Vec<ConfigError> {
        let Some(seed) = &self.numbers.seed_file else {
            return Vec::new();
        };
        // Opening a relative path already reads it from the current directory
        // (what `resolve` spells out), and errors then show the path as written.
        match load_seed(seed) {
            Ok(numbers) => super::check_numbers(&numbers, &self.carrier),
            Err(errors) => errors.0,
        }
    }
}

/// Deserializes without validating; the one serde error becomes a
/// [`ConfigError`] named by its key path and line.
fn parse(s: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(s);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|span| line_of(s, span.start));
        serde_error(&path, inner.message(), line)
    })
}

/// Turns serde's `(path, message)` into a field and a problem. An unknown or
/// missing key is reported *at* that key (`edge.bogus`), not at its table, so
/// the field names what to delete or add.
fn serde_error(path: &str, message: &str, line: Option<usize>) -> ConfigError {
    // serde_path_to_error prints the root as ".".
    let table = if path == "." || path.is_empty() { None } else { Some(path) };
    let key = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key);
    let field = match (table, key) {
        (Some(t), Some(k)) if t != k && !t.ends_with(&format!(".{k}")) => format!("{t}.{k}"),
        (Some(t), _) => t.to_owned(),
        (None, Some(k)) => k.to_owned(),
        (None, None) => ROOT.to_owned(),
    };
    // toml's syntax messages span several lines; the CLI prints one per error.
    let message = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    let problem = match line {
        Some(n) => format!("{message} (line {n})"),
        None => message,
    };
    ConfigError::new(field, problem)
}

/// 1-based line number of byte `offset` in `s`.
fn line_of(s: &str, offset: usize) -> usize {
    s.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn unknown_field_is_named_at_its_key() {
        let e = serde_error("edge", "unknown field `bogus`, expected one of `name`", Some(3));
        assert_eq!(e.field, "edge.bogus");
        assert!(e.problem.ends_with("(line 3)"), "{}", e.problem);
        let e = serde_error(".", "unknown field `bogus`, expected `edge`", None);
        assert_eq!(e.field, "bogus");
        let e = serde_error(".", "invalid string\nexpected `\"`\n", Some(1));
        assert_eq!(e.field, ROOT);
        assert_eq!(e.problem, "invalid string; expected `\"` (line 1)");
        let e = serde_error("carrier[0].link[0]", "missing field `addr`", Some(7));
        assert_eq!(e.field, "carrier[0].link[0].addr");
    }

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
