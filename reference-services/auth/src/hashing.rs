//! [`PasswordHasher`]: argon2id hashes in the PHC string format, made and checked on the
//! blocking pool (a bounded number at once), with a dummy hash so that checking an
//! unknown email costs what checking a known one does.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;

use crate::domain::Password;

/// The argon2id cost parameters. The defaults are OWASP's recommended minimum
/// (m = 19 MiB, t = 2, p = 1); raise them as far as login latency allows. Hashes keep the
/// parameters they were made with, so raising them does not lock anyone out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashingConfig {
    /// Memory per hash, in KiB (default 19456).
    pub memory_kib: u32,
    /// Passes over the memory (default 2).
    pub iterations: u32,
    /// Lanes (default 1).
    pub parallelism: u32,
    /// The most hashes made or checked at once (default twice the CPUs); others wait.
    /// Each takes `memory_kib` of memory, so this bounds what a burst of log-ins costs.
    pub max_concurrent: usize,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism()
                .map_or(2, |cpus| cpus.get().saturating_mul(2)),
        }
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashingError {
    /// The configured parameters are out of argon2's range.
    ///
    /// ### Handling
    /// At start: fix `password_hashing` in the configuration.
    #[error(
        "the password hashing parameters m={memory_kib} KiB, t={iterations}, p={parallelism} \
         are not valid argon2id parameters"
    )]
    Params {
        /// Configured memory.
        memory_kib: u32,
        /// Configured passes.
        iterations: u32,
        /// Configured lanes.
        parallelism: u32,
        /// argon2's reason.
        #[source]
        source: argon2::Error,
    },
    /// The system's random generator failed to make a salt.
    ///
    /// ### Handling
    /// 503; the host is unwell.
    #[error("the random generator failed to make a salt")]
    Random(#[source] aws_lc_rs::error::Unspecified),
    /// Hashing failed, or a stored hash is not a PHC string argon2 can check.
    ///
    /// ### Handling
    /// 503 and an error log: the stored hash needs looking at.
    #[error("hashing or checking a password failed")]
    Hash(#[source] argon2::password_hash::Error),
    /// The blocking task died.
    ///
    /// ### Handling
    /// 503; retry.
    #[error("the password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The hasher is shutting down (its permits are closed).
    ///
    /// ### Handling
    /// 503; retry on another instance.
    #[error("the password hasher is closed")]
    Closed,
}

/// Hashes and checks passwords with argon2id. Cheap to clone.
///
/// ```
/// use dovetail_auth::domain::Password;
/// use dovetail_auth::hashing::{HashingConfig, PasswordHasher};
///
/// # async fn example() -> Result<(), dovetail_auth::hashing::HashingError> {
/// let config = HashingConfig { memory_kib: 1024, iterations: 1, parallelism: 1, max_concurrent: 2 };
/// let hasher = PasswordHasher::new(&config).await?;
/// let hash = hasher.hash(Password::parse("correct horse".into()).unwrap()).await?;
/// assert!(hash.starts_with("$argon2id$"));
/// assert!(hasher.verify("correct horse".into(), Some(hash.clone())).await?);
/// assert!(!hasher.verify("wrong horse".into(), Some(hash)).await?);
/// assert!(!hasher.verify("correct horse".into(), None).await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    /// One permit per hash that may run at once.
    permits: Arc<tokio::sync::Semaphore>,
    /// A hash of a random password with the configured parameters: what an unknown
    /// email's password is checked against.
    dummy: String,
    /// How many passwords were checked.
    checks: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", self.inner.argon.params())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with `config`'s parameters; makes the dummy hash (on the blocking pool).
    ///
    /// # Errors
    /// [`HashingError::Params`] for parameters argon2 refuses; the others when the dummy
    /// hash cannot be made.
    pub async fn new(config: &HashingConfig) -> Result<Self, HashingError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|source| HashingError::Params {
            memory_kib: config.memory_kib,
            iterations: config.iterations,
            parallelism: config.parallelism,
            source,
        })?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = tokio::task::spawn_blocking(move || {
            let mut secret = [0u8; 32];
            aws_lc_rs::rand::fill(&mut secret).map_err(HashingError::Random)?;
            let dummy = hash_with(&argon, &secret)?;
            Ok::<_, HashingError>((argon, dummy))
        })
        .await
        .map_err(HashingError::Task)??;
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent.max(1))),
                argon: dummy.0,
                dummy: dummy.1,
                checks: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=...`) of `password` with a fresh random salt.
    ///
    /// # Errors
    /// [`HashingError::Random`], [`HashingError::Hash`], [`HashingError::Task`].
    pub async fn hash(&self, password: Password) -> Result<String, HashingError> {
        let permit = self.permit().await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_with(&inner.argon, password.expose().as_bytes())
        })
        .await
        .map_err(HashingError::Task)?
    }

    /// Whether `password` matches `stored` (a PHC string, checked with the parameters it
    /// was made with). With no stored hash (an unknown email), the password is checked
    /// against the dummy hash, which takes as long, and the answer is `false`.
    ///
    /// # Errors
    /// [`HashingError::Hash`] when `stored` is not a hash argon2 can check;
    /// [`HashingError::Task`].
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashingError> {
        let permit = self.permit().await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inner
                .checks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let known = stored.is_some();
            let hash = stored.as_deref().unwrap_or(&inner.dummy);
            let parsed = PasswordHash::new(hash).map_err(HashingError::Hash)?;
            let matches = match inner.argon.verify_password(password.as_bytes(), &parsed) {
                Ok(()) => true,
                Err(argon2::password_hash::Error::Password) => false,
                Err(other) => return Err(HashingError::Hash(other)),
            };
            Ok(known && matches)
        })
        .await
        .map_err(HashingError::Task)?
    }
}

impl PasswordHasher {
    /// How many passwords this hasher has checked (against a stored or the dummy hash)
    /// since it was made: what shows that a refused log-in cost no argon2 work.
    pub fn checks(&self) -> u64 {
        self.inner.checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A permit to run one hash; waits while `max_concurrent` run.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, HashingError> {
        Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| HashingError::Closed)
    }
}

fn hash_with(argon: &Argon2<'_>, password: &[u8]) -> Result<String, HashingError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(HashingError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(HashingError::Hash)?;
    argon
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(HashingError::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashingConfig {
        HashingConfig {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
        }
    }

    #[test]
    fn the_default_is_owasps_minimum() {
        let config = HashingConfig::default();
        assert_eq!(
            (config.memory_kib, config.iterations, config.parallelism),
            (19_456, 2, 1)
        );
        assert!(config.max_concurrent >= 2);
    }

    #[tokio::test]
    async fn hashes_beyond_the_limit_wait_their_turn_and_all_finish() {
        let hasher = PasswordHasher::new(&cheap()).await.unwrap();
        let hashes: Vec<_> = (0..4)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher
                        .hash(Password::parse("correct horse".to_owned()).unwrap())
                        .await
                })
            })
            .collect();
        for hash in hashes {
            assert!(hash.await.unwrap().is_ok());
        }
        assert_eq!(hasher.inner.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_with_the_configured_parameters_and_salted() {
        let hasher = PasswordHasher::new(&cheap()).await.unwrap();
        let password = Password::parse("correct horse".to_owned()).unwrap();
        let one = hasher.hash(password.clone()).await.unwrap();
        let two = hasher.hash(password).await.unwrap();
        assert!(one.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{one}");
        assert_ne!(one, two, "each hash has its own salt");
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_still_verifies() {
        let old = PasswordHasher::new(&cheap()).await.unwrap();
        let hash = old
            .hash(Password::parse("correct horse".to_owned()).unwrap())
            .await
            .unwrap();
        let mut raised = cheap();
        raised.iterations = 2;
        let new = PasswordHasher::new(&raised).await.unwrap();
        assert!(
            new.verify("correct horse".into(), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_configured_parameters_and_never_matches() {
        let hasher = PasswordHasher::new(&cheap()).await.unwrap();
        assert!(
            hasher
                .inner
                .dummy
                .starts_with("$argon2id$v=19$m=1024,t=1,p=1$")
        );
        assert!(!hasher.verify(String::new(), None).await.unwrap());
    }

    #[tokio::test]
    async fn parameters_argon2_refuses_are_an_error_naming_them() {
        let config = HashingConfig {
            memory_kib: 1,
            ..cheap()
        };
        let error = PasswordHasher::new(&config).await.unwrap_err();
        assert!(error.to_string().contains("m=1 KiB"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }
}
