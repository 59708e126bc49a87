//! [`ClientAddress`]: the address a request came from, for throttling. The TCP peer the
//! server saw (axum's `ConnectInfo`), unless that peer is one of the configured
//! [`TrustedProxy`]s (`http.trusted_proxies`): then the rightmost `X-Forwarded-For` entry
//! that is not itself a trusted proxy. None when the router is called without a socket.
//!
//! # Why the rightmost
//!
//! Every proxy appends the address it received the request from, so the entries a client
//! cannot forge are those written by trusted proxies, read from the right. Reading from
//! the left (the "first" address) would let any client pick its address, and so its own
//! throttling bucket, by sending `X-Forwarded-For: <anything>` to the gateway.
//!
//! - A peer that is not trusted is the client: its `X-Forwarded-For` is ignored.
//! - From a trusted peer, entries are read from the right: trusted proxies are skipped,
//!   the first other address is the client. When every entry is a trusted proxy, the
//!   leftmost is (the request began inside the trusted network).
//! - An entry that cannot be read before the client is found (garbage, `unknown`, an
//!   empty entry) makes the header unusable: the client is the peer (logged at debug).
//!   Garbage *left* of the client is the client's own doing and is never read, so a client
//!   cannot push its attempts onto the proxy's bucket (and lock everyone behind it out).
//! - No `X-Forwarded-For` from a trusted peer: the peer.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4
//! peers) are read as their IPv4 address, for matching and as the client.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// The client's IP address, if the server recorded a peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientAddress(pub(super) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self(None));
        };
        let trusted = parts
            .extensions
            .get::<TrustedProxies>()
            .map_or(&[][..], |trusted| &trusted.0[..]);
        Ok(Self(Some(client_address(
            peer.ip(),
            &parts.headers,
            trusted,
        ))))
    }
}

/// The configured proxies, as the router hands them to [`ClientAddress`] (a request
/// extension).
#[derive(Debug, Clone, Default)]
pub(super) struct TrustedProxies(pub(super) Arc<[TrustedProxy]>);

/// A proxy whose `X-Forwarded-For` the service believes: one IP address (`10.0.0.7`,
/// `2001:db8::7`) or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`). Configured as a string
/// in `http.trusted_proxies`.
///
/// ```
/// use dovetail_auth::config::TrustedProxy;
///
/// let block: TrustedProxy = "10.0.0.0/8".parse().unwrap();
/// assert!(block.contains("10.1.2.3".parse().unwrap()));
/// assert!(!block.contains("11.0.0.1".parse().unwrap()));
/// let one: TrustedProxy = "2001:db8::7".parse().unwrap();
/// assert!(one.contains("2001:db8::7".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<TrustedProxy>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// Whether `address` is this proxy, or inside this block (an IPv4-mapped IPv6
    /// address as its IPv4 one).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                masked(u128::from(network.to_bits()), 32, self.prefix)
                    == masked(u128::from(address.to_bits()), 32, self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                masked(network.to_bits(), 128, self.prefix)
                    == masked(address.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The `prefix` leading bits of the `width`-bit number `bits`.
fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    match width - prefix {
        0 => bits,
        shift if shift >= 128 => 0,
        shift => bits >> shift,
    }
}

/// Why a `http.trusted_proxies` entry cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a trusted proxy: use an IP address (10.0.0.7, 2001:db8::7) or a CIDR block \
     (10.0.0.0/8, 2001:db8::/32)"
)]
pub struct TrustedProxyError(String);

impl FromStr for TrustedProxy {
    type Err = TrustedProxyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || TrustedProxyError(text.to_owned());
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let written = address.parse::<IpAddr>().map_err(|_| wrong())?;
        let width = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            // `u8::from_str` takes a leading `+`; a prefix is digits only.
            Some(prefix) if prefix.bytes().all(|byte| byte.is_ascii_digit()) => {
                prefix.parse::<u8>().map_err(|_| wrong())?
            }
            Some(_) => return Err(wrong()),
            None => width,
        };
        if prefix > width {
            return Err(wrong());
        }
        // An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4 block it maps.
        let network = written.to_canonical();
        let prefix = match (written, network) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96).ok_or_else(wrong)?,
            _ => prefix,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for TrustedProxy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The client of a request from `peer` with `headers`, believing the `X-Forwarded-For`
