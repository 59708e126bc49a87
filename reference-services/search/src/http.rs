//! The search API: `GET /search`, `GET /documents/{type}/{id}` (the version the index
//! holds of one aggregate), rebuild jobs under `/admin/rebuilds` (staff) and
//! `GET /openapi.json`; every bad parameter is a problem+json naming it. See
//! `openapi.json` beside this file for the contract.
//!
//! # Authorization scope
//!
//! Every route but `/openapi.json` (and the operations endpoints `/healthz`, `/readyz`,
//! `/metrics`, which the kit serves) needs `Authorization: Bearer <access token>`, a token
//! of the auth service for the audience `search-service`, verified against its JWKS by
//! dovetail-http's [`IdentityLayer`]. Without one, or with one that does not verify
//! (altered, expired, another issuer, another audience): 401 with `WWW-Authenticate`.
//! No header but `Authorization` says who the caller is.
//!
//! The search scope comes from the verified token only ([`scope`]):
//! - the `staff` role: every customer's documents; `customer_id` filters freely.
//! - the `customer` role with a `customer_id` claim: that customer's documents only. The
//!   scope is a filter *inside* the index query, so neither hits, highlights nor pages can
//!   show anything else. A `customer_id` parameter naming another customer is a 403 (not
//!   silently dropped: a caller who asks for someone else's documents is told no, rather
//!   than shown their own as if they were the other's); naming their own is allowed.
//! - neither: 403 saying what the token lacks.
//!
//! `/documents/{type}/{id}` has the same scope: staff read any document's version, a
//! customer only their own; another customer's document is answered exactly as one the
//! index does not hold (404), so a customer cannot learn which ids exist.
//!
//! `/admin/rebuilds` and `/admin/rebuilds/{id}` need the `staff` role (403 naming it).
//!
//! Every answer of `/search` and `/admin` depends on the token: it says so
//! (`Vary: Authorization`) and is not to be stored by a shared cache
//! (`Cache-Control: private, no-store`).
//!
//! # Document versions
//!
//! `GET /documents/{type}/{id}` answers `{"id", "type", "version"}` and `ETag: "<version>"`:
//! the aggregate's sequence of the last event the index applied (one get by document id,
//! refreshed or not). A caller that wrote version N and wants to read its own write polls
//! it until the version is N or more; then `/search` shows it once the index refreshes.
//!
//! # Cursors
//!
//! A `next_cursor` holds the index's position after the page's last hit and a fingerprint
//! of the search it belongs to (scope, `q`, filters and order, not `limit`): passed with
//! other parameters it is a 400 naming `cursor`, never a page of another order.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dovetail_http::identity::{Identity, IdentityLayer, JwtVerifier, Role};
use dovetail_service_kit::{ApiQuery, Cursor, IdempotencyKeyHeader, Page, Problem, etag, ops};
use serde::{Deserialize, Serialize};
use time::Date;

use crate::document::{DocumentType, IndexedDocument, SearchDocument};
use crate::index::{AnyIndex, IndexError, Scope, SearchIndex, SearchQuery, SortOrder};
use crate::rebuild_jobs::{RebuildJobs, StartError, Started};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest `limit`.
pub const MAX_LIMIT: usize = 100;
/// Longest `q`, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Longest `customer_id` parameter, in characters.
pub const MAX_CUSTOMER_ID_CHARS: usize = 128;

const POLICY_STATUSES: &[&str] = &["draft", "active", "cancelled", "expired"];
const CLAIM_STATUSES: &[&str] = &["submitted", "under_review", "approved", "rejected", "paid"];

/// What the handlers share: the index and this instance's rebuild jobs.
#[derive(Debug, Clone)]
struct Api {
    index: AnyIndex,
    rebuilds: RebuildJobs,
}

