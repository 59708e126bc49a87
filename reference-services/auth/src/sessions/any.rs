//! [`AnySessionStore`]: the store the configuration chose, as one type.

use std::time::{Duration, SystemTime};

use super::SessionStoreError;
use super::config::{SessionBackend, SessionsConfig};
use super::redis::RedisSessionStore;
use super::sqlite::SqliteSessionStore;
use super::store::{FamilyInfo, NewFamily, Rotation, SessionStore, Window};
use super::token::TokenDigest;

/// The session store of the configured backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnySessionStore {
    /// `backend = "sqlite"`.
    Sqlite(SqliteSessionStore),
    /// `backend = "redis"`.
    Redis(RedisSessionStore),
}

impl AnySessionStore {
    /// Opens the store `config` names. Redis is not contacted yet: a service whose Redis
    /// is down starts and answers 503 where it needs sessions.
    ///
    /// # Errors
    /// [`SessionStoreError::Backend`] when the SQLite file cannot be opened, the Redis
    /// URL is missing or not a Redis URL.
    pub fn open(config: &SessionsConfig) -> Result<Self, SessionStoreError> {
        match config.backend {
            SessionBackend::Sqlite => SqliteSessionStore::open(&config.path).map(Self::Sqlite),
            SessionBackend::Redis => {
                let url = config
                    .url
                    .as_deref()
                    .ok_or_else(|| SessionStoreError::Backend {
                        backend: "Redis",
                        operation: "reading its URL",
                        source: "sessions.backend is redis but sessions.url is not set".into(),
                    })?;
                RedisSessionStore::open(url, config.key_prefix.clone()).map(Self::Redis)
            }
        }
    }
}

macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Self::Sqlite($store) => $call.await,
            Self::Redis($store) => $call.await,
        }
    };
}

impl SessionStore for AnySessionStore {
    async fn start(&self, family: NewFamily) -> Result<(), SessionStoreError> {
        each!(self, store => store.start(family))
    }

    async fn family_of(
        &self,
        presented: TokenDigest,
    ) -> Result<Option<FamilyInfo>, SessionStoreError> {
        each!(self, store => store.family_of(presented))
    }

    async fn rotate(
        &self,
        presented: TokenDigest,
        next: TokenDigest,
        next_expires: SystemTime,
        now: SystemTime,
    ) -> Result<Rotation, SessionStoreError> {
        each!(self, store => store.rotate(presented, next, next_expires, now))
    }

    async fn revoke_family_of(&self, presented: TokenDigest) -> Result<bool, SessionStoreError> {
        each!(self, store => store.revoke_family_of(presented))
    }

    async fn revoke_family(&self, family_id: &str) -> Result<(), SessionStoreError> {
        each!(self, store => store.revoke_family(family_id))
    }

    async fn revoke_user(&self, user_id: &str) -> Result<u64, SessionStoreError> {
        each!(self, store => store.revoke_user(user_id))
    }

    async fn failures(
        &self,
        key: &str,
        now: SystemTime,
    ) -> Result<Option<Window>, SessionStoreError> {
        each!(self, store => store.failures(key, now))
    }

    async fn record_failure(
        &self,
        key: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Window, SessionStoreError> {
        each!(self, store => store.record_failure(key, window, now))
    }

    async fn forgive_failure(&self, key: &str) -> Result<(), SessionStoreError> {
        each!(self, store => store.forgive_failure(key))
    }

    async fn clear_failures(&self, key: &str) -> Result<(), SessionStoreError> {
        each!(self, store => store.clear_failures(key))
    }

    async fn ping(&self) -> Result<(), SessionStoreError> {
        each!(self, store => store.ping())
    }
}