/// of `trusted` peers only (see the module's documentation for the rules).
pub(super) fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[TrustedProxy],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |address: IpAddr| trusted.iter().any(|proxy| proxy.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let mut forwarded = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            tracing::debug!(%peer, "X-Forwarded-For is not ASCII; the client is the peer");
            return peer;
        };
        forwarded.push(value);
    }
    if forwarded.is_empty() {
        return peer;
    }
    // Several fields are one list, in order (RFC 9110 §5.3).
    let joined = forwarded.join(",");
    match rightmost_untrusted(&joined, is_trusted) {
        Ok(client) => client,
        Err(entry) => {
            tracing::debug!(
                %peer,
                entry,
                "X-Forwarded-For holds an entry that is not an address; the client is the peer"
            );
            peer
        }
    }
}

/// The rightmost entry of the `X-Forwarded-For` list `list` that `is_trusted` does not
/// hold, or the leftmost when it holds them all; `Err` with the first entry, from the
/// right, that is not an address.
fn rightmost_untrusted(list: &str, is_trusted: impl Fn(IpAddr) -> bool) -> Result<IpAddr, &str> {
    let mut leftmost = None;
    for entry in list.rsplit(',') {
        let address = forwarded_address(entry).ok_or(entry.trim())?;
        if !is_trusted(address) {
            return Ok(address);
        }
        leftmost = Some(address);
    }
    // `rsplit` yields at least one entry, and an empty one is an error above.
    leftmost.ok_or(list)
}

