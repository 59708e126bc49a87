//! [`DynamoDbUsers`]: users in the service's DynamoDB table, beside its outbox.
//!
//! One table holds the users, their email items and the outbox's items (see
//! [`dovetail_service_kit::store::dynamodb`]):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | user | `user#<user id>` | `user` | `user_id`, `email`, `version` (N), `snapshot` (the user's JSON, as its events carry it), `password_hash` |
//! | email | `email#<normalised email>` | `email` | `user_id` (the one user with that email) |
//!
//! A registration puts both items and the `user.registered` event in one
//! `TransactWriteItems`, each item under `attribute_not_exists(pk)`: of registrations of
//! one email racing, one commits and every other is cancelled whole (the loser's user
//! item, event and version item are not written), and answers
//! [`Registration::EmailTaken`].
//!
//! A log-in finds its user through the email item (`GetItem`, then `GetItem` of the
//! user), not through a global secondary index on `email`: an index is eventually
//! consistent (a user who just registered might not be found for a moment) and cannot
//! refuse a second user with the same email, while the email item is both the uniqueness
//! guard and a strongly consistent lookup. Emails never change in this service, so the
//! email item is written once.
//!
//! A disabling or a role change updates the user item (`UpdateItem` in the transaction,
//! never a whole `Put`, so a password changed meanwhile is not undone) under
//! `version = <expected>`, with its event expecting the same version in the outbox.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use dovetail_contracts::user::UserSnapshot;
use dovetail_events::envelope::Source;
use dovetail_outbox::{ExpectedVersion, OutboxError};
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::store::dynamodb::{
    SNAPSHOT, ServiceTable, VERSION, backend, open_table, string_of,
};

use super::{OpenedStore, Registration, StoreError, StoredUser};
use crate::domain::{Email, User, UserChange};

const USER_PREFIX: &str = "user#";
const USER_SORT_KEY: &str = "user";
const EMAIL_PREFIX: &str = "email#";
const EMAIL_SORT_KEY: &str = "email";
const USER_ID: &str = "user_id";
const EMAIL: &str = "email";
const PASSWORD_HASH: &str = "password_hash";

/// The email item's position among a registration's writes (after the user item).
const EMAIL_WRITE: usize = 1;
/// How many times a registration is sent when DynamoDB cancels it for another reason
/// than a taken email (such as `TransactionConflict`, a concurrent transaction on the same
/// email item that had not committed yet).
const REGISTRATION_ATTEMPTS: u32 = 4;

/// Users in a DynamoDB table: a user item and an email item per user, written with the
/// user's events in one `TransactWriteItems` per change.
#[derive(Debug, Clone)]
pub struct DynamoDbUsers {
    table: ServiceTable,
}

impl DynamoDbUsers {
    /// Opens the table `table` (creating it and its TTL when missing) for the events of
    /// `source`, with the relay's store on its outbox and its commit signal.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the table cannot be created or has other keys; the
    /// message names it.
    pub async fn open(
        clients: &AwsClients,
        table: &str,
        source: Source,
    ) -> Result<OpenedStore<Self>, StoreError> {
        let table = open_table(clients.dynamodb(), table, source, &[]).await?;
        Ok(table.opened(crate::SERVICE, |table| Self { table }))
    }