/// The routes of the API over `index`, with rebuilds run by `rebuilds`, every one but
/// `/openapi.json` behind an [`IdentityLayer`] verifying with `verifier`.
pub fn router(index: AnyIndex, rebuilds: RebuildJobs, verifier: JwtVerifier) -> Router {
    // Their answers depend on the bearer token, problems (401s included) too.
    let scoped = Router::new()
        .route("/search", get(search))
        .route("/documents/{type}/{id}", get(document_version))
        .route("/admin/rebuilds", get(list_rebuilds).post(start_rebuild))
        .route("/admin/rebuilds/{id}", get(rebuild_job))
        // Before the layers, so that a 405 needs a token and carries the headers too.
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(IdentityLayer::new(verifier))
        .layer(axum::middleware::map_response(private_to_the_scope));
    Router::new()
        .merge(scoped)
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(Api { index, rebuilds })
}

/// Marks an answer as depending on the bearer token: `Vary` names `Authorization`, and
/// `Cache-Control: private, no-store` keeps shared caches (and browsers' disks) from
/// handing one caller's results to another.
async fn private_to_the_scope(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Authorization"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// The query string of `GET /search`, as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: Option<String>,
    #[serde(rename = "type")]
    doc_type: Option<String>,
    status: Option<String>,
    customer_id: Option<String>,
    date_from: Option<String>,
    date_to: Option<String>,
    sort: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// One result as the API returns it: the document, its score and highlights.
#[derive(Debug, Serialize)]
struct Hit {
    #[serde(flatten)]
    document: SearchDocument,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    highlights: Vec<String>,
}

fn bad(field: &str, message: impl Into<String>) -> Problem {
    let message = message.into();
    Problem::bad_request(format!("query parameter `{field}`: {message}")).field(field, message)
}

/// The scope of a verified `identity`: staff for the `staff` role, the token's customer
/// for the `customer` role with a `customer_id` claim.
///
/// ```
/// use dovetail_http::identity::{Identity, Role};
/// use dovetail_search::http::scope;
/// use dovetail_search::index::Scope;
///
/// let at = time::OffsetDateTime::UNIX_EPOCH;
/// let alice = Identity::new("u-1", [Role::Customer], Some("alice".into()), "jti-1", at);
/// assert_eq!(scope(&alice).unwrap(), Scope::Customer("alice".into()));
/// let staff = Identity::new("u-2", [Role::Staff], None, "jti-2", at);
/// assert_eq!(scope(&staff).unwrap(), Scope::Staff);
/// let nobody = Identity::new("u-3", [], Some("alice".into()), "jti-3", at);
/// assert_eq!(scope(&nobody).unwrap_err().status().as_u16(), 403);
/// ```
///
/// # Errors
/// A 403 saying what is needed when the token has neither the staff role nor the customer
/// role with a customer id.
pub fn scope(identity: &Identity) -> Result<Scope, Problem> {
    if identity.has_role(Role::Staff) {
        return Ok(Scope::Staff);
    }
    match identity.customer_id().filter(|id| !id.is_empty()) {
        Some(customer) if identity.has_role(Role::Customer) => {
            Ok(Scope::Customer(customer.to_owned()))
        }
        _ => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden-scope",
            "Outside your scope",
        )
        .detail(format!(
            "searching needs the {} role, or the {} role with a customer_id claim; the token \
             of user {} has neither",
            Role::Staff,
            Role::Customer,
            identity.subject()
        ))),
    }
}

/// Whether `id` (trimmed already) is a customer id: 1 to [`MAX_CUSTOMER_ID_CHARS`]
/// characters, counted as OpenAPI's `maxLength` counts them.
fn customer_id_fits(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_CUSTOMER_ID_CHARS
}

/// A day as `YYYY-MM-DD`, of a year from 1 to 9999. `time`'s `[year]` alone would also
/// read a sign (`-0001`, `+2026`), which OpenSearch's `yyyy-MM-dd` then refuses.
fn date(field: &str, text: Option<String>) -> Result<Option<Date>, Problem> {
    text.map(|text| {
        let wrong = || {
            bad(
                field,
                format!(
                    "{text:?} is not a date; use YYYY-MM-DD with a year from 0001 to 9999, \
                     such as 2026-01-31"
                ),
            )
        };
        let shaped = text.len() == 10
            && text.bytes().enumerate().all(|(at, byte)| match at {
                4 | 7 => byte == b'-',
                _ => byte.is_ascii_digit(),
            });
        if !shaped {
            return Err(wrong());
        }
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(&text, &format)
            .ok()
            .filter(|date| (1..=9999).contains(&date.year()))
            .ok_or_else(wrong)
    })
    .transpose()
}

