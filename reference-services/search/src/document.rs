//! [`SearchDocument`]: what the index holds of a policy or a claim, built from the
//! snapshot an event carries, with the lineage of that event and the event itself, so a
//! rebuild can build the document again with the code of the day
//! ([`IndexedDocument::for_rebuild`]).

use std::sync::Arc;

use dovetail_contracts::ContractError;
use dovetail_contracts::claim::{
    ClaimApproved, ClaimFiled, ClaimPaid, ClaimRejected, ClaimReviewStarted, ClaimSnapshot,
};
use dovetail_contracts::policy::{PolicyEvent, PolicySnapshot};
use dovetail_events::envelope::{Envelope, Event, Upcasters};
use serde::{Deserialize, Serialize};
use time::Date;

/// The kinds of documents the index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    /// A policy, from policy events.
    Policy,
    /// A claim, from claim events.
    Claim,
}

impl DocumentType {
    /// The type as it appears in JSON and in ids (`"policy"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Claim => "claim",
        }
    }

    /// Reads `policy` or `claim`.
    ///
    /// # Errors
    /// For any other text; the message lists the types there are.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "policy" => Ok(Self::Policy),
            "claim" => Ok(Self::Claim),
            other => Err(format!(
                "{other:?} is not a document type; use `policy` or `claim`"
            )),
        }
    }

    /// The document id of the aggregate `aggregate_id` of this type: `policy:<id>`.
    pub fn document_id(self, aggregate_id: &str) -> String {
        format!("{}:{aggregate_id}", self.as_str())
    }
}

/// Where a document comes from: the event it was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The service that published the event (`policy-service`).
    pub source: String,
    /// The event's id.
    pub event_id: String,
    /// The event's type (`policy.cancelled`).
    pub event_type: String,
    /// The aggregate's sequence the event carries: the document's version.
    pub sequence: u64,
    /// When the change happened, RFC 3339.
    pub occurred_at: String,
}

impl Lineage {
    /// The lineage of `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            source: envelope.source().as_str().to_owned(),
            event_id: envelope.id().to_string(),
            event_type: envelope.event_type().as_str().to_owned(),
            sequence: envelope.sequence().get(),
            occurred_at: envelope
                .occurred_at()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }
}

/// A policy or a claim as the index holds it.
///
/// Amounts stay exact decimal strings (`"10000.00"`), dates are `YYYY-MM-DD`. `date` is
/// the date the API's date filters and `sort=date` use: a policy's effective date, a
/// claim's incident date.
///
/// ```
/// use dovetail_search::document::{DocumentType, SearchDocument};
///
/// # fn check(document: SearchDocument) {
/// assert_eq!(document.id, DocumentType::Policy.document_id(&document.aggregate_id));
/// assert_eq!(document.version, document.lineage.sequence);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchDocument {
    /// `policy:<policy id>` or `claim:<claim id>`.
    pub id: String,
    /// Policy or claim.
    pub doc_type: DocumentType,
    /// The policy's or the claim's id.
    pub aggregate_id: String,
    /// The customer it belongs to: the authorization scope of searches.
    pub customer_id: String,
    /// The aggregate's status (`active`, `cancelled`, `under_review`, ...).
    pub status: String,
    /// The text full-text search looks in: ids, product line, description.
    pub text: String,
    /// The policy id (a policy's own, a claim's policy).
    pub policy_id: String,
    /// A policy's product line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_line: Option<String>,
    /// A claim's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The date of the date filters and of `sort=date`.
    #[serde(with = "dovetail_contracts::date")]
    pub date: Date,
    /// A policy's first day covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<String>,
    /// A policy's last day covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_date: Option<String>,
    /// A claim's incident date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_date: Option<String>,
    /// A policy's coverage limit, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_limit: Option<String>,
    /// A policy's deductible, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deductible: Option<String>,
    /// A policy's premium, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium: Option<String>,
    /// A claim's amount, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// The aggregate's version (= `lineage.sequence`): a document only ever replaces one
    /// of a lower version.
    pub version: u64,
    /// The event the document was built from.
    pub lineage: Lineage,
    /// That event, whole: the index stores it beside the document (never searched, never
    /// in an API answer) so that a rebuild builds the document again from it with the
    /// current code ([`IndexedDocument::for_rebuild`]). `None` for a document built
    /// without an event.
    #[serde(skip)]
    pub source_event: Option<SourceEvent>,
}

