//! [`Sessions`]: log-in with throttling and a new family, refresh with rotation and
//! reuse detection, log-out, and revoking a user's sessions, over the [`Accounts`] and a
//! [`SessionStore`].

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::any::AnySessionStore;
use super::config::SessionsConfig;
use super::store::{FamilyInfo, NewFamily, Rotation, SessionStore};
use super::throttle::{self, Throttle};
use super::token::RefreshToken;
use super::{SessionError, SessionStoreError};
use crate::accounts::{AccountError, Accounts};
use crate::tokens::AccessToken;

/// What a log-in or a refresh answers: an access token and the family's next refresh
/// token. Its `Debug` shows neither.
#[derive(Clone, Serialize)]
pub struct SessionTokens {
    /// The access token, its type and lifetime.
    #[serde(flatten)]
    pub access: AccessToken,
    /// The refresh token to present next time (once).
    #[serde(serialize_with = "expose")]
    pub refresh_token: RefreshToken,
    /// Seconds until the refresh token expires unused (or with its family).
    pub refresh_expires_in: u64,
}

fn expose<S: serde::Serializer>(token: &RefreshToken, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(token.expose())
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("access", &self.access)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish_non_exhaustive()
    }
}

/// The session operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: AnySessionStore,
    accounts: Accounts,
    throttle: Throttle,
    refresh_ttl: Duration,
    family_ttl: Duration,
}

impl Sessions {
    /// Sessions of `accounts`' users in `store`, as `config` says.
    pub fn new(store: AnySessionStore, accounts: Accounts, config: &SessionsConfig) -> Self {
        Self {
            store,
            accounts,
            throttle: Throttle::new(config.throttle.clone()),
            refresh_ttl: config.refresh_ttl(),
            family_ttl: config.family_ttl(),
        }
    }

    /// The store (for readiness checks and tests).
    pub fn store(&self) -> &AnySessionStore {
        &self.store
    }

    /// The account operations.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Logs in from `client`. The attempt is counted on the account and the address
    /// first, atomically, and refused with [`SessionError::Throttled`] before the
    /// password is checked when either is then over its limit; a success clears the
    /// account's count, takes the attempt back from the address and starts a family.
    ///
    /// # Errors
    /// [`SessionError::Throttled`], [`SessionError::Account`] (the one 401 for unknown
    /// email, wrong password, disabled user), [`SessionError::Store`],
    /// [`SessionError::Random`].
    pub async fn log_in(
        &self,
        email: &str,
        password: String,
        client: Option<IpAddr>,
    ) -> Result<SessionTokens, SessionError> {
        let now = SystemTime::now();
        let account = self.throttle.account(email);
        let address = self.throttle.address(client);
        let counters = [&account, &address];
        if let Some(wait) = throttle::admit(&self.store, &counters, now).await? {
            return Err(SessionError::Throttled { retry_after: wait });
        }
        let authenticated = match self.accounts.authenticate(email, password).await {
            Ok(authenticated) => authenticated,
            Err(AccountError::InvalidCredentials) => {
                return Err(AccountError::InvalidCredentials.into());
            }
            Err(other) => {
                throttle::forgive(&self.store, &counters).await?;
                return Err(other.into());
            }
        };
        self.store.clear_failures(&account.key).await?;
        throttle::forgive(&self.store, &[&address]).await?;
        let refresh = RefreshToken::generate().map_err(|_| SessionError::Random)?;
        let family_id = format!("fam-{}", uuid::Uuid::new_v4().simple());
        self.store
            .start(NewFamily {
                family_id,
                user_id: authenticated.user.id().to_owned(),
                credential: authenticated.credential,
                first: refresh.digest(),
                token_expires: now + self.refresh_ttl,
                family_expires: now + self.family_ttl,
            })
            .await?;
        tracing::info!(user_id = authenticated.user.id(), "logged in");
        Ok(self.tokens(&authenticated.user, refresh, now + self.family_ttl, now))
    }

    /// Exchanges `presented` for a new access token and the family's next refresh
    /// token. A token used before revokes its whole family; so does a refresh for a
    /// user who is disabled, gone, or has changed their password since the log-in.
    ///
    /// # Errors
    /// [`SessionError::InvalidRefreshToken`] (unknown, malformed or expired),
    /// [`SessionError::Revoked`], [`SessionError::Throttled`] (too many failed refreshes
    /// from `client`), [`SessionError::Store`], [`SessionError::Account`],
    /// [`SessionError::Random`].
    pub async fn refresh(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<SessionTokens, SessionError> {
        let now = SystemTime::now();
        let address = self.throttle.refresh_address(client);
        if let Some(wait) = throttle::admit(&self.store, &[&address], now).await? {
            return Err(SessionError::Throttled { retry_after: wait });
        }
        let outcome = self.rotate(presented, now).await;
        if !matches!(
            outcome,
            Err(SessionError::InvalidRefreshToken | SessionError::Revoked)
        ) && let Err(error) = throttle::forgive(&self.store, &[&address]).await
        {
            // The rotation happened: its answer must reach the client, or the next
            // refresh would be taken for a reuse.
            let error = anyhow::Error::from(error);
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot take back a counted refresh"
            );
        }
        outcome
    }

