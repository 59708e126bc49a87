//! Who may do what: every endpoint for every kind of caller, the staff-only actions, the
//! answers that hide another customer's claims and policies, a list filter no parameter
//! widens, tokens of another service, identity headers, and `Idempotency-Key`s namespaced
//! by caller.

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use dovetail_testkit::http::assert_invalid_token;

use crate::support::{Service, assert_problem, claim_body};

/// The customer of the policies the support module publishes.
const OWNER: &str = "cust-1";
/// A customer who owns none of them.
const OTHER: &str = "cust-other";
/// The active policy of [`OWNER`] the claims are filed against.
const POLICY: &str = "pol-access";

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
        let request = self.anonymous.request(method, self.url(path));
        match caller {
            Caller::NoToken => request,
            Caller::Owner => request.bearer_auth(self.customer(OWNER)),
            Caller::OtherCustomer => request.bearer_auth(self.customer(OTHER)),
            Caller::Staff => request.bearer_auth(self.staff("user-staff")),
        }
    }

    /// A fresh claim of [`OWNER`] against [`POLICY`], filed by staff and moved by staff
    /// through `steps`; its id.
    async fn owned_claim(&self, steps: &[&str]) -> String {
        let key = uuid::Uuid::new_v4().to_string();
        let filed = self.file(&key, &claim_body(POLICY, "100.00")).await;
        assert_eq!(filed.status(), 201, "{:?}", filed.text().await);
        let filed: Value = filed.json().await.unwrap();
        let id = filed["claim_id"].as_str().unwrap().to_owned();
        for (version, step) in (1..).zip(steps) {
            let moved = self
                .http
                .post(self.url(&format!("/claims/{id}/{step}")))
                .header("if-match", format!("\"{version}\""))
                .send()
                .await
                .unwrap();
            assert_eq!(moved.status(), 200, "{step}");
        }
        id
    }
}

/// One endpoint of the matrix: how to call it on a fresh claim of [`OWNER`] moved through
/// `steps` first, and the status each caller gets, in the order of [`CALLERS`].
struct Case {
    endpoint: &'static str,
    method: Method,
    /// `{id}` stands for the fresh claim's id.
    path: &'static str,
    steps: &'static [&'static str],
    body: Option<Value>,
    expected: [u16; 4],
}

fn cases() -> Vec<Case> {
    let case = |endpoint, method, path, steps, body, expected| Case {
        endpoint,
        method,
        path,
        steps,
        body,
        expected,
    };
    let none: &[&str] = &[];
    vec![
        case(
            "POST /claims (on the owner's policy)",
            Method::POST,
            "/claims",
            none,
            Some(claim_body(POLICY, "50.00")),
            [401, 201, 409, 201],
        ),
        case(
            "GET /claims/{id}",
            Method::GET,
            "/claims/{id}",
            none,
            None,
            [401, 200, 404, 200],
        ),
        case(
            "GET /claims",
            Method::GET,
            "/claims",
            none,
            None,
            [401, 200, 200, 400],
        ),
        case(
            "GET /claims?customer_id=<owner>",
            Method::GET,
            "/claims?customer_id=cust-1",
            none,
            None,
            [401, 200, 403, 200],
        ),
        case(
            "GET /claims?policy_id=<owner's>",
            Method::GET,
            "/claims?policy_id=pol-access",
            none,
            None,
            [401, 200, 200, 200],
        ),
        case(
            "POST /claims/{id}/review",
            Method::POST,
            "/claims/{id}/review",
            none,
            None,
            [401, 403, 403, 200],
        ),
        case(
            "POST /claims/{id}/approve",
            Method::POST,
            "/claims/{id}/approve",
            &["review"],
            None,
            [401, 403, 403, 200],
        ),
        case(
            "POST /claims/{id}/reject",
            Method::POST,
            "/claims/{id}/reject",
            none,
            Some(json!({ "reason": "not covered" })),
            [401, 403, 403, 200],
        ),
        case(
            "POST /claims/{id}/pay",
            Method::POST,
            "/claims/{id}/pay",
            &["review", "approve"],
            None,
            [401, 403, 403, 200],
        ),
        case(
            "GET /replica/policies/{owner's}",
            Method::GET,
            "/replica/policies/pol-access",
            none,
            None,
            [401, 200, 404, 200],
        ),
        case(
            "GET /openapi.json",
            Method::GET,
            "/openapi.json",
            none,
            None,
            [200, 200, 200, 200],
        ),
        case(
            "GET /healthz",
            Method::GET,
            "/healthz",
            none,
            None,
            [200, 200, 200, 200],
        ),
        case(
            "GET /readyz",
            Method::GET,
            "/readyz",
            none,
            None,
            [200, 200, 200, 200],
        ),
        case(
            "GET /metrics",
            Method::GET,
            "/metrics",
            none,
            None,
            [200, 200, 200, 200],
        ),
    ]
}

