//! Who the demo acts as: staff (the stack's staff user), a customer registered for this
//! walk, and another customer; each logged in through the auth service, with the bearer
//! token it sends.

use anyhow::Context as _;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::http::{expect, text};
use crate::users::Login;

/// A logged-in user: their access token and, for a customer, the customer they act for.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(super) email: String,
    pub(crate) token: String,
    pub(super) customer_id: String,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("email", &self.email)
            .field("customer_id", &self.customer_id)
            .finish_non_exhaustive()
    }
}

/// Logs in as `login` at the auth service `auth_url`; who they are (`GET /users/me`).
///
/// # Errors
/// When the auth service refuses or does not answer; the message says what to check.
pub(crate) async fn log_in(http: &Client, auth_url: &str, login: &Login) -> anyhow::Result<Caller> {
    let session = expect(
        http.post(format!("{auth_url}/sessions"))
            .json(&json!({ "email": login.email, "password": login.password }))
            .send()
            .await,
        StatusCode::OK,
        &format!(
            "logging in as {} (are the credentials those of this stack's first start?)",
            login.email
        ),
    )
    .await?;
    let token = text(&session, "access_token");
    let me = expect(
        http.get(format!("{auth_url}/users/me"))
            .bearer_auth(&token)
            .send()
            .await,
        StatusCode::OK,
        "asking the auth service who we are",
    )
    .await?;
    Ok(Caller {
        email: login.email.clone(),
        token,
        customer_id: text(&me, "customer_id"),
    })
}

/// Registers a new customer user (a new customer, whose id the auth service picks) with a
/// random password, and logs in as them.
///
/// # Errors
/// When the auth service refuses or does not answer.
pub(super) async fn register_customer(http: &Client, auth_url: &str) -> anyhow::Result<Caller> {
    let login = Login {
        email: format!(
            "demo-{}@example.com",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        password: uuid::Uuid::new_v4().simple().to_string(),
    };
    let registered: Value = expect(
        http.post(format!("{auth_url}/users"))
            .json(&json!({ "email": login.email, "password": login.password }))
            .send()
            .await,
        StatusCode::ACCEPTED,
        "registering the walk's customer",
    )
    .await?;
    registered
        .get("status")
        .context("the registration's answer has no status")?;
    log_in(http, auth_url, &login).await
}