/// The event a document was built from, as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// An envelope this version of the service reads.
    Envelope(Arc<Envelope>),
    /// Stored JSON this version does not read as an envelope (written by a later version,
    /// say): kept as it is, so that it is stored again unchanged (a rebuild copies it) and
    /// a version that reads it can build the document from it.
    Unreadable(Arc<serde_json::Value>),
}

impl SourceEvent {
    /// Reads stored JSON: an envelope when it is one, as it is otherwise.
    pub fn from_stored_json(stored: serde_json::Value) -> Self {
        match serde_json::from_value::<Envelope>(stored.clone()) {
            Ok(envelope) => Self::Envelope(Arc::new(envelope)),
            Err(_) => Self::Unreadable(Arc::new(stored)),
        }
    }

    /// The JSON the index stores.
    pub fn to_stored_json(&self) -> serde_json::Value {
        match self {
            Self::Envelope(envelope) => serde_json::to_value(envelope.as_ref()).unwrap_or_default(),
            Self::Unreadable(stored) => stored.as_ref().clone(),
        }
    }

    /// The envelope, when this version reads it.
    pub fn envelope(&self) -> Option<&Arc<Envelope>> {
        match self {
            Self::Envelope(envelope) => Some(envelope),
            Self::Unreadable(_) => None,
        }
    }
}

