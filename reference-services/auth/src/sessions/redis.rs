//! [`RedisSessionStore`]: families, refresh-token digests and failure counters in Redis,
//! every key with a TTL, every multi-key step one Lua script.
//!
//! Layout under the prefix `P` (default `dovetail:auth:sessions:`):
//!
//! | key | type | fields | expires |
//! |---|---|---|---|
//! | `P t:<digest>` | hash | `f` family id, `u` used `0`/`1`, `x` expiry (ms) | at the token's expiry |
//! | `P f:<family id>` | hash | `u` user id, `c` credential stamp, `x` expiry, `r` revoked | at the family's end |
//! | `P u:<user id>` | set | the user's family ids | at the latest end of them |
//! | `P w:<throttle key>` | string | failures in the window | at the window's end |
//!
//! A script never writes a field into a key it has not checked exists (that would make a
//! key without a TTL). The scripts touch keys they derive from the prefix, so the store
//! needs one Redis primary (or a cluster whose keys all hash to one slot), not a sharded
//! cluster.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use tokio::sync::Mutex;

use super::SessionStoreError;
use super::store::{
    FamilyInfo, NewFamily, Rotation, SessionStore, Window, epoch_millis, from_epoch_millis,
};
use super::token::{CredentialStamp, TokenDigest};

const BACKEND: &str = "Redis";

/// How long connecting or one command may take before the store counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: family, first token, user set. ARGV: user id, stamp, family end (ms), family
/// id, token end (ms), now (ms).
static START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'c', ARGV[2], 'x', ARGV[3], 'r', '0')
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'f', ARGV[4], 'u', '0', 'x', ARGV[5])
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[4])
local wanted = tonumber(ARGV[3]) - tonumber(ARGV[6])
if redis.call('PTTL', KEYS[3]) < wanted then redis.call('PEXPIRE', KEYS[3], wanted) end
return 'ok'
",
    )
});

/// KEYS: presented token. ARGV: family key prefix. The family's id, user, stamp and
/// end, or nil.
static FAMILY_OF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local family = redis.call('HGET', KEYS[1], 'f')
if not family then return false end
local f = redis.call('HMGET', ARGV[1] .. family, 'u', 'c', 'x')
if not f[1] then return false end
return {family, f[1], f[2], f[3]}
",
    )
});

/// KEYS: presented token, next token. ARGV: family key prefix, now (ms), next end (ms).
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('HMGET', KEYS[1], 'f', 'u', 'x')
if not t[1] then return {'unknown'} end
local fkey = ARGV[1] .. t[1]
local f = redis.call('HMGET', fkey, 'u', 'c', 'x', 'r')
if not f[1] then return {'expired'} end
if f[4] == '1' then return {'revoked'} end
if t[2] == '1' then
  redis.call('HSET', fkey, 'r', '1')
  return {'reused', t[1], f[1], f[2], f[3]}
end
local now = tonumber(ARGV[2])
if tonumber(t[3]) <= now or tonumber(f[3]) <= now then return {'expired'} end
redis.call('HSET', KEYS[1], 'u', '1')
local x = math.min(tonumber(ARGV[3]), tonumber(f[3]))
redis.call('HSET', KEYS[2], 'f', t[1], 'u', '0', 'x', string.format('%d', x))
redis.call('PEXPIREAT', KEYS[2], x)
return {'rotated', t[1], f[1], f[2], f[3]}
",
    )
});

/// KEYS: presented token. ARGV: family key prefix. 1 if the token had a family.
static REVOKE_FAMILY_OF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local family = redis.call('HGET', KEYS[1], 'f')
if not family then return 0 end
local fkey = ARGV[1] .. family
if redis.call('EXISTS', fkey) == 0 then return 0 end
redis.call('HSET', fkey, 'r', '1')
return 1
",
    )
});

/// KEYS: family. Marks it revoked if it exists.
static REVOKE_FAMILY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'r', '1') end
return 'ok'
",
    )
});

/// KEYS: user set. ARGV: family key prefix. Revokes every live family, forgets the gone
/// ones; how many were live.
static REVOKE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local revoked = 0
for _, family in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fkey = ARGV[1] .. family
  local r = redis.call('HGET', fkey, 'r')
  if not r then
    redis.call('SREM', KEYS[1], family)
  elseif r ~= '1' then
    redis.call('HSET', fkey, 'r', '1')
    revoked = revoked + 1
  end
end
return revoked
",
    )
});