/// A stable 64-bit hash (FNV-1a), the same on every instance, run and platform.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fingerprint of what `query` asks, which its cursors carry: the scope, the words,
/// the filters and the order (not `limit`, which may change from page to page). Sixteen
/// hexadecimal digits.
fn fingerprint(query: &SearchQuery) -> String {
    let scope = match &query.scope {
        Scope::Customer(customer) => format!("customer:{customer}"),
        Scope::Staff => "staff".to_owned(),
    };
    let sort = match query.sort {
        SortOrder::Relevance => "relevance",
        SortOrder::DateAscending => "date",
        SortOrder::DateDescending => "-date",
    };
    let asked = serde_json::json!([
        scope,
        sort,
        query.text,
        query.doc_type.map(DocumentType::as_str),
        query.status,
        query.customer_id,
        query.date_from.map(|date| date.to_string()),
        query.date_to.map(|date| date.to_string()),
    ]);
    format!("{:016x}", fnv1a(asked.to_string().as_bytes()))
}

/// The `next_cursor` of a page of `query` whose index position is `position`.
fn cursor_token(query: &SearchQuery, position: &str) -> String {
    Cursor::after(format!("{}:{position}", fingerprint(query))).token()
}

/// The index position a cursor of `query` holds.
///
/// # Errors
/// A 400 naming `cursor` when the token is not one this service gave out, or was given
/// out for another search.
fn cursor_position(query: &SearchQuery, token: &str) -> Result<String, Problem> {
    let foreign = || {
        bad(
            "cursor",
            "is not one this service gave out; pass the `next_cursor` of the previous page \
             unchanged, or leave it out to start at the beginning",
        )
    };
    let cursor = Cursor::parse(token).map_err(|_| foreign())?;
    let (fingerprint_given, position) = cursor
        .last_key()
        .split_once(':')
        .filter(|(given, _)| {
            given.len() == 16 && given.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
        .ok_or_else(foreign)?;
    if fingerprint_given != fingerprint(query) {
        return Err(bad(
            "cursor",
            "this cursor belongs to another search (other words, filters, order or scope); \
             start again without it",
        ));
    }
    Ok(position.to_owned())
}

/// Reads and checks the parameters into a query of `scope`.
fn query(scope: Scope, params: SearchParams) -> Result<SearchQuery, Problem> {
    let mut query = SearchQuery::new(scope);
    // An empty `q`, as an HTML form sends it, is no text query.
    if let Some(q) = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(bad("q", format!("at most {MAX_QUERY_CHARS} characters")));
        }
        if !q.chars().any(char::is_alphanumeric) {
            return Err(bad(
                "q",
                "has no word to search for; send words (letters or digits), or leave `q` out to list",
            ));
        }
        query.text = Some(q.to_owned());
    }
    query.doc_type = params
        .doc_type
        .map(|text| DocumentType::parse(&text).map_err(|message| bad("type", message)))
        .transpose()?;
    if let Some(status) = params.status {
        let known: Vec<&str> = match query.doc_type {
            Some(DocumentType::Policy) => POLICY_STATUSES.to_vec(),
            Some(DocumentType::Claim) => CLAIM_STATUSES.to_vec(),
            None => POLICY_STATUSES
                .iter()
                .chain(CLAIM_STATUSES)
                .copied()
                .collect(),
        };
        if !known.contains(&status.as_str()) {
            return Err(bad(
                "status",
                format!(
                    "{status:?} is no status here; use one of {}",
                    known.join(", ")
                ),
            ));
        }
        query.status = Some(status);
    }
    if let Some(customer) = params.customer_id {
        let customer = customer.trim();
        if !customer_id_fits(customer) {
            return Err(bad(
                "customer_id",
                format!("must be 1 to {MAX_CUSTOMER_ID_CHARS} characters"),
            ));
        }
        query.customer_id = Some(customer.to_owned());
    }
    query.date_from = date("date_from", params.date_from)?;
    query.date_to = date("date_to", params.date_to)?;
    if let (Some(from), Some(to)) = (query.date_from, query.date_to)
        && from > to
    {
        return Err(bad("date_to", format!("{to} is before date_from {from}")));
    }
    query.sort = match params.sort.as_deref() {
        None if query.text.is_some() => SortOrder::Relevance,
        Some("relevance") => SortOrder::Relevance,
        Some("date") => SortOrder::DateAscending,
        None | Some("-date") => SortOrder::DateDescending,
        Some(other) => {
            return Err(bad(
                "sort",
                format!(
                    "{other:?} is no order; use relevance, date (oldest first) or -date (newest first)"
                ),
            ));
        }
    };
    if let Some(limit) = params.limit {
        query.limit = limit
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!("{limit:?} is not a number from 1 to {MAX_LIMIT}"),
                )
            })?;
    }
    // Last: the cursor is checked against everything else the query asks.
    if let Some(token) = params.cursor {
        query.after = Some(cursor_position(&query, &token)?);
    }
    Ok(query)
}

