//! [`RedisIdempotencyStore`]: one hash per key, every operation one Lua script, expiry by
//! `PEXPIRE`.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionLike, ConnectionManager};

use super::clock::{duration_millis, from_epoch_millis};
use super::record::ABANDONED_CLAIM_RETENTION;
use super::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, StoreOperation, StoredOutcome,
};

const STORE: &str = "Redis";

/// Claims `KEYS[1]` for fingerprint `ARGV[1]`, owner `ARGV[2]`, lease `ARGV[3]` ms; an
/// abandoned claim's hash lives `ARGV[4]` ms past its lease. The same rules as
/// `record::decide_claim`, on the server's clock.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
local r = redis.call('HMGET', KEYS[1], 'fp', 'owner', 'token', 'state', 'held', 'out')
local previous = nil
local taken_over_from = ''
if r[1] then
  if r[1] ~= ARGV[1] then return {'mismatch', r[1]} end
  if r[4] == 'processed' then return {'processed', r[6] or ''} end
  local held = tonumber(r[5])
  if held > now then return {'in_progress', string.format('%d', held)} end
  previous = tonumber(r[3])
  taken_over_from = r[2] or ''
end
local token = now_micros
if previous and previous + 1 > token then token = previous + 1 end
if token < 1 then token = 1 end
local held_until = now + tonumber(ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'owner', ARGV[2],
  'token', string.format('%d', token), 'state', 'in_progress',
  'held', string.format('%d', held_until))
redis.call('PEXPIREAT', KEYS[1], held_until + tonumber(ARGV[4]))
return {'claimed', string.format('%d', token), string.format('%d', held_until), taken_over_from}
",
    )
});

/// Extends the lease of owner `ARGV[1]`, token `ARGV[2]` on `KEYS[1]` to `ARGV[3]` ms
/// from now; returns the new end, or nil when the lease is lost.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('HMGET', KEYS[1], 'owner', 'token', 'state')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] or r[3] ~= 'in_progress' then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held_until = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'held', string.format('%d', held_until))
redis.call('PEXPIREAT', KEYS[1], held_until + tonumber(ARGV[4]))
return string.format('%d', held_until)
",
    )
});

/// Marks `KEYS[1]` processed with outcome `ARGV[3]`, kept `ARGV[4]` ms, if owner `ARGV[1]`
/// and token `ARGV[2]` hold it; `ok` also when that lease completed it already.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('HMGET', KEYS[1], 'owner', 'token', 'state')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return false end
if r[3] == 'processed' then return 'ok' end
if r[3] ~= 'in_progress' then return false end
local retain = tonumber(ARGV[4])
if retain <= 0 then
  redis.call('DEL', KEYS[1])
  return 'ok'
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', 'processed', 'out', ARGV[3], 'held', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], retain)
return 'ok'
",
    )
});

/// Releases `KEYS[1]` if owner `ARGV[1]` and token `ARGV[2]` hold it in progress: the
/// hash stays, ownerless and expired, so the next claim raises its token.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('HMGET', KEYS[1], 'owner', 'token', 'state')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] or r[3] ~= 'in_progress' then return false end
redis.call('HDEL', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'held', '0')
return 'ok'
",
    )
});

/// Where [`RedisIdempotencyStore`] keeps its keys.
///
/// # Example
/// ```
/// use dovetail_events::idempotency::RedisIdempotencyConfig;
///
/// assert_eq!(RedisIdempotencyConfig::default().key_prefix, "dovetail:idempotency:");
/// let claims = RedisIdempotencyConfig::new("claims:idempotency:");
/// assert_eq!(claims.key_prefix, "claims:idempotency:");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisIdempotencyConfig {
    /// Put before every idempotency key to make the Redis key. Default
    /// `dovetail:idempotency:`.
    pub key_prefix: String,
}

impl RedisIdempotencyConfig {
    /// Keys under `key_prefix`.
    pub fn new(key_prefix: impl Into<String>) -> Self {
        Self {
            key_prefix: key_prefix.into(),
        }
    }
}

impl Default for RedisIdempotencyConfig {
    fn default() -> Self {
        Self::new("dovetail:idempotency:")
    }
}

/// An [`IdempotencyStore`] in Redis: one hash per key, under a prefix.
///
/// Every operation is one Lua script (`EVALSHA`, loaded on first use), so the checks of
/// fingerprint, owner and fencing token and the write that follows are atomic. Leases are
/// compared with the Redis server's clock (`TIME`), so consumers' clocks do not matter.
/// A processed key expires with `PEXPIRE` after its retention; an abandoned claim an hour
/// after its lease. Each operation touches one key, so the store works on a cluster.
///
/// Redis keeps what it acknowledged only as durably as it is configured to (AOF,
/// replication): a failover that loses a record lets a duplicate through.
///
/// The connection is any async Redis connection that can be cloned: a
/// [`ConnectionManager`] (the default, reconnects) or a multiplexed connection.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use dovetail_events::idempotency::{
///     Fingerprint, IdempotencyKey, IdempotencyStore, LeaseOwner, RedisIdempotencyConfig,
///     RedisIdempotencyStore,
/// };
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let connection = redis::aio::ConnectionManager::new(client).await?;
/// let store = RedisIdempotencyStore::new(connection, RedisIdempotencyConfig::new("claims:idem:"));
/// let key = IdempotencyKey::new("evt-1")?;
/// let claim = store
///     .try_claim(&key, &Fingerprint::of(b"{}"), &LeaseOwner::random(), Duration::from_secs(30))
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisIdempotencyStore<C = ConnectionManager> {
    connection: C,
    config: RedisIdempotencyConfig,
}

