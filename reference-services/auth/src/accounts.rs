//! [`Accounts`]: what users can do — register, log in, change their password — and what
//! staff can do to them, over the store, the hasher and the token issuer. The HTTP layer
//! only turns these into requests and answers.

use crate::domain::{DomainError, Email, Password, RoleAssignment, RoleChangeRefused, User};
use crate::hashing::{HashingError, PasswordHasher};
use crate::sessions::CredentialStamp;
use crate::store::{Registration, StoreError, UserStore};
use crate::tokens::{AccessToken, TokenIssuer};

/// Why an account operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The request's content is invalid (an email, a new password, a customer id).
    ///
    /// ### Handling
    /// 422 naming the field and the rule.
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// The email and password do not match an enabled user. Unknown email, wrong
    /// password and disabled user are this one error, so that the answer does not tell
    /// which emails have accounts.
    ///
    /// ### Handling
    /// 401, the same problem for all three.
    #[error("the email and password do not match an enabled account")]
    InvalidCredentials,
    /// No user has the id.
    ///
    /// ### Handling
    /// 404.
    #[error("no user has the id {user_id:?}")]
    NotFound {
        /// The id asked for.
        user_id: String,
    },
    /// The user changed while the operation ran (another password change, a disable, a
    /// role change).
    ///
    /// ### Handling
    /// 409; retry.
    #[error("user {user_id} changed while this request ran")]
    Concurrent {
        /// The user.
        user_id: String,
    },
    /// The user's state does not allow the role change (disabled, or a customer user of
    /// another customer); nothing changed.
    ///
    /// ### Handling
    /// 409 saying which.
    #[error(transparent)]
    RoleRefused(#[from] RoleChangeRefused),
    /// A staff user asked to change their own role. Refused so that the staff member who
    /// acts always stays staff: a stack cannot lose its last staff user through this API
    /// (two staff users demoting each other at the same moment still can; an operator
    /// then adds one with `Admin::register_staff`).
    ///
    /// ### Handling
    /// 403; another staff member does it.
    #[error("user {user_id} cannot change their own role")]
    OwnRole {
        /// The caller.
        user_id: String,
    },
    /// The database failed.
    ///
    /// ### Handling
    /// 503; retry.
    #[error("the user store failed")]
    Store(#[source] StoreError),
    /// Hashing or checking a password failed.
    ///
    /// ### Handling
    /// 503; retry.
    #[error("password hashing failed")]
    Hashing(#[from] HashingError),
}

impl From<StoreError> for AccountError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::VersionConflict { id, .. } => Self::Concurrent { user_id: id },
            other => Self::Store(other),
        }
    }
}

/// A user whose password was just checked, or whom a refresh looked up: who they are and
/// the stamp of their password hash (a new hash, a new stamp).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user.
    pub user: User,
    /// The stamp of their password hash.
    pub credential: CredentialStamp,
}

/// The account operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: UserStore,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
}

impl Accounts {
    /// The operations over `store`, hashing with `hasher`, issuing with `tokens`.
    pub fn new(store: UserStore, hasher: PasswordHasher, tokens: TokenIssuer) -> Self {
        Self {
            store,
            hasher,
            tokens,
        }
    }

    /// The password hasher (for its count of checks).
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The store (for readiness checks).
    pub fn store(&self) -> &UserStore {
        &self.store
    }

    /// Registers a customer user bound to `customer_id`. The password is hashed whether
    /// or not the email is taken, so both take as long; a taken email creates nothing.
    ///
    /// # Errors
    /// [`AccountError::Invalid`], [`AccountError::Store`], [`AccountError::Hashing`].
    pub async fn register_customer(
        &self,
        email: &str,
        password: String,
        customer_id: &str,
    ) -> Result<Registration, AccountError> {
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        let (user, change) = User::register_customer(email, customer_id)?;
        let hash = self.hasher.hash(password).await?;
        Ok(self.store.register(user, hash, change).await?)
    }

    /// Registers a customer user for a new customer, whose id (`cust-<UUIDv7>`) the
    /// service picks: what open registration does, so that nobody binds themselves to
    /// someone else's customer.
    ///
    /// # Errors
    /// As [`register_customer`](Self::register_customer).
    pub async fn register_new_customer(
        &self,
        email: &str,
        password: String,
    ) -> Result<Registration, AccountError> {
        let customer_id = format!("cust-{}", uuid::Uuid::now_v7().simple());
        self.register_customer(email, password, &customer_id).await
    }

    /// The user `user_id`, if there is one.
    ///
    /// # Errors
    /// [`AccountError::Store`].
    pub async fn user(&self, user_id: &str) -> Result<Option<User>, AccountError> {
        Ok(self.store.get(user_id).await?.map(|stored| stored.user))
    }

    /// Registers a staff user (an operator's action: no HTTP route does this).
    ///
    /// # Errors
    /// As [`register_customer`](Self::register_customer).
    pub async fn register_staff(
        &self,
        email: &str,
        password: String,
    ) -> Result<Registration, AccountError> {
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        let (user, change) = User::register_staff(email);
        let hash = self.hasher.hash(password).await?;
        Ok(self.store.register(user, hash, change).await?)
    }

