//! [`open_store`]: a service's store on the backend its configuration names, SQLite or
//! DynamoDB (feature `aws`), with its relay's store and commit signal; and
//! [`Backend`], the store of either backend, whose calls [`on_backend!`](crate::on_backend) forwards.
//!
//! A service says how each backend's store opens ([`ServiceStore`]); the kit names the
//! file and the table, creates the data directory, and refuses a backend the build or
//! the transport cannot serve, with a message saying what to change.

use std::path::Path;

use dovetail_events::envelope::Source;
use dovetail_outbox::sqlite::SqliteOutbox;

use super::{OpenedStore, StoreError};
use crate::StartError;
use crate::config::{StorageBackend, StorageConfig};
use crate::events::Transport;

/// A service's store on one of the backends: the SQLite store, or (feature `aws`) the
/// DynamoDB one. Forward calls to whichever it is with [`on_backend!`](crate::on_backend).
#[derive(Debug, Clone)]
pub enum Backend<S, D> {
    /// The store on the service's SQLite file.
    Sqlite(S),
    /// The store on the service's DynamoDB table.
    #[cfg(feature = "aws")]
    DynamoDb(D),
    /// Never made: holds the DynamoDB store's type in a build without DynamoDB.
    #[cfg(not(feature = "aws"))]
    #[doc(hidden)]
    Unavailable(std::convert::Infallible, std::marker::PhantomData<D>),
}

/// Evaluates `$call` with `$store` bound to the store inside `$backend` (a
/// [`Backend`] or a reference to one), whichever backend it is on.
///
/// ```
/// use dovetail_service_kit::on_backend;
/// use dovetail_service_kit::store::Backend;
///
/// struct OnFile;
/// impl OnFile { fn name(&self) -> &'static str { "sqlite" } }
/// struct OnTable;
/// impl OnTable { fn name(&self) -> &'static str { "dynamodb" } }
///
/// let store: Backend<OnFile, OnTable> = Backend::Sqlite(OnFile);
/// assert_eq!(on_backend!(&store, inner => inner.name()), "sqlite");
/// ```
#[cfg(feature = "aws")]
#[macro_export]
macro_rules! on_backend {
    ($backend:expr, $store:ident => $call:expr) => {
        match $backend {
            $crate::store::Backend::Sqlite($store) => $call,
            $crate::store::Backend::DynamoDb($store) => $call,
        }
    };
}

/// Evaluates `$call` with `$store` bound to the store inside `$backend` (a
/// [`Backend`] or a reference to one), whichever backend it is on.
#[cfg(not(feature = "aws"))]
#[macro_export]
macro_rules! on_backend {
    ($backend:expr, $store:ident => $call:expr) => {
        match $backend {
            $crate::store::Backend::Sqlite($store) => $call,
            $crate::store::Backend::Unavailable(never, _) => match *never {},
        }
    };
}

/// How a service's store opens on each backend. A service with a DynamoDB store turns
/// on the kit's `aws` feature with its own and implements `open_dynamodb`; a service
/// without one sets `type DynamoDb = ()` and keeps the default, which refuses.
pub trait ServiceStore: Sized {
    /// The service's name in its file's and table's default names (`policy`:
    /// `data/policy.db`, table `dovetail-policy`).
    const NAME: &'static str;
    /// The store on SQLite.
    type Sqlite;
    /// The store on DynamoDB (`()` for a service, or a build, without it).
    type DynamoDb: Send;

    /// Opens the SQLite store on the file at `path`, over `outbox` (whose commits wake
    /// the relay).
    ///
    /// # Errors
    /// When the file cannot be opened or its tables created.
    fn open_sqlite(path: &Path, outbox: SqliteOutbox) -> Result<Self::Sqlite, StoreError>;

    /// Opens the DynamoDB store on the table `table` for the events of `source`, with
    /// the relay's store on its outbox and the signal of its commits.
    ///
    /// The default is for a service that keeps no data in DynamoDB (or a build of it
    /// without its `aws` feature, while another crate turns on the kit's): it refuses,
    /// naming the setting to change.
    ///
    /// # Errors
    /// When the table cannot be created or has another layout.
    #[cfg(feature = "aws")]
    fn open_dynamodb(
        clients: &crate::aws::AwsClients,
        table: &str,
        source: Source,
    ) -> impl Future<Output = Result<OpenedStore<Self::DynamoDb>, StoreError>> + Send {
        let _ = (clients, source);
        std::future::ready(Err(StoreError::backend(
            format!("opening the DynamoDB table {table}"),
            format!(
                "this build of the {} service keeps its data in SQLite only; set \
                 storage.backend = sqlite",
                Self::NAME
            ),
        )))
    }

    /// The service's store over `backend`.
    fn from_backend(backend: Backend<Self::Sqlite, Self::DynamoDb>) -> Self;
}

/// Opens `T`'s store on the backend `storage` names, for the events of `source`: its
/// SQLite file (see [`open_service`](super::sqlite::open_service)), or its DynamoDB table
/// through `transport`'s AWS clients; with its relay's store and commit signal.
///
/// # Errors
/// When the database cannot be opened (the message says why), or DynamoDB is
/// configured without the AWS transport or in a build without the `aws` feature.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub async fn open_store<T: ServiceStore>(
    storage: &StorageConfig,
    transport: &Transport,
    source: Source,
) -> Result<OpenedStore<T>, StartError> {
    match storage.backend {
        StorageBackend::Sqlite => {
            let path = storage.sqlite_path(T::NAME);
            let opened = super::sqlite::open_service(&path, source, T::open_sqlite)?;
            Ok(opened.map(|store| T::from_backend(Backend::Sqlite(store))))
        }
        #[cfg(feature = "aws")]
        StorageBackend::Dynamodb => {
            let table = storage.dynamodb_table(T::NAME);
            let opened = T::open_dynamodb(transport.aws_clients()?, &table, source).await?;
            Ok(opened.map(|store| T::from_backend(Backend::DynamoDb(store))))
        }
        #[cfg(not(feature = "aws"))]
        StorageBackend::Dynamodb => Err(StartError::NotBuilt {
            setting: "storage.backend = dynamodb",
        }),
    }
}

#[cfg(all(test, feature = "aws"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A service that keeps its data in SQLite only.
    struct FileOnly;

    impl ServiceStore for FileOnly {
        const NAME: &'static str = "file-only";
        type Sqlite = ();
        type DynamoDb = ();

        fn open_sqlite(_: &Path, _: SqliteOutbox) -> Result<(), StoreError> {
            Ok(())
        }

        fn from_backend(_: Backend<(), ()>) -> Self {
            Self
        }
    }

    #[tokio::test]
    async fn a_service_without_a_dynamodb_store_refuses_that_backend_saying_what_to_set() {
        let clients = crate::aws::AwsClients::from_lookup(|name| match name {
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".to_owned()),
            _ => None,
        })
        .unwrap();
        let storage = StorageConfig {
            backend: StorageBackend::Dynamodb,
            ..StorageConfig::default()
        };
        let source = Source::parse("file-only").unwrap();
        let Err(refused) = open_store::<FileOnly>(&storage, &Transport::Aws(clients), source).await
        else {
            panic!("DynamoDB was opened for a SQLite-only service");
        };
        let chain = format!("{:#}", anyhow::Error::from(refused));
        assert!(
            chain.contains("set storage.backend = sqlite") && chain.contains("file-only"),
            "{chain}"
        );
    }
}
