//! The book's Rust code blocks as doc tests, so that the book cannot drift from the crates.
//!
//! Each page below is included as the documentation of an item, which makes rustdoc
//! compile every `rust` block on it (`cargo test -p dovetail-book --doc`) and run those
//! not marked `no_run` (the ones that need a server only compile). Lines starting with
//! `# ` are the scaffolding a reader does not need: mdBook hides them as rustdoc does.
//! Blocks marked `ignore` are signatures shown for reading, not examples. Pages whose
//! code is an example crate's (`{{#include ...}}`) are compiled with that crate instead.

#![allow(missing_docs)]

/// Declares one doc-tested item per book page, and [`PAGES`], the list of them.
macro_rules! pages {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(
            #[cfg(doctest)]
            #[doc = include_str!(concat!("../../src/", $path))]
            pub struct $name;
        )*
        /// The pages whose code blocks are doc tests, relative to `book/src`.
        pub const PAGES: &[&str] = &[$($path),*];
    };
}

pages! {
    BffOverview => "bff/overview.md",
    ConsistencyRunner => "consistency/runner.md",
    EventsConsumers => "events/consumers.md",
    EventsEmbeddedBus => "events/embedded-bus.md",
    EventsEnvelope => "events/envelope.md",
    EventsTransport => "events/transport.md",
    HttpIdentity => "http/identity.md",
    OutboxDynamoDb => "outbox/dynamodb.md",
    OutboxRelay => "outbox/relay.md",
    OutboxSqlite => "outbox/sqlite.md",
    OutboxStreams => "outbox/streams.md",
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every page of the book, relative to `book/src`.
    fn pages(dir: &Path, root: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pages(&path, root, found);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                found.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }

    #[test]
    fn every_page_with_rust_examples_is_doc_tested() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
        let mut found = Vec::new();
        pages(&root, &root, &mut found);
        let mut untested = Vec::new();
        for page in found {
            let text = std::fs::read_to_string(root.join(&page)).unwrap();
            let name = page.to_string_lossy().replace('\\', "/");
            // A fenced block tagged `rust` that is not only a signature to read
            // (`ignore`); pages drawing their code from an example crate include it.
            let has_examples = text
                .lines()
                .any(|line| line.trim_start().starts_with("```rust") && !line.contains("ignore"));
            let includes = text.contains("{{#include");
            if has_examples && !includes && !super::PAGES.contains(&name.as_str()) {
                untested.push(name);
            }
        }
        assert!(
            untested.is_empty(),
            "these pages have Rust examples that no doc test compiles: {untested:?}; \
             add them to `pages!` in book/doctests/src/lib.rs"
        );
    }

    /// Each "Proved by" line of the guarantee pages: `- `file` — `test`: how`.
    #[test]
    fn every_test_the_guarantee_pages_name_exists() {
        let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/guarantees");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut named = 0;
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&book).unwrap() {
            let page = entry.unwrap().path();
            let text = std::fs::read_to_string(&page).unwrap();
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("- `") else {
                    continue;
                };
                let Some((file, rest)) = rest.split_once("` — `") else {
                    continue;
                };
                let Some((test, _)) = rest.split_once('`') else {
                    continue;
                };
                named += 1;
                let source = std::fs::read_to_string(workspace.join(file)).unwrap_or_default();
                if !source.contains(&format!("fn {test}("))
                    && !source.contains(&format!("fn {test}<"))
                {
                    missing.push(format!("{}: {file} — {test}", page.display()));
                }
            }
        }
        assert!(
            named > 100,
            "only {named} tests named: has the line format changed?"
        );
        assert!(
            missing.is_empty(),
            "the guarantee pages name tests that do not exist:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn every_listed_page_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
        for page in super::PAGES {
            assert!(
                root.join(page).is_file(),
                "book/src/{page} is listed but missing"
            );
        }
    }
}