    /// An access token for the enabled user with `email` and `password`. An unknown or
    /// malformed email is checked against the dummy hash, and a disabled user's password
    /// is checked too, so every refusal takes as long as a success.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`], [`AccountError::Store`],
    /// [`AccountError::Hashing`].
    pub async fn log_in(&self, email: &str, password: String) -> Result<AccessToken, AccountError> {
        let authenticated = self.authenticate(email, password).await?;
        Ok(self.tokens.issue(&authenticated.user))
    }

    /// The enabled user with `email` and `password`, and the stamp of their password
    /// hash, checked as [`log_in`](Self::log_in) does, without issuing a token.
    ///
    /// # Errors
    /// As [`log_in`](Self::log_in).
    pub async fn authenticate(
        &self,
        email: &str,
        password: String,
    ) -> Result<Authenticated, AccountError> {
        let found = match Email::parse(email) {
            Ok(email) => self.store.find_by_email(&email).await?,
            Err(_) => None,
        };
        let stored_hash = found.as_ref().map(|found| found.password_hash.clone());
        let matches = self.hasher.verify(password, stored_hash).await?;
        match found {
            Some(found) if matches && !found.user.is_disabled() => Ok(Authenticated {
                credential: CredentialStamp::of(&found.password_hash),
                user: found.user,
            }),
            _ => Err(AccountError::InvalidCredentials),
        }
    }

    /// The user `user_id` as a refresh checks them (disabled or not), with the stamp of
    /// their current password hash; `None` when there is no such user.
    ///
    /// # Errors
    /// [`AccountError::Store`].
    pub async fn session_user(&self, user_id: &str) -> Result<Option<Authenticated>, AccountError> {
        Ok(self.store.get(user_id).await?.map(|found| Authenticated {
            credential: CredentialStamp::of(&found.password_hash),
            user: found.user,
        }))
    }

    /// A new access token for `user`.
    pub fn issue(&self, user: &User) -> AccessToken {
        self.tokens.issue(user)
    }

    /// Replaces the password of `user_id` (the caller's own, from their token) once
    /// `current` is checked; a disabled user cannot.
    ///
    /// # Errors
    /// [`AccountError::Invalid`] for a new password against the rule;
    /// [`AccountError::InvalidCredentials`] for a wrong current password or a disabled
    /// or vanished user; [`AccountError::Concurrent`] when another change won;
    /// [`AccountError::Store`], [`AccountError::Hashing`].
    pub async fn change_password(
        &self,
        user_id: &str,
        current: String,
        new: String,
    ) -> Result<(), AccountError> {
        let new = Password::parse(new)?;
        let found = self.store.get(user_id).await?;
        let stored_hash = found.as_ref().map(|found| found.password_hash.clone());
        let matches = self.hasher.verify(current, stored_hash.clone()).await?;
        let (Some(found), Some(old_hash), true) = (found, stored_hash, matches) else {
            return Err(AccountError::InvalidCredentials);
        };
        if found.user.is_disabled() {
            return Err(AccountError::InvalidCredentials);
        }
        let new_hash = self.hasher.hash(new).await?;
        if self
            .store
            .change_password(user_id, old_hash, new_hash)
            .await?
        {
            tracing::info!(user_id, "password changed");
            Ok(())
        } else {
            Err(AccountError::Concurrent {
                user_id: user_id.to_owned(),
            })
        }
    }

    /// Disables `user_id`: they can no longer log in (tokens already issued stay valid
    /// until they expire). Disabling a disabled user changes nothing.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::Concurrent`], [`AccountError::Store`].
    pub async fn disable(&self, user_id: &str) -> Result<User, AccountError> {
        let found = self
            .store
            .get(user_id)
            .await?
            .ok_or_else(|| AccountError::NotFound {
                user_id: user_id.to_owned(),
            })?;
        let Some((user, change)) = found.user.disable() else {
            return Ok(found.user);
        };
        self.store
            .disable(user.clone(), change, found.user.version())
            .await?;
        tracing::info!(user_id, "user disabled");
        Ok(user)
    }

    /// Gives `user_id` the role `to`, as the staff user `by` asks (the caller's id, from
    /// their token; the caller's staff role is checked by the HTTP layer): promotes a
    /// customer user to staff, or makes a staff user the customer user of a customer id.
    /// A user who already has exactly that role changes nothing and is answered as they
    /// are. The rules on the user's side are [`User::change_role`]'s.
    ///
    /// # Errors
    /// [`AccountError::OwnRole`] when `by` is `user_id`; [`AccountError::NotFound`];
    /// [`AccountError::RoleRefused`]; [`AccountError::Concurrent`] when the user changed
    /// since it was read; [`AccountError::Store`].
    pub async fn change_role(
        &self,
        by: &str,
        user_id: &str,
        to: &RoleAssignment,
    ) -> Result<User, AccountError> {
        if by == user_id {
            return Err(AccountError::OwnRole {
                user_id: user_id.to_owned(),
            });
        }
        let found = self
            .store
            .get(user_id)
            .await?
            .ok_or_else(|| AccountError::NotFound {
                user_id: user_id.to_owned(),
            })?;
        let Some((user, change)) = found.user.change_role(to)? else {
            return Ok(found.user);
        };
        self.store
            .change_role(user.clone(), change, found.user.version())
            .await?;
        tracing::info!(user_id, by, role = to.role().as_str(), "user role changed");
        Ok(user)
    }
}
