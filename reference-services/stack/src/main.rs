//! `dovetail-stack`: runs the reference services (`run`, the default) or walks through
//! them (`demo`).
//!
//! ```text
//! dovetail-stack [run] [--aws [--aws-prefix <prefix>]] [--redis <url>] [--opensearch <url>] [--data-dir <dir>]
//! dovetail-stack demo [--credentials <file>] [--gateway-url <url>]
//! dovetail-stack check [--credentials <file>] [--gateway-url <url>] [--consistency-url <url>]
//! ```

// A command-line program: its output is what it prints.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use dovetail_service_kit::{Shutdown, cli, shutdown_on_signal};
use dovetail_stack::demo::Services;
use dovetail_stack::users::{CUSTOMER_PASSWORD_VAR, Credentials, STAFF_PASSWORD_VAR, Seeding};
use dovetail_stack::{Backends, StackConfig};

const USAGE: &str = "usage:
  dovetail-stack [run] [--aws [--aws-prefix <prefix>]] [--redis <url>] [--opensearch <url>] [--data-dir <dir>]
      every reference service on fixed ports (gateway 8080, policy 8081, claim 8082, search
      8083, auth 8084, consistency runner 8085),
      embedded backends under ./data; --aws moves every service to DynamoDB and SNS/SQS at
      AWS_ENDPOINT_URL (or real AWS), creating what is missing, each table, topic and
      queue named after <prefix> (default dovetail-, so that stacks can share an account
      under prefixes of their own); --redis keeps the auth
      service's sessions and throttling counters in Redis at <url> (such as
      redis://127.0.0.1:6379); --opensearch moves the search index to the OpenSearch node at
      <url> (such as http://127.0.0.1:9200). The first start makes a staff user and a demo
      customer (passwords from DOVETAIL_STACK_STAFF_PASSWORD and
      DOVETAIL_STACK_CUSTOMER_PASSWORD, or generated), prints them once and keeps them in
      <data-dir>/credentials.json (mode 0600)
  dovetail-stack demo [--credentials <file>] [--gateway-url <url>]
      walks through the system through the gateway of a running stack (default
      http://127.0.0.1:8080), logging in with the credentials in <file> (default
      data/credentials.json), or starts one in a temporary directory when none answers (and
      then also stops its search service at the end to show a partial answer)
  dovetail-stack check [--credentials <file>] [--gateway-url <url>] [--consistency-url <url>]
      asks the running stack's consistency runner (default http://127.0.0.1:8085) for a run
      as the staff user (logging in through the gateway, default http://127.0.0.1:8080),
      follows it and prints what each check found and repaired; exits non-zero when the run
      failed";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The demo's output is the walk-through; the services' logs would drown it.
    cli::init_tracing(if args.first().map(String::as_str) == Some("demo") {
        "warn"
    } else {
        "info"
    });
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]).await,
        Some("check") => check(&args[1..]).await,
        Some("run") => run(&args[1..]).await,
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => run(&args).await,
    }
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut config = StackConfig::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--aws" => config.backends = Backends::Aws,
            "--redis" => {
                config.redis_url = Some(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--redis needs the server's URL\n{USAGE}"))?
                        .clone(),
                );
            }
            "--opensearch" => {
                config.opensearch_url = Some(
                    args.next()
                        .ok_or_else(|| {
                            anyhow::anyhow!("--opensearch needs the node's URL\n{USAGE}")
                        })?
                        .clone(),
                );
            }
            "--aws-prefix" => {
                config.aws_name_prefix = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--aws-prefix needs a prefix\n{USAGE}"))?
                    .clone();
            }
            "--data-dir" => {
                config.data_dir = PathBuf::from(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--data-dir needs a directory\n{USAGE}"))?,
                );
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let shutdown = Shutdown::new();
    shutdown_on_signal(shutdown.clone());
    let stack = dovetail_stack::start(&config, shutdown).await?;
    let backends = match config.backends {
        Backends::Embedded => format!("embedded backends under {}/", config.data_dir.display()),
        Backends::Aws => format!(
            "DynamoDB and SNS/SQS at {}",
            std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".to_owned())
        ),
    };
    println!("Dovetail stack running on {backends}:");
    println!(
        "  gateway         http://{}  (the front door: /auth /policies /claims /search /views; API: /openapi.json)",
        stack.gateway
    );
    println!(
        "  policy service  http://{}  (API: /openapi.json)",
        stack.policy
    );
    println!(
        "  claim service   http://{}  (API: /openapi.json)",
        stack.claim
    );
    let index = config.opensearch_url.as_ref().map_or_else(
        || format!("tantivy in {}/search", config.data_dir.display()),
        |url| format!("OpenSearch at {url}, alias {}", config.search_alias),
    );
    println!(
        "  search service  http://{}  (API: /openapi.json; index: {index})",
        stack.search
    );
    let sessions = config.redis_url.as_ref().map_or_else(
        || format!("sessions in {}/auth-sessions.db", config.data_dir.display()),
        |_| "sessions in Redis".to_owned(),
    );
    println!(
        "  auth service    http://{}  (API: /openapi.json; {sessions})",
        stack.auth
    );
    println!(
        "  consistency     http://{}  (staff: POST /admin/consistency/runs; runs in {}/consistency.db)",
        stack.consistency,
        config.data_dir.display()
    );
    print_users(&stack.users, &config);
    println!("Try the walk-through in another terminal: cargo xtask stack demo");
    println!("Check the replicas against their owners: cargo xtask stack check");
    println!("Ctrl-C stops every service after draining requests, consumers and relays.");
    stack.wait().await
}

