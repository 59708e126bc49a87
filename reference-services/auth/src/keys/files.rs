//! The signing keys on disk: `<dir>/<kid>.pk8` (PKCS#8 DER) and `<dir>/keys.json` (each
//! key's creation and retirement time), every file mode 0600 in a 0700 directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::KeyError;
use super::signing_key::SigningKey;

const MANIFEST: &str = "keys.json";

/// The manifest: the keys in the order they were made.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    keys: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    kid: String,
    #[serde(with = "time::serde::timestamp")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::timestamp::option")]
    retired_at: Option<OffsetDateTime>,
}

/// The keys stored in `dir`, oldest first; empty when there is no manifest yet.
pub(super) fn load(dir: &Path) -> Result<Vec<SigningKey>, KeyError> {
    let manifest_path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(&manifest_path, source)),
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|source| KeyError::Manifest {
        path: manifest_path.clone(),
        source,
    })?;
    manifest
        .keys
        .into_iter()
        .map(|entry| {
            let path = key_path(dir, &entry.kid);
            warn_if_readable_by_others(&path);
            let pkcs8 = std::fs::read(&path).map_err(|source| io(&path, source))?;
            let key = SigningKey::from_pkcs8(pkcs8, entry.created_at, entry.retired_at)?;
            if key.kid() != entry.kid {
                return Err(KeyError::KidMismatch {
                    path,
                    listed: entry.kid,
                    actual: key.kid().to_owned(),
                });
            }
            Ok(key)
        })
        .collect()
}

/// Writes `key`'s file (new; never overwritten) in `dir`, creating `dir` (0700).
pub(super) fn write_key(dir: &Path, key: &SigningKey) -> Result<(), KeyError> {
    create_dir(dir)?;
    let path = key_path(dir, key.kid());
    let mut file = private_file(&path, true)?;
    file.write_all(key.pkcs8())
        .and_then(|()| file.sync_all())
        .map_err(|source| io(&path, source))
}

/// Replaces the manifest with one listing `keys` (written beside it, then renamed).
pub(super) fn write_manifest(
    dir: &Path,
    keys: &[std::sync::Arc<SigningKey>],
) -> Result<(), KeyError> {
    let manifest = Manifest {
        keys: keys
            .iter()
            .map(|key| Entry {
                kid: key.kid().to_owned(),
                created_at: key.created_at,
                retired_at: key.retired_at,
            })
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|source| KeyError::Manifest {
        path: dir.join(MANIFEST),
        source,
    })?;
    let staging = dir.join(format!("{MANIFEST}.new"));
    let mut file = private_file(&staging, false)?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|source| io(&staging, source))?;
    let path = dir.join(MANIFEST);
    std::fs::rename(&staging, &path).map_err(|source| io(&path, source))
}

/// Removes the files of `dropped` (keys past their retention, already left out of the
/// manifest). Files the manifest never listed are left alone: a lost manifest must not
/// cost the keys.
pub(super) fn remove_keys(
    dir: &Path,
    dropped: &[std::sync::Arc<SigningKey>],
) -> Result<(), KeyError> {
    for key in dropped {
        let path = key_path(dir, key.kid());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io(&path, source)),
        }
    }
    Ok(())
}

fn key_path(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.pk8"))
}

fn io(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn create_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| io(dir, source))
}

/// A file only its owner can read and write: `create_new` for a key (never overwrite one).
fn private_file(path: &Path, create_new: bool) -> Result<std::fs::File, KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| io(path, source))
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "a signing key file is readable by others than its owner; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
