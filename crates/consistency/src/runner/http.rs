//! The staff endpoints of a [`Runner`] (feature `http`): start a run and follow it.
//!
//! | route | answers |
//! |---|---|
//! | `POST /admin/consistency/runs` | `202 Accepted`, the queued run, `Location` of its record |
//! | `GET /admin/consistency/runs` | the latest runs, newest first (`?limit=`, 1–100, default 20) |
//! | `GET /admin/consistency/runs/{id}` | the run's record as it stands (poll until `status` is `succeeded` or `failed`) |
//!
//! Every route needs a verified [`Identity`] with the staff role: mount the router behind
//! [`dovetail_http::identity::IdentityLayer`]. Without the layer every request is 401;
//! a customer's token is 403. Errors are `application/problem+json`.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dovetail_http::Problem;
use dovetail_http::identity::{Identity, Role};
use serde::Deserialize;

use crate::runner::{RunId, Runner, RunnerError};

/// The routes' common prefix.
pub const RUNS_PATH: &str = "/admin/consistency/runs";

/// The router of the staff endpoints of `runner`.
pub fn router(runner: Runner) -> Router {
    Router::new()
        .route(RUNS_PATH, get(list_runs).post(start_run))
        .route("/admin/consistency/runs/{id}", get(get_run))
        .with_state(runner)
}

fn store_problem(error: &RunnerError) -> Problem {
    Problem::unavailable(format!("the consistency runner's store failed: {error}"))
}

async fn start_run(State(runner): State<Runner>, identity: Identity) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    let record = runner
        .request(identity.subject())
        .await
        .map_err(|e| store_problem(&e))?;
    let location = format!("{RUNS_PATH}/{}", record.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(record),
    )
        .into_response())
}

async fn get_run(
    State(runner): State<Runner>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    let id: RunId = id.parse().map_err(|_| {
        Problem::bad_request(format!(
            "`{id}` is not a run id: use the id (a UUID) that POST {RUNS_PATH} answered"
        ))
        .field("id", "a UUID")
    })?;
    match runner.get(id).await.map_err(|e| store_problem(&e))? {
        Some(record) => Ok(Json(record).into_response()),
        None => Err(Problem::not_found(format!(
            "no consistency run has the id {id}; GET {RUNS_PATH} lists the latest"
        ))),
    }
}

/// The query of `GET /admin/consistency/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
}

async fn list_runs(
    State(runner): State<Runner>,
    identity: Identity,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    let Query(query) = query.map_err(|rejection| {
        Problem::bad_request(format!(
            "{}; the only parameter is `limit` (1 to 100)",
            rejection.body_text()
        ))
    })?;
    let limit = match query.limit.as_deref() {
        None => 20,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(format!("limit `{text}` is not a number from 1 to 100"))
                    .field("limit", "a number from 1 to 100")
            })?,
    };
    let runs = runner.latest(limit).await.map_err(|e| store_problem(&e))?;
    Ok(Json(serde_json::json!({ "runs": runs })).into_response())
}
