//! Number events through Redis (SPEC §8): the cluster's canonical number
//! records and the stream every instance tails.
//!
//! An event is accepted by one script that checks, for every number it
//! changes, that Redis holds exactly the record the writer's state was
//! based on (compare-and-set on the record itself, so no version counter has
//! to be kept anywhere), then writes the new records and appends one stream
//! entry naming them. A writer that was behind gets [`LogError::Stale`] (409).
//!
//! Blocking I/O on a plain connection with timeouts: the inventory is
//! blocking code run off the async runtime (`spawn_blocking`, its own tail
//! thread, which waits on `XREAD BLOCK`), and nothing on the SIP path ever calls in here.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::Value;

use super::backend::Target;

use crate::sip::E164;

/// The canonical records: hash of E.164 → record JSON. One hash tag for all
/// inventory keys, so the script's keys share a Redis Cluster slot.
pub const RECORDS_KEY: &str = "sipedge:{inventory}:numbers";
/// The event stream: one entry per accepted event, fields `E.164 → JSON`
/// (empty for a deletion).
pub const STREAM_KEY: &str = "sipedge:{inventory}:events";
/// Entries kept in the stream (approximately; `MAXLEN ~`).
pub const STREAM_MAXLEN: u64 = 1_000_000;
/// Most numbers in one event (one Lua call; bigger batches are split).
pub const MAX_EVENT_NUMBERS: usize = 1000;

/// The cluster's port orders (SPEC §3): hash of order id → order JSON, same
/// hash tag. An order is never deleted, only finished.
pub const PORTS_KEY: &str = "sipedge:{inventory}:ports";
/// The next port order id the cluster hands out (ids are cluster-wide).
pub const PORT_ID_KEY: &str = "sipedge:{inventory}:next_port";
/// Stream field prefix of a port order (`port:ID → JSON`); a build that
/// knows no port orders skips the field, as it is no E.164.
pub const PORT_FIELD: &str = "port:";

/// KEYS[1] records, KEYS[2] stream, KEYS[3] ports; ARGV[1] = m, then m
/// triples (order id, expected JSON or '', new JSON), then n, then n triples
/// (number, expected JSON or '', new JSON or ''), then the stream's MAXLEN.
/// Orders are checked first, so of two edges finishing one order the second
/// hears that it is finished. Returns {1, id} once written, {0, number} for
/// the first stale number, {0, 'port:ID'} for a stale order.
const PUBLISH: &str = r"
local m = tonumber(ARGV[1])
for i = 0, m - 1 do
  local cur = redis.call('HGET', KEYS[3], ARGV[2 + 3 * i]) or ''
  if cur ~= ARGV[3 + 3 * i] then
    return {0, 'port:' .. ARGV[2 + 3 * i]}
  end
end
local base = 2 + 3 * m
local n = tonumber(ARGV[base])
for i = 0, n - 1 do
  local cur = redis.call('HGET', KEYS[1], ARGV[base + 1 + 3 * i]) or ''
  if cur ~= ARGV[base + 2 + 3 * i] then
    return {0, ARGV[base + 1 + 3 * i]}
  end