impl<C> std::fmt::Debug for RedisIdempotencyStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C> RedisIdempotencyStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store on `connection`, with keys where `config` says.
    pub fn new(connection: C, config: RedisIdempotencyConfig) -> Self {
        Self { connection, config }
    }

    /// Where the keys are.
    pub fn config(&self) -> &RedisIdempotencyConfig {
        &self.config
    }

    fn redis_key(&self, key: &IdempotencyKey) -> String {
        format!("{}{}", self.config.key_prefix, key.as_str())
    }

    /// Runs a lease script (heartbeat, complete, release) with owner and token first.
    async fn run_lease_script(
        &self,
        script: &Script,
        operation: StoreOperation,
        lease: &Lease,
        args: &[&[u8]],
    ) -> Result<Option<String>, IdempotencyError> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.redis_key(lease.key()))
            .arg(lease.owner().as_str())
            .arg(lease.fencing_token().to_string());
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| IdempotencyError::backend(STORE, operation, error))
    }
}

impl<C> IdempotencyStore for RedisIdempotencyStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        let mut connection = self.connection.clone();
        let reply: Vec<Vec<u8>> = CLAIM
            .prepare_invoke()
            .key(self.redis_key(key))
            .arg(fingerprint.as_bytes().as_slice())
            .arg(owner.as_str())
            .arg(duration_millis(lease))
            .arg(duration_millis(ABANDONED_CLAIM_RETENTION))
            .invoke_async(&mut connection)
            .await
            .map_err(|error| IdempotencyError::backend(STORE, StoreOperation::Claim, error))?;
        let corrupt = |reason: &str| IdempotencyError::CorruptRecord {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        match reply.as_slice() {
            [tag, token, held_until, taken_over_from] if tag.as_slice() == b"claimed" => {
                let token =
                    parse_number(token).ok_or_else(|| corrupt("the token is not a number"))?;
                let held_until =
                    parse_number(held_until).ok_or_else(|| corrupt("`held` is not a number"))?;
                let taken_over_from = if taken_over_from.is_empty() {
                    None
                } else {
                    Some(
                        std::str::from_utf8(taken_over_from)
                            .ok()
                            .and_then(|owner| LeaseOwner::new(owner).ok())
                            .ok_or_else(|| corrupt("the owner is not a valid lease owner"))?,
                    )
                };
                Ok(ClaimOutcome::Claimed {
                    lease: Lease::new(
                        key.clone(),
                        owner.clone(),
                        token,
                        from_epoch_millis(held_until),
                    ),
                    taken_over_from,
                })
            }
            [tag, outcome] if tag.as_slice() == b"processed" => Ok(ClaimOutcome::Processed(
                StoredOutcome::new(outcome.as_slice()),
            )),
            [tag, held_until] if tag.as_slice() == b"in_progress" => {
                let held_until =
                    parse_number(held_until).ok_or_else(|| corrupt("`held` is not a number"))?;
                Ok(ClaimOutcome::InProgress {
                    held_until: from_epoch_millis(held_until),
                })
            }
            [tag, stored] if tag.as_slice() == b"mismatch" => {
                let stored = Fingerprint::from_slice(stored)
                    .map_err(|_| corrupt("the fingerprint is not 32 bytes"))?;
                Err(IdempotencyError::PayloadMismatch {
                    key: key.clone(),
                    stored,
                    presented: *fingerprint,
                })
            }
            _ => Err(corrupt("the claim script answered something unexpected")),
        }
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Lease, IdempotencyError> {
        let extend = duration_millis(extend).to_string();
        let retention = duration_millis(ABANDONED_CLAIM_RETENTION).to_string();
        let held_until = self
            .run_lease_script(
                &HEARTBEAT,
                StoreOperation::Heartbeat,
                lease,
                &[extend.as_bytes(), retention.as_bytes()],
            )
            .await?
            .ok_or_else(|| lost(lease))?;
        let held_until =
            parse_number(held_until.as_bytes()).ok_or_else(|| IdempotencyError::CorruptRecord {
                key: lease.key().clone(),
                reason: "`held` is not a number".to_owned(),
            })?;
        Ok(Lease::new(
            lease.key().clone(),
            lease.owner().clone(),
            lease.fencing_token(),
            from_epoch_millis(held_until),
        ))
    }

    async fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> Result<(), IdempotencyError> {
        let retain = duration_millis(retain).to_string();
        self.run_lease_script(
            &COMPLETE,
            StoreOperation::Complete,
            lease,
            &[outcome.as_bytes(), retain.as_bytes()],
        )
        .await?
        .map(drop)
        .ok_or_else(|| lost(lease))
    }

    async fn release(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        self.run_lease_script(&RELEASE, StoreOperation::Release, lease, &[])
            .await?
            .map(drop)
            .ok_or_else(|| lost(lease))
    }
}

fn parse_number(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn lost(lease: &Lease) -> IdempotencyError {
    IdempotencyError::LeaseLost {
        key: lease.key().clone(),
    }
}
