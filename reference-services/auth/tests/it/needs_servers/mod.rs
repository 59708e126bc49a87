//! Tests that run against the real servers started by `cargo xtask test`.

mod sessions_redis;
