//! Who may do what: every endpoint for every kind of caller, the staff-only actions, the
//! 404 that hides another customer's policy, a list filter no parameter widens, tokens of
//! another service, identity headers, and `Idempotency-Key`s namespaced by caller.

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use dovetail_testkit::http::assert_invalid_token;

use crate::support::{Service, assert_problem, terms};

/// The policies in these tests belong to this customer.
const OWNER: &str = "cust-owner";
/// A customer who owns none of them.
const OTHER: &str = "cust-other";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Owner,
    OtherCustomer,
    Staff,
}

const CALLERS: [Caller; 4] = [
    Caller::NoToken,
    Caller::Owner,
    Caller::OtherCustomer,
    Caller::Staff,
];

impl Service {
    /// A request as `caller` sends it.
    fn as_caller(&self, caller: Caller, method: Method, path: &str) -> RequestBuilder {
        let url = self.url(path);
        match caller {
            Caller::NoToken => self.anonymous.request(method, url),
            Caller::Owner => self
                .anonymous
                .request(method, url)
                .bearer_auth(self.customer(OWNER)),
            Caller::OtherCustomer => self
                .anonymous
                .request(method, url)
                .bearer_auth(self.customer(OTHER)),
            Caller::Staff => self
                .anonymous
                .request(method, url)
                .bearer_auth(self.staff("user-staff")),
        }
    }

