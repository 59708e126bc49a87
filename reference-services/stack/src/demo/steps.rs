//! The steps of the demo, in the order [`run`](super::run) takes them: each asks the
//! services one thing, prints what it did and what they answered, and keeps what the
//! report needs.

use std::fmt::Write as _;

use anyhow::bail;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use time::Date;

use super::callers::{self, Caller};
use super::http::{consistency_token, expect, refusal, text, wait_for_copies, wait_for_search};
use super::{DemoReport, Services};
use crate::users::Credentials;

/// The words the customer searches for, as they go in the query string.
const WORDS: &str = "burst%20pipe";

/// A walk in progress: where it goes, where it prints, and what it saw so far.
pub(super) struct Walk<'a> {
    services: &'a Services,
    out: &'a mut dyn std::io::Write,
    http: Client,
    /// The stack's staff user, logged in.
    staff: Option<Caller>,
    /// The customer of the walk, registered each time.
    customer: Option<Caller>,
    /// Another customer (the stack's demo customer), logged in.
    stranger: Option<Caller>,
    today: Date,
    /// The day of the claimed incident: yesterday.
    incident: Date,
    /// The consistency token of the policy's issue.
    issued_token: String,
    report: DemoReport,
}

impl<'a> Walk<'a> {
    /// Starts a walk through `services`, printing to `out` where the services are.
    pub(super) fn start(services: &'a Services, out: &'a mut dyn std::io::Write) -> Self {
        let today = time::OffsetDateTime::now_utc().date();
        let incident = today.previous_day().unwrap_or(today);
        let mut walk = Self {
            services,
            out,
            http: Client::new(),
            staff: None,
            customer: None,
            stranger: None,
            today,
            incident,
            issued_token: String::new(),
            report: DemoReport::default(),
        };
        walk.say(&format!(
            "Dovetail demo, through the gateway at {} only: /auth, /policies, /claims and \
             /search go to their service, /views composes pages from several\n",
            services.gateway
        ));
        walk
    }

    fn staff(&self) -> &str {
        self.staff.as_ref().map_or("", |staff| staff.token.as_str())
    }

    fn customer(&self) -> &str {
        self.customer
            .as_ref()
            .map_or("", |customer| customer.token.as_str())
    }

    fn customer_id(&self) -> String {
        self.customer
            .as_ref()
            .map(|customer| customer.customer_id.clone())
            .unwrap_or_default()
    }

    /// Step 0: a request without a token is refused; log in as staff, register a new
    /// customer and log in as them, and log in as the stack's demo customer.
    pub(super) async fn log_in(&mut self, credentials: &Credentials) -> anyhow::Result<()> {
        let services = self.services;
        let auth = services.auth();
        self.say("0. Every API wants a bearer token from the auth service");
        self.report.anonymous_refusal = refusal(
            self.http
                .get(format!("{}/policies", services.gateway))
                .send()
                .await?,
        )
        .await?;
        self.say(&format!(
            "   GET /policies without a token -> {}",
            self.report.anonymous_refusal
        ));
        let staff = callers::log_in(&self.http, &auth, &credentials.staff).await?;
        self.say(&format!(
            "   POST /auth/sessions as {} -> 200, a 15-minute EdDSA access token (and a refresh token)",
            staff.email
        ));
        let customer = callers::register_customer(&self.http, &auth).await?;
        self.say(&format!(
            "   POST /auth/users {} -> 202; logged in, GET /users/me -> customer {}",
            customer.email, customer.customer_id
        ));
        let stranger = callers::log_in(&self.http, &auth, &credentials.customer).await?;
        self.report.customer_id.clone_from(&customer.customer_id);
        (self.staff, self.customer, self.stranger) = (Some(staff), Some(customer), Some(stranger));
        Ok(())
    }

