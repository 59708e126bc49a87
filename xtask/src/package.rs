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

/// Builds and runs programs in a new cargo project outside the workspace that depends on
/// the packaged crates only: each `.crate` [`package`] made is unpacked, and the project
/// takes them from crates.io patched to those unpacked copies, so nothing of the
/// workspace (its paths, its features, its lints) leaks in. The programs: the
/// `events-embedded-bus` example (publish to the embedded bus, consume idempotently),
/// the outbox README's example (`xtask/outside-app/outbox.rs`), and the book's tutorial,
/// the `axum-sqlite-outbox` example (an axum service on the SQLite outbox, its relay and
/// a consumer: it runs its demo and fails unless the event was delivered).
pub(crate) fn outside() -> Result<(), String> {
    /// The tutorial's service, a binary of the project.
    const TUTORIAL: &str = "example-axum-sqlite-outbox";
    let root = paths::workspace_root();
    let packages = paths::target_dir().join("package");
    let outside = paths::target_dir().join("outside");
    let crates = outside.join("crates");
    let app = outside.join("app");
    let _ = std::fs::remove_dir_all(&outside);
    let failed = |what: &str, error: std::io::Error| format!("{what}: {error}");
    std::fs::create_dir_all(&crates).map_err(|e| failed("making target/outside", e))?;
    std::fs::create_dir_all(app.join(format!("src/bin/{TUTORIAL}")))
        .map_err(|e| failed("making the project", e))?;
    let version = env!("CARGO_PKG_VERSION");
    let mut patches = String::new();
    for name in PUBLISHED {
        let file = packages.join(format!("{name}-{version}.crate"));
        shell::status(
            Command::new("tar")
                .arg("-xzf")
                .arg(&file)
                .arg("-C")
                .arg(&crates),
        )?;
        patches.push_str(&format!(
            "{name} = {{ path = \"../crates/{name}-{version}\" }}\n"
        ));
    }
    let example = root.join("examples/events-embedded-bus/src");
    let tutorial = root.join("examples/axum-sqlite-outbox/src");
    for (from, to) in [
        (example.join("lib.rs"), app.join("src/lib.rs")),
        (example.join("main.rs"), app.join("src/main.rs")),
        (
            root.join("xtask/outside-app/outbox.rs"),
            app.join("src/bin/outbox.rs"),
        ),
        (
            tutorial.join("main.rs"),
            app.join(format!("src/bin/{TUTORIAL}/main.rs")),
        ),
        (
            tutorial.join("demo.rs"),
            app.join(format!("src/bin/{TUTORIAL}/demo.rs")),
        ),
    ] {
        std::fs::copy(&from, &to).map_err(|e| failed(&format!("copying {}", from.display()), e))?;
    }
    let manifest = format!(
        "[package]\n\
         name = \"example-events-embedded-bus\"\n\
         version = \"0.0.0\"\n\
         edition = \"2024\"\n\
         publish = false\n\n\
         # Not a member of the Dovetail workspace around it.\n\
         [workspace]\n\n\
         [dependencies]\n\
         dovetail-events = {{ version = \"{version}\", features = [\"sqlite\"] }}\n\
         dovetail-outbox = \"{version}\"\n\
         dovetail-http = \"{version}\"\n\
         anyhow = \"1\"\n\
         axum = \"0.8\"\n\
         reqwest = {{ version = \"0.12\", default-features = false, features = [\"json\"] }}\n\
         rusqlite = \"0.37\"\n\
         serde = {{ version = \"1\", features = [\"derive\"] }}\n\
         serde_json = \"1\"\n\
         tokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\", \"time\", \"signal\", \"net\"] }}\n\
         tower = {{ version = \"0.5\", features = [\"util\"] }}\n\
         uuid = {{ version = \"1\", features = [\"v4\", \"v7\"] }}\n\n\
         [patch.crates-io]\n{patches}"
    );
    std::fs::write(app.join("Cargo.toml"), manifest)
        .map_err(|e| failed("writing the manifest", e))?;
    // The workspace's lock file: the same versions of every shared dependency, so the
    // build reuses what the tests compiled (cargo drops what the project does not use).
    std::fs::copy(root.join("Cargo.lock"), app.join("Cargo.lock"))
        .map_err(|e| failed("copying Cargo.lock", e))?;
    let cargo = || Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for bin in ["example-events-embedded-bus", "outbox", TUTORIAL] {
        shell::status(
            cargo()
                .args(["run", "--quiet", "--bin", bin])
                // The workspace's target directory: the dependencies the tests compiled
                // are reused; the packaged crates build apart (another source).
                .env("CARGO_TARGET_DIR", paths::target_dir())
                .current_dir(&app),
        )?;
    }
    Ok(())
}
