//! promtool, which checks and unit-tests the alert rules in `ops/prometheus/`: taken from
//! Debian's `prometheus` package, downloaded with `apt-get download` and unpacked under
//! `target/` (nothing is installed system-wide and no Prometheus server is started).

use std::path::PathBuf;
use std::process::Command;

use crate::{paths, shell};

/// The environment variable that tells the tests where promtool is.
pub(crate) const ENV: &str = "DOVETAIL_PROMTOOL";

/// The unpacked binary.
pub(crate) fn binary() -> PathBuf {
    dir().join("usr/bin/promtool")
}

/// Downloads and unpacks the package, unless a previous run did.
pub(crate) fn install() -> Result<(), String> {
    if binary().is_file() {
        return Ok(());
    }
    let downloads = dir().join("deb");
    std::fs::create_dir_all(&downloads)
        .map_err(|error| format!("cannot create {}: {error}", downloads.display()))?;
    eprintln!(
        "xtask: downloading promtool (Debian's prometheus package) into {}",
        dir().display()
    );
    let download = || {
        shell::output(
            Command::new("apt-get")
                .args(["download", "prometheus"])
                .current_dir(&downloads),
        )
    };
    if let Err(first) = download() {
        if !nix::unistd::geteuid().is_root() {
            return Err(format!(
                "{first}\npromtool could not be downloaded: run `sudo apt-get update` and \
                 run again"
            ));
        }
        shell::output(Command::new("apt-get").arg("update"))?;
        download()?;
    }
    let package = std::fs::read_dir(&downloads)
        .map_err(|error| format!("cannot read {}: {error}", downloads.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
        .ok_or_else(|| format!("apt-get download left no .deb in {}", downloads.display()))?;
    shell::output(Command::new("dpkg-deb").arg("-x").arg(&package).arg(dir()))?;
    if binary().is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} holds no usr/bin/promtool: the prometheus package changed its layout",
            package.display()
        ))
    }
}

/// Its version line, for the run's summary.
pub(crate) fn version() -> Result<String, String> {
    let output = shell::output(Command::new(binary()).arg("--version"))?;
    Ok(output
        .lines()
        .next()
        .and_then(|line| line.split(" (").next())
        .unwrap_or("promtool")
        .to_owned())
}

fn dir() -> PathBuf {
    paths::tools_dir().join("promtool")
}
