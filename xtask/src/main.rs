//! `cargo xtask`: the project's automation — tests against real servers, lints, the book.
//!
//! Run `cargo xtask help` for the commands. Everything a fresh machine lacks (the AWS
//! emulator, Redis, an OpenSearch node, mdBook, promtool) is installed by these commands, under
//! `target/` or through the system package manager, never by hand.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod book;
mod package;
mod paths;
mod process;
mod promtool;
mod public_api;
mod python_tools;
mod servers;
mod shell;
mod test;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

Commands:
  test [--no-servers] [-- <args for the test binaries>]
        Installs and starts the real servers on loopback (AWS emulator for DynamoDB,
        DynamoDB Streams, SNS and SQS; Redis; OpenSearch) and promtool (for the alert
        rules), runs every test of the workspace against them, builds the book, and
        stops the servers on exit.
        --no-servers runs only the tests that need no server.
  servers
        Starts the same servers, prints the environment to export so that a plain
        `cargo test` in another shell uses them, and waits for Ctrl-C.
  lint  cargo fmt --check, clippy with every feature, the published crates' docs,
        warnings denied, and their public API against the checked-in listings.
  api [--bless]
        Lists the published crates' public API (cargo-public-api on a pinned nightly,
        both installed on first use) and compares it with crates/<crate>/public-api.txt;
        --bless rewrites the listings.
  book  Builds the mdBook into book/build.
  package
        Packages and verifies every published crate, then builds and runs programs in a
        new project outside the workspace that uses only the packaged crates (part of
        `test`).
  bench Runs every benchmark (bench targets, release mode); each prints its figures.
  stack [--aws [--aws-prefix <prefix>]] [--redis <url>] [--opensearch <url>] [--data-dir <dir>] | stack demo | stack check
        Runs the local stack: every reference service on fixed ports (policy 8081,
        claim 8082, search 8083, auth 8084) on embedded backends under ./data; --aws moves
        every service to DynamoDB and SNS/SQS at AWS_ENDPOINT_URL (see `cargo xtask
        servers`) or real AWS, --redis the auth service's sessions to Redis. The first
        start prints a staff user's and a demo customer's passwords once and keeps them
        in data/credentials.json. `stack demo` walks through the system against the
        running stack (or a temporary one), logging in with those credentials. `stack
        check` asks the running stack's consistency runner (port 8085) for a run as the
        staff user and prints what it found and repaired.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "test" => test::run(rest),
        "servers" => servers::run_until_interrupted(),
        "lint" => lint(),
        "api" => public_api::check(rest.iter().any(|arg| arg == "--bless")),
        "book" => book::build(),
        "bench" => shell::cargo(&["bench", "--workspace", "--all-features", "--benches"]),
        "stack" => stack(rest),
        "package" => package::package().and_then(|()| package::outside()),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn lint() -> Result<(), String> {
    shell::cargo(&["fmt", "--all", "--check"])?;
    shell::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ])?;
    docs()?;
    public_api::check(false)
}

/// The published crates' docs, every feature on, with rustdoc's warnings (broken links,
/// missing docs) denied: what docs.rs will show.
fn docs() -> Result<(), String> {
    let mut command =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(["doc", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(paths::workspace_root());
    for name in package::PUBLISHED {
        command.args(["-p", name]);
    }
    shell::status(&mut command)
}

/// Runs the stack binary (built on first use) with `args`.
fn stack(args: &[String]) -> Result<(), String> {
    let mut command = vec!["run", "--quiet", "--package", "dovetail-stack", "--"];
    command.extend(args.iter().map(String::as_str));
    shell::cargo(&command)
}
