//! [`KeyRing`]: the service's Ed25519 signing keys, made at first start and kept in its
//! data directory. A new key is published in the JWKS before it signs (so verifiers can
//! fetch it first); older ones stay in the JWKS until every token they signed has
//! expired, then leave (and their files are removed).

mod files;
mod signing_key;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use time::OffsetDateTime;

pub use signing_key::SigningKey;

/// Why the keys cannot be loaded, made or stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file or the manifest cannot be read or written.
    ///
    /// ### Handling
    /// At start: fix the directory's ownership or space; the path is named.
    #[error("cannot read or write {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The manifest (`keys.json`) is not what this service writes.
    ///
    /// ### Handling
    /// Restore it from a backup; deleting the directory makes new keys and invalidates
    /// every token issued.
    #[error("the key manifest {path} cannot be read or written as JSON")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A key file is not an Ed25519 PKCS#8 key.
    ///
    /// ### Handling
    /// As for [`KeyError::Manifest`].
    #[error("a stored signing key is not an Ed25519 PKCS#8 key")]
    Rejected(#[source] aws_lc_rs::error::KeyRejected),
    /// A key file holds another key than the manifest lists under its name.
    ///
    /// ### Handling
    /// As for [`KeyError::Manifest`].
    #[error("{path} holds key {actual}, not {listed} as the manifest says")]
    KidMismatch {
        /// The key file.
        path: PathBuf,
        /// The kid the manifest lists.
        listed: String,
        /// The kid of the key in the file.
        actual: String,
    },
    /// The random generator failed to make a key.
    ///
    /// ### Handling
    /// The host is unwell; retry.
    #[error("the random generator failed to make a signing key")]
    Generate(#[source] aws_lc_rs::error::Unspecified),
    /// The blocking task that did the file I/O died.
    ///
    /// ### Handling
    /// Retry; the keys in use did not change.
    #[error("the key file task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// How long keys are published around their signing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTiming {
    /// How long a retired key stays in the JWKS: the longest a token it signed can stay
    /// valid (the access tokens' lifetime plus a margin for clock leeway).
    pub retention: std::time::Duration,
    /// How long a new key is in the JWKS before it signs: at least the verifiers' JWKS
    /// refetch interval (30 s by default), so that a verifier whose last fetch predates
    /// the new key may fetch again when its first token arrives. The first key of a
    /// fresh directory signs at once (no verifier can know an older one).
    pub publish_ahead: std::time::Duration,
}

/// The signing keys: a rotation publishes the new key at once and signs with it
/// `publish_ahead` later, when the old key retires; every key is listed in the JWKS until
/// `retention` after it retired. Cheap to clone; clones share the keys.
///
/// One process owns a data directory: rotation is not coordinated across processes.
#[derive(Debug, Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    retention: time::Duration,
    publish_ahead: time::Duration,
    ring: RwLock<Arc<Ring>>,
    /// Held while rotating, so two rotations do not interleave their files.
    rotating: Mutex<()>,
}