    /// A fresh draft policy of [`OWNER`] (drafted by staff); its id.
    async fn owned_draft(&self) -> String {
        self.draft(OWNER).await["policy_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// One endpoint of the matrix: how to call it on a fresh draft of [`OWNER`], and the
/// status each caller gets, in the order of [`CALLERS`].
struct Case {
    endpoint: &'static str,
    method: Method,
    /// `{id}` stands for the fresh policy's id.
    path: &'static str,
    if_match: bool,
    body: Option<Value>,
    expected: [u16; 4],
}

fn cases() -> Vec<Case> {
    let case = |endpoint, method, path, if_match, body, expected| Case {
        endpoint,
        method,
        path,
        if_match,
        body,
        expected,
    };
    vec![
        case(
            "POST /policies (for the owner)",
            Method::POST,
            "/policies",
            false,
            Some(terms(OWNER)),
            [401, 201, 403, 201],
        ),
        case(
            "GET /policies/{id}",
            Method::GET,
            "/policies/{id}",
            false,
            None,
            [401, 200, 404, 200],
        ),
        case(
            "PATCH /policies/{id}",
            Method::PATCH,
            "/policies/{id}",
            true,
            Some(json!({ "premium": "130.00" })),
            [401, 200, 404, 200],
        ),
        case(
            "POST /policies/{id}/issue",
            Method::POST,
            "/policies/{id}/issue",
            true,
            None,
            [401, 403, 403, 200],
        ),
        case(
            "POST /policies/{id}/cancel",
            Method::POST,
            "/policies/{id}/cancel",
            true,
            Some(json!({ "reason": "asked" })),
            [401, 403, 403, 200],
        ),
        case(
            "GET /policies",
            Method::GET,
            "/policies",
            false,
            None,
            [401, 200, 200, 400],
        ),
        case(
            "GET /policies?customer_id=<owner>",
            Method::GET,
            "/policies?customer_id=cust-owner",
            false,
            None,
            [401, 200, 403, 200],
        ),
        case(
            "GET /openapi.json",
            Method::GET,
            "/openapi.json",
            false,
            None,
            [200, 200, 200, 200],
        ),
        case(
            "GET /healthz",
            Method::GET,
            "/healthz",
            false,
            None,
            [200, 200, 200, 200],
        ),
        case(
            "GET /readyz",
            Method::GET,
            "/readyz",
            false,
            None,
            [200, 200, 200, 200],
        ),
        case(
            "GET /metrics",
            Method::GET,
            "/metrics",
            false,
            None,
            [200, 200, 200, 200],
        ),
    ]
}

#[tokio::test]
async fn every_endpoint_answers_each_kind_of_caller_as_the_rules_say() {
    let service = Service::start().await;
    let mut failures = Vec::new();
    for case in cases() {
        for (caller, expected) in CALLERS.into_iter().zip(case.expected) {
            let id = service.owned_draft().await;
            let path = case.path.replace("{id}", &id);
            let mut request = service.as_caller(caller, case.method.clone(), &path);
            if case.if_match {
                request = request.header("if-match", "\"1\"");
            }
            if let Some(body) = &case.body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").cloned();
            let text = response.text().await.unwrap();
            if status != expected {
                failures.push(format!(
                    "{} as {caller:?}: expected {expected}, got {status}: {text}",
                    case.endpoint
                ));
            } else if status == 401
                && challenge.is_none_or(|c| !c.as_bytes().starts_with(b"Bearer"))
            {
                failures.push(format!(
                    "{} as {caller:?}: a 401 without a Bearer WWW-Authenticate challenge",
                    case.endpoint
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    service.stop().await;
}

#[tokio::test]
async fn a_customer_cannot_issue_or_cancel_even_their_own_policy_and_is_told_the_role() {
    let service = Service::start().await;
    let id = service.owned_draft().await;
    for action in ["issue", "cancel"] {
        let refused = service
            .as_caller(
                Caller::Owner,
                Method::POST,
                &format!("/policies/{id}/{action}"),
            )
            .header("if-match", "\"1\"")
            .send()
            .await
            .unwrap();
        let problem = assert_problem(refused, 403, "needs the staff role").await;
        assert_eq!(
            problem["type"].as_str().map(|t| t.ends_with("forbidden")),
            Some(true),
            "{problem}"
        );
    }
    let read: Value = service
        .http
        .get(service.url(&format!("/policies/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (read["status"].as_str(), read["version"].as_u64()),
        (Some("draft"), Some(1))
    );
    service.stop().await;
}

#[tokio::test]
async fn a_customer_drafts_only_for_their_own_customer_id() {
    let service = Service::start().await;
    let refused = service
        .as_caller(Caller::OtherCustomer, Method::POST, "/policies")
        .json(&terms(OWNER))
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403, "only for their own customer id").await;
    let own = service
        .as_caller(Caller::OtherCustomer, Method::POST, "/policies")
        .json(&terms(OTHER))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 201);
    service.stop().await;
}

#[tokio::test]
async fn another_customers_policy_is_answered_exactly_like_a_missing_one() {
    let service = Service::start().await;
    let id = service.owned_draft().await;
    let problem_of = |response: reqwest::Response| async move {
        let mut body: Value = response.json().await.unwrap();
        let members = body.as_object_mut().unwrap();
        members.remove("instance");
        // Each request's own id; the rest must not tell the two apart.
        members.remove("request_id");
        body
    };
    for (method, suffix, body) in [
        (Method::GET, "", None),
        (Method::PATCH, "", Some(json!({ "premium": "1.00" }))),
    ] {
        let send = |path: String| {
            let mut request = service
                .as_caller(Caller::OtherCustomer, method.clone(), &path)
                .header("if-match", "\"1\"");
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        let hidden = problem_of(send(format!("/policies/{id}{suffix}")).await.unwrap()).await;
        let missing_id = "pol-00000000-0000-0000-0000-000000000000";
        let missing = problem_of(
            send(format!("/policies/{missing_id}{suffix}"))
                .await
                .unwrap(),
        )
        .await;
        let hidden = hidden.to_string().replace(&id, "<id>");
        let missing = missing.to_string().replace(missing_id, "<id>");
        assert_eq!(hidden, missing, "{method} of another customer's policy");
    }
    service.stop().await;
}

#[tokio::test]
async fn a_customers_list_filter_comes_from_the_token_and_no_parameter_widens_it() {
    let service = Service::start().await;
    let owned = service.owned_draft().await;
    service.draft(OTHER).await;
    let list = |caller, path: &'static str| service.as_caller(caller, Method::GET, path).send();

    let page: Value = list(Caller::Owner, "/policies")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| policy["policy_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [owned.as_str()], "{page}");
    for widened in [
        "/policies?customer_id=cust-other",
        "/policies?customer_id=cust-other&limit=100",
    ] {
        assert_problem(
            list(Caller::Owner, widened).await.unwrap(),
            403,
            "only their own",
        )
        .await;
    }
    let staff = list(Caller::Staff, "/policies").await.unwrap();
    assert_problem(staff, 400, "customer_id=<id>").await;
    let staff: Value = list(Caller::Staff, "/policies?customer_id=cust-other")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(staff["items"].as_array().unwrap().len(), 1, "{staff}");
    service.stop().await;
}

#[tokio::test]
async fn a_token_minted_for_another_service_is_refused_with_401() {
    let service = Service::start().await;
    for token in [
        service.issuer.staff_token("claim-service"),
        service.issuer.customer_token("search-service", OWNER),
    ] {
        let refused = service
            .anonymous
            .get(service.url("/policies?customer_id=cust-owner"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_invalid_token(refused, "").await;
    }
    service.stop().await;
}

#[tokio::test]
async fn identity_headers_sent_by_the_caller_change_nothing() {
    let service = Service::start().await;
    let id = service.owned_draft().await;
    let claim_to_be = |request: RequestBuilder| {
        request
            .header("x-dovetail-customer", OWNER)
            .header("x-dovetail-scope", "staff")
    };
    let anonymous =
        claim_to_be(service.as_caller(Caller::NoToken, Method::GET, &format!("/policies/{id}")));
    assert_eq!(anonymous.send().await.unwrap().status(), 401);
    let other = claim_to_be(service.as_caller(
        Caller::OtherCustomer,
        Method::GET,
        &format!("/policies/{id}"),
    ));
    assert_eq!(other.send().await.unwrap().status(), 404);
    let issue = claim_to_be(service.as_caller(
        Caller::Owner,
        Method::POST,
        &format!("/policies/{id}/issue"),
    ))
    .header("if-match", "\"1\"");
    assert_problem(issue.send().await.unwrap(), 403, "staff role").await;
    let list = claim_to_be(service.as_caller(
        Caller::OtherCustomer,
        Method::GET,
        "/policies?customer_id=cust-owner",
    ));
    assert_eq!(list.send().await.unwrap().status(), 403);
    service.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_is_replayed_only_to_the_caller_who_sent_it() {
    let service = Service::start().await;
    let send = |token: String| {
        service
            .anonymous
            .post(service.url("/policies"))
            .bearer_auth(token)
            .header("idempotency-key", "shared-key-1")
            .json(&terms(OWNER))
            .send()
    };
    let first = send(service.staff("staff-1")).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    // Another staff user who sends the same key and body makes a policy of their own.
    let second = send(service.staff("staff-2")).await.unwrap();
    assert_eq!(second.status(), 201);
    assert!(
        second.headers().get("idempotent-replayed").is_none(),
        "not staff-1's answer"
    );
    let second: Value = second.json().await.unwrap();
    assert_ne!(second["policy_id"], first["policy_id"]);

    // The customer reusing the key gets no one's recorded answer either.
    let owner = send(service.customer(OWNER)).await.unwrap();
    assert!(owner.headers().get("idempotent-replayed").is_none());
    let owner: Value = owner.json().await.unwrap();
    assert_ne!(owner["policy_id"], first["policy_id"]);

    // The first caller's retry is still theirs.
    let retried = send(service.staff("staff-1")).await.unwrap();
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["policy_id"], first["policy_id"]);
    service.stop().await;
}

#[tokio::test]
async fn the_openapi_document_states_every_answer_of_the_matrix_and_the_bearer_scheme() {
    let service = Service::start().await;
    let openapi: Value = service
        .anonymous
        .get(service.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        openapi["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert_eq!(openapi["security"], json!([{ "bearerAuth": [] }]));
    let mut missing = Vec::new();
    for case in cases() {
        let template = case
            .path
            .split('?')
            .next()
            .unwrap()
            .replace("{id}", "{policy_id}");
        let operation = &openapi["paths"][&template][case.method.as_str().to_lowercase()];
        let open = template == "/openapi.json" || operation.get("security").is_some();
        assert_eq!(
            open,
            case.expected[0] != 401,
            "{}: open to callers without a token exactly when the document says so",
            case.endpoint
        );
        for status in case.expected {
            if operation["responses"].get(status.to_string()).is_none() {
                missing.push(format!("{}: {status}", case.endpoint));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented answers: {missing:?}");
    service.stop().await;
}
