//! Where users live: [`UserStore`] on the service's SQLite file, each change committed
//! with its event through the transactional outbox. (DynamoDB comes later.)

mod append;
mod sqlite;

pub use dovetail_service_kit::store::{OpenedStore, StoreError};
pub use sqlite::UserStore;

use crate::domain::User;

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