fn date_text(date: Date) -> String {
    // The contracts' format: `YYYY-MM-DD`.
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

impl SearchDocument {
    /// The document of a policy snapshot.
    pub fn from_policy(policy: &PolicySnapshot, lineage: Lineage) -> Self {
        let text = format!(
            "{} {} {} {}",
            policy.policy_id,
            policy.product_line,
            policy.customer_id,
            policy.status.as_str()
        );
        Self {
            id: DocumentType::Policy.document_id(&policy.policy_id),
            doc_type: DocumentType::Policy,
            aggregate_id: policy.policy_id.clone(),
            customer_id: policy.customer_id.clone(),
            status: policy.status.as_str().to_owned(),
            text,
            policy_id: policy.policy_id.clone(),
            product_line: Some(policy.product_line.clone()),
            description: None,
            date: policy.effective_date,
            effective_date: Some(date_text(policy.effective_date)),
            expiry_date: Some(date_text(policy.expiry_date)),
            incident_date: None,
            coverage_limit: Some(policy.coverage_limit.to_string()),
            deductible: Some(policy.deductible.to_string()),
            premium: Some(policy.premium.to_string()),
            amount: None,
            version: policy.version,
            lineage,
            source_event: None,
        }
    }

    /// The document of a claim snapshot.
    pub fn from_claim(claim: &ClaimSnapshot, lineage: Lineage) -> Self {
        let text = format!(
            "{} {} {} {} {}",
            claim.claim_id,
            claim.policy_id,
            claim.customer_id,
            claim.status.as_str(),
            claim.description
        );
        Self {
            id: DocumentType::Claim.document_id(&claim.claim_id),
            doc_type: DocumentType::Claim,
            aggregate_id: claim.claim_id.clone(),
            customer_id: claim.customer_id.clone(),
            status: claim.status.as_str().to_owned(),
            text,
            policy_id: claim.policy_id.clone(),
            product_line: None,
            description: Some(claim.description.clone()),
            date: claim.incident_date,
            effective_date: None,
            expiry_date: None,
            incident_date: Some(date_text(claim.incident_date)),
            coverage_limit: None,
            deductible: None,
            premium: None,
            amount: Some(claim.amount.to_string()),
            version: claim.version,
            lineage,
            source_event: None,
        }
    }

    /// The document a policy or claim event leaves, holding the event as its
    /// [`source_event`](Self::source_event).
    ///
    /// # Errors
    /// When the envelope holds no policy or claim event this service knows, or a payload
    /// that does not match its schema: not retriable, the event belongs in a dead-letter
    /// queue (the message says which).
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, DocumentError> {
        let mut document = Self::built_from(envelope)?;
        document.source_event = Some(SourceEvent::Envelope(Arc::new(envelope.clone())));
        Ok(document)
    }

    /// [`from_envelope`](Self::from_envelope) of an envelope held already.
    fn rebuilt_from(envelope: &Arc<Envelope>) -> Result<Self, DocumentError> {
        let mut document = Self::built_from(envelope)?;
        document.source_event = Some(SourceEvent::Envelope(Arc::clone(envelope)));
        Ok(document)
    }

    fn built_from(envelope: &Envelope) -> Result<Self, DocumentError> {
        let lineage = Lineage::of(envelope);
        let event_type = envelope.event_type().as_str();
        let document = if event_type.starts_with("policy.") {
            let policy = match PolicyEvent::from_envelope(envelope) {
                Ok(event) => event.snapshot().clone(),
                Err(ContractError::UnknownType(_)) => carried::<PolicyCarrier>(envelope)?.policy,
                Err(error) => return Err(DocumentError(error.to_string())),
            };
            Self::from_policy(&policy, lineage)
        } else if event_type.starts_with("claim.") {
            Self::from_claim(&claim_snapshot(envelope)?, lineage)
        } else {
            return Err(DocumentError(format!(
                "event type {event_type:?} is neither a policy.* nor a claim.* event: the \
                 search service's subscriptions should not deliver it; check their filters"
            )));
        };
        // Snapshot and envelope must tell the same story: the version is what orders
        // writes, so a disagreement would let a wrong one win.
        let sequence = envelope.sequence().get();
        if document.version != sequence || document.aggregate_id != envelope.aggregate_id().as_str()
        {
            return Err(DocumentError(format!(
                "{event_type} {}: the envelope names {} at sequence {sequence} but its snapshot \
                 is {} at version {}; the publisher must send the aggregate's snapshot at the \
                 event's sequence",
                envelope.id(),
                envelope.aggregate_id().as_str(),
                document.aggregate_id,
                document.version
            )));
        }
        Ok(document)
    }
}

/// The payload of any policy event: the policy's snapshot under `policy`.
#[derive(Deserialize)]
struct PolicyCarrier {
    policy: PolicySnapshot,
}

/// The payload of any claim event: the claim's snapshot under `claim`.
#[derive(Deserialize)]
struct ClaimCarrier {
    claim: ClaimSnapshot,
}

/// The snapshot an event of a type this version of the service does not know carries, as
/// every policy and claim event does (so a new event type is indexed, not dead-lettered).
fn carried<T: serde::de::DeserializeOwned>(envelope: &Envelope) -> Result<T, DocumentError> {
    serde_json::from_value(envelope.payload().clone()).map_err(|error| {
        DocumentError(format!(
            "{} is an event type this service does not know, and its payload carries no \
             snapshot it can read ({error}); upgrade the search service",
            envelope.event_type().as_str()
        ))
    })
}

/// The claim snapshot of a claim event, through its schema's upcasters when the type is
/// known.
fn claim_snapshot(envelope: &Envelope) -> Result<ClaimSnapshot, DocumentError> {
    let upcasters = Upcasters::new();
    let event_type = envelope.event_type().as_str();
    let claim = match event_type {
        ClaimFiled::TYPE => envelope.decode::<ClaimFiled>(&upcasters).map(|e| e.claim),
        ClaimReviewStarted::TYPE => envelope
            .decode::<ClaimReviewStarted>(&upcasters)
            .map(|e| e.claim),
        ClaimApproved::TYPE => envelope
            .decode::<ClaimApproved>(&upcasters)
            .map(|e| e.claim),
        ClaimRejected::TYPE => envelope
            .decode::<ClaimRejected>(&upcasters)
            .map(|e| e.claim),
        ClaimPaid::TYPE => envelope.decode::<ClaimPaid>(&upcasters).map(|e| e.claim),
        _ => return carried::<ClaimCarrier>(envelope).map(|carrier| carrier.claim),
    };
    claim.map_err(|error| {
        DocumentError(format!(
            "the payload of {event_type} does not match its schema: {error}"
        ))
    })
}

/// Why an event cannot become a document: not retriable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

/// A document's deletion, kept so that a late older event cannot bring it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The deleted document's id.
    pub id: String,
    /// The version of the deletion: only a higher one replaces it.
    pub version: u64,
    /// The event that deleted it.
    pub lineage: Lineage,
}

