//! The binary number record: what the `numbers` table holds from store
//! format 2 on. Decoding JSON was ~15 % of a 10 M start's CPU (issue 17).
//!
//! A value starts with a format byte. JSON starts with `{` (0x7B), so a
//! store written by format 1 is read unchanged, record by record; new and
//! changed records are written as [`BINARY`]:
//!
//! ```text
//! 0x01 kind:u8 state:u8 [state arg:u64] flags:u8 [max_concurrent:u32]
//!      [flow:str] [cnam:str] carriers:u32 carrier:str*    (str = len:u32 bytes)
//! ```
//!
//! All integers little-endian. The number itself is the table's key.

use super::store::StoredRecord;
use crate::routing::NumberState;
use crate::sip::{NumberKind, E164};

/// The format byte of a binary record.
pub(crate) const BINARY: u8 = 1;
const JSON_OPEN: u8 = b'{';

const FLAG_FLOW: u8 = 1;
const FLAG_MAX: u8 = 2;
const FLAG_CNAM: u8 = 4;

/// Why a value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// A format-1 value: bad JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A binary value: what is wrong with it.
    #[error("{0}")]
    Binary(&'static str),
}

/// Encodes `r` as a binary record; `None` if a string is over 4 GiB.
pub(crate) fn encode(r: &StoredRecord) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(32 + r.flow.as_ref().map_or(0, String::len));
    out.push(BINARY);
    out.push(match r.kind {
        NumberKind::TollFree => 0,
        NumberKind::Did => 1,
    });
    let (tag, arg) = match r.state {
        NumberState::Active => (0, None),
        NumberState::Released { released_at_unix_s } => (1, Some(released_at_unix_s)),
        NumberState::PortInPending { order } => (2, Some(order)),
        NumberState::PortOutPending { order } => (3, Some(order)),
    };
    out.push(tag);
    if let Some(v) = arg {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let flags = if r.flow.is_some() { FLAG_FLOW } else { 0 }
        | if r.max_concurrent.is_some() { FLAG_MAX } else { 0 }
        | if r.cnam.is_some() { FLAG_CNAM } else { 0 };
    out.push(flags);
    if let Some(m) = r.max_concurrent {
        out.extend_from_slice(&m.to_le_bytes());
    }
    for s in [&r.flow, &r.cnam].into_iter().flatten() {
        put_str(&mut out, s)?;
    }
    out.extend_from_slice(&u32::try_from(r.carriers.len()).ok()?.to_le_bytes());
    for c in &r.carriers {
        put_str(&mut out, c)?;
    }
    Some(out)
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    out.extend_from_slice(&u32::try_from(s.len()).ok()?.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Some(())
}

/// Decodes the value stored under `key`, in either format.
pub(crate) fn decode(key: u64, v: &[u8]) -> Result<StoredRecord, DecodeError> {
    match v.first() {
        Some(&JSON_OPEN) => Ok(serde_json::from_slice(v)?),
        Some(&BINARY) => decode_binary(key, v.get(1..).unwrap_or_default()).map_err(DecodeError::Binary),
        Some(_) => Err(DecodeError::Binary("unknown record format byte")),
        None => Err(DecodeError::Binary("empty value")),
    }
}

fn decode_binary(key: u64, v: &[u8]) -> Result<StoredRecord, &'static str> {
    let mut r = Reader(v);
    let e164 = E164::from_u64(key).ok_or("key is not an E.164 number")?;
    let kind = match r.u8()? {
        0 => NumberKind::TollFree,
        1 => NumberKind::Did,
        _ => return Err("unknown kind"),
    };
    let state = match r.u8()? {
        0 => NumberState::Active,
        1 => NumberState::Released { released_at_unix_s: r.u64()? },
        2 => NumberState::PortInPending { order: r.u64()? },
        3 => NumberState::PortOutPending { order: r.u64()? },
        _ => return Err("unknown state"),
    };
    let flags = r.u8()?;
    if flags & !(FLAG_FLOW | FLAG_MAX | FLAG_CNAM) != 0 {
        return Err("unknown flags");
    }
    let max_concurrent = if flags & FLAG_MAX != 0 { Some(r.u32()?) } else { None };
    let flow = if flags & FLAG_FLOW != 0 { Some(r.string()?) } else { None };
    let cnam = if flags & FLAG_CNAM != 0 { Some(r.string()?) } else { None };
    let n = r.u32()?;
    // Each carrier takes at least its 4-byte length: a huge count is refused
    // before anything is allocated for it.
    if usize::try_from(n).map_or(true, |n| n > r.0.len() / 4) {
        return Err("carrier count beyond the value");
    }
    let mut carriers = Vec::with_capacity(n as usize);
    for _ in 0..n {
        carriers.push(r.string()?);
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(StoredRecord { e164, kind, flow, carriers, max_concurrent, cnam, state })
}

/// A cursor over a value; every read checks the length.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or("value too short")?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn string(&mut self) -> Result<String, &'static str> {
        let len = usize::try_from(self.u32()?).map_err(|_| "string too long")?;
        let bytes = self.0.get(..len).ok_or("string beyond the value")?;
        self.0 = self.0.get(len..).unwrap_or_default();
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        state: NumberState,
        flow: Option<&str>,
        max: Option<u32>,
        cnam: Option<&str>,
        carriers: &[&str],
    ) -> StoredRecord {
        StoredRecord {
            e164: E164::from_u64(18005550100).unwrap(),
            kind: NumberKind::TollFree,
            flow: flow.map(str::to_owned),
            carriers: carriers.iter().map(|c| c.to_string()).collect(),
            max_concurrent: max,
            cnam: cnam.map(str::to_owned),
            state,
        }
    }

    fn same(a: &StoredRecord, b: &StoredRecord) -> bool {
        serde_json::to_string(a).unwrap() == serde_json::to_string(b).unwrap()
    }

    #[test]
    fn every_state_and_optional_field_round_trips() {
        let states = [
            NumberState::Active,
            NumberState::Released { released_at_unix_s: 1_700_000_000 },
            NumberState::PortInPending { order: 7 },
            NumberState::PortOutPending { order: u64::MAX },
        ];
        for st in states {
            for r in [
                rec(st, Some("flow-1"), Some(3), Some("ACME"), &["a", "b"]),
                rec(st, None, None, None, &[]),
                rec(st, Some(""), Some(0), None, &["carrier-a"]),
            ] {
                let bytes = encode(&r).unwrap();
                assert_eq!(bytes[0], BINARY);
                assert!(same(&decode(18005550100, &bytes).unwrap(), &r), "{r:?}");
            }
        }
    }

    #[test]
    fn a_format_1_json_value_reads_unchanged() {
        let r = rec(NumberState::Active, Some("flow-1"), None, Some("X"), &["carrier-a"]);
        let json = serde_json::to_vec(&r).unwrap();
        assert!(same(&decode(18005550100, &json).unwrap(), &r));
    }

    #[test]
    fn a_truncated_or_garbled_value_is_an_error_not_a_panic() {
        let r = rec(NumberState::Released { released_at_unix_s: 5 }, Some("flow-1"), Some(2), Some("N"), &["a", "b"]);
        let bytes = encode(&r).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(18005550100, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(18005550100, &longer).is_err());
        assert!(decode(18005550100, &[9, 0, 0]).is_err());
        assert!(decode(18005550100, &[BINARY, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(1, &bytes).is_err(), "a key that is no E.164 number");
    }
}