/// KEYS: counter. ARGV: window (ms). The count and the window's remaining ms.
static COUNT_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {string.format('%d', n), string.format('%d', ttl)}
",
    )
});

/// KEYS: counter. One failure fewer, if the window is open (a `DECR` of a missing key
/// would make one without a TTL).
static FORGIVE_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 'ok'
",
    )
});

/// KEYS: counter. The count and the window's remaining ms, or nil.
static READ_FAILURES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('GET', KEYS[1])
if not n then return false end
return {n, string.format('%d', redis.call('PTTL', KEYS[1]))}
",
    )
});

/// Sessions in Redis (see the module documentation for the layout).
///
/// The connection is opened on first use, not at start, and opened again after an I/O
/// error: a service whose Redis is down starts, answers 503 where it needs sessions and
/// recovers on its own when Redis is back.
#[derive(Clone)]
pub struct RedisSessionStore {
    client: Client,
    prefix: String,
    connection: std::sync::Arc<Mutex<Option<MultiplexedConnection>>>,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSessionStore {
    /// A store at `url` (`redis://host:port/db`, `rediss://` for TLS) with keys under
    /// `prefix`. Does not connect yet.
    ///
    /// # Errors
    /// [`SessionStoreError::Backend`] when `url` is not a Redis URL.
    pub fn open(url: &str, prefix: impl Into<String>) -> Result<Self, SessionStoreError> {
        let client = Client::open(url)
            .map_err(|error| SessionStoreError::backend(BACKEND, "reading its URL", error))?;
        Ok(Self {
            client,
            prefix: prefix.into(),
            connection: std::sync::Arc::default(),
        })
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut current = self.connection.lock().await;
        if let Some(connection) = current.as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, SessionStoreError> {
        let outcome = match self.connection().await {
            Ok(mut connection) => invocation.invoke_async(&mut connection).await,
            Err(error) => Err(error),
        };
        outcome.map_err(|error| self.failed(operation, error))
    }

    /// The error for `error`; after an I/O error or a timeout the connection is dropped,
    /// so that the next operation opens a new one.
    fn failed(&self, operation: &'static str, error: RedisError) -> SessionStoreError {
        let broken = error.is_io_error() || error.is_connection_dropped() || error.is_timeout();
        if broken && let Ok(mut current) = self.connection.try_lock() {
            *current = None;
        }
        SessionStoreError::backend(BACKEND, operation, error)
    }

    async fn command<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &redis::Cmd,
    ) -> Result<T, SessionStoreError> {
        let outcome = match self.connection().await {
            Ok(mut connection) => command.query_async(&mut connection).await,
            Err(error) => Err(error),
        };
        outcome.map_err(|error| self.failed(operation, error))
    }
}

fn corrupt(reason: &'static str) -> SessionStoreError {
    SessionStoreError::Corrupt {
        backend: BACKEND,
        reason,
    }
}

/// A family as the scripts answer it: id, user, stamp, end (ms).
fn family(reply: &[String]) -> Result<FamilyInfo, SessionStoreError> {
    match reply {
        [family_id, user_id, credential, expires] => Ok(FamilyInfo {
            family_id: family_id.clone(),
            user_id: user_id.clone(),
            credential: CredentialStamp::from_stored(credential.clone()),
            expires: from_epoch_millis(
                expires
                    .parse()
                    .map_err(|_| corrupt("a family's expiry is not a number"))?,
            ),
        }),
        _ => Err(corrupt("a script answered a family without its fields")),
    }
}

fn window(failures: &str, remaining_ms: &str) -> Result<Window, SessionStoreError> {
    let failures = failures
        .parse()
        .map_err(|_| corrupt("a failure counter is not a number"))?;
    let remaining: i64 = remaining_ms
        .parse()
        .map_err(|_| corrupt("a failure counter's TTL is not a number"))?;
    Ok(Window {
        failures,
        resets_in: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
    })
}

impl SessionStore for RedisSessionStore {
    async fn start(&self, family: NewFamily) -> Result<(), SessionStoreError> {
        let family_end = epoch_millis(family.family_expires);
        let token_end = epoch_millis(family.token_expires).min(family_end);
        let mut invocation = START.prepare_invoke();
        invocation
            .key(self.key("f", &family.family_id))
            .key(self.key("t", &family.first.to_key()))
            .key(self.key("u", &family.user_id))
            .arg(&family.user_id)
            .arg(family.credential.as_str())
            .arg(family_end)
            .arg(&family.family_id)
            .arg(token_end)
            .arg(epoch_millis(SystemTime::now()));
        let _: String = self.invoke("starting a session", &invocation).await?;
        Ok(())
    }