/// What the index holds under an id: a document, or the tombstone of one.
// Short-lived values on their way to or from the index: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexedDocument {
    /// A searchable document.
    Live(SearchDocument),
    /// A deleted one: not searchable, and only a higher version replaces it.
    Deleted(Tombstone),
}

impl IndexedDocument {
    /// The version held.
    pub fn version(&self) -> u64 {
        match self {
            Self::Live(document) => document.version,
            Self::Deleted(tombstone) => tombstone.version,
        }
    }

    /// The id.
    pub fn id(&self) -> &str {
        match self {
            Self::Live(document) => &document.id,
            Self::Deleted(tombstone) => &tombstone.id,
        }
    }

    /// The JSON both backends store: the document with `"deleted": false` and its source
    /// event under `"source_event"`, or the tombstone with `"deleted": true`.
    pub fn to_stored_json(&self) -> serde_json::Value {
        let mut value = match self {
            Self::Live(document) => serde_json::to_value(document),
            Self::Deleted(tombstone) => serde_json::to_value(tombstone),
        }
        .unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut value {
            map.insert(
                "deleted".into(),
                serde_json::Value::Bool(matches!(self, Self::Deleted(_))),
            );
            if let Self::Live(SearchDocument {
                source_event: Some(source),
                ..
            }) = self
            {
                map.insert(SOURCE_EVENT.into(), source.to_stored_json());
            }
        }
        value
    }

    /// Reads what [`to_stored_json`](Self::to_stored_json) wrote, for searches and
    /// lookups. A source event that no longer reads as an envelope is kept as it is
    /// ([`SourceEvent::Unreadable`]). A rebuild reads with
    /// [`for_rebuild`](Self::for_rebuild) instead, which does not need the stored
    /// document to be readable.
    ///
    /// # Errors
    /// When the JSON is neither; the index was written by something else, or by a version
    /// of the service whose documents this one cannot read (a rebuild fixes those that
    /// hold their source event).
    pub fn from_stored_json(mut value: serde_json::Value) -> Result<Self, serde_json::Error> {
        let source = value
            .as_object_mut()
            .and_then(|map| map.remove(SOURCE_EVENT));
        if is_tombstone(&value) {
            return serde_json::from_value(value).map(Self::Deleted);
        }
        let mut document: SearchDocument = serde_json::from_value(value)?;
        document.source_event = source.map(SourceEvent::from_stored_json);
        Ok(Self::Live(document))
    }

