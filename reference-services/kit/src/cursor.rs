//! [`Cursor`] and [`Page`]: opaque cursor pagination.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// Where the next page starts: an opaque token to the client, the last key of the
/// previous page to the service. Clients pass it back as `?cursor=`; they must not build
/// one.
///
/// ```
/// use dovetail_service_kit::Cursor;
///
/// let cursor = Cursor::after("pol-0042");
/// let token = cursor.token();
/// assert_eq!(Cursor::parse(&token)?.last_key(), "pol-0042");
/// assert!(Cursor::parse("not a cursor").is_err());
/// # Ok::<(), dovetail_service_kit::Problem>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    after: String,
}

impl Cursor {
    /// The cursor of the page after the one that ended at `last_key`.
    pub fn after(last_key: impl Into<String>) -> Self {
        Self {
            after: last_key.into(),
        }
    }

    /// The key the previous page ended at.
    pub fn last_key(&self) -> &str {
        &self.after
    }

    /// The token handed to clients.
    pub fn token(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a token handed out by [`token`](Self::token).
    ///
    /// # Errors
    /// A 400 [`Problem`] when the token is not one this service gave out.
    pub fn parse(token: &str) -> Result<Self, Problem> {
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "cursor {token:?} is not one this service gave out; pass the `next_cursor` \
                     of the previous page unchanged, or leave it out to start at the beginning"
                ))
            })
    }
}

/// One page of a list: its items and, when more follow, the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// The `cursor` of the next page, absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `fetched` items, of which the service asked for `limit + 1`: when all
    /// of them came back there is a next page, which starts after the last item kept.
    pub fn from_overfetch(mut fetched: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Self {
        let next_cursor = if fetched.len() > limit {
            fetched.truncate(limit);
            fetched.last().map(|last| Cursor::after(key(last)).token())
        } else {
            None
        };
        Self {
            items: fetched,
            next_cursor,
        }
    }
}