/// One version of the keys; `generation` counts rotations in this process.
#[derive(Debug)]
struct Ring {
    generation: u64,
    keys: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    /// The keys stored in `dir`, with a new one made (and stored) when none can sign yet;
    /// keys retired more than `timing.retention` ago are dropped, with their files.
    /// Blocking (file I/O): call it at start or on the blocking pool.
    ///
    /// # Errors
    /// See [`KeyError`].
    pub fn open(dir: &Path, timing: KeyTiming) -> Result<Self, KeyError> {
        let retention = duration(timing.retention);
        let publish_ahead = duration(timing.publish_ahead);
        let now = OffsetDateTime::now_utc();
        let mut keys: Vec<Arc<SigningKey>> = files::load(dir)?.into_iter().map(Arc::new).collect();
        if keys.last().is_none_or(|key| key.retired_at.is_some()) {
            let key = SigningKey::generate(now)?;
            files::write_key(dir, &key)?;
            tracing::info!(kid = key.kid(), "made the first signing key");
            keys.push(Arc::new(key));
        }
        let (keys, dropped) = split_listed(keys, now, retention);
        files::write_manifest(dir, &keys)?;
        files::remove_keys(dir, &dropped)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                retention,
                publish_ahead,
                ring: RwLock::new(Arc::new(Ring {
                    generation: 0,
                    keys,
                })),
                rotating: Mutex::new(()),
            }),
        })
    }

    fn ring(&self) -> Arc<Ring> {
        Arc::clone(
            &self
                .inner
                .ring
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The key that signs new tokens now: the newest key published for `publish_ahead`
    /// and not retired; until a new key has been, the one it replaces.
    ///
    /// # Panics
    /// Never: the ring always holds a signing key.
    pub fn signing_key(&self) -> Arc<SigningKey> {
        let now = OffsetDateTime::now_utc();
        let ring = self.ring();
        let unretired = |key: &&Arc<SigningKey>| key.retired_at.is_none_or(|retired| now < retired);
        let published =
            |key: &&Arc<SigningKey>| key.created_at.saturating_add(self.inner.publish_ahead) <= now;
        let key = ring
            .keys
            .iter()
            .rev()
            .filter(unretired)
            .find(published)
            .or_else(|| ring.keys.iter().find(unretired))
            .or(ring.keys.last())
            .expect("the ring always holds a signing key");
        Arc::clone(key)
    }

    /// How many rotations this process has made: changes whenever the key set does.
    pub fn generation(&self) -> u64 {
        self.ring().generation
    }

    /// The kids in the JWKS now, oldest first.
    pub fn kids(&self) -> Vec<String> {
        self.listed_now()
            .iter()
            .map(|key| key.kid().to_owned())
            .collect()
    }

    fn listed_now(&self) -> Vec<Arc<SigningKey>> {
        let now = OffsetDateTime::now_utc();
        self.ring()
            .keys
            .iter()
            .filter(|key| listed(key, now, self.inner.retention))
            .map(Arc::clone)
            .collect()
    }

    /// The JWKS (`{"keys": [...]}`) of every key a valid token can have been signed
    /// with: the signing key and those retired less than the retention ago.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .listed_now()
            .iter()
            .map(|key| key.public_jwk())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Makes a new signing key and stores it: it is in the JWKS at once and signs
    /// `publish_ahead` from now, when the key signing now retires (which then stays in the
    /// JWKS for the retention); keys past theirs are dropped. Returns the new kid.
    /// Blocking (file I/O).
    ///
    /// Verifiers that cached the JWKS fetch it again when a token names a kid they do not
    /// know; publishing ahead makes sure they may.
    ///
    /// # Errors
    /// See [`KeyError`]; the keys in use do not change when it fails.
    pub fn rotate(&self) -> Result<String, KeyError> {
        let _rotating = self
            .inner
            .rotating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = OffsetDateTime::now_utc();
        let retires_at = now.saturating_add(self.inner.publish_ahead);
        let current = self.ring();
        let new = SigningKey::generate(now)?;
        files::write_key(&self.inner.dir, &new)?;
        let mut keys: Vec<Arc<SigningKey>> = Vec::with_capacity(current.keys.len() + 1);
        for key in &current.keys {
            if key.retired_at.is_some() {
                keys.push(Arc::clone(key));
            } else {
                keys.push(Arc::new(SigningKey::from_pkcs8(
                    key.pkcs8().to_vec(),
                    key.created_at,
                    Some(retires_at),
                )?));
            }
        }
        let kid = new.kid().to_owned();
        keys.push(Arc::new(new));
        let (keys, dropped) = split_listed(keys, now, self.inner.retention);
        files::write_manifest(&self.inner.dir, &keys)?;
        *self
            .inner
            .ring
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(Ring {
            generation: current.generation + 1,
            keys,
        });
        tracing::info!(kid, "rotated the signing key");
        files::remove_keys(&self.inner.dir, &dropped)?;
        Ok(kid)
    }
}

fn duration(value: std::time::Duration) -> time::Duration {
    time::Duration::try_from(value).unwrap_or(time::Duration::MAX)
}

/// `keys` split into those listed at `now` and those past their retention.
fn split_listed(
    keys: Vec<Arc<SigningKey>>,
    now: OffsetDateTime,
    retention: time::Duration,
) -> (Vec<Arc<SigningKey>>, Vec<Arc<SigningKey>>) {
    keys.into_iter()
        .partition(|key| listed(key, now, retention))
}

/// Whether `key` belongs in the JWKS at `now`: it signs, or was retired less than
/// `retention` ago.
fn listed(key: &SigningKey, now: OffsetDateTime, retention: time::Duration) -> bool {
    key.retired_at
        .is_none_or(|retired| now < retired.saturating_add(retention))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timing(retention: u64, publish_ahead: u64) -> KeyTiming {
        KeyTiming {
            retention: Duration::from_secs(retention),
            publish_ahead: Duration::from_secs(publish_ahead),
        }
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir()
            .join(format!(
                "dovetail-auth-keys-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .join("keys")
    }

    #[test]
    fn the_first_start_makes_a_key_the_next_start_reads_it() {
        let dir = temp_dir();
        let first = KeyRing::open(&dir, timing(900, 0)).unwrap();
        let again = KeyRing::open(&dir, timing(900, 0)).unwrap();
        assert_eq!(first.kids(), again.kids());
        assert_eq!(first.kids().len(), 1);
        assert_eq!(first.signing_key().kid(), again.signing_key().kid());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir();
        let keys = KeyRing::open(&dir, timing(900, 0)).unwrap();
        let mode = |path: PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let kid = keys.signing_key().kid().to_owned();
        assert_eq!(mode(dir.join(format!("{kid}.pk8"))), 0o600);
        assert_eq!(mode(dir.join("keys.json")), 0o600);
        assert_eq!(mode(dir.clone()), 0o700);
    }

    #[test]
    fn rotation_signs_with_the_new_key_and_lists_both_until_the_retention() {
        let dir = temp_dir();
        let keys = KeyRing::open(&dir, timing(900, 0)).unwrap();
        let old = keys.signing_key().kid().to_owned();
        let new = keys.rotate().unwrap();
        assert_ne!(old, new);
        assert_eq!(keys.signing_key().kid(), new);
        assert_eq!(keys.kids(), vec![old.clone(), new.clone()]);
        assert_eq!(keys.generation(), 1);
        let reopened = KeyRing::open(&dir, timing(900, 0)).unwrap();
        assert_eq!(reopened.kids(), vec![old, new.clone()]);
        assert_eq!(reopened.signing_key().kid(), new);
    }

    #[test]
    fn a_rotated_key_is_published_before_it_signs_and_the_old_one_signs_meanwhile() {
        let dir = temp_dir();
        let keys = KeyRing::open(&dir, timing(900, 3600)).unwrap();
        let old = keys.signing_key().kid().to_owned();
        let new = keys.rotate().unwrap();
        assert_eq!(
            keys.kids(),
            vec![old.clone(), new.clone()],
            "both published"
        );
        assert_eq!(keys.signing_key().kid(), old, "the new key waits an hour");
        let reopened = KeyRing::open(&dir, timing(900, 3600)).unwrap();
        assert_eq!(reopened.signing_key().kid(), old, "across a restart too");
        let third = keys.rotate().unwrap();
        assert_eq!(keys.kids(), vec![old.clone(), new, third]);
        assert_eq!(keys.signing_key().kid(), old);
    }

    #[test]
    fn the_first_key_of_a_fresh_directory_signs_at_once() {
        let keys = KeyRing::open(&temp_dir(), timing(900, 3600)).unwrap();
        assert_eq!(keys.kids(), vec![keys.signing_key().kid().to_owned()]);
    }

    #[test]
    fn a_key_past_its_retention_leaves_the_jwks_and_the_disk() {
        let dir = temp_dir();
        let keys = KeyRing::open(&dir, timing(0, 0)).unwrap();
        let old = keys.signing_key().kid().to_owned();
        let new = keys.rotate().unwrap();
        assert_eq!(keys.kids(), vec![new.clone()]);
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
        assert!(!dir.join(format!("{old}.pk8")).exists());
        assert!(dir.join(format!("{new}.pk8")).exists());
    }

    #[test]
    fn a_lost_manifest_costs_no_key_file() {
        let dir = temp_dir();
        let keys = KeyRing::open(&dir, timing(900, 0)).unwrap();
        let kid = keys.signing_key().kid().to_owned();
        std::fs::remove_file(dir.join("keys.json")).unwrap();
        let again = KeyRing::open(&dir, timing(900, 0)).unwrap();
        assert_ne!(again.signing_key().kid(), kid);
        assert!(
            dir.join(format!("{kid}.pk8")).exists(),
            "left for an operator"
        );
    }

    #[test]
    fn a_key_file_swapped_for_another_key_is_refused() {
        let dir = temp_dir();
        let keys = KeyRing::open(&dir, timing(900, 0)).unwrap();
        let kid = keys.signing_key().kid().to_owned();
        let other = SigningKey::generate(OffsetDateTime::now_utc()).unwrap();
        std::fs::write(dir.join(format!("{kid}.pk8")), other.pkcs8()).unwrap();
        let error = KeyRing::open(&dir, timing(900, 0)).unwrap_err();
        assert!(matches!(error, KeyError::KidMismatch { .. }), "{error}");
    }
}