end
local fields = {}
for i = 0, m - 1 do
  local id, new = ARGV[2 + 3 * i], ARGV[4 + 3 * i]
  redis.call('HSET', KEYS[3], id, new)
  fields[#fields + 1] = 'port:' .. id
  fields[#fields + 1] = new
end
for i = 0, n - 1 do
  local num, new = ARGV[base + 1 + 3 * i], ARGV[base + 3 + 3 * i]
  if new == '' then
    redis.call('HDEL', KEYS[1], num)
  else
    redis.call('HSET', KEYS[1], num, new)
  end
  fields[#fields + 1] = num
  fields[#fields + 1] = new
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[base + 1 + 3 * n], '*', unpack(fields))
return {1, id}
";

/// KEYS[1] the id counter; ARGV[1] the lowest id the caller may take (its
/// own next id: orders made before cluster mode keep theirs). Returns the id.
const NEXT_PORT_ID: &str = r"
local id = math.max(tonumber(redis.call('GET', KEYS[1]) or '1'), tonumber(ARGV[1]))
redis.call('SET', KEYS[1], id + 1)
return id
";

/// A stream entry id `ms-seq`.
pub type EventId = (u64, u64);

/// One number's change: its E.164 and the new record JSON (`None`: deleted).
pub type Change = (E164, Option<String>);

/// One order's change: its id, the JSON the writer based it on (`None`: a
/// new order), and its new JSON.
pub type PortChange = (u64, Option<String>, String);

/// One stream entry as read back.
#[derive(Debug, Default)]
pub struct Entry {
    /// Its stream id.
    pub id: EventId,
    /// The numbers it changes.
    pub numbers: Vec<Change>,
    /// The port orders it writes (JSON), if any.
    pub ports: Vec<String>,
}

/// Why an event could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Redis did not answer, or answered something unexpected.
    #[error("cluster store unavailable: {0}")]
    Down(String),
    /// The writer's view of this number was behind Redis's.
    #[error("{0} was changed by another instance meanwhile; read it again")]
    Stale(E164),
    /// Another instance finished this port order first.
    #[error("port order {0} was finished by another instance")]
    StalePort(u64),
}

/// The link to the event stream.
pub struct EventLog {
    server: Server,
    conn: Mutex<Option<Box<dyn redis::ConnectionLike + Send>>>,
    timeout: Duration,
    script: redis::Script,
    next_port: redis::Script,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLog")
    }
}

/// What the log connects to (see `backend::target`).
enum Server {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

impl Server {
    /// A connection whose reads and writes give up after `timeout`.
    fn connect(&self, timeout: Duration) -> redis::RedisResult<Box<dyn redis::ConnectionLike + Send>> {
        match self {
            Server::Single(client) => {
                let c = client.get_connection_with_timeout(timeout)?;
                c.set_read_timeout(Some(timeout))?;
                c.set_write_timeout(Some(timeout))?;
                Ok(Box::new(c))
            }
            Server::Cluster(client) => {
                let c = client.get_connection()?;
                c.set_read_timeout(Some(timeout))?;
                c.set_write_timeout(Some(timeout))?;
                Ok(Box::new(c))
            }
        }
    }
}

fn down(e: impl std::fmt::Display) -> LogError {
    LogError::Down(e.to_string())
}

/// `"ms-seq"` → id.
pub fn parse_id(s: &str) -> Option<EventId> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

impl EventLog {
    /// A log on `url`; connects lazily (a Redis down at start is not fatal).
    pub fn new(url: &str, timeout: Duration) -> Result<EventLog, redis::RedisError> {
        let bad = |why: String| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "redis_url", why));
        let server = match super::backend::target(url).map_err(bad)? {
            Target::Single(url) => Server::Single(redis::Client::open(url)?),
            Target::Cluster(seeds) => Server::Cluster(Box::new(
                ClusterClientBuilder::new(seeds).connection_timeout(timeout).retries(1).build()?,
            )),
        };
        Ok(EventLog {
            server,
            conn: Mutex::new(None),
            timeout,
            script: redis::Script::new(PUBLISH),
            next_port: redis::Script::new(NEXT_PORT_ID),
        })
    }

    /// Runs `f` on the connection, reconnecting once if it is gone or broke.
    fn with_conn<T>(&self, f: impl Fn(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T>) -> Result<T, LogError> {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.server.connect(self.timeout).map_err(down)?);
        }
        let Some(c) = slot.as_mut() else { return Err(LogError::Down("no connection".into())) };
        match f(c.as_mut()) {
            Ok(v) => Ok(v),
            Err(e) => {
                // A broken or timed-out connection may hold a late reply: drop it.
                *slot = None;
                Err(down(e))
            }
        }
    }

    /// Writes one event: each `(number, expected, new)` must find `expected`
    /// (`None`: absent) in Redis, and so must each port order. Returns the
    /// event's stream id.
    pub fn publish(
        &self,
        changes: &[(E164, Option<String>, Option<String>)],
        ports: &[PortChange],
    ) -> Result<EventId, LogError> {
        let reply: Vec<Value> = self.with_conn(|c| {
            let mut inv = self.script.key(RECORDS_KEY);
            inv.key(STREAM_KEY).key(PORTS_KEY).arg(ports.len());
            for (id, expected, new) in ports {
                inv.arg(id).arg(expected.as_deref().unwrap_or("")).arg(new);
            }
            inv.arg(changes.len());
            for (n, expected, new) in changes {
                inv.arg(n.to_string()).arg(expected.as_deref().unwrap_or("")).arg(new.as_deref().unwrap_or(""));
            }
            inv.arg(STREAM_MAXLEN).invoke(c)
        })?;
        match (reply.first(), reply.get(1).and_then(text)) {
            (Some(Value::Int(1)), Some(id)) => parse_id(&id).ok_or_else(|| down(format!("bad stream id {id}"))),
            (Some(Value::Int(0)), Some(n)) => match n.strip_prefix(PORT_FIELD) {
                Some(id) => Err(id.parse().map_or_else(|_| down(format!("bad order {n}")), LogError::StalePort)),
                None => Err(E164::parse_dialed(&n).map_or_else(|_| down(format!("bad number {n}")), LogError::Stale)),
            },
            _ => Err(down("unexpected reply to the publish script")),
        }
    }

    /// A cluster-wide port order id, never below `floor`.
    pub fn next_port_id(&self, floor: u64) -> Result<u64, LogError> {
        self.with_conn(|c| self.next_port.key(PORT_ID_KEY).arg(floor).invoke(c))
    }

    /// Up to `count` entries after `after`, in order. Entries or fields that
    /// cannot be read (not ours, damaged) are skipped, never fatal.
    pub fn since(&self, after: EventId, count: usize) -> Result<Vec<Entry>, LogError> {
        let start = format!("({}-{}", after.0, after.1);
        let raw: Value = self.with_conn(|c| {
            redis::cmd("XRANGE").arg(STREAM_KEY).arg(&start).arg("+").arg("COUNT").arg(count).query(c)
        })?;
        let Value::Array(entries) = raw else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let Value::Array(parts) = e else { continue };
            let Some(id) = parts.first().and_then(text).and_then(|s| parse_id(&s)) else { continue };
            let mut entry = Entry { id, ..Entry::default() };
            if let Some(Value::Array(fields)) = parts.get(1) {
                for pair in fields.chunks_exact(2) {
                    let (Some(n), Some(rec)) = (pair.first().and_then(text), pair.get(1).and_then(text)) else {
                        continue;
                    };
                    if n.starts_with(PORT_FIELD) {
                        entry.ports.push(rec);
                        continue;
                    }
                    let Ok(n) = E164::parse_dialed(&n) else { continue };
                    entry.numbers.push((n, (!rec.is_empty()).then_some(rec)));
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// The newest entry in the stream (`None`: empty stream).
    pub fn last_id(&self) -> Result<Option<EventId>, LogError> {
        self.end_id("XREVRANGE", "+", "-")
    }

    /// The oldest entry still in the stream (`None`: empty stream).
    pub fn first_id(&self) -> Result<Option<EventId>, LogError> {
        self.end_id("XRANGE", "-", "+")
    }

    /// The id of the first entry `cmd` (`XRANGE` or `XREVRANGE`) lists from `from` to `to`.
    fn end_id(&self, cmd: &str, from: &str, to: &str) -> Result<Option<EventId>, LogError> {
        let raw: Value =
            self.with_conn(|c| redis::cmd(cmd).arg(STREAM_KEY).arg(from).arg(to).arg("COUNT").arg(1).query(c))?;
        let Value::Array(entries) = raw else { return Ok(None) };
        Ok(entries.first().and_then(|e| match e {
            Value::Array(p) => p.first().and_then(text).and_then(|s| parse_id(&s)),
            _ => None,
        }))
    }

    /// One page of the canonical records from `cursor` (`HSCAN`, so a big
    /// inventory does not block Redis in one command, nor sit whole in our
    /// memory): the next cursor (0: done) and the page. Unreadable fields are skipped.
    pub fn records_page(&self, cursor: u64, count: usize) -> Result<(u64, Vec<(E164, String)>), LogError> {
        let (next, page): (u64, Vec<(String, String)>) =
            self.with_conn(|c| redis::cmd("HSCAN").arg(RECORDS_KEY).arg(cursor).arg("COUNT").arg(count).query(c))?;
        Ok((next, page.into_iter().filter_map(|(n, r)| Some((E164::parse_dialed(&n).ok()?, r))).collect()))
    }

    /// How many canonical records Redis holds.
    pub fn record_count(&self) -> Result<u64, LogError> {
        self.with_conn(|c| redis::cmd("HLEN").arg(RECORDS_KEY).query(c))
    }

    /// Every port order the cluster holds (JSON; a few per day, so one command).
    pub fn port_records(&self) -> Result<Vec<String>, LogError> {
        let all: Vec<(String, String)> = self.with_conn(|c| redis::cmd("HGETALL").arg(PORTS_KEY).query(c))?;
        Ok(all.into_iter().map(|(_, j)| j).collect())
    }

    /// Blocks up to `block_ms` for an entry after `after` (`XREAD BLOCK`), so
    /// the tail applies events as they come instead of on a poll. Use a log of
    /// its own: the connection is held for the whole wait.
    pub fn wait_after(&self, after: EventId, block_ms: u64) -> Result<bool, LogError> {
        let id = format!("{}-{}", after.0, after.1);
        let raw: Value = self.with_conn(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(STREAM_KEY)
                .arg(&id)
                .query(c)
        })?;
        Ok(!matches!(raw, Value::Nil) && !matches!(&raw, Value::Array(a) if a.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn stream_ids_parse_and_junk_does_not() {
        assert_eq!(parse_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
        for bad in ["", "1", "a-1", "1-", "-1", "1-2-3"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
