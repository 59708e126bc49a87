//! The base directory on disk: the generation directories (`gen-000001`, ...), the file
//! `CURRENT` naming the live one, and the file `LOCK` held while the index is open.

use std::io::Write as _;
use std::path::Path;

use tantivy::Index;
use tantivy::directory::MmapDirectory;

use super::io_error;
use crate::index::IndexError;

/// The file of the base directory naming the live generation.
const POINTER: &str = "CURRENT";

/// The file of the base directory whose lock a [`TantivyIndex`] holds while it is open.
///
/// [`TantivyIndex`]: super::TantivyIndex
const LOCK: &str = "LOCK";

/// The directory name of `generation`, such as `gen-000001`.
pub(super) fn generation_name(generation: u32) -> String {
    format!("gen-{generation:06}")
}

/// Takes the lock of the base directory `dir` (its `LOCK` file, created when missing),
/// held as long as the file returned is open.
///
/// # Errors
/// [`IndexError::Unavailable`] naming the directory when another process (or another
/// open index of this one) holds it, or when the file cannot be opened or locked.
pub(super) fn lock_directory(dir: &Path) -> Result<std::fs::File, IndexError> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(format!(
            "cannot open the lock file {}",
            path.display()
        )))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(IndexError::Unavailable(format!(
            "the index directory {} is in use by another process (it holds {}): one process \
             at a time opens a directory; stop the other one, or give this one a directory of \
             its own (index.tantivy_path)",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(io_error(format!("cannot lock {}", path.display()))(error))
        }
    }
}

/// The generation `dir/CURRENT` names; `None` when there is no such file (a new index).
///
/// # Errors
/// [`IndexError::Corrupt`] when the file names no generation; [`IndexError::Unavailable`]
/// when it cannot be read.
pub(super) fn read_pointer(dir: &Path) -> Result<Option<u32>, IndexError> {
    let pointer = dir.join(POINTER);
    match std::fs::read_to_string(&pointer) {
        Ok(text) => Ok(Some(
            text.trim()
                .strip_prefix("gen-")
                .and_then(|number| number.parse::<u32>().ok())
                .ok_or_else(|| {
                    IndexError::Corrupt(format!(
                        "{} holds {text:?}, not a generation such as gen-000001; name the \
                         live generation directory there",
                        pointer.display()
                    ))
                })?,
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(format!("cannot read {}", pointer.display()))(
            error,
        )),
    }
}

/// The error when `dir/CURRENT` names `generation` but its directory holds no index: what
/// to do, and the generations there are.
pub(super) fn missing_generation(dir: &Path, generation: u32) -> IndexError {
    let pointer = dir.join(POINTER);
    let live_dir = dir.join(generation_name(generation));
    let present = generations_in(dir);
    IndexError::Corrupt(format!(
        "{} names {}, but {} does not exist or holds no index (moved or removed by \
         hand?); nothing was changed. Put it back, or write the name of the \
         generation that holds the index into {} (the generations there: {}); with \
         none, remove {} to start an empty index and replay the events",
        pointer.display(),
        generation_name(generation),
        live_dir.display(),
        pointer.display(),
        if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        },
        pointer.display(),
    ))
}

/// Names `generation` in `base/CURRENT`, atomically (a new file, synced, renamed over the
/// old): on `Ok` the switch is made, on `Err` it is not. It survives a power loss once
/// `base` is synced ([`sync_directory`]).
pub(super) fn write_pointer(base: &Path, generation: u32) -> Result<(), IndexError> {
    let temporary = base.join(format!("{POINTER}.tmp"));
    let what = format!("cannot write {}", temporary.display());
    let mut file = std::fs::File::create(&temporary).map_err(io_error(what.clone()))?;
    file.write_all(generation_name(generation).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(what))?;
    std::fs::rename(&temporary, base.join(POINTER)).map_err(io_error(format!(
        "cannot switch {} to the new generation",
        base.join(POINTER).display()
    )))
}

/// [`write_pointer`], then [`sync_directory`].
pub(super) fn switch_pointer(base: &Path, generation: u32) -> Result<(), IndexError> {
    write_pointer(base, generation)?;
    sync_directory(base)
}

/// Syncs the directory `dir` itself, so that a rename in it survives a power loss.
#[cfg(unix)]
pub(super) fn sync_directory(dir: &Path) -> Result<(), IndexError> {
    std::fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error(format!(
            "cannot sync the directory {}",
            dir.display()
        )))
}

/// Directories cannot be opened to be synced here: the rename is as durable as the file
/// system makes it.
#[cfg(not(unix))]
pub(super) fn sync_directory(_dir: &Path) -> Result<(), IndexError> {
    Ok(())
}

/// The generation directories of `base`, sorted (for messages).
fn generations_in(base: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("gen-"))
        .collect();
    names.sort();
    names
}

/// Whether `dir` holds a tantivy index.
pub(super) fn holds_index(dir: &Path) -> Result<bool, IndexError> {
    if !dir.is_dir() {
        return Ok(false);
    }
    let cannot_open = |error: &dyn std::fmt::Display| {
        IndexError::Unavailable(format!(
            "cannot open the tantivy index in {}: {error}",
            dir.display()
        ))
    };
    let directory = MmapDirectory::open(dir).map_err(|error| cannot_open(&error))?;
    Index::exists(&directory).map_err(|error| cannot_open(&error))
}

/// Removes the generation directories of `base` other than `live`: left by a rebuild that
/// stopped before its switch, or an old generation a crash kept.
pub(super) fn remove_other_generations(base: &Path, live: u32) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("gen-") && name != generation_name(live) {
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(generation = name, %error, "cannot remove what a stopped rebuild left");
            } else {
                tracing::info!(generation = name, "removed what a stopped rebuild left");
            }
        }
    }
}