    /// Writes `text` to the output and to the report's transcript, as a line.
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = writeln!(self.report.transcript, "{text}");
    }

    /// Step 1: drafts a home policy for the customer, covering the incident's day.
    pub(super) async fn draft_policy(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let (today, incident) = (self.today, self.incident);
        let customer_id = self.customer_id();
        self.say(&format!(
            "1. As the customer, draft a home policy for {customer_id}: cover 10000.00, \
             deductible 250.00"
        ));
        let drafted = expect(
            self.http
                .post(format!("{gateway}/policies"))
                .bearer_auth(self.customer())
                .json(&json!({
                    "customer_id": customer_id,
                    "product_line": "home",
                    "coverage_limit": "10000.00",
                    "deductible": "250.00",
                    "premium": "480.00",
                    "effective_date": incident.replace_year(incident.year() - 1).unwrap_or(incident).to_string(),
                    "expiry_date": today.replace_year(today.year() + 1).unwrap_or(today).to_string(),
                }))
                .send()
                .await,
            StatusCode::CREATED,
            "drafting the policy",
        )
        .await?;
        self.report.policy_id = text(&drafted, "policy_id");
        self.say(&format!(
            "   POST /policies -> 201 {} ({}, version {})",
            self.report.policy_id,
            text(&drafted, "status"),
            drafted["version"]
        ));
        Ok(())
    }

    /// Step 2: issues the drafted policy.
    pub(super) async fn issue_policy(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let policy_id = self.report.policy_id.clone();
        self.say("2. As staff, issue it");
        let issued = self
            .http
            .post(format!("{gateway}/policies/{policy_id}/issue"))
            .bearer_auth(self.staff())
            .header("if-match", "\"1\"")
            .send()
            .await;
        self.issued_token = consistency_token(issued.as_ref().ok());
        let issued = expect(issued, StatusCode::OK, "issuing the policy").await?;
        self.say(&format!(
            "   POST /policies/{policy_id}/issue (If-Match \"1\") -> 200 {} (version {}), and a \
             dovetail-consistency token from the gateway",
            text(&issued, "status"),
            issued["version"]
        ));
        Ok(())
    }

    /// Step 3: reads the policy's page with the write's consistency token: the gateway
    /// waits until the claim service's replica and the search index hold the issued
    /// version, and the walk reports how long that took.
    pub(super) async fn read_your_own_write(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let policy_id = self.report.policy_id.clone();
        self.say(
            "3. Read your own write: the claim service and the search index keep their own copies \
             of policies, fed by policy events; with the token, the policy's page waits for them",
        );
        let (lag, page) = wait_for_copies(
            &self.http,
            gateway,
            self.customer(),
            &policy_id,
            &self.issued_token,
        )
        .await?;
        self.report.replica_lag = lag;
        let copies = &page["copies"];
        self.report.read_your_writes = ["claim_service", "search"]
            .map(|copy| {
                let held = &copies[copy];
                format!(
                    "{copy} {} at version {}",
                    text(held, "status"),
                    held["data"]["version"]
                )
            })
            .join(", ");
        self.say(&format!(
            "   GET /views/policies/{policy_id} (dovetail-consistency) -> policy {}, copies: {} \
             after {} ms",
            text(&page["policy"], "status"),
            self.report.read_your_writes,
            lag.as_millis()
        ));
        Ok(())
    }

    /// Step 4: files a claim, then files it again with the same `Idempotency-Key` (a
    /// client's retry), which must answer the same claim.
    pub(super) async fn file_a_claim_twice(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        self.say(
            "4. As the customer, file a claim of 1200.00 with an Idempotency-Key, twice (a client retry)",
        );
        let key = uuid::Uuid::new_v4().to_string();
        let claim_body = self.claim_of("1200.00");
        let filed = expect(
            self.http
                .post(format!("{gateway}/claims"))
                .bearer_auth(self.customer())
                .header("idempotency-key", &key)
                .json(&claim_body)
                .send()
                .await,
            StatusCode::CREATED,
            "filing the claim",
        )
        .await?;
        self.report.claim_id = text(&filed, "claim_id");
        let retried = self
            .http
            .post(format!("{gateway}/claims"))
            .bearer_auth(self.customer())
            .header("idempotency-key", &key)
            .json(&claim_body)
            .send()
            .await?;
        let replayed = retried.headers().get("idempotent-replayed").is_some();
        let retried: Value = retried.json().await?;
        if retried["claim_id"] != filed["claim_id"] {
            bail!("the retried filing created a second claim: {retried}");
        }
        self.say(&format!(
            "   POST /claims -> 201 {} ({}); the retry -> the same claim (Idempotent-Replayed: {replayed})",
            self.report.claim_id,
            text(&filed, "status")
        ));
        Ok(())
    }

    /// Step 5: files a claim above what the policy pays, which the rules refuse.
    pub(super) async fn refuse_a_claim_over_the_limit(&mut self) -> anyhow::Result<()> {
        self.say("5. A claim above what the policy pays is refused");
        self.report.over_limit_refusal = self.file_a_refused_claim("9800.00").await?;
        self.say(&format!(
            "   POST /claims (9800.00) -> {}",
            self.report.over_limit_refusal
        ));
        Ok(())
    }

    /// Step 6: the customer tries to approve their own claim, which only staff may.
    pub(super) async fn refuse_the_customer_a_staff_action(&mut self) -> anyhow::Result<()> {
        let claim_id = self.report.claim_id.clone();
        self.say("6. The customer tries to approve their own claim");
        self.report.customer_approval_refusal = refusal(
            self.http
                .post(format!(
                    "{}/claims/{claim_id}/approve",
                    self.services.gateway
                ))
                .bearer_auth(self.customer())
                .header("if-match", "\"1\"")
                .send()
                .await?,
        )
        .await?;
        self.say(&format!(
            "   POST /claims/{claim_id}/approve (customer's token) -> {}",
            self.report.customer_approval_refusal
        ));
        Ok(())
    }

    /// Step 7: staff review, approve and pay the filed claim.
    pub(super) async fn settle_the_claim(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let claim_id = self.report.claim_id.clone();
        self.say("7. As staff, review, approve and pay the claim");
        for (step, version) in [("review", 1), ("approve", 2), ("pay", 3)] {
            let moved = expect(
                self.http
                    .post(format!("{gateway}/claims/{claim_id}/{step}"))
                    .bearer_auth(self.staff())
                    .header("if-match", format!("\"{version}\""))
                    .send()
                    .await,
                StatusCode::OK,
                step,
            )
            .await?;
            self.say(&format!(
                "   POST /claims/{claim_id}/{step} -> {}",
                text(&moved, "status")
            ));
        }
        Ok(())
    }

    /// Step 8: staff cancel the policy, waits for the replica to hold the cancellation, and
    /// files a claim on it, which the rules refuse.
    pub(super) async fn cancel_the_policy(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let policy_id = self.report.policy_id.clone();
        self.say(
            "8. As staff, cancel the policy; a new claim on it is refused once the replica has the cancellation",
        );
        let cancelled = self
            .http
            .post(format!("{gateway}/policies/{policy_id}/cancel"))
            .bearer_auth(self.staff())
            .header("if-match", "\"2\"")
            .json(&json!({ "reason": "demo" }))
            .send()
            .await;
        let token = consistency_token(cancelled.as_ref().ok());
        expect(cancelled, StatusCode::OK, "cancelling the policy").await?;
        wait_for_copies(&self.http, gateway, self.customer(), &policy_id, &token).await?;
        self.report.cancelled_refusal = self.file_a_refused_claim("50.00").await?;
        self.say(&format!(
            "   POST /claims -> {}",
            self.report.cancelled_refusal
        ));
        Ok(())
    }

    /// Step 9, first search: the customer's search for the claim's words, once it finds
    /// the paid claim; keeps each hit for the report.
    pub(super) async fn search_as_the_customer(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let customer = self.customer_id();
        let paid_claim = format!("claim:{}", self.report.claim_id);
        self.say(&format!(
            "9. Search as {customer} for \"burst pipe\": the search service built its index from \
             the events alone, and the token says whose documents the customer sees"
        ));
        let found = wait_for_search(
            &self.http,
            &format!("{gateway}/search?q={WORDS}"),
            self.customer(),
            |hits| {
                hits.iter()
                    .any(|hit| hit["id"] == paid_claim && hit["status"] == "paid")
            },
        )
        .await?;
        for hit in &found {
            let line = format!("{} {}", text(hit, "id"), text(hit, "status"));
            self.say(&format!(
                "   GET /search?q=burst pipe (customer's token) -> {line}: {}",
                hit["highlights"][0].as_str().unwrap_or_default()
            ));
            self.report.customer_search.push(line);
        }
        Ok(())
    }

    /// Step 9, second search: the customer's cancelled policies, once the policy is among
    /// them.
    pub(super) async fn find_the_cancelled_policy(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let cancelled_policy = format!("policy:{}", self.report.policy_id);
        let policies = wait_for_search(
            &self.http,
            &format!("{gateway}/search?type=policy&status=cancelled"),
            self.customer(),
            |hits| hits.iter().any(|hit| hit["id"] == cancelled_policy),
        )
        .await?;
        self.say(&format!(
            "   GET /search?type=policy&status=cancelled -> {}",
            policies
                .iter()
                .map(|hit| text(hit, "id"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(())
    }

    /// Step 9, last search: the customer's words searched as another customer (the stack's
    /// demo customer), who must find none of the customer's documents.
    pub(super) async fn search_as_another_customer(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let stranger = expect(
            self.http
                .get(format!("{gateway}/search?q={WORDS}"))
                .bearer_auth(self.stranger.as_ref().map_or("", |s| s.token.as_str()))
                .send()
                .await,
            StatusCode::OK,
            "searching as another customer",
        )
        .await?;
        self.report.other_customer_hits = stranger["items"].as_array().map_or(0, Vec::len);
        self.say(&format!(
            "   the same search as {} (customer {}) -> {} hits (the scope is inside the index query)",
            self.stranger.as_ref().map_or("", |s| s.email.as_str()),
            self.stranger.as_ref().map_or("", |s| s.customer_id.as_str()),
            self.report.other_customer_hits
        ));
        Ok(())
    }

    /// Step 10: the customer's dashboard, composed by the gateway from the policy, claim
    /// and search services in parallel.
    pub(super) async fn show_the_dashboard(&mut self) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        self.say(
            "10. The customer's dashboard: policies, each with its claims, and recent activity, \
             composed from three services in parallel under one deadline",
        );
        let page = expect(
            self.http
                .get(format!("{gateway}/views/dashboard"))
                .bearer_auth(self.customer())
                .send()
                .await,
            StatusCode::OK,
            "reading the dashboard",
        )
        .await?;
        self.report.dashboard = sections(&page);
        let policies = page["policies"]["data"].as_array().map_or(0, Vec::len);
        let activity = page["activity"]["data"].as_array().map_or(0, Vec::len);
        self.say(&format!(
            "   GET /views/dashboard -> {} ({policies} policies, {activity} recent changes)",
            self.report.dashboard.join(", ")
        ));
        Ok(())
    }

    /// Step 11: with the search service stopped, the dashboard still answers, its
    /// activity section saying what happened.
    pub(super) async fn show_a_partial_answer(
        &mut self,
        outage: Option<&mut crate::RunningStack>,
    ) -> anyhow::Result<()> {
        let gateway = &self.services.gateway;
        let Some(stack) = outage else {
            self.say(
                "11. (A partial answer needs a stack the demo started itself: run the demo with \
                 no stack running to see the dashboard with the search service stopped.)",
            );
            return Ok(());
        };
        self.say(
            "11. Stop the search service: the dashboard still answers, and says what is missing",
        );
        stack.stop_service("search").await?;
        let page = expect(
            self.http
                .get(format!("{gateway}/views/dashboard"))
                .bearer_auth(self.customer())
                .send()
                .await,
            StatusCode::OK,
            "reading the dashboard without the search service",
        )
        .await?;
        let seen = sections(&page);
        self.say(&format!(
            "   GET /views/dashboard -> {}: {}",
            seen.join(", "),
            text(&page["activity"], "detail")
        ));
        self.report.partial_answer = Some(seen.join(", "));
        Ok(())
    }

    /// Prints the closing line; what the walk saw.
    pub(super) fn finish(mut self) -> DemoReport {
        self.say(
            "\nEvery change above committed with its event through each service's outbox; see /metrics on any service.",
        );
        self.report
    }

    /// The body of a claim of `amount` on the walk's policy, for the incident.
    fn claim_of(&self, amount: &str) -> Value {
        json!({
            "policy_id": self.report.policy_id,
            "incident_date": self.incident.to_string(),
            "amount": amount,
            "description": "water damage from a burst pipe"
        })
    }

    /// Files a claim of `amount` (with a new `Idempotency-Key`) that the rules must refuse;
    /// the refusal.
    async fn file_a_refused_claim(&self, amount: &str) -> anyhow::Result<String> {
        refusal(
            self.http
                .post(format!("{}/claims", self.services.gateway))
                .bearer_auth(self.customer())
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&self.claim_of(amount))
                .send()
                .await?,
        )
        .await
    }
}

/// `name status` of each top-level section of a composed page.
fn sections(page: &Value) -> Vec<String> {
    page.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, section)| Some(format!("{name} {}", section.get("status")?.as_str()?)))
        .collect()
}