#[tokio::test]
async fn every_endpoint_answers_each_kind_of_caller_as_the_rules_say() {
    let service = Service::start().await;
    service.active_policy(POLICY).await;
    let mut failures = Vec::new();
    for case in cases() {
        for (caller, expected) in CALLERS.into_iter().zip(case.expected) {
            let id = service.owned_claim(case.steps).await;
            let path = case.path.replace("{id}", &id);
            let version = case.steps.len() + 1;
            let mut request = service
                .as_caller(caller, case.method.clone(), &path)
                .header("if-match", format!("\"{version}\""))
                .header("idempotency-key", uuid::Uuid::new_v4().to_string());
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
async fn a_customer_cannot_review_approve_reject_or_pay_and_is_told_the_role() {
    let service = Service::start().await;
    service.active_policy(POLICY).await;
    let id = service.owned_claim(&[]).await;
    for action in ["review", "approve", "reject", "pay"] {
        let refused = service
            .as_caller(
                Caller::Owner,
                Method::POST,
                &format!("/claims/{id}/{action}"),
            )
            .header("if-match", "\"1\"")
            .json(&json!({ "reason": "I say so" }))
            .send()
            .await
            .unwrap();
        assert_problem(refused, 403, "needs the staff role").await;
    }
    let read: Value = service
        .http
        .get(service.url(&format!("/claims/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (read["status"].as_str(), read["version"].as_u64()),
        (Some("submitted"), Some(1))
    );
    service.stop().await;
}

/// A problem's body with `id` (and the one of the same kind that does not exist) written
/// the same, so that the two answers can be compared.
async fn problem_without(response: reqwest::Response, id: &str) -> (u16, String) {
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let mut body: serde_json::Value = response.json().await.unwrap();
    // Each request's own id; the rest must not tell the two apart.
    body.as_object_mut().unwrap().remove("request_id");
    let body = body.to_string().replace(id, "<id>");
    (status, format!("{body} retry-after={retry_after:?}"))
}

#[tokio::test]
async fn another_customers_claims_and_policies_are_answered_exactly_like_missing_ones() {
    let service = Service::start().await;
    service.active_policy(POLICY).await;
    let claim = service.owned_claim(&[]).await;
    let other = |method, path: String| service.as_caller(Caller::OtherCustomer, method, &path);

    let missing_claim = "clm-00000000-0000-0000-0000-000000000000";
    let hidden = other(Method::GET, format!("/claims/{claim}"))
        .send()
        .await
        .unwrap();
    let missing = other(Method::GET, format!("/claims/{missing_claim}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem_without(hidden, &claim).await,
        problem_without(missing, missing_claim).await,
        "GET /claims/{{id}}"
    );

    let hidden = other(Method::GET, format!("/replica/policies/{POLICY}"))
        .send()
        .await
        .unwrap();
    // Not even the version of another customer's policy.
    assert!(hidden.headers().get("etag").is_none(), "{hidden:?}");
    let missing = other(Method::GET, "/replica/policies/pol-nowhere".into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem_without(hidden, POLICY).await,
        problem_without(missing, "pol-nowhere").await,
        "GET /replica/policies/{{id}}"
    );

    let file = |policy: &str| {
        other(Method::POST, "/claims".into())
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&claim_body(policy, "10.00"))
            .send()
    };
    let hidden = file(POLICY).await.unwrap();
    let missing = file("pol-nowhere").await.unwrap();
    assert_eq!(
        problem_without(hidden, POLICY).await,
        problem_without(missing, "pol-nowhere").await,
        "POST /claims"
    );

    let listed: Value = other(Method::GET, format!("/claims?policy_id={POLICY}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unknown: Value = other(Method::GET, "/claims?policy_id=pol-nowhere".into())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, unknown, "GET /claims?policy_id=<another's>");
    assert_eq!(listed, json!({ "items": [] }));
    service.stop().await;
}

#[tokio::test]
async fn a_customers_list_filter_comes_from_the_token_and_no_parameter_widens_it() {
    let service = Service::start().await;
    service.active_policy(POLICY).await;
    let owned = service.owned_claim(&[]).await;
    let list = |caller, path: &str| service.as_caller(caller, Method::GET, path).send();

    for path in [
        "/claims",
        "/claims?customer_id=cust-1",
        "/claims?policy_id=pol-access",
    ] {
        let page: Value = list(Caller::Owner, path)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|claim| claim["claim_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [owned.as_str()], "{path}: {page}");
    }
    let mine: Value = list(Caller::OtherCustomer, "/claims")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["items"], json!([]), "the other customer has no claims");
    for widened in [
        "/claims?customer_id=cust-1",
        "/claims?customer_id=cust-1&policy_id=pol-access",
    ] {
        let refused = list(Caller::OtherCustomer, widened).await.unwrap();
        assert_problem(refused, 403, "only their own").await;
    }
    assert_problem(
        list(Caller::Staff, "/claims").await.unwrap(),
        400,
        "policy_id=<id>",
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn a_token_minted_for_another_service_is_refused_with_401() {
    let service = Service::start().await;
    for token in [
        service.issuer.staff_token("policy-service"),
        service.issuer.customer_token("search-service", OWNER),
    ] {
        let refused = service
            .anonymous
            .get(service.url("/claims?customer_id=cust-1"))
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
    service.active_policy(POLICY).await;
    let id = service.owned_claim(&[]).await;
    let claim_to_be = |caller, method, path: String| {
        service
            .as_caller(caller, method, &path)
            .header("x-dovetail-customer", OWNER)
            .header("x-dovetail-scope", "staff")
            .header("if-match", "\"1\"")
    };
    let anonymous = claim_to_be(Caller::NoToken, Method::GET, format!("/claims/{id}"));
    assert_eq!(anonymous.send().await.unwrap().status(), 401);
    let other = claim_to_be(Caller::OtherCustomer, Method::GET, format!("/claims/{id}"));
    assert_eq!(other.send().await.unwrap().status(), 404);
    let review = claim_to_be(Caller::Owner, Method::POST, format!("/claims/{id}/review"));
    assert_problem(review.send().await.unwrap(), 403, "staff role").await;
    let list = claim_to_be(
        Caller::OtherCustomer,
        Method::GET,
        "/claims?customer_id=cust-1".into(),
    );
    assert_eq!(list.send().await.unwrap().status(), 403);
    service.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_is_replayed_only_to_the_caller_who_sent_it() {
    let service = Service::start().await;
    service.active_policy(POLICY).await;
    let send = |token: String| {
        service
            .anonymous
            .post(service.url("/claims"))
            .bearer_auth(token)
            .header("idempotency-key", "shared-claim-key")
            .json(&claim_body(POLICY, "75.00"))
            .send()
    };
    let first = send(service.customer(OWNER)).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    // Another customer replaying the owner's key and body gets no recorded answer: the
    // policy is not theirs.
    let replayed = send(service.customer(OTHER)).await.unwrap();
    assert!(replayed.headers().get("idempotent-replayed").is_none());
    assert_eq!(replayed.status(), 409, "{:?}", replayed.text().await);

    // Staff sending the same key and body file a claim of their own.
    let staff = send(service.staff("user-staff")).await.unwrap();
    assert_eq!(staff.status(), 201);
    assert!(staff.headers().get("idempotent-replayed").is_none());
    let staff: Value = staff.json().await.unwrap();
    assert_ne!(staff["claim_id"], first["claim_id"]);

    // The owner's retry is still theirs.
    let retried = send(service.customer(OWNER)).await.unwrap();
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["claim_id"], first["claim_id"]);
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
            .replace("{id}", "{claim_id}")
            .replace(POLICY, "{policy_id}");
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
