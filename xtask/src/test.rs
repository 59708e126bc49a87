//! `cargo xtask test`: every test of the workspace against real servers, and the book.
//!
//! The servers are installed and started on a helper thread while the tests compile, so a
//! cold run pays for the slower of the two, not both.

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{book, package, paths, process, servers};

/// Tests that need a server live in a module of this name, so they can be left out.
const SERVER_TEST_MODULE: &str = "needs_servers::";

const CARGO_TEST: [&str; 4] = ["test", "--workspace", "--all-features", "--no-fail-fast"];

struct Ready {
    env: Vec<(String, String)>,
    versions: Vec<String>,
    took: Duration,
}

/// Runs the suite; `args` are xtask's, test-binary arguments follow `--`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let (own, passthrough) = match args.iter().position(|arg| arg == "--") {
        Some(split) => (&args[..split], &args[split + 1..]),
        None => (args, &[][..]),
    };
    let mut with_servers = true;
    for arg in own {
        match arg.as_str() {
            "--no-servers" => with_servers = false,
            other => return Err(format!("unknown option `{other}` for `cargo xtask test`")),
        }
    }
    process::on_interrupt_stop_all();
    if with_servers {
        run_with_servers(passthrough)
    } else {
        run_without_servers(passthrough)
    }
}

fn run_without_servers(passthrough: &[String]) -> Result<(), String> {
    let build = timed(|| cargo_test(&["--no-run"], &[], &[]))?;
    let mut skip = vec!["--skip".to_owned(), SERVER_TEST_MODULE.to_owned()];
    skip.extend_from_slice(passthrough);
    let tests = timed(|| cargo_test(&[], &skip, &[]));
    let book = timed(book::build);
    let packages = timed(|| package::package().and_then(|()| package::outside()));
    eprintln!("\nxtask: tests that need a server were left out (--no-servers).");
    summary(
        None,
        &[],
        build,
        tests.as_ref().ok().copied(),
        book.as_ref().ok().copied(),
        packages.as_ref().ok().copied(),
    );
    tests.and(book).and(packages).map(|_| ())
}

fn run_with_servers(passthrough: &[String]) -> Result<(), String> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Ready, String>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    // The servers belong to this thread: they get SIGTERM when it ends, so it lives
    // until the tests are done.
    let supervisor = std::thread::spawn(move || {
        let started = Instant::now();
        match servers::install_all().and_then(|()| servers::start_all()) {
            Ok(running) => {
                let ready = Ready {
                    env: running.env.clone(),
                    versions: running.versions.clone(),
                    took: started.elapsed(),
                };
                let _ = ready_tx.send(Ok(ready));
                let _ = stop_rx.recv();
                drop(running);
            }
            Err(error) => {
                let _ = ready_tx.send(Err(error));
            }
        }
    });

    let build = timed(|| cargo_test(&["--no-run"], &[], &[]));
    let ready = ready_rx
        .recv()
        .map_err(|_| "the server supervisor stopped unexpectedly".to_owned())
        .and_then(|ready| ready);
    let outcome = match (build, ready) {
        (Err(error), _) => Err(error),
        (_, Err(error)) => Err(format!("the servers could not be started:\n{error}")),
        (Ok(build), Ok(ready)) => {
            eprintln!("xtask: servers ready: {}", ready.versions.join(", "));
            let tests = timed(|| cargo_test(&[], passthrough, &ready.env));
            let book = timed(book::build);
            let packages = timed(|| package::package().and_then(|()| package::outside()));
            summary(
                Some(ready.took),
                &ready.versions,
                build,
                tests.as_ref().ok().copied(),
                book.as_ref().ok().copied(),
                packages.as_ref().ok().copied(),
            );
            tests.and(book).and(packages).map(|_| ())
        }
    };
    let _ = stop_tx.send(());
    let _ = supervisor.join();
    outcome
}

fn cargo_test(
    cargo_args: &[&str],
    binary_args: &[String],
    env: &[(String, String)],
) -> Result<(), String> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(CARGO_TEST)
        .args(cargo_args)
        .current_dir(paths::workspace_root())
        .envs(env.iter().map(|(k, v)| (k, v)));
    if !binary_args.is_empty() {
        command.arg("--").args(binary_args);
    }
    crate::shell::status(&mut command)
}

fn timed(step: impl FnOnce() -> Result<(), String>) -> Result<Duration, String> {
    let started = Instant::now();
    step().map(|()| started.elapsed())
}

fn summary(
    servers: Option<Duration>,
    versions: &[String],
    build: Duration,
    tests: Option<Duration>,
    book: Option<Duration>,
    packages: Option<Duration>,
) {
    let show = |duration: Option<Duration>| {
        duration.map_or_else(
            || "failed".to_owned(),
            |d| format!("{:.1}s", d.as_secs_f64()),
        )
    };
    eprintln!("\nxtask: timings");
    if let Some(servers) = servers {
        eprintln!(
            "  servers installed and ready  {} (in parallel with the build)",
            show(Some(servers))
        );
        for version in versions {
            eprintln!("    {version}");
        }
    }
    eprintln!("  build of the tests           {}", show(Some(build)));
    eprintln!("  tests                        {}", show(tests));
    eprintln!("  book                         {}", show(book));
    eprintln!("  cargo package, outside build {}", show(packages));
}