/// Says how to log in: the passwords when this start made the users (the only time they
/// are printed), where they are kept otherwise.
fn print_users(users: &Seeding, config: &StackConfig) {
    let file = Credentials::path_in(&config.data_dir);
    match users {
        Seeding::Created(credentials) => {
            println!(
                "Made the stack's users (passwords from {STAFF_PASSWORD_VAR} and \
                 {CUSTOMER_PASSWORD_VAR}, or generated; printed this once, kept in {}, mode 0600):",
                file.display()
            );
            for (who, login) in [
                ("staff", &credentials.staff),
                ("demo customer", &credentials.customer),
            ] {
                println!("  {who:<14} {}  password {}", login.email, login.password);
            }
        }
        Seeding::Existing(credentials) => println!(
            "Users: staff {} and demo customer {}; their passwords are in {}",
            credentials.staff.email,
            credentials.customer.email,
            file.display()
        ),
        Seeding::Elsewhere => println!(
            "Users: the staff user and demo customer exist already, made by a stack with another \
             data directory; their passwords are in that directory's credentials.json"
        ),
    }
}

async fn check(args: &[String]) -> anyhow::Result<()> {
    let mut endpoints = dovetail_stack::check::Endpoints::local();
    let mut credentials_file = Credentials::path_in(&StackConfig::default().data_dir);
    let mut args = args.iter();
    let value = || anyhow::anyhow!("a value is missing\n{USAGE}");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--credentials" => credentials_file = PathBuf::from(args.next().ok_or_else(value)?),
            "--gateway-url" => endpoints.gateway.clone_from(args.next().ok_or_else(value)?),
            "--consistency-url" => endpoints
                .consistency
                .clone_from(args.next().ok_or_else(value)?),
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let credentials = Credentials::read(&credentials_file)?;
    let run = dovetail_stack::check::run(&endpoints, &credentials, &mut std::io::stdout()).await?;
    if run.status != dovetail_consistency::RunStatus::Succeeded {
        anyhow::bail!("the run failed: {}", run.error.unwrap_or_default());
    }
    Ok(())
}

async fn demo(args: &[String]) -> anyhow::Result<()> {
    let mut services = Services::local();
    let mut credentials_file = Credentials::path_in(&StackConfig::default().data_dir);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = || anyhow::anyhow!("{arg} needs a value\n{USAGE}");
        match arg.as_str() {
            "--credentials" => credentials_file = PathBuf::from(args.next().ok_or_else(value)?),
            "--gateway-url" => services.gateway = args.next().ok_or_else(value)?.clone(),
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if reqwest::get(format!("{}/healthz", services.gateway))
        .await
        .is_ok()
    {
        let credentials = Credentials::read(&credentials_file)?;
        dovetail_stack::demo::run(&services, &credentials, &mut std::io::stdout(), None).await?;
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("dovetail-demo-{}", std::process::id()));
    println!(
        "No stack answers at {}; starting one in {} for the demo.\n",
        services.gateway,
        dir.display()
    );
    let config = StackConfig::on_free_ports(dir.clone());
    let mut stack = dovetail_stack::start(&config, Shutdown::new()).await?;
    let credentials = stack
        .users
        .credentials()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the demo's fresh stack has no credentials"))?;
    let services = Services::of(&stack);
    let result = dovetail_stack::demo::run(
        &services,
        &credentials,
        &mut std::io::stdout(),
        Some(&mut stack),
    )
    .await;
    stack.stop().await?;
    let _ = std::fs::remove_dir_all(dir);
    result.map(|_| ())
}
