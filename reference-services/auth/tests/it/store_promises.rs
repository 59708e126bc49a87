//! The user store's promises, one suite run on each backend: a registration and its event
//! commit together and read back by id and by email in any spelling; a taken email writes
//! nothing; of eight registrations of one email racing exactly one is a user with one
//! event; disabling and role changes commit with their events under a version check; a
//! password change is conditional on the old hash and survives later changes. SQLite
//! runs here, DynamoDB in `needs_servers::dynamodb_store`.

use dovetail_auth::domain::{Email, RoleAssignment, User, UserChange, UserRole};
use dovetail_auth::store::{Registration, StoreError, UserStore};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::Source;
use dovetail_outbox::{AnyOutboxStore, OutboxStore};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

/// Opens the store `storage` names through the service's own opening, with the relay's
/// store on the same database.
pub(crate) async fn open_with(
    storage: &StorageConfig,
    transport: &Transport,
) -> (UserStore, AnyOutboxStore) {
    let source = Source::parse(dovetail_auth::SERVICE).unwrap();
    let opened = UserStore::open(storage, transport, source).await.unwrap();
    (opened.store, opened.relay_store)
}

/// A fresh SQLite store in a temporary directory.
async fn open_sqlite() -> (UserStore, AnyOutboxStore) {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-auth-store-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(dir.join("auth.db"));
    let transport = Transport::Embedded(EmbeddedBus::open_in_memory().unwrap());
    open_with(&storage, &transport).await
}

/// A customer user of `customer` with `email`, and its `user.registered`.
pub(crate) fn customer(email: &str, customer: &str) -> (User, UserChange) {
    User::register_customer(Email::parse(email).unwrap(), customer).unwrap()
}

