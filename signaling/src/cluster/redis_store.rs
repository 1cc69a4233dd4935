//! [`KvStore`] on Redis. Commits and deadline claims are Lua scripts, so each is one atomic
//! step on the server whichever instance runs it; keys carry TTLs so a crashed instance never
//! leaves users "in a call" for longer than the record's lifetime.

use redis::{AsyncCommands, Script};
use redis_link::Link;
use serde_json::json;

use crate::store::{Commit, KvStore, StoreError};

/// Checks every expectation, then applies every write. `KEYS[1]` is the deadline set; the
/// other keys are referenced by index from the JSON in `ARGV[1]` (absent = `false`).
const COMMIT_LUA: &str = r#"
local ops = cjson.decode(ARGV[1])
for _, e in ipairs(ops.expect) do
  local cur = redis.call('GET', KEYS[e[1]])
  if e[2] == false then
    if cur then return 0 end
  elseif cur ~= e[2] then
    return 0
  end
end
for _, p in ipairs(ops.put) do redis.call('SET', KEYS[p[1]], p[2], 'PX', p[3]) end
for _, d in ipairs(ops.delete_if) do
  if redis.call('GET', KEYS[d[1]]) == d[2] then redis.call('DEL', KEYS[d[1]]) end
end
for _, m in ipairs(ops.zrem) do redis.call('ZREM', KEYS[1], m) end
for _, z in ipairs(ops.zadd) do redis.call('ZADD', KEYS[1], z[2], z[1]) end
return 1
"#;

/// Returns due members and pushes each one's score to now + lease, atomically, so exactly one
/// instance gets each, and another gets it again if that one dies before consuming it.
const CLAIM_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due
"#;

/// The shared store.
#[derive(Clone)]
pub struct RedisStore {
    conn: Link,
    deadlines_key: String,
    commit: Script,
    claim: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("deadlines_key", &self.deadlines_key).finish()
    }
}

impl RedisStore {
    /// The store on `conn`, with deadlines under `deadlines_key`. On a cluster every key must
    /// share its hash tag (see [`redis_link::Target::keyspace`]): the scripts touch them together.
    pub fn new(conn: Link, deadlines_key: String) -> Self {
        Self { conn, deadlines_key, commit: Script::new(COMMIT_LUA), claim: Script::new(CLAIM_LUA) }
    }
}

impl KvStore for RedisStore {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
        Ok(values)
    }

    async fn commit(&self, commit: &Commit) -> Result<bool, StoreError> {
        let mut keys: Vec<&str> = vec![self.deadlines_key.as_str()];
        // Lua arrays are 1-based and KEYS[1] is the deadline set: the next key's index is len + 1.
        let mut expect = Vec::new();
        for (k, v) in &commit.expect {
            let i = keys.len() + 1;
            keys.push(k);
            expect.push(json!([i, v.as_deref().map_or(json!(false), |s| json!(s))]));
        }
        let mut put = Vec::new();
        for (k, v, ttl) in &commit.put {
            let i = keys.len() + 1;
            keys.push(k);
            put.push(json!([i, v, ttl.to_string()]));
        }
        let mut delete_if = Vec::new();
        for (k, v) in &commit.delete_if {
            let i = keys.len() + 1;
            keys.push(k);
            delete_if.push(json!([i, v]));
        }
        let zadd: Vec<_> = commit.zadd.iter().map(|(m, at)| json!([m, at.to_string()])).collect();
        let ops = json!({"expect": expect, "put": put, "delete_if": delete_if, "zrem": commit.zrem, "zadd": zadd});
        let mut invocation = self.commit.prepare_invoke();
        for k in &keys {
            invocation.key(*k);
        }
        invocation.arg(ops.to_string());
        let mut conn = self.conn.clone();
        let applied: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(applied == 1)
    }

    async fn claim_due(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let due: Vec<String> = self
            .claim
            .key(&self.deadlines_key)
            .arg(now_ms)
            .arg(now_ms.saturating_add(lease_ms))
            .arg(max)
            .invoke_async(&mut conn)
            .await?;
        Ok(due)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = conn.ping().await?;
        Ok(())
    }
}
