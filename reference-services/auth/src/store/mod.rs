//! Where users live: [`UserStore`], on the service's SQLite file (the default) or its
//! DynamoDB table (feature `aws`, `storage.backend = "dynamodb"`), chosen by
//! configuration through the service kit's [`open_store`]. On both, each change commits
//! with its event through the transactional outbox, and one normalised email is one user
//! however many registrations race: SQLite's `UNIQUE` column, DynamoDB's email item
//! written under `attribute_not_exists` in the registration's transaction.

mod append;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod sqlite;

use dovetail_events::envelope::Source;
use dovetail_service_kit::config::StorageConfig;
use dovetail_service_kit::events::Transport;
use dovetail_service_kit::store::{Backend, ServiceStore, open_store};
pub use dovetail_service_kit::store::{OpenedStore, StoreError};
use dovetail_service_kit::{StartError, on_backend};

use crate::domain::{Email, User, UserChange};

#[cfg(feature = "aws")]
type DynamoDbUsers = dynamodb::DynamoDbUsers;
#[cfg(not(feature = "aws"))]
type DynamoDbUsers = ();

/// The user store the service was configured with: SQLite, or DynamoDB. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UserStore(Backend<sqlite::SqliteUsers, DynamoDbUsers>);

impl ServiceStore for UserStore {
    const NAME: &'static str = "auth";
    type Sqlite = sqlite::SqliteUsers;
    type DynamoDb = DynamoDbUsers;

    fn open_sqlite(
        path: &std::path::Path,
        outbox: dovetail_outbox::sqlite::SqliteOutbox,
    ) -> Result<Self::Sqlite, StoreError> {
        sqlite::SqliteUsers::open(path, outbox)
    }

    #[cfg(feature = "aws")]
    async fn open_dynamodb(
        clients: &dovetail_service_kit::aws::AwsClients,
        table: &str,
        source: Source,
    ) -> Result<OpenedStore<Self::DynamoDb>, StoreError> {
        dynamodb::DynamoDbUsers::open(clients, table, source).await
    }

    fn from_backend(backend: Backend<Self::Sqlite, Self::DynamoDb>) -> Self {
        Self(backend)
    }
}

impl UserStore {
    /// Opens the store `storage` names for the events of `source`: its SQLite file
    /// (default `data/auth.db`), or its DynamoDB table (default `dovetail-auth`) through
    /// `transport`'s AWS clients; with its relay's store and commit signal.
    ///
    /// # Errors
    /// When the database cannot be opened (the message says why), or DynamoDB is
    /// configured without the AWS transport or in a build without the `aws` feature.
    pub async fn open(
        storage: &StorageConfig,
        transport: &Transport,
        source: Source,
    ) -> Result<OpenedStore<Self>, StartError> {
        open_store(storage, transport, source).await
    }

    /// Adds `user` with `password_hash` and its `user.registered` event (`change`),
    /// unless another user has the email: then nothing is written. Of any number of
    /// registrations of one email racing, on either backend, exactly one is
    /// [`Registration::Created`].
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn register(
        &self,
        user: User,
        password_hash: String,
        change: UserChange,
    ) -> Result<Registration, StoreError> {
        on_backend!(&self.0, store => store.register(user, password_hash, change).await)
    }

    /// The user with `email`, with their password hash; read strongly consistently, so a
    /// user can log in the moment their registration is answered.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn find_by_email(&self, email: &Email) -> Result<Option<StoredUser>, StoreError> {
        on_backend!(&self.0, store => store.find_by_email(email).await)
    }

    /// The user `user_id`, with their password hash.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn get(&self, user_id: &str) -> Result<Option<StoredUser>, StoreError> {
        on_backend!(&self.0, store => store.get(user_id).await)
    }

    /// Replaces the password hash of `user_id`, if it is still `old_hash` (so that of two
    /// concurrent changes one wins and the other is told). Whether it was replaced. No
    /// event, no new version: a password is not part of the published user.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn change_password(
        &self,
        user_id: &str,
        old_hash: String,
        new_hash: String,
    ) -> Result<bool, StoreError> {
        on_backend!(&self.0, store => store.change_password(user_id, old_hash, new_hash).await)
    }

    /// Commits `user` (disabled) and its `user.disabled` event, if the user is still at
    /// `expected`.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn disable(
        &self,
        user: User,
        change: UserChange,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.update(user, change, expected).await
    }

    /// Commits `user` (with their new role) and its `user.role_changed` event, if the
    /// user is still at `expected`.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn change_role(
        &self,
        user: User,
        change: UserChange,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.update(user, change, expected).await
    }

    /// Commits a change of an existing user (its role, customer id, disabled flag and
    /// version; never its email or password hash) with its event, if the user is still
    /// at `expected` (optimistic concurrency: of two changes from one read, one wins).
    ///
    /// # Errors
    /// [`StoreError::VersionConflict`] when the user changed meanwhile (or does not
    /// exist), with the version found; [`StoreError::Backend`].
    pub async fn update(
        &self,
        user: User,
        change: UserChange,
        expected: u64,
    ) -> Result<(), StoreError> {
        on_backend!(&self.0, store => store.update(user, change, expected).await)
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(&self.0, store => store.ping().await)
    }
}

/// A user with their password hash, as the store keeps them. Never serialised: the hash
/// leaves the store only to be checked.
#[derive(Clone)]
pub struct StoredUser {
    /// The user.
    pub user: User,
    /// The argon2id PHC string of their password.
    pub password_hash: String,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The user and their `user.registered` event are committed.
    Created,
    /// Another user has the email: nothing was written.
    EmailTaken,
}