/// A unique email, so that suites on one shared table do not meet.
pub(crate) fn unique_email(name: &str) -> String {
    format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// The events pending in the outbox, as `(aggregate id, sequence, type)`.
pub(crate) async fn pending(outbox: &AnyOutboxStore) -> Vec<(String, u64, String)> {
    let mut events: Vec<_> = outbox
        .fetch_ready(100)
        .await
        .unwrap()
        .into_iter()
        .map(|record| {
            let envelope = record.envelope;
            (
                envelope.aggregate_id().as_str().to_owned(),
                envelope.sequence().get(),
                envelope.event_type().as_str().to_owned(),
            )
        })
        .collect();
    events.sort();
    events
}

pub(crate) async fn a_registration_reads_back_by_id_and_by_email_in_any_spelling(
    (store, outbox): (UserStore, AnyOutboxStore),
) {
    store.ping().await.unwrap();
    let email = unique_email("ada");
    let (user, change) = customer(&email, "cust-1");
    let id = user.id().to_owned();
    let registered = store
        .register(user.clone(), "$argon2id$hash-1".to_owned(), change)
        .await
        .unwrap();
    assert_eq!(registered, Registration::Created);

    let by_id = store.get(&id).await.unwrap().unwrap();
    assert_eq!(by_id.user, user);
    assert_eq!(by_id.password_hash, "$argon2id$hash-1");
    let shouted = Email::parse(&format!("  {}  ", email.to_uppercase())).unwrap();
    let by_email = store.find_by_email(&shouted).await.unwrap().unwrap();
    assert_eq!(by_email.user, user);
    assert_eq!(by_email.password_hash, "$argon2id$hash-1");

    assert!(store.get("usr-nobody").await.unwrap().is_none());
    let nobody = Email::parse(&unique_email("nobody")).unwrap();
    assert!(store.find_by_email(&nobody).await.unwrap().is_none());
    assert_eq!(
        pending(&outbox).await,
        [(id, 1, "user.registered".to_owned())]
    );
}

pub(crate) async fn a_taken_email_writes_nothing((store, outbox): (UserStore, AnyOutboxStore)) {
    let email = unique_email("taken");
    let (first, change) = customer(&email, "cust-1");
    store
        .register(first.clone(), "$argon2id$first".to_owned(), change)
        .await
        .unwrap();
    // Another spelling of the same address, another customer, another password.
    let (second, change) = customer(&email.to_uppercase(), "cust-2");
    let outcome = store
        .register(second.clone(), "$argon2id$second".to_owned(), change)
        .await
        .unwrap();
    assert_eq!(outcome, Registration::EmailTaken);

    assert!(store.get(second.id()).await.unwrap().is_none());
    let found = store
        .find_by_email(&Email::parse(&email).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user.id(), first.id());
    assert_eq!(found.password_hash, "$argon2id$first");
    assert_eq!(pending(&outbox).await.len(), 1, "one user, one event");
}

pub(crate) async fn eight_registrations_of_one_email_racing_make_one_user(
    (store, outbox): (UserStore, AnyOutboxStore),
) {
    let email = unique_email("race");
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let (user, change) = customer(&email, &format!("cust-{i}"));
            tokio::spawn(async move {
                let id = user.id().to_owned();
                let outcome = store
                    .register(user, format!("$argon2id$racer-{i}"), change)
                    .await
                    .unwrap();
                (id, outcome)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    let created: Vec<&String> = outcomes
        .iter()
        .filter(|(_, outcome)| *outcome == Registration::Created)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(created.len(), 1, "exactly one user: {outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Registration::EmailTaken)
            .count(),
        7,
        "the others are told the email is taken: {outcomes:?}"
    );
    let winner = created[0].clone();
    for (id, _) in &outcomes {
        assert_eq!(
            store.get(id).await.unwrap().is_some(),
            *id == winner,
            "{id}"
        );
    }
    let found = store
        .find_by_email(&Email::parse(&email).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user.id(), winner);
    assert_eq!(
        pending(&outbox).await,
        [(winner, 1, "user.registered".to_owned())],
        "one user.registered in the outbox, the winner's"
    );
}

pub(crate) async fn disabling_and_role_changes_commit_with_their_events(
    (store, outbox): (UserStore, AnyOutboxStore),
) {
    let (user, change) = customer(&unique_email("bob"), "cust-1");
    let id = user.id().to_owned();
    store
        .register(user.clone(), "$argon2id$bob".to_owned(), change)
        .await
        .unwrap();

    let (staff, promotion) = user.change_role(&RoleAssignment::Staff).unwrap().unwrap();
    store
        .change_role(staff.clone(), promotion, user.version())
        .await
        .unwrap();
    let read = store.get(&id).await.unwrap().unwrap();
    assert_eq!(read.user, staff);
    assert_eq!(read.user.snapshot().role, UserRole::Staff);
    assert_eq!(read.user.snapshot().customer_id, None);

    let back = RoleAssignment::customer("cust-7").unwrap();
    let (demoted, demotion) = staff.change_role(&back).unwrap().unwrap();
    store
        .change_role(demoted.clone(), demotion, staff.version())
        .await
        .unwrap();
    let (disabled, disabling) = demoted.disable().unwrap();
    store
        .disable(disabled.clone(), disabling, demoted.version())
        .await
        .unwrap();

    let read = store.get(&id).await.unwrap().unwrap();
    assert_eq!(read.user, disabled);
    assert_eq!(read.user.version(), 4);
    assert_eq!(read.user.snapshot().customer_id.as_deref(), Some("cust-7"));
    assert_eq!(read.password_hash, "$argon2id$bob", "the hash is untouched");
    assert_eq!(
        pending(&outbox).await,
        [
            (id.clone(), 1, "user.registered".to_owned()),
            (id.clone(), 2, "user.role_changed".to_owned()),
            (id.clone(), 3, "user.role_changed".to_owned()),
            (id, 4, "user.disabled".to_owned()),
        ]
    );
}

pub(crate) async fn a_stale_version_is_a_conflict_and_commits_nothing(
    (store, outbox): (UserStore, AnyOutboxStore),
) {
    let (user, change) = customer(&unique_email("carol"), "cust-1");
    let id = user.id().to_owned();
    store
        .register(user.clone(), "$argon2id$carol".to_owned(), change)
        .await
        .unwrap();
    // Two staff users read the user at version 1: one promotes, then the other disables.
    let (promoted, promotion) = user.change_role(&RoleAssignment::Staff).unwrap().unwrap();
    store
        .change_role(promoted, promotion, user.version())
        .await
        .unwrap();
    let (disabled, disabling) = user.disable().unwrap();
    let error = store
        .disable(disabled, disabling, user.version())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::VersionConflict { id: conflicted, current: Some(2) } if *conflicted == id),
        "{error:?}"
    );
    let read = store.get(&id).await.unwrap().unwrap();
    assert!(!read.user.is_disabled());
    assert_eq!(read.user.version(), 2);
    assert_eq!(
        pending(&outbox).await.len(),
        2,
        "the refused change published nothing"
    );
}

pub(crate) async fn a_password_change_needs_the_current_hash(
    (store, outbox): (UserStore, AnyOutboxStore),
) {
    let (user, change) = customer(&unique_email("dave"), "cust-1");
    let id = user.id().to_owned();
    store
        .register(user.clone(), "$argon2id$old".to_owned(), change)
        .await
        .unwrap();
    let stale = store
        .change_password(&id, "$argon2id$other".to_owned(), "$argon2id$x".to_owned())
        .await
        .unwrap();
    assert!(!stale, "a change from another hash is refused");
    let changed = store
        .change_password(&id, "$argon2id$old".to_owned(), "$argon2id$new".to_owned())
        .await
        .unwrap();
    assert!(changed);
    // A later change of the user keeps the new hash.
    let (disabled, disabling) = user.disable().unwrap();
    store
        .disable(disabled, disabling, user.version())
        .await
        .unwrap();
    let read = store.get(&id).await.unwrap().unwrap();
    assert_eq!(read.password_hash, "$argon2id$new");
    assert_eq!(read.user.version(), 2, "a password change is no event");
    assert_eq!(pending(&outbox).await.len(), 2);
}

/// The suite, as tests of the store `$open` opens (a `(UserStore, AnyOutboxStore)`,
/// fresh for each test).
macro_rules! store_promises {
    ($module:ident, $open:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn a_registration_reads_back_by_id_and_by_email_in_any_spelling() {
                $crate::store_promises::a_registration_reads_back_by_id_and_by_email_in_any_spelling($open).await;
            }

            #[tokio::test]
            async fn a_taken_email_writes_nothing() {
                $crate::store_promises::a_taken_email_writes_nothing($open).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn eight_registrations_of_one_email_racing_make_one_user() {
                $crate::store_promises::eight_registrations_of_one_email_racing_make_one_user($open).await;
            }

            #[tokio::test]
            async fn disabling_and_role_changes_commit_with_their_events() {
                $crate::store_promises::disabling_and_role_changes_commit_with_their_events($open).await;
            }

            #[tokio::test]
            async fn a_stale_version_is_a_conflict_and_commits_nothing() {
                $crate::store_promises::a_stale_version_is_a_conflict_and_commits_nothing($open).await;
            }

            #[tokio::test]
            async fn a_password_change_needs_the_current_hash() {
                $crate::store_promises::a_password_change_needs_the_current_hash($open).await;
            }
        }
    };
}

#[cfg_attr(not(feature = "aws"), allow(unused_imports))]
pub(crate) use store_promises;

store_promises!(sqlite, open_sqlite().await);
