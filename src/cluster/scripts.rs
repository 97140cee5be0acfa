//! The server-side scripts and the key names. Every script reads the
//! server's clock (`TIME`), never the client's, and touches one key, so each
//! is atomic on its own and runs on Redis Cluster (the hash tag `{number}`
//! keeps one number's keys in one slot; `{carrier:NAME}` one carrier's, so
//! the carrier script's two keys are in one slot too).

use crate::sip::E164;

/// The sorted set of one number's leases: member = `instance/boot/call`, score = expiry (ms).
pub fn lease_key(number: E164) -> String {
    format!("sipedge:{{{number}}}:calls")
}

/// The sorted set of one carrier's leases (same members as the numbers').
pub fn carrier_key(name: &str) -> String {
    format!("sipedge:{{carrier:{name}}}:calls")
}

/// The GCRA arrival time of the carrier whose lease set is `calls_key`.
pub fn tat_key(calls_key: &str) -> String {
    let base = calls_key.strip_suffix(":calls").unwrap_or(calls_key);
    format!("{base}:tat")
}

/// The sorted set of instances alive: member = instance, score = expiry (ms).
pub const INSTANCES_KEY: &str = "sipedge:{instances}";

/// Admit: KEYS[1] a lease set; ARGV member, cap, ttl_ms. Returns 1 (admitted) or 0.
/// A member already present (a retransmission, a failover) is renewed, never counted twice.
pub const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
";

/// Carrier admit: KEYS[1] the carrier's lease set, KEYS[2] its GCRA arrival
/// time (µs of server time); ARGV member, cap (0 = none), ttl_ms, interval_us
/// (1 s / max_cps; 0 = none). Returns 1 (admitted), 0 (max_concurrent) or
/// -1 (max_cps). The concurrency is checked first, so a refused call spends
/// no rate; the bucket holds one second's worth (a burst of `max_cps`), like
/// the local one. A member already present is renewed, never counted twice.
/// The arrival time is written with `%d`: Lua's default number format would
/// round 16 digits.
pub const CARRIER_ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
    return 1
  end
  if redis.call('ZCARD', KEYS[1]) >= cap then
    return 0
  end
end
if interval > 0 then
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  local next = math.max(tat, now_us) + interval
  if next > now_us + 1000000 then
    return -1
  end
  redis.call('SET', KEYS[2], string.format('%d', next), 'PX', 2000)
end
if cap > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return 1
";

/// Carrier refund: KEYS[1] a carrier's GCRA arrival time; ARGV interval_us.
/// Gives back the rate token of a call the carrier script admitted but whose
/// number was refused: the two scripts run in one pipeline but in different
/// hash slots, so not as one transaction. The arrival time moves back one
/// interval; a bucket that would be emptier than empty is deleted (the same
/// as an arrival time of now). Returns 1 if a token went back.
pub const CARRIER_REFUND: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local back = tat - tonumber(ARGV[1])
if back <= now_us then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%d', back), 'KEEPTTL')
return 1
";

/// Renew: KEYS[1] a lease set; ARGV member, ttl_ms. Adds the member back if
/// Redis lost it (restart without persistence, failover), or if it was
/// admitted locally while Redis was down.
pub const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
";

/// Release: KEYS[1] a lease set; ARGV member. Returns the calls left.
pub const RELEASE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])
";

/// Heartbeat: KEYS[1] the instances set; ARGV instance, ttl_ms. Returns the instances alive.
pub const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_one_hash_slot() {
        let k = lease_key(E164::parse_dialed("+18005550100").unwrap());
        assert_eq!(k, "sipedge:{+18005550100}:calls");
    }

    #[test]
    fn one_carrier_one_hash_slot() {
        let k = carrier_key("carrier-a");
        assert_eq!(k, "sipedge:{carrier:carrier-a}:calls");
        assert_eq!(tat_key(&k), "sipedge:{carrier:carrier-a}:tat");
    }
}
