//! Where xtask keeps what it installs and what its servers write, all under `target/`.

use std::path::PathBuf;

/// The workspace root (the parent of this crate's folder).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

/// The build directory: `CARGO_TARGET_DIR` when set, else `<root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Installed tools that a second run reuses (the Python venv, the OpenSearch jars).
pub(crate) fn tools_dir() -> PathBuf {
    target_dir().join("dovetail-tools")
}

/// Per-run state of the servers (data directories, logs); wiped at every start.
pub(crate) fn servers_dir() -> PathBuf {
    target_dir().join("dovetail-servers")
}
