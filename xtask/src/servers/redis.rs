//! Redis: Debian's `redis-server`, installed with apt-get when missing, no persistence.

use std::path::Path;
use std::process::Command;

use super::{Provisioned, probe};
use crate::process::Launch;
use crate::shell;

/// Installs `redis-server` through apt-get when it is not on the PATH.
pub(crate) fn install() -> Result<(), String> {
    if shell::on_path("redis-server") {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "redis-server is not installed and xtask is not root: install it with \
                    `sudo apt-get install redis-server` and run again"
                .to_owned(),
        );
    }
    eprintln!("xtask: installing redis-server with apt-get");
    shell::output(Command::new("apt-get").arg("update"))?;
    shell::output(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "redis-server"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    // Debian starts its own redis on 6379 after installing; ours run on free ports, so
    // stop that one to leave the machine as we found it.
    let _ = Command::new("service")
        .args(["redis-server", "stop"])
        .output();
    Ok(())
}

/// How to start Redis on `port`, keeping nothing on disk.
pub(crate) fn launch(port: u16, dir: &Path) -> Launch {
    Launch {
        program: "redis-server".into(),
        args: [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
        env: Vec::new(),
        dir: dir.to_path_buf(),
    }
}

/// Ready when it answers PING.
pub(crate) fn probe(port: u16) -> Result<(), String> {
    probe::redis_ping(port)
}

/// What the tests see of it.
pub(crate) fn provisioned(port: u16) -> Result<Provisioned, String> {
    let version = shell::output(Command::new("redis-server").arg("--version"))?;
    let version = version
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .unwrap_or("unknown")
        .to_owned();
    Ok(Provisioned {
        env: vec![(
            "DOVETAIL_REDIS_URL".into(),
            format!("redis://127.0.0.1:{port}"),
        )],
        version: format!("redis-server {version}"),
    })
}
