//! Benchmark of what a log-in costs (not a timed test): checking a password against its
//! argon2id hash with the default parameters (OWASP's minimum: m=19456 KiB, t=2, p=1),
//! against the check an unknown email gets (the dummy hash), in the same run; and what a
//! registration's hash costs.
//!
//! Run with: `cargo bench -p dovetail-auth --bench login`. The three interleave, the order
//! rotating each round; prints each median, the ratio unknown / known of the medians and
//! the median of the per-round ratios, which should be 1.0 within noise: the time of a log-in must not tell whether the email exists.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use dovetail_auth::domain::Password;
use dovetail_auth::hashing::{HashingConfig, PasswordHasher};

const ROUNDS: usize = 31;
const PASSWORD: &str = "correct horse battery staple";

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let config = HashingConfig::default();
    let hasher = PasswordHasher::new(&config).await.unwrap();
    let stored = hasher
        .hash(Password::parse(PASSWORD.to_owned()).unwrap())
        .await
        .unwrap();
    let (mut known, mut unknown, mut hashing) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for step in 0..3 {
            let started = Instant::now();
            match (round + step) % 3 {
                0 => {
                    let ok = hasher
                        .verify(PASSWORD.to_owned(), Some(stored.clone()))
                        .await
                        .unwrap();
                    assert!(ok);
                    known.push(started.elapsed());
                }
                1 => {
                    let ok = hasher.verify(PASSWORD.to_owned(), None).await.unwrap();
                    assert!(!ok);
                    unknown.push(started.elapsed());
                }
                _ => {
                    let password = Password::parse(PASSWORD.to_owned()).unwrap();
                    hasher.hash(password).await.unwrap();
                    hashing.push(started.elapsed());
                }
            }
        }
    }
    let mut paired: Vec<f64> = known
        .iter()
        .zip(&unknown)
        .map(|(known, unknown)| unknown.as_secs_f64() / known.as_secs_f64())
        .collect();
    paired.sort_by(f64::total_cmp);
    let paired = paired[paired.len() / 2];
    let (known, unknown, hashing) = (median(known), median(unknown), median(hashing));
    println!(
        "argon2id m={} KiB t={} p={}, {ROUNDS} rounds, medians:",
        config.memory_kib, config.iterations, config.parallelism
    );
    println!("  log-in, known email (verify):        {known:>10.2?}");
    println!("  log-in, unknown email (dummy hash):  {unknown:>10.2?}");
    println!(
        "  ratio unknown / known                {:>10.2}, paired by round {paired:.2} (target: 1.0 within noise)",
        unknown.as_secs_f64() / known.as_secs_f64()
    );
    println!("  registration (hash):                 {hashing:>10.2?}");
}
