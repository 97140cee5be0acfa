//! `numbers.csv`, the seed inventory (SPEC §4): header
//! `e164,kind,flow,carriers,max_concurrent,cnam`; `kind`, `flow`,
//! `max_concurrent` and `cnam` may be empty; `carriers` is `;`-separated.
//!
//! The format needs no quoting (no field may contain a comma), so the parser
//! is a split and a trim. Blank lines and lines starting with `#` are skipped.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{CarrierConfig, ConfigError, ConfigErrors};
use crate::sip::{NumberKind, E164};

/// The header line, column by column.
const HEADER: [&str; 6] = ["e164", "kind", "flow", "carriers", "max_concurrent", "cnam"];

/// Longest caller name (SPEC §2).
pub const MAX_CNAM_CHARS: usize = 15;

/// One row of the seed file: a number to claim on first start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeedNumber {
    /// The number.
    pub e164: E164,
    /// Toll-free or DID; an empty column means `e164.default_kind()`.
    pub kind: NumberKind,
    /// The flow its inbound calls go to; `None` = none yet (calls get 480).
    pub flow: Option<String>,
    /// Carriers it is provisioned with: one for a DID, one or more for toll-free.
    pub carriers: Vec<String>,
    /// Per-number concurrency cap; `None` = the `[limits]` default for its kind.
    pub max_concurrent: Option<u32>,
    /// Caller name for outbound calls, at most 15 characters.
    pub cnam: Option<String>,
}

/// Parses seed CSV text; errors are named like `numbers.csv line 7: carriers`.
/// Only the format is checked here; see [`check_numbers`] for the rules.
pub fn parse_seed_csv(text: &str) -> Result<Vec<SeedNumber>, ConfigErrors> {
    parse_named(text, "numbers.csv")
}

/// Reads and parses the seed file at `path`; errors name the path as given.
pub fn load_seed(path: &Path) -> Result<Vec<SeedNumber>, ConfigErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("numbers.seed_file", format!("cannot read {label}: {e}")))?;
    parse_named(&text, &label)
}

