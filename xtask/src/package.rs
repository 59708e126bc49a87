//! `cargo package` of every published crate, as another team's `cargo add` would get them:
//! each packaged and built from its `.crate` alone, against the others through cargo's
//! temporary local registry.

use std::process::Command;

use crate::{paths, shell};

/// The crates published for other teams, in no particular order (cargo packages them in
/// the order of their dependencies).
pub(crate) const PUBLISHED: [&str; 6] = [
    "dovetail-http",
    "dovetail-events",
    "dovetail-outbox",
    "dovetail-testkit",
    "dovetail-consistency",
    "dovetail-bff",
];

/// Packages and verifies every published crate (`--allow-dirty`: what is in the working
/// tree, committed or not, is what the tests just ran).
pub(crate) fn package() -> Result<(), String> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(["package", "--allow-dirty"])
        .current_dir(paths::workspace_root());
    for name in PUBLISHED {
        command.args(["-p", name]);
    }
    shell::status(&mut command)
}
