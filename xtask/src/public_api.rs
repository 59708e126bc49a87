//! The published crates' public API, listed by cargo-public-api and checked in as
//! `crates/<crate>/public-api.txt`, so that a change to it shows in review: `lint`
//! fails when a listing differs, `api --bless` rewrites them.
//!
//! cargo-public-api reads rustdoc's JSON output, which only a nightly toolchain
//! writes; both are pinned to versions that understand each other and installed on
//! first use (the tool under `target/`, the toolchain with rustup's minimal profile).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::{package, paths, shell};

/// The cargo-public-api release the listings are made with.
const TOOL_VERSION: &str = "0.52.0";
/// A nightly whose rustdoc JSON that release reads.
const NIGHTLY: &str = "nightly-2026-05-19";

/// Compares every published crate's listing with the checked-in one; with `bless`,
/// writes the new listings instead.
pub(crate) fn check(bless: bool) -> Result<(), String> {
    install()?;
    let mut changed = Vec::new();
    for name in package::PUBLISHED {
        let listing = list(name)?;
        let file = listing_file(name);
        let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
        if listing == checked_in {
            continue;
        }
        if bless {
            std::fs::write(&file, &listing)
                .map_err(|error| format!("cannot write {}: {error}", file.display()))?;
            eprintln!("xtask: wrote {}", file.display());
        } else {
            changed.push(describe_change(name, &checked_in, &listing));
        }
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the public API changed:\n{}\nIf the change is meant, run `cargo xtask api \
             --bless` and commit the listings (and mind semver: a removed or changed item \
             breaks users).",
            changed.join("\n")
        ))
    }
}

/// The listing of `name`, every feature on, without blanket and auto-trait impls.
fn list(name: &str) -> Result<String, String> {
    let mut command = Command::new("cargo");
    command
        .arg(format!("+{NIGHTLY}"))
        .args([
            "public-api",
            "--simplified",
            "--all-features",
            "--color",
            "never",
        ])
        .args(["--package", name])
        .env("PATH", path_with_tool())
        .current_dir(paths::workspace_root());
    eprintln!("xtask: listing the public API of {name}");
    shell::output(&mut command)
}

/// Items gone and items new, one per line.
fn describe_change(name: &str, before: &str, after: &str) -> String {
    let before: BTreeSet<&str> = before.lines().collect();
    let after: BTreeSet<&str> = after.lines().collect();
    let mut lines = vec![format!("{name} ({}):", listing_file(name).display())];
    lines.extend(before.difference(&after).map(|item| format!("  - {item}")));
    lines.extend(after.difference(&before).map(|item| format!("  + {item}")));
    if lines.len() == 1 {
        lines.push("  (the same items, listed in another order or number of times)".into());
    }
    lines.join("\n")
}

fn listing_file(name: &str) -> PathBuf {
    let folder = name.trim_start_matches("dovetail-");
    paths::workspace_root()
        .join("crates")
        .join(folder)
        .join("public-api.txt")
}

/// Installs the pinned nightly and cargo-public-api, unless a previous run did.
fn install() -> Result<(), String> {
    let toolchains = shell::output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|line| line.starts_with(NIGHTLY)) {
        eprintln!("xtask: installing {NIGHTLY} (minimal profile) for rustdoc's JSON output");
        shell::status(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let binary = tool_dir().join("bin/cargo-public-api");
    let marker = tool_dir().join("version.txt");
    if binary.is_file() && std::fs::read_to_string(&marker).is_ok_and(|v| v == TOOL_VERSION) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing cargo-public-api {TOOL_VERSION} into {}",
        tool_dir().display()
    );
    shell::status(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                "--locked",
                "cargo-public-api",
                "--version",
                TOOL_VERSION,
            ])
            .arg("--root")
            .arg(tool_dir())
            // Its own build, not the workspace's: a target folder of its own.
            .env("CARGO_TARGET_DIR", tool_dir().join("build")),
    )?;
    std::fs::remove_dir_all(tool_dir().join("build")).ok();
    std::fs::write(&marker, TOOL_VERSION)
        .map_err(|error| format!("cannot write {}: {error}", marker.display()))
}

fn tool_dir() -> PathBuf {
    paths::tools_dir().join("cargo-public-api")
}

/// PATH with the tool's folder first, so that `cargo public-api` finds it.
fn path_with_tool() -> std::ffi::OsString {
    let mut dirs = vec![tool_dir().join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}