fn parse_named(text: &str, label: &str) -> Result<Vec<SeedNumber>, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (header_line, header_ok) = match rows.next() {
        Some((n, h)) => {
            (n, h.split(',').map(|c| c.trim().to_ascii_lowercase()).eq(HEADER.iter().map(|c| (*c).to_owned())))
        }
        None => (1, false),
    };
    if !header_ok {
        return Err(ConfigError::new(
            format!("{label} line {header_line}"),
            format!("the first line must be the header `{}`", HEADER.join(",")),
        )
        .into());
    }
    let mut numbers = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in rows {
        match parse_row(line) {
            Ok(number) => numbers.push(number),
            Err((column, problem)) => errors.push(ConfigError::new(format!("{label} line {n}: {column}"), problem)),
        }
    }
    if errors.is_empty() {
        Ok(numbers)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// One data row → a number, or `(column, problem)` for the first bad column.
fn parse_row(line: &str) -> Result<SeedNumber, (&'static str, String)> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [e164, kind, flow, carriers, max_concurrent, cnam] = fields.as_slice() else {
        return Err(("fields", format!("expected {} comma-separated fields, found {}", HEADER.len(), fields.len())));
    };
    let e164 = E164::parse_dialed(e164).map_err(|e| ("e164", format!("'{e164}' is not a valid number: {e}")))?;
    let kind = if kind.is_empty() {
        e164.default_kind()
    } else {
        kind.parse::<NumberKind>().map_err(|()| ("kind", format!("'{kind}' is not toll-free or did")))?
    };
    let max_concurrent = if max_concurrent.is_empty() {
        None
    } else {
        Some(
            max_concurrent
                .parse::<u32>()
                .map_err(|_| ("max_concurrent", format!("'{max_concurrent}' is not a whole number")))?,
        )
    };
    Ok(SeedNumber {
        e164,
        kind,
        flow: non_empty(flow),
        carriers: carriers.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        max_concurrent,
        cnam: non_empty(cnam),
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The rules for a set of numbers, against the configured carriers: no number
/// twice, a DID has exactly one carrier and a toll-free number at least one,
/// every carrier exists, cnam fits. Fields are `numbers[+1800...].carriers`.
/// Used by config validation and by the control plane for claims and ports.
pub fn check_numbers(numbers: &[SeedNumber], carriers: &[CarrierConfig]) -> Vec<ConfigError> {
    let known: HashSet<&str> = carriers.iter().map(|c| c.name.as_str()).collect();
    let mut seen: HashMap<E164, usize> = HashMap::new();
    let mut v = Vec::new();
    for n in numbers {
        let at = format!("numbers[{}]", n.e164);
        let count = seen.entry(n.e164).or_insert(0);
        *count += 1;
        // Report a repeated number once, however often it repeats.
        if *count == 2 {
            v.push(ConfigError::new(at.clone(), format!("duplicate number {}: listed more than once", n.e164)));
        }
        check_one(n, &at, &known, &mut v);
    }
    v
}

fn check_one(n: &SeedNumber, at: &str, known: &HashSet<&str>, v: &mut Vec<ConfigError>) {
    let field = format!("{at}.carriers");
    let mut distinct = HashSet::new();
    for c in &n.carriers {
        if !distinct.insert(c.as_str()) {
            v.push(ConfigError::new(field.clone(), format!("carrier '{c}' is listed twice")));
        } else if !known.contains(c.as_str()) {
            v.push(ConfigError::new(field.clone(), format!("unknown carrier '{c}': no [[carrier]] has that name")));
        }
    }
    match (n.kind, distinct.len()) {
        (NumberKind::Did, 0) => {
            v.push(ConfigError::new(field, format!("DID {} has no carrier; a DID has exactly one", n.e164)));
        }
        (NumberKind::Did, 1) => {}
        (NumberKind::Did, k) => {
            v.push(ConfigError::new(field, format!("DID {} has {k} carriers; a DID has exactly one", n.e164)));
        }
        (NumberKind::TollFree, 0) => v.push(ConfigError::new(
            field,
            format!("toll-free number {} has no carrier; it needs at least one", n.e164),
        )),
        (NumberKind::TollFree, _) => {}
    }
    if let Some(flow) = &n.flow {
        // The flow id is sent in X-Flow-Id, so it must be one header token.
        if flow.is_empty() || flow.chars().any(|c| c.is_whitespace() || c.is_control()) {
            v.push(ConfigError::new(
                format!("{at}.flow"),
                format!("'{flow}' must be non-empty with no spaces or control characters"),
            ));
        }
    }
    if let Some(cnam) = &n.cnam {
        let len = cnam.chars().count();
        if len > MAX_CNAM_CHARS {
            v.push(ConfigError::new(
                format!("{at}.cnam"),
                format!("'{cnam}' is {len} characters; cnam is at most {MAX_CNAM_CHARS}"),
            ));
        }
        // It becomes a quoted display name in From; these would break the quoting.
        if cnam.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            v.push(ConfigError::new(
                format!("{at}.cnam"),
                "must not contain quotes, backslashes or control characters",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> E164 {
        E164::parse_dialed(s).unwrap()
    }

    const HEADER_LINE: &str = "e164,kind,flow,carriers,max_concurrent,cnam";

    #[test]
    fn seed_rows_parse_with_defaults_for_empty_columns() {
        let text = format!(
            "\u{feff}# inventory\n{HEADER_LINE}\r\n\n+1 (800) 555-0100,,,a;b ; ,,\r\n2065550100,toll-free,flow-1,a,7,ACME\n"
        );
        let rows = parse_seed_csv(&text).unwrap();
        assert_eq!(
            rows,
            [
                SeedNumber {
                    e164: n("+18005550100"),
                    kind: NumberKind::TollFree,
                    flow: None,
                    carriers: vec!["a".into(), "b".into()],
                    max_concurrent: None,
                    cnam: None,
                },
                SeedNumber {
                    e164: n("+12065550100"),
                    kind: NumberKind::TollFree, // the record overrides the prefix
                    flow: Some("flow-1".into()),
                    carriers: vec!["a".into()],
                    max_concurrent: Some(7),
                    cnam: Some("ACME".into()),
                },
            ]
        );
        assert_eq!(parse_seed_csv(HEADER_LINE).unwrap(), []);
    }

    #[test]
    fn seed_format_errors_name_line_and_column_and_are_all_listed() {
        let text = format!(
            "{HEADER_LINE}\n+12065550100,,f,a,,\nbad,,f,a,,\n+12065550101,vip,f,a,,\n+12065550102,,f,a,-1,\n+1206,x\n"
        );
        let errors = parse_seed_csv(&text).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "numbers.csv line 3: e164",
                "numbers.csv line 4: kind",
                "numbers.csv line 5: max_concurrent",
                "numbers.csv line 6: fields"
            ]
        );
        for missing_header in ["", "+12065550100,,f,a,,\n", "e164,kind,flow,carriers\n"] {
            let errors = parse_seed_csv(missing_header).unwrap_err();
            assert!(errors.to_string().contains("header"), "{missing_header:?}: {errors}");
        }
    }

    fn carriers(names: &[&str]) -> Vec<CarrierConfig> {
        names.iter().map(|&name| CarrierConfig { name: name.into(), ..CarrierConfig::default() }).collect()
    }

    fn seed(e164: &str, kind: NumberKind, carriers: &[&str]) -> SeedNumber {
        SeedNumber {
            e164: n(e164),
            kind,
            flow: Some("f".into()),
            carriers: carriers.iter().map(|&c| c.to_owned()).collect(),
            max_concurrent: None,
            cnam: None,
        }
    }

    #[test]
    fn number_rules_are_checked_against_the_carriers() {
        use NumberKind::{Did, TollFree};
        let known = carriers(&["a", "b"]);
        let good = [seed("+18005550100", TollFree, &["a", "b"]), seed("+12065550100", Did, &["b"])];
        assert_eq!(check_numbers(&good, &known), []);

        let problems = |numbers: &[SeedNumber]| -> Vec<String> {
            check_numbers(numbers, &known).iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            problems(&[seed("+12065550100", Did, &["a", "b"])]),
            ["numbers[+12065550100].carriers: DID +12065550100 has 2 carriers; a DID has exactly one"]
        );
        assert_eq!(
            problems(&[seed("+12065550100", Did, &[])]),
            ["numbers[+12065550100].carriers: DID +12065550100 has no carrier; a DID has exactly one"]
        );
        assert_eq!(problems(&[seed("+18005550100", TollFree, &[])]).len(), 1);
        assert_eq!(
            problems(&[seed("+18005550100", TollFree, &["a", "x"])]),
            ["numbers[+18005550100].carriers: unknown carrier 'x': no [[carrier]] has that name"]
        );
        assert_eq!(
            problems(&[seed("+18005550100", TollFree, &["a", "a"])]),
            ["numbers[+18005550100].carriers: carrier 'a' is listed twice"]
        );
        // A repeat is reported once, however often the number repeats.
        let dup = [
            seed("+18005550100", TollFree, &["a"]),
            seed("+18005550100", TollFree, &["a"]),
            seed("+18005550100", TollFree, &["b"]),
        ];
        assert_eq!(problems(&dup), ["numbers[+18005550100]: duplicate number +18005550100: listed more than once"]);

        let mut cnam = seed("+12065550100", Did, &["a"]);
        cnam.cnam = Some("fifteen chars!!".into());
        assert_eq!(problems(std::slice::from_ref(&cnam)), Vec::<String>::new());
        cnam.cnam = Some("sixteen chars!!!".into());
        assert!(problems(std::slice::from_ref(&cnam))[0].contains("at most 15"));
        cnam.cnam = Some("A \"B\"".into());
        assert!(problems(std::slice::from_ref(&cnam))[0].contains("quotes"));
        let mut flow = seed("+12065550100", Did, &["a"]);
        flow.flow = Some("two words".into());
        assert_eq!(check_numbers(&[flow], &known)[0].field, "numbers[+12065550100].flow");
    }
}
