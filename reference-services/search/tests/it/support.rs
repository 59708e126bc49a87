//! Builders of snapshots, documents and events for the tests.

use dovetail_contracts::claim::{ClaimSnapshot, ClaimStatus};
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use dovetail_search::document::{Lineage, SearchDocument};
use time::Date;
use time::macros::date;

/// A fresh directory under the system's temporary one.
pub(crate) fn temp_dir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(dovetail_testkit::unique_name(prefix))
}

/// The lineage of the event of `version`.
pub(crate) fn lineage(source: &str, event_type: &str, version: u64) -> Lineage {
    Lineage {
        source: source.to_owned(),
        event_id: format!("evt-{event_type}-{version}"),
        event_type: event_type.to_owned(),
        sequence: version,
        occurred_at: "2026-01-01T00:00:00Z".to_owned(),
    }
}

/// Policy `id` of `customer` at `version`.
pub(crate) fn policy_snapshot(
    id: &str,
    customer: &str,
    product_line: &str,
    version: u64,
    status: PolicyStatus,
) -> PolicySnapshot {
    PolicySnapshot {
        policy_id: id.to_owned(),
        customer_id: customer.to_owned(),
        product_line: product_line.to_owned(),
        coverage_limit: "10000.00".parse().unwrap(),
        deductible: "250.00".parse().unwrap(),
        premium: format!("{}.50", 100 + version).parse().unwrap(),
        effective_date: date!(2026 - 01 - 01),
        expiry_date: date!(2026 - 12 - 31),
        status,
        version,
    }
}

/// The document of policy `id` at `version`.
pub(crate) fn policy(
    id: &str,
    customer: &str,
    version: u64,
    status: PolicyStatus,
) -> SearchDocument {
    SearchDocument::from_policy(
        &policy_snapshot(id, customer, "home", version, status),
        lineage("policy-service", "policy.updated", version),
    )
}

/// The document of policy `id` effective on `effective`.
pub(crate) fn policy_on(id: &str, customer: &str, effective: Date) -> SearchDocument {
    let mut snapshot = policy_snapshot(id, customer, "motor", 1, PolicyStatus::Active);
    snapshot.effective_date = effective;
    SearchDocument::from_policy(&snapshot, lineage("policy-service", "policy.issued", 1))
}

/// Claim `id` of `customer` at `version`.
pub(crate) fn claim_snapshot(
    id: &str,
    customer: &str,
    description: &str,
    version: u64,
    status: ClaimStatus,
) -> ClaimSnapshot {
    ClaimSnapshot {
        claim_id: id.to_owned(),
        policy_id: format!("pol-of-{id}"),
        customer_id: customer.to_owned(),
        incident_date: date!(2026 - 03 - 14),
        amount: "1234.56".parse().unwrap(),
        description: description.to_owned(),
        status,
        rejection_reason: None,
        version,
    }
}

/// The document of claim `id` at `version`.
pub(crate) fn claim(
    id: &str,
    customer: &str,
    description: &str,
    version: u64,
    status: ClaimStatus,
) -> SearchDocument {
    SearchDocument::from_claim(
        &claim_snapshot(id, customer, description, version, status),
        lineage("claim-service", "claim.filed", version),
    )
}

/// The document the event `policy.updated` of policy `id` at `version` leaves, holding
/// that event as its source.
pub(crate) fn policy_from_event(id: &str, customer: &str, version: u64) -> SearchDocument {
    use dovetail_contracts::policy::PolicyUpdated;
    use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};

    let policy = policy_snapshot(id, customer, "home", version, PolicyStatus::Active);
    let envelope = Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", id).unwrap(),
        Sequence::new(version).unwrap(),
        &PolicyUpdated { policy },
        EventMetadata::default(),
    )
    .unwrap();
    SearchDocument::from_envelope(&envelope).unwrap()
}

/// The version `index` holds under `id`, if any.
pub(crate) async fn held_version<I: dovetail_search::index::SearchIndex>(
    index: &I,
    id: &str,
) -> Option<u64> {
    index.get(id).await.unwrap().map(|held| held.version())
}
