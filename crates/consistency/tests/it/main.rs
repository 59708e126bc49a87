//! Integration tests of dovetail-consistency: one binary, a module per subject.

#![allow(clippy::unwrap_used, missing_docs)]

mod check;
mod drift;
mod needs_servers;
