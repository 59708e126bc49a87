//! Builds the mdBook in `book/` with the pinned mdBook from the tools venv.

use std::process::Command;

use crate::{paths, python_tools, shell};

/// `mdbook build book` into `book/build`.
pub(crate) fn build() -> Result<(), String> {
    python_tools::install()?;
    let book = paths::workspace_root().join("book");
    shell::status(
        Command::new(python_tools::bin_dir().join("mdbook"))
            .arg("build")
            .arg(&book),
    )
}
