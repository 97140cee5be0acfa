//! The server-side scripts and the key names. Every script reads the
//! server's clock (`TIME`), never the client's, and touches one key, so each
//! is atomic on its own and runs on Redis Cluster (the hash tag `{number}`
//! keeps one number's keys in one slot).

use crate::sip::E164;

/// The sorted set of one number's leases: member = `instance/boot/call`, score = expiry (ms).
pub fn lease_key(number: E164) -> String {
    format!("sipedge:{{{number}}}:calls")
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
}