/// The problem an index error is.
pub fn problem(error: &IndexError) -> Problem {
    match error {
        IndexError::BadCursor(message) => bad("cursor", message.clone()),
        IndexError::Forbidden(message) => Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden-scope",
            "Outside your scope",
        )
        .detail(format!(
            "{message}; leave customer_id out to search your own documents"
        )),
        IndexError::Conflict(message) => Problem::conflict("rebuild-under-way", message.clone()),
        IndexError::Unavailable(_) => {
            tracing::warn!(%error, "search index unavailable");
            Problem::unavailable("the search index does not answer; retry in a moment")
        }
        IndexError::Corrupt(_) | IndexError::Refused(_) => {
            tracing::error!(%error, "search index corrupt");
            Problem::internal(
                "the search index holds a document it cannot read; operators have the details in the log",
            )
        }
    }
}

async fn search(
    State(Api { index, .. }): State<Api>,
    identity: Identity,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Response {
    let answer = async {
        let scope = scope(&identity)?;
        let query = query(scope, params)?;
        let results = index
            .search(&query)
            .await
            .map_err(|error| problem(&error))?;
        let page = Page {
            items: results
                .hits
                .into_iter()
                .map(|hit| Hit {
                    document: hit.document,
                    score: hit.score,
                    highlights: hit.highlights,
                })
                .collect::<Vec<_>>(),
            next_cursor: results.next.map(|next| cursor_token(&query, &next)),
        };
        Ok::<_, Problem>(axum::Json(page))
    };
    match answer.await {
        Ok(page) => page.into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// The version the index holds of one aggregate, as `GET /documents/{type}/{id}` answers
/// it.
#[derive(Debug, Serialize)]
struct DocumentVersion<'a> {
    /// The aggregate's id (not the document id): the `{id}` of the path.
    id: &'a str,
    /// The document type: the `{type}` of the path.
    #[serde(rename = "type")]
    doc_type: DocumentType,
    /// The aggregate's sequence of the last event the index applied.
    version: u64,
}

/// `GET /documents/{type}/{id}`: the version the index holds of aggregate `id` of `type`,
/// within the caller's scope, with `ETag: "<version>"`.
///
/// A 400 naming `type` for an unknown type; a 404 when the index holds no live document
/// of it that the caller may see (none indexed yet, deleted, or another customer's: a
/// customer is told the same in each case).
async fn document_version(
    State(Api { index, .. }): State<Api>,
    identity: Identity,
    Path((doc_type, id)): Path<(String, String)>,
) -> Response {
    let answer = async {
        let scope = scope(&identity)?;
        let doc_type = DocumentType::parse(&doc_type).map_err(|message| {
            Problem::bad_request(format!("path segment `type`: {message}")).field("type", message)
        })?;
        let held = index
            .get(&doc_type.document_id(&id))
            .await
            .map_err(|error| problem(&error))?;
        let version = match (held, &scope) {
            (Some(IndexedDocument::Live(document)), Scope::Customer(own))
                if document.customer_id != *own =>
            {
                None
            }
            (Some(IndexedDocument::Live(document)), _) => Some(document.version),
            (Some(IndexedDocument::Deleted(_)) | None, _) => None,
        };
        let Some(version) = version else {
            return Err(not_indexed(doc_type, &id, &scope));
        };
        let body = axum::Json(DocumentVersion {
            id: &id,
            doc_type,
            version,
        });
        Ok::<_, Problem>(([(header::ETAG, etag(version))], body).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// The 404 of a document the index does not hold for `scope`: the same words for a
/// customer whether the document is missing or another customer's.
fn not_indexed(doc_type: DocumentType, id: &str, scope: &Scope) -> Problem {
    let whose = match scope {
        Scope::Customer(_) => " among your documents",
        Scope::Staff => "",
    };
    Problem::not_found(format!(
        "the index holds no {} {id:?}{whose}: no event of it has been indexed yet; if you \
         have just written it, retry in a moment",
        doc_type.as_str()
    ))
}

fn job_location(id: &str) -> String {
    format!("/admin/rebuilds/{id}")
}

/// Starts a rebuild (staff only) while events keep being indexed: 202 with the job and
/// its `Location`, once the rebuild holds its lease; the same job again for a repeated
/// `Idempotency-Key`, also once it holds its lease. A rebuild that ends before its lease
/// leaves no job and answers its problem: 409 when another instance rebuilds, 503 with
/// `Retry-After` when the index fails.
///
/// The keys are this instance's, in memory, with its last [`KEPT_JOBS`] jobs: a retry
/// that reaches another instance, or comes after a restart, is a new start (a 409 while
/// the first rebuild runs).
///
/// [`KEPT_JOBS`]: crate::rebuild_jobs::KEPT_JOBS
async fn start_rebuild(
    State(Api { rebuilds, .. }): State<Api>,
    identity: Identity,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
) -> Response {
    if let Err(problem) = identity.require(Role::Staff) {
        return problem.into_response();
    }
    let (job, replayed) = match rebuilds.start(key).await {
        Ok(Started::New(job)) => (job, false),
        Ok(Started::Replayed(job)) => (job, true),
        Err(error @ StartError::Running(_)) => {
            return Problem::conflict("rebuild-under-way", error.to_string()).into_response();
        }
        Err(StartError::Refused(error)) => return problem(&error).into_response(),
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(&job)).into_response();
    if let Ok(location) = HeaderValue::from_str(&job_location(&job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// One rebuild job of this instance (staff only).
async fn rebuild_job(
    State(Api { rebuilds, .. }): State<Api>,
    identity: Identity,
    Path(id): Path<String>,
) -> Response {
    if let Err(problem) = identity.require(Role::Staff) {
        return problem.into_response();
    }
    match rebuilds.get(&id) {
        Some(job) => axum::Json(job).into_response(),
        None => Problem::not_found(format!(
            "no rebuild {id:?} on this instance: each instance keeps the last {} rebuilds it \
             ran (GET /admin/rebuilds lists them); ask the instance that answered the POST",
            crate::rebuild_jobs::KEPT_JOBS
        ))
        .into_response(),
    }
}

/// The rebuild jobs this instance remembers, newest first (staff only).
async fn list_rebuilds(State(Api { rebuilds, .. }): State<Api>, identity: Identity) -> Response {
    if let Err(problem) = identity.require(Role::Staff) {
        return problem.into_response();
    }
    axum::Json(serde_json::json!({ "items": rebuilds.list() })).into_response()
}