    async fn rotate(
        &self,
        presented: &str,
        now: SystemTime,
    ) -> Result<SessionTokens, SessionError> {
        let presented = RefreshToken::parse(presented).ok_or(SessionError::InvalidRefreshToken)?;
        // The user is read before the token is used up, so that a failing user store
        // answers 503 and the client can retry with the same token.
        let Some(known) = self.store.family_of(presented.digest()).await? else {
            return Err(SessionError::InvalidRefreshToken);
        };
        let current = self.accounts.session_user(&known.user_id).await?;
        let next = RefreshToken::generate().map_err(|_| SessionError::Random)?;
        let rotation = self
            .store
            .rotate(
                presented.digest(),
                next.digest(),
                now + self.refresh_ttl,
                now,
            )
            .await?;
        let family = match rotation {
            Rotation::Rotated(family) => family,
            Rotation::Reused(family) => {
                tracing::warn!(
                    user_id = family.user_id,
                    family_id = family.family_id,
                    "a used refresh token was presented again; its family is revoked"
                );
                return Err(SessionError::Revoked);
            }
            Rotation::Revoked => return Err(SessionError::Revoked),
            Rotation::Expired | Rotation::Unknown => return Err(SessionError::InvalidRefreshToken),
        };
        let Some(current) = current.filter(|current| current.user.id() == family.user_id) else {
            return self.refuse(&family, "the user is gone").await;
        };
        if current.user.is_disabled() {
            return self.refuse(&family, "the user is disabled").await;
        }
        if current.credential != family.credential {
            return self
                .refuse(&family, "the password changed since the log-in")
                .await;
        }
        Ok(self.tokens(&current.user, next, family.expires, now))
    }

    async fn refuse(
        &self,
        family: &FamilyInfo,
        why: &'static str,
    ) -> Result<SessionTokens, SessionError> {
        self.store.revoke_family(&family.family_id).await?;
        tracing::info!(
            user_id = family.user_id,
            why,
            "refresh refused; family revoked"
        );
        Err(SessionError::Revoked)
    }

    /// Logs out: revokes the family of `presented`. Succeeds whether or not the token
    /// names a family, so that the answer says nothing about it.
    ///
    /// # Errors
    /// [`SessionError::Store`].
    pub async fn log_out(&self, presented: &str) -> Result<(), SessionError> {
        if let Some(presented) = RefreshToken::parse(presented) {
            self.store.revoke_family_of(presented.digest()).await?;
        }
        Ok(())
    }

    /// Revokes every family of `user_id` (after a password change or a disable).
    ///
    /// # Errors
    /// [`SessionError::Store`].
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64, SessionError> {
        let revoked = self.store.revoke_user(user_id).await?;
        tracing::info!(user_id, revoked, "sessions revoked");
        Ok(revoked)
    }

    /// Revokes `user_id`'s families after a change that already happened; when the
    /// store fails, logs it and goes on: a refresh checks the user (disabled, password
    /// changed) anyway.
    pub async fn revoke_user_after_change(&self, user_id: &str) {
        if let Err(error) = self.revoke_user(user_id).await {
            let error = anyhow::Error::from(error);
            tracing::warn!(
                user_id,
                error = format!("{error:#}"),
                "cannot revoke the user's sessions now; their refreshes are refused anyway"
            );
        }
    }

    /// The answer: an access token for `user` and `refresh`, which expires after the
    /// refresh lifetime or with its family at `family_expires`, whichever is first.
    fn tokens(
        &self,
        user: &crate::domain::User,
        refresh: RefreshToken,
        family_expires: SystemTime,
        now: SystemTime,
    ) -> SessionTokens {
        let family_left = family_expires.duration_since(now).unwrap_or_default();
        SessionTokens {
            access: self.accounts.issue(user),
            refresh_token: refresh,
            refresh_expires_in: self.refresh_ttl.min(family_left).as_secs(),
        }
    }
}

impl From<SessionStoreError> for SessionError {
    fn from(error: SessionStoreError) -> Self {
        Self::Store(error)
    }
}