    async fn family_of(
        &self,
        presented: TokenDigest,
    ) -> Result<Option<FamilyInfo>, SessionStoreError> {
        let mut invocation = FAMILY_OF.prepare_invoke();
        invocation
            .key(self.key("t", &presented.to_key()))
            .arg(self.key("f", ""));
        let reply: Option<Vec<String>> = self.invoke("reading a session", &invocation).await?;
        reply.as_deref().map(family).transpose()
    }

    async fn rotate(
        &self,
        presented: TokenDigest,
        next: TokenDigest,
        next_expires: SystemTime,
        now: SystemTime,
    ) -> Result<Rotation, SessionStoreError> {
        let mut invocation = ROTATE.prepare_invoke();
        invocation
            .key(self.key("t", &presented.to_key()))
            .key(self.key("t", &next.to_key()))
            .arg(self.key("f", ""))
            .arg(epoch_millis(now))
            .arg(epoch_millis(next_expires));
        let reply: Vec<String> = self.invoke("rotating a refresh token", &invocation).await?;
        match reply.split_first() {
            Some((tag, rest)) if tag == "rotated" => Ok(Rotation::Rotated(family(rest)?)),
            Some((tag, rest)) if tag == "reused" => Ok(Rotation::Reused(family(rest)?)),
            Some((tag, _)) if tag == "revoked" => Ok(Rotation::Revoked),
            Some((tag, _)) if tag == "expired" => Ok(Rotation::Expired),
            Some((tag, _)) if tag == "unknown" => Ok(Rotation::Unknown),
            _ => Err(corrupt("the rotation script answered something unexpected")),
        }
    }

    async fn revoke_family_of(&self, presented: TokenDigest) -> Result<bool, SessionStoreError> {
        let mut invocation = REVOKE_FAMILY_OF.prepare_invoke();
        invocation
            .key(self.key("t", &presented.to_key()))
            .arg(self.key("f", ""));
        let revoked: i64 = self.invoke("revoking a session", &invocation).await?;
        Ok(revoked == 1)
    }

    async fn revoke_family(&self, family_id: &str) -> Result<(), SessionStoreError> {
        let mut invocation = REVOKE_FAMILY.prepare_invoke();
        invocation.key(self.key("f", family_id));
        let _: String = self.invoke("revoking a session", &invocation).await?;
        Ok(())
    }

    async fn revoke_user(&self, user_id: &str) -> Result<u64, SessionStoreError> {
        let mut invocation = REVOKE_USER.prepare_invoke();
        invocation
            .key(self.key("u", user_id))
            .arg(self.key("f", ""));
        self.invoke("revoking a user's sessions", &invocation).await
    }

    async fn failures(
        &self,
        key: &str,
        _now: SystemTime,
    ) -> Result<Option<Window>, SessionStoreError> {
        let mut invocation = READ_FAILURES.prepare_invoke();
        invocation.key(self.key("w", key));
        let reply: Option<Vec<String>> = self
            .invoke("reading a failure counter", &invocation)
            .await?;
        match reply.as_deref() {
            None => Ok(None),
            Some([failures, remaining]) => window(failures, remaining).map(Some),
            Some(_) => Err(corrupt("the counter script answered something unexpected")),
        }
    }

    async fn record_failure(
        &self,
        key: &str,
        window_length: Duration,
        _now: SystemTime,
    ) -> Result<Window, SessionStoreError> {
        let mut invocation = COUNT_FAILURE.prepare_invoke();
        invocation.key(self.key("w", key)).arg(
            u64::try_from(window_length.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        let reply: Vec<String> = self.invoke("counting a failure", &invocation).await?;
        match reply.as_slice() {
            [failures, remaining] => window(failures, remaining),
            _ => Err(corrupt("the counter script answered something unexpected")),
        }
    }

    async fn forgive_failure(&self, key: &str) -> Result<(), SessionStoreError> {
        let mut invocation = FORGIVE_FAILURE.prepare_invoke();
        invocation.key(self.key("w", key));
        let _: String = self.invoke("forgiving a failure", &invocation).await?;
        Ok(())
    }

    async fn clear_failures(&self, key: &str) -> Result<(), SessionStoreError> {
        let mut del = redis::cmd("DEL");
        del.arg(self.key("w", key));
        let _: i64 = self.command("clearing a failure counter", &del).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), SessionStoreError> {
        let _: String = self
            .command("answering a ping", &redis::cmd("PING"))
            .await?;
        Ok(())
    }
}
