//! The real servers the tests run against: install, start on free loopback ports, wait
//! until each answers, export their endpoints, stop them.

mod emulator;
mod opensearch;
mod probe;
mod redis;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::paths;
use crate::process::{self, ServerProcess};

/// What the tests see of a ready server.
pub(crate) struct Provisioned {
    /// Environment variables that point the tests at it.
    pub(crate) env: Vec<(String, String)>,
    /// Its name and version, for the run's summary.
    pub(crate) version: String,
}

/// The running servers; dropping this stops them.
pub(crate) struct Servers {
    /// Environment for the tests: every endpoint plus `DOVETAIL_REQUIRE_BACKENDS=1`.
    pub(crate) env: Vec<(String, String)>,
    /// One line per server: name and version.
    pub(crate) versions: Vec<String>,
    _processes: Vec<ServerProcess>,
}

/// Installs whatever the servers need and this machine lacks; a second run reuses it.
pub(crate) fn install_all() -> Result<(), String> {
    let results = std::thread::scope(|scope| {
        let installs = [
            scope.spawn(crate::python_tools::install),
            // After redis: both use apt, and its `apt-get update` serves the download.
            scope.spawn(|| redis::install().and_then(|()| crate::promtool::install())),
            scope.spawn(opensearch::install),
        ];
        installs
            .into_iter()
            .map(|install| {
                install
                    .join()
                    .unwrap_or_else(|_| Err("installer panicked".into()))
            })
            .collect::<Vec<_>>()
    });
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

struct Starting {
    process: ServerProcess,
    port: u16,
    probe: fn(u16) -> Result<(), String>,
    provisioned: fn(u16) -> Result<Provisioned, String>,
    timeout: Duration,
}

/// Starts every server on free ports and waits until all answer.
///
/// Must be called on a thread that outlives the servers: they receive SIGTERM when the
/// thread that started them ends.
pub(crate) fn start_all() -> Result<Servers, String> {
    remove_stale_runs();
    let root = paths::servers_dir();
    let _ = std::fs::remove_dir_all(&root);
    let emulator_dir = fresh_dir(&root, "emulator")?;
    let redis_dir = fresh_dir(&root, "redis")?;
    let opensearch_dir = fresh_dir(&root, "opensearch")?;

    let emulator_port = probe::free_port()?;
    let redis_port = probe::free_port()?;
    let opensearch_port = probe::free_port()?;
    let transport_port = probe::free_port()?;

    let mut starting = vec![
        Starting {
            process: ServerProcess::spawn(
                "aws-emulator",
                &emulator::launch(emulator_port, &emulator_dir),
                &root.join("aws-emulator.log"),
            )?,
            port: emulator_port,
            probe: emulator::probe,
            provisioned: emulator::provisioned,
            timeout: Duration::from_secs(90),
        },
        Starting {
            process: ServerProcess::spawn(
                "redis",
                &redis::launch(redis_port, &redis_dir),
                &root.join("redis.log"),
            )?,
            port: redis_port,
            probe: redis::probe,
            provisioned: redis::provisioned,
            timeout: Duration::from_secs(30),
        },
        Starting {
            process: ServerProcess::spawn(
                "opensearch",
                &opensearch::launch(opensearch_port, transport_port, &opensearch_dir)?,
                &root.join("opensearch.log"),
            )?,
            port: opensearch_port,
            probe: opensearch::probe,
            provisioned: opensearch::provisioned,
            timeout: Duration::from_secs(240),
        },
    ];
    wait_until_ready(&mut starting)?;

    let mut env = vec![("DOVETAIL_REQUIRE_BACKENDS".to_owned(), "1".to_owned())];
    let mut versions = Vec::new();
    let mut processes = Vec::new();
    for server in starting {
        let provisioned = (server.provisioned)(server.port)?;
        env.extend(provisioned.env);
        versions.push(provisioned.version);
        processes.push(server.process);
    }
    // Not a server: the tool that tests the alert rules, installed with them.
    env.push((
        crate::promtool::ENV.to_owned(),
        crate::promtool::binary().display().to_string(),
    ));
    versions.push(crate::promtool::version()?);
    Ok(Servers {
        env,
        versions,
        _processes: processes,
    })
}

/// `cargo xtask servers`: start them, print the exports, wait for Ctrl-C.
pub(crate) fn run_until_interrupted() -> Result<(), String> {
    process::on_interrupt_stop_all();
    install_all()?;
    let servers = start_all()?;
    println!("# The servers are up. In another shell, export:");
    for (key, value) in &servers.env {
        println!("export {key}={value}");
    }
    println!("# Versions: {}", servers.versions.join(", "));
    println!("# Logs and data: {}", paths::servers_dir().display());
    println!("# Press Ctrl-C to stop them.");
    // Flush now: when stdout is a file or a pipe, nothing would show until exit.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        std::thread::park();
    }
}

fn wait_until_ready(starting: &mut [Starting]) -> Result<(), String> {
    let started = Instant::now();
    let mut ready = vec![false; starting.len()];
    while ready.iter().any(|ready| !ready) {
        for (server, ready) in starting.iter_mut().zip(ready.iter_mut()) {
            if *ready {
                continue;
            }
            if let Some(status) = server.process.exit_status() {
                return Err(format!(
                    "{} exited before it was ready ({status})\n{}",
                    server.process.name(),
                    server.process.log_tail(40)
                ));
            }
            if (server.probe)(server.port).is_ok() {
                *ready = true;
                eprintln!(
                    "xtask: {} ready on 127.0.0.1:{} after {:.1}s",
                    server.process.name(),
                    server.port,
                    started.elapsed().as_secs_f64()
                );
            } else if started.elapsed() > server.timeout {
                let reason = (server.probe)(server.port).err().unwrap_or_default();
                return Err(format!(
                    "{} did not answer on 127.0.0.1:{} within {}s ({reason})\n{}",
                    server.process.name(),
                    server.port,
                    server.timeout.as_secs(),
                    server.process.log_tail(40)
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Removes the state of earlier runs whose xtask process is gone.
fn remove_stale_runs() {
    let Ok(entries) = std::fs::read_dir(paths::servers_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.strip_prefix("run-")) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn fresh_dir(root: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}
