//! Every idempotency store that needs no server passes the contract suite of
//! `dovetail-testkit`; the DynamoDB and Redis stores run it under `needs_servers`.

mod memory {
    use dovetail_events::idempotency::MemoryIdempotencyStore;

    dovetail_testkit::idempotency_contract_tests!(|| async { MemoryIdempotencyStore::new() });
}

/// The type-erased store, as a service that picks its backend at run time holds it.
mod dyn_memory {
    use std::sync::Arc;

    use dovetail_events::idempotency::{DynIdempotencyStore, MemoryIdempotencyStore};

    dovetail_testkit::idempotency_contract_tests!(|| async {
        Arc::new(MemoryIdempotencyStore::new()) as Arc<dyn DynIdempotencyStore>
    });
}

#[cfg(feature = "sqlite")]
mod sqlite_in_memory {
    use dovetail_events::idempotency::SqliteIdempotencyStore;

    dovetail_testkit::idempotency_contract_tests!(|| async {
        SqliteIdempotencyStore::open_in_memory().unwrap()
    });
}

#[cfg(feature = "sqlite")]
mod sqlite_file {
    use dovetail_events::idempotency::SqliteIdempotencyStore;

    dovetail_testkit::idempotency_contract_tests!(|| async {
        SqliteIdempotencyStore::open(crate::idempotency_sqlite::fresh_db_path()).unwrap()
    });
}