    /// Reads what [`to_stored_json`](Self::to_stored_json) wrote for a rebuild: a
    /// document is built again from its source event with the current code first,
    /// `(document, true)`, so a document stored in a shape the current code no longer
    /// reads (a field added since, say) is rebuilt rather than failing the rebuild. When
    /// the event does not build it (no source event, one that no longer reads as an
    /// envelope, or that builds another id or version), the stored document is read
    /// instead, keeping its source event as it was (unreadable ones too, as raw JSON, so
    /// a later version may read them): `(document, false)`; so is a tombstone. Either way
    /// the version is the one held, so a copy by version stays a copy by version.
    ///
    /// ```
    /// use dovetail_search::document::IndexedDocument;
    ///
    /// # fn demo(held: IndexedDocument) -> Result<(), serde_json::Error> {
    /// let (copy, _rederived) = IndexedDocument::for_rebuild(held.to_stored_json())?;
    /// assert_eq!(copy.version(), held.version());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// When the document is not built again and its stored JSON does not read either.
    pub fn for_rebuild(mut stored: serde_json::Value) -> Result<(Self, bool), serde_json::Error> {
        if is_tombstone(&stored) {
            return Self::from_stored_json(stored).map(|tombstone| (tombstone, false));
        }
        let source = stored
            .as_object_mut()
            .and_then(|map| map.remove(SOURCE_EVENT))
            .map(SourceEvent::from_stored_json);
        let id = stored.get("id").and_then(serde_json::Value::as_str);
        let version = stored.get("version").and_then(serde_json::Value::as_u64);
        match &source {
            Some(SourceEvent::Envelope(envelope)) => match SearchDocument::rebuilt_from(envelope) {
                Ok(rebuilt)
                    if Some(rebuilt.id.as_str()) == id && Some(rebuilt.version) == version =>
                {
                    return Ok((Self::Live(rebuilt), true));
                }
                Ok(rebuilt) => tracing::warn!(
                    id,
                    rebuilt = %rebuilt.id,
                    "a source event now builds another document; copied as stored"
                ),
                Err(error) => tracing::warn!(
                    id,
                    %error,
                    "a source event no longer builds a document; copied as stored"
                ),
            },
            Some(SourceEvent::Unreadable(_)) => tracing::warn!(
                id,
                "a stored source event no longer reads as an envelope; copied as stored, \
                 the event with it"
            ),
            None => {}
        }
        let mut document: SearchDocument = serde_json::from_value(stored)?;
        document.source_event = source;
        Ok((Self::Live(document), false))
    }

    /// This document as the current code builds it from its source event:
    /// `(document, true)`. A tombstone, a document without a source event, or one whose
    /// event the current code refuses or no longer reads stays as it is:
    /// `(document, false)`. Either way the version is the one held, so a copy by version
    /// stays a copy by version.
    pub fn rederived(self) -> (Self, bool) {
        let Self::Live(document) = &self else {
            return (self, false);
        };
        let Some(source) = &document.source_event else {
            return (self, false);
        };
        let Some(envelope) = source.envelope() else {
            tracing::warn!(id = %document.id, "a stored source event no longer reads as an envelope; kept as stored");
            return (self, false);
        };
        match SearchDocument::rebuilt_from(envelope) {
            Ok(rebuilt) if rebuilt.id == document.id && rebuilt.version == document.version => {
                (Self::Live(rebuilt), true)
            }
            Ok(rebuilt) => {
                tracing::warn!(
                    id = %document.id,
                    rebuilt = %rebuilt.id,
                    "a source event now builds another document; kept as stored"
                );
                (self, false)
            }
            Err(error) => {
                tracing::warn!(id = %document.id, %error, "a source event no longer builds a document; kept as stored");
                (self, false)
            }
        }
    }
}

/// Whether stored JSON is a tombstone's.
fn is_tombstone(stored: &serde_json::Value) -> bool {
    stored.get("deleted") == Some(&serde_json::Value::Bool(true))
}