/// One `X-Forwarded-For` entry as an address: `203.0.113.7`, `2001:db8::1`, or either
/// with a port as some proxies write it (`203.0.113.7:4711`, `[2001:db8::1]:4711`),
/// spaces around it allowed.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    const GATEWAY: &str = "10.0.0.5";

    /// The client of a request from the gateway (trusted, with `10.1.0.0/16`) carrying
    /// `values`.
    fn via_gateway(values: &[&str]) -> IpAddr {
        client_address(
            ip(GATEWAY),
            &forwarded(values),
            &proxies(&[GATEWAY, "10.1.0.0/16", "fd00::/8"]),
        )
    }

    #[test]
    fn proxies_are_addresses_or_blocks_of_either_family() {
        let block: TrustedProxy = "10.0.0.0/8".parse().unwrap();
        assert!(block.contains(ip("10.255.0.1")));
        assert!(!block.contains(ip("11.0.0.0")));
        assert!(
            !block.contains(ip("::a00:1")),
            "an IPv6 address is not in it"
        );
        assert!(block.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        let one: TrustedProxy = " 192.0.2.1 ".parse().unwrap();
        assert!(one.contains(ip("192.0.2.1")));
        assert!(!one.contains(ip("192.0.2.2")));
        let everything: TrustedProxy = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("203.0.113.9")));
        let v6: TrustedProxy = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all_v6: TrustedProxy = "::/0".parse().unwrap();
        assert!(all_v6.contains(ip("2001:db8::1")));
        assert!(!all_v6.contains(ip("10.0.0.1")));
        let mapped: TrustedProxy = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8", "the IPv4 block it maps");
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!("::ffff:10.0.0.0/95".parse::<TrustedProxy>().is_err());
        // The host bits of a block do not matter.
        let loose: TrustedProxy = "10.1.2.3/16".parse().unwrap();
        assert!(loose.contains(ip("10.1.200.1")));
    }

    #[test]
    fn a_proxy_that_is_not_an_address_or_block_is_refused_saying_what_to_write() {
        for text in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "2001:db8::/129",
            "10.0.0",
            "localhost",
            "10.0.0.1:80",
            "*",
        ] {
            let error = text.parse::<TrustedProxy>().unwrap_err();
            assert!(
                error.to_string().contains("CIDR block (10.0.0.0/8"),
                "{text:?}: {error}"
            );
        }
        let error = "10.0.0.0/33".parse::<TrustedProxy>().unwrap_err();
        assert!(error.to_string().starts_with("\"10.0.0.0/33\""), "{error}");
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies(&[GATEWAY]);
        for values in [
            &[][..],
            &["203.0.113.7"],
            &["203.0.113.7, 10.0.0.5"],
            &["garbage"],
        ] {
            let client = client_address(ip("198.51.100.1"), &forwarded(values), &trusted);
            assert_eq!(client, ip("198.51.100.1"), "{values:?}");
        }
        // Nothing trusted (the default): always the peer.
        let client = client_address(ip(GATEWAY), &forwarded(&["203.0.113.7"]), &[]);
        assert_eq!(client, ip(GATEWAY));
    }

    #[test]
    fn a_trusted_peer_forwards_the_rightmost_address_that_is_no_proxy() {
        assert_eq!(via_gateway(&["203.0.113.7"]), ip("203.0.113.7"));
        // The client's own claim on the left is not believed.
        assert_eq!(via_gateway(&["1.2.3.4, 203.0.113.7"]), ip("203.0.113.7"));
        // Trusted proxies on the way are skipped.
        assert_eq!(
            via_gateway(&["1.2.3.4, 203.0.113.7, 10.1.4.4, 10.0.0.5"]),
            ip("203.0.113.7")
        );
        // Spaces, tabs or none around the commas.
        assert_eq!(
            via_gateway(&["1.2.3.4,203.0.113.7 ,\t10.1.4.4"]),
            ip("203.0.113.7")
        );
        // Several fields are one list.
        assert_eq!(
            via_gateway(&["1.2.3.4", "203.0.113.7", "10.1.4.4"]),
            ip("203.0.113.7")
        );
        // Every entry a proxy: the leftmost.
        assert_eq!(via_gateway(&["10.1.0.9, 10.1.4.4"]), ip("10.1.0.9"));
        // No header: the gateway itself.
        assert_eq!(via_gateway(&[]), ip(GATEWAY));
    }

    #[test]
    fn ipv6_and_ports_are_read() {
        assert_eq!(via_gateway(&["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(via_gateway(&[" 2001:db8::1 , fd00::7 "]), ip("2001:db8::1"));
        assert_eq!(via_gateway(&["[2001:db8::1]:4711"]), ip("2001:db8::1"));
        assert_eq!(via_gateway(&["203.0.113.7:4711"]), ip("203.0.113.7"));
        assert_eq!(via_gateway(&["::ffff:203.0.113.7"]), ip("203.0.113.7"));
        // A dual-stack socket's IPv4-mapped peer is trusted as its IPv4 address.
        let client = client_address(
            ip("::ffff:10.0.0.5"),
            &forwarded(&["2001:db8::1"]),
            &proxies(&[GATEWAY]),
        );
        assert_eq!(client, ip("2001:db8::1"));
    }

    #[test]
    fn garbage_where_the_client_should_be_falls_back_to_the_peer() {
        for values in [
            &["garbage"][..],
            &["unknown"],
            &[""],
            &["   "],
            &[","],
            &["203.0.113.7,"],
            &["203.0.113.7, , 10.1.4.4"],
            &["203.0.113.7 10.1.4.4"],
            &["203.0.113.7;10.1.4.4"],
            &["[2001:db8::1]"],
            &["203.0.113.7/32"],
            &["203.0.113.7", "nonsense"],
            &["_hidden"],
        ] {
            assert_eq!(via_gateway(values), ip(GATEWAY), "{values:?}");
        }
        // Bytes that are not ASCII.
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.7\xff").unwrap(),
        );
        assert_eq!(
            client_address(ip(GATEWAY), &headers, &proxies(&[GATEWAY])),
            ip(GATEWAY)
        );
    }

    #[test]
    fn garbage_left_of_the_client_is_never_read() {
        // Else a client would push its attempts onto the gateway's address.
        assert_eq!(via_gateway(&["garbage, 203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            via_gateway(&[", unknown, 203.0.113.7, 10.1.4.4"]),
            ip("203.0.113.7")
        );
    }
}
