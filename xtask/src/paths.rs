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

/// Where every run keeps its servers' state: one folder per xtask process.
pub(crate) fn servers_root() -> PathBuf {
    target_dir().join("dovetail-servers")
}

/// This run's servers' state (data directories, logs): `run-<pid>`, so that several
/// `cargo xtask test` or `servers` runs in one checkout never share a data directory.
pub(crate) fn servers_dir() -> PathBuf {
    servers_root().join(format!("run-{}", std::process::id()))
}