/// Where the stored JSON keeps a document's source event.
pub const SOURCE_EVENT: &str = "source_event";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use dovetail_contracts::claim::{ClaimPaid, ClaimSnapshot, ClaimStatus};
    use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};
    use time::macros::date;

    use super::{DocumentType, IndexedDocument, SearchDocument, SourceEvent, Tombstone};

    fn envelope<E: dovetail_events::envelope::Event>(event: &E) -> Envelope {
        Envelope::new(
            Source::parse("claim-service").unwrap(),
            AggregateRef::parse("claim", "clm-1").unwrap(),
            Sequence::new(4).unwrap(),
            event,
            EventMetadata::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_claim_event_becomes_a_document_with_its_lineage_and_exact_amount() {
        let claim = ClaimSnapshot {
            claim_id: "clm-1".into(),
            policy_id: "pol-1".into(),
            customer_id: "cust-1".into(),
            incident_date: date!(2026 - 03 - 14),
            amount: "0.10".parse().unwrap(),
            description: "Hail".into(),
            status: ClaimStatus::Paid,
            rejection_reason: None,
            version: 4,
        };
        let envelope = envelope(&ClaimPaid { claim });
        let document = SearchDocument::from_envelope(&envelope).unwrap();
        assert_eq!(document.id, "claim:clm-1");
        assert_eq!(document.doc_type, DocumentType::Claim);
        assert_eq!(document.status, "paid");
        assert_eq!(document.amount.as_deref(), Some("0.10"));
        assert_eq!(document.incident_date.as_deref(), Some("2026-03-14"));
        assert_eq!(document.version, 4);
        assert_eq!(document.lineage.sequence, 4);
        assert_eq!(document.lineage.event_id, envelope.id().to_string());
        assert_eq!(document.lineage.event_type, "claim.paid");
        let stored = IndexedDocument::Live(document.clone());
        assert_eq!(
            IndexedDocument::from_stored_json(stored.to_stored_json()).unwrap(),
            stored
        );
        let tombstone = IndexedDocument::Deleted(Tombstone {
            id: document.id,
            version: 5,
            lineage: document.lineage,
        });
        assert_eq!(tombstone.to_stored_json()["deleted"], true);
        assert_eq!(
            IndexedDocument::from_stored_json(tombstone.to_stored_json()).unwrap(),
            tombstone
        );
    }

    #[test]
    fn an_event_of_another_type_is_refused_with_what_to_do() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Renamed {
            name: String,
        }
        impl dovetail_events::envelope::Event for Renamed {
            const TYPE: &'static str = "claim.renamed";
            const VERSION: u32 = 1;
        }
        let error =
            SearchDocument::from_envelope(&envelope(&Renamed { name: "x".into() })).unwrap_err();
        assert!(error.to_string().contains("claim.renamed"), "{error}");
        assert!(error.to_string().contains("upgrade"), "{error}");
        assert!(
            DocumentType::parse("invoice")
                .unwrap_err()
                .contains("policy")
        );
    }

    fn paid_claim(version: u64) -> ClaimSnapshot {
        ClaimSnapshot {
            claim_id: "clm-1".into(),
            policy_id: "pol-1".into(),
            customer_id: "cust-1".into(),
            incident_date: date!(2026 - 03 - 14),
            amount: "12.00".parse().unwrap(),
            description: "Hail".into(),
            status: ClaimStatus::Paid,
            rejection_reason: None,
            version,
        }
    }

    #[test]
    fn an_event_type_added_later_is_indexed_from_the_snapshot_it_carries() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Reopened {
            claim: ClaimSnapshot,
        }
        impl dovetail_events::envelope::Event for Reopened {
            const TYPE: &'static str = "claim.reopened";
            const VERSION: u32 = 1;
        }
        let document = SearchDocument::from_envelope(&envelope(&Reopened {
            claim: paid_claim(4),
        }))
        .unwrap();
        assert_eq!((document.id.as_str(), document.version), ("claim:clm-1", 4));
        assert_eq!(document.lineage.event_type, "claim.reopened");
    }

    #[test]
    fn a_snapshot_that_disagrees_with_its_envelope_is_refused() {
        // The envelope says sequence 4; the snapshot says version 3.
        let error = SearchDocument::from_envelope(&envelope(&ClaimPaid {
            claim: paid_claim(3),
        }))
        .unwrap_err();
        assert!(error.to_string().contains("sequence 4"), "{error}");
        assert!(error.to_string().contains("version 3"), "{error}");
    }

    #[test]
    fn a_document_is_built_again_from_its_stored_source_event() {
        let document = SearchDocument::from_envelope(&envelope(&ClaimPaid {
            claim: paid_claim(4),
        }))
        .unwrap();
        let mut older = document.clone();
        older.text = "an older way to build the text".into();
        let stored = IndexedDocument::Live(older).to_stored_json();
        assert!(stored[super::SOURCE_EVENT].is_object(), "{stored}");
        let read = IndexedDocument::from_stored_json(stored).unwrap();
        assert_eq!(read.rederived(), (IndexedDocument::Live(document), true));

        // Without a source event, or for a tombstone: as it is.
        let mut bare = SearchDocument::from_envelope(&envelope(&ClaimPaid {
            claim: paid_claim(4),
        }))
        .unwrap();
        bare.source_event = None;
        let bare = IndexedDocument::Live(bare);
        assert_eq!(bare.clone().rederived(), (bare.clone(), false));
        assert_eq!(
            IndexedDocument::for_rebuild(bare.to_stored_json()).unwrap(),
            (bare, false)
        );
        let tombstone = IndexedDocument::Deleted(Tombstone {
            id: "claim:clm-1".into(),
            version: 5,
            lineage: document_lineage(),
        });
        assert_eq!(
            IndexedDocument::for_rebuild(tombstone.to_stored_json()).unwrap(),
            (tombstone, false)
        );
    }

    fn document_lineage() -> super::Lineage {
        SearchDocument::from_envelope(&envelope(&ClaimPaid {
            claim: paid_claim(4),
        }))
        .unwrap()
        .lineage
    }

    #[test]
    fn a_rebuild_builds_from_its_event_a_stored_document_the_current_code_cannot_read() {
        let document = SearchDocument::from_envelope(&envelope(&ClaimPaid {
            claim: paid_claim(4),
        }))
        .unwrap();
        // As an older version stored it, without a field the current code requires.
        let mut stored = IndexedDocument::Live(document.clone()).to_stored_json();
        let map = stored.as_object_mut().unwrap();
        map.remove("date");
        map.insert("text".into(), "an older text".into());
        assert!(IndexedDocument::from_stored_json(stored.clone()).is_err());

        assert_eq!(
            IndexedDocument::for_rebuild(stored).unwrap(),
            (IndexedDocument::Live(document), true)
        );
    }

    #[test]
    fn a_source_event_that_no_longer_reads_goes_through_a_rebuild_unchanged() {
        let document = SearchDocument::from_envelope(&envelope(&ClaimPaid {
            claim: paid_claim(4),
        }))
        .unwrap();
        // What a later version might store: no envelope this version reads.
        let later = serde_json::json!({ "envelope_version": 2, "body": { "claim": "clm-1" } });
        let mut stored = IndexedDocument::Live(document.clone()).to_stored_json();
        stored[super::SOURCE_EVENT] = later.clone();

        let (copy, rederived) = IndexedDocument::for_rebuild(stored.clone()).unwrap();
        assert!(!rederived);
        let IndexedDocument::Live(copied) = &copy else {
            panic!("{copy:?}");
        };
        assert_eq!(
            copied.source_event,
            Some(SourceEvent::Unreadable(std::sync::Arc::new(later.clone())))
        );
        assert_eq!(
            copy.to_stored_json(),
            stored,
            "stored again as it was, the event with it"
        );
        // Read for a search and rederived, it is kept as well.
        let read = IndexedDocument::from_stored_json(stored.clone()).unwrap();
        assert_eq!(read.clone().rederived(), (read.clone(), false));
        assert_eq!(read.to_stored_json(), stored);

        // With neither the event nor the stored document readable, the rebuild says so.
        stored.as_object_mut().unwrap().remove("date");
        assert!(IndexedDocument::for_rebuild(stored).is_err());
    }

    #[test]
    fn an_event_that_builds_another_version_leaves_the_stored_document_and_its_event() {
        let document = SearchDocument::from_envelope(&envelope(&ClaimPaid {
            claim: paid_claim(4),
        }))
        .unwrap();
        let mut stored = IndexedDocument::Live(document.clone()).to_stored_json();
        stored["version"] = 5.into();
        let mut expected = document;
        expected.version = 5;
        assert_eq!(
            IndexedDocument::for_rebuild(stored).unwrap(),
            (IndexedDocument::Live(expected), false)
        );
    }
}
