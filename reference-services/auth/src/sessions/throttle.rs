//! [`Throttle`]: failed log-ins counted per account and per client address, failed
//! refreshes per address, in fixed windows; over a limit, the attempt is refused before
//! any password is checked.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::SessionStoreError;
use super::config::{Limit, ThrottleConfig};
use super::store::SessionStore;
use crate::domain::Email;

/// One counter and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counter {
    pub(crate) key: String,
    pub(crate) limit: Limit,
}

/// Which counters an attempt checks and, when it fails, adds to.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self { config }
    }

    /// The counter of the account `email` names: the SHA-256 of the normalised email
    /// (so no email is a key in the store), or of the trimmed, lower-cased text when it
    /// is not an email. Unknown emails are counted exactly as known ones.
    pub(crate) fn account(&self, email: &str) -> Counter {
        let normalised =
            Email::parse(email).map_or_else(|_| email.trim().to_lowercase(), Email::into_string);
        Counter {
            key: format!(
                "login:account:{}",
                URL_SAFE_NO_PAD.encode(Sha256::digest(normalised.as_bytes()))
            ),
            limit: self.config.per_account,
        }
    }

    /// The counter of log-ins from `address` (an IPv6 address by its /64; `unknown`
    /// when the server was not told).
    pub(crate) fn address(&self, address: Option<IpAddr>) -> Counter {
        Counter {
            key: format!("login:address:{}", address_text(address)),
            limit: self.config.per_address,
        }
    }

    /// The counter of refreshes from `address`.
    pub(crate) fn refresh_address(&self, address: Option<IpAddr>) -> Counter {
        Counter {
            key: format!("refresh:address:{}", address_text(address)),
            limit: self.config.refresh_per_address,
        }
    }
}

/// The counter's name for `address`: an IPv4 address (IPv4-mapped IPv6 included) as
/// itself, an IPv6 address by its /64, the smallest block one client usually holds.
fn address_text(address: Option<IpAddr>) -> String {
    match address.map(|address| address.to_canonical()) {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1_u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

/// Counts an attempt on each of `counters` before it runs (so that attempts made at once
/// cannot all pass a check made before any was counted), and answers how long to wait
/// when any is now over its limit. An attempt that then succeeds is taken back with
/// [`forgive`]; a refused one stays counted, which does not move the window's end.
///
/// # Errors
/// When the store fails.
pub(crate) async fn admit(
    store: &impl SessionStore,
    counters: &[&Counter],
    now: SystemTime,
) -> Result<Option<Duration>, SessionStoreError> {
    let mut wait = None;
    for counter in counters {
        let window = store
            .record_failure(&counter.key, counter.limit.window(), now)
            .await?;
        if window.failures > counter.limit.max_failures {
            wait = wait.max(Some(window.resets_in));
        }
    }
    Ok(wait)
}

/// Takes back the attempt [`admit`] counted on each of `counters`.
///
/// # Errors
/// When the store fails.
pub(crate) async fn forgive(
    store: &impl SessionStore,
    counters: &[&Counter],
) -> Result<(), SessionStoreError> {
    for counter in counters {
        store.forgive_failure(&counter.key).await?;
    }
    Ok(())
}

/// `Retry-After` seconds for `wait`: rounded up, at least 1.
pub(crate) fn retry_after_seconds(wait: Duration) -> u32 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(seconds.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_is_one_counter_however_the_email_is_written_and_never_in_clear() {
        let throttle = Throttle::new(ThrottleConfig::default());
        let one = throttle.account("  Ada@Example.com ");
        assert_eq!(one, throttle.account("ada@example.com"));
        assert!(!one.key.contains("ada"));
        assert_eq!(
            throttle.account("Not An Email"),
            throttle.account("not an email")
        );
        assert_ne!(one, throttle.account("bob@example.com"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(900)), 900);
    }

    #[test]
    fn addresses_are_counted_apart_and_log_in_apart_from_refresh() {
        let throttle = Throttle::new(ThrottleConfig::default());
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(throttle.address(here).key, "login:address:10.0.0.1");
        assert_eq!(throttle.address(None).key, "login:address:unknown");
        assert_ne!(
            throttle.address(here).key,
            throttle.refresh_address(here).key
        );
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(throttle.address(Some(mapped)).key, "login:address:10.0.0.1");
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(
            throttle.address(Some(one)).key,
            "login:address:2001:db8:1:2::/64"
        );
        assert_eq!(throttle.address(Some(one)), throttle.address(Some(other)));
    }
}