    /// See [`UserStore::register`](super::UserStore::register).
    pub(super) async fn register(
        &self,
        user: User,
        password_hash: String,
        change: UserChange,
    ) -> Result<Registration, StoreError> {
        let snapshot = user.snapshot();
        let mut user_item = self.user_attributes(snapshot)?;
        user_item.insert(PASSWORD_HASH.to_owned(), AttributeValue::S(password_hash));
        let user_put = self.table.versioned_put(user_item, ExpectedVersion::New)?;
        let mut email_item = self.email_key(&snapshot.email);
        email_item.insert(
            USER_ID.to_owned(),
            AttributeValue::S(snapshot.user_id.clone()),
        );
        let email_put = self.table.versioned_put(email_item, ExpectedVersion::New)?;
        let mut attempt = 1;
        loop {
            let mut unit = self.table.outbox().unit_of_work();
            unit.write(user_put.clone());
            unit.write(email_put.clone());
            change.append_to(&mut unit, ExpectedVersion::New)?;
            let error = match unit.commit().await {
                Ok(_) => return Ok(Registration::Created),
                Err(OutboxError::BusinessConditionFailed { writes, .. })
                    if writes.contains(&EMAIL_WRITE) =>
                {
                    return Ok(Registration::EmailTaken);
                }
                Err(error) => error,
            };
            // Cancelled for another reason, or committed with the answer lost: the email
            // item says which user has the email, if any has.
            match self.email_owner(&snapshot.email).await? {
                Some(owner) if owner == snapshot.user_id => return Ok(Registration::Created),
                Some(_) => return Ok(Registration::EmailTaken),
                None if attempt < REGISTRATION_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    attempt += 1;
                }
                None => return Err(error.into()),
            }
        }
    }

    /// See [`UserStore::find_by_email`](super::UserStore::find_by_email).
    pub(super) async fn find_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<StoredUser>, StoreError> {
        match self.email_owner(email.as_str()).await? {
            Some(user_id) => self.get(&user_id).await,
            None => Ok(None),
        }
    }

    /// See [`UserStore::get`](super::UserStore::get).
    pub(super) async fn get(&self, user_id: &str) -> Result<Option<StoredUser>, StoreError> {
        let read = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .set_key(Some(self.user_key(user_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| backend(&format!("reading user {user_id}"), error))?;
        read.item()
            .map(|item| parse_user(user_id, item))
            .transpose()
    }

    /// See [`UserStore::change_password`](super::UserStore::change_password).
    pub(super) async fn change_password(
        &self,
        user_id: &str,
        old_hash: String,
        new_hash: String,
    ) -> Result<bool, StoreError> {
        let changed = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .set_key(Some(self.user_key(user_id)))
            .update_expression("SET #hash = :new")
            .condition_expression("#hash = :old")
            .expression_attribute_names("#hash", PASSWORD_HASH)
            .expression_attribute_values(":old", AttributeValue::S(old_hash))
            .expression_attribute_values(":new", AttributeValue::S(new_hash))
            .send()
            .await;
        match changed {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                Ok(false)
            }
            Err(error) => Err(backend(
                &format!("changing the password of user {user_id}"),
                error,
            )),
        }
    }

    /// See [`UserStore::update`](super::UserStore::update).
    pub(super) async fn update(
        &self,
        user: User,
        change: UserChange,
        expected: u64,
    ) -> Result<(), StoreError> {
        let snapshot = user.snapshot();
        let update = Update::builder()
            .table_name(self.table.name())
            .set_key(Some(self.user_key(&snapshot.user_id)))
            .update_expression("SET #snapshot = :snapshot, #version = :version")
            .condition_expression("attribute_exists(#pk) AND #version = :expected")
            .expression_attribute_names("#pk", &self.table.outbox().config().partition_key)
            .expression_attribute_names("#snapshot", SNAPSHOT)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":snapshot", AttributeValue::S(to_json(snapshot)?))
            .expression_attribute_values(":version", number(snapshot.version))
            .expression_attribute_values(":expected", number(expected))
            .build()
            .map_err(|error| backend("building a user's update", error))?;
        let written = self
            .table
            .write(None, |unit| {
                unit.write(TransactWriteItem::builder().update(update).build());
                change.append_to(unit, ExpectedVersion::Exactly(expected))?;
                Ok(())
            })
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(error) => Err(self
                .table
                .explain_versioned(
                    error,
                    self.user_key(&snapshot.user_id),
                    &snapshot.user_id,
                    ExpectedVersion::Exactly(expected),
                    snapshot.version,
                )
                .await),
        }
    }

    /// See [`UserStore::ping`](super::UserStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.table.ping().await
    }

    /// The user whose email item holds `email`, read strongly consistently.
    async fn email_owner(&self, email: &str) -> Result<Option<String>, StoreError> {
        let read = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .set_key(Some(self.email_key(email)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| backend("reading an email item", error))?;
        Ok(read
            .item()
            .and_then(|item| string_of(item, USER_ID))
            .map(str::to_owned))
    }

    fn user_key(&self, user_id: &str) -> HashMap<String, AttributeValue> {
        self.table
            .key(format!("{USER_PREFIX}{user_id}"), USER_SORT_KEY)
    }

    fn email_key(&self, email: &str) -> HashMap<String, AttributeValue> {
        self.table
            .key(format!("{EMAIL_PREFIX}{email}"), EMAIL_SORT_KEY)
    }

    /// The user item's attributes but the password hash.
    fn user_attributes(
        &self,
        snapshot: &UserSnapshot,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let mut item = self.user_key(&snapshot.user_id);
        item.extend([
            (
                USER_ID.to_owned(),
                AttributeValue::S(snapshot.user_id.clone()),
            ),
            (EMAIL.to_owned(), AttributeValue::S(snapshot.email.clone())),
            (VERSION.to_owned(), number(snapshot.version)),
            (SNAPSHOT.to_owned(), AttributeValue::S(to_json(snapshot)?)),
        ]);
        Ok(item)
    }
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn to_json(snapshot: &UserSnapshot) -> Result<String, StoreError> {
    serde_json::to_string(snapshot).map_err(|error| {
        StoreError::backend(format!("serializing user {}", snapshot.user_id), error)
    })
}

fn parse_user(
    user_id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<StoredUser, StoreError> {
    let reading = || format!("reading the user item of {user_id}");
    let json = string_of(item, SNAPSHOT)
        .ok_or_else(|| StoreError::backend(reading(), "it has no `snapshot` string"))?;
    let password_hash = string_of(item, PASSWORD_HASH)
        .ok_or_else(|| StoreError::backend(reading(), "it has no `password_hash` string"))?;
    let snapshot: UserSnapshot =
        serde_json::from_str(json).map_err(|error| StoreError::backend(reading(), error))?;
    Ok(StoredUser {
        user: User::from_snapshot(snapshot),
        password_hash: password_hash.to_owned(),
    })
}
