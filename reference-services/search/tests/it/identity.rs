//! Who may call what, from the verified bearer token only: every endpoint × caller →
//! status, table-driven; a customer never gets another customer's hit, whatever filter
//! or identity header they add; identity headers change nothing for anyone. Each check is
//! a function over a [`Service`], run here on tantivy and in `needs_servers` on
//! OpenSearch.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, Method, StatusCode};
use dovetail_contracts::claim::{ClaimFiled, ClaimStatus};
use dovetail_contracts::policy::{PolicyIssued, PolicyStatus};
use serde_json::{Value, json};

use crate::support::{Service, bearer, claim_snapshot, policy_snapshot};

/// The two customers whose documents the checks index.
const A: &str = "cust-a";
const B: &str = "cust-b";

/// Whose answer a caller must get: the columns of [`Row`].
#[derive(Debug, Clone, Copy)]
enum AnswersAs {
    /// No verified identity: a missing, malformed or foreign token.
    Nobody,
    /// Customer [`A`].
    CustomerA,
    /// Customer [`B`].
    CustomerB,
    /// Staff.
    Staff,
    /// A verified token with neither the staff role nor the customer role and an id.
    NoScope,
}

/// One endpoint and the status each kind of caller gets.
struct Row {
    method: Method,
    uri: &'static str,
    nobody: u16,
    customer_a: u16,
    customer_b: u16,
    staff: u16,
    no_scope: u16,
}

impl Row {
    fn expected(&self, caller: AnswersAs) -> StatusCode {
        let code = match caller {
            AnswersAs::Nobody => self.nobody,
            AnswersAs::CustomerA => self.customer_a,
            AnswersAs::CustomerB => self.customer_b,
            AnswersAs::Staff => self.staff,
            AnswersAs::NoScope => self.no_scope,
        };
        StatusCode::from_u16(code).unwrap()
    }

    /// Whether the route is behind the identity layer.
    fn protected(&self) -> bool {
        ["/search", "/documents", "/admin"]
            .iter()
            .any(|prefix| self.uri.starts_with(prefix))
    }
}

/// A caller: a name for the assertion messages, the headers it sends, and whose answer
/// it must get.
struct Caller {
    name: &'static str,
    headers: Vec<(&'static str, String)>,
    answers_as: AnswersAs,
}

fn callers(service: &Service) -> Vec<Caller> {
    let issuer = service.tokens.issuer();
    let staff = service.tokens.staff().to_owned();
    let customer_a = service.customer(A);
    let auth = |token: String| ("authorization", token);
    let signed = |claims: Value| bearer(&issuer.sign(&claims));
    let mut expired = issuer.claims(dovetail_search::SERVICE, "user-staff", &["staff"]);
    for (claim, shift) in [("iat", 7200), ("nbf", 7200), ("exp", 3600)] {
        expired[claim] = json!(expired[claim].as_u64().unwrap() - shift);
    }
    let mut foreign_issuer = issuer.claims(dovetail_search::SERVICE, "user-staff", &["staff"]);
    foreign_issuer["iss"] = json!("https://elsewhere.example");
    let mut no_role = issuer.claims(dovetail_search::SERVICE, "user-no-role", &[]);
    no_role["customer_id"] = json!(A);
    let mut unknown_role = issuer.claims(dovetail_search::SERVICE, "user-admin", &["admin"]);
    unknown_role["customer_id"] = json!(A);
    let customer_without_id = issuer.claims(dovetail_search::SERVICE, "user-c", &["customer"]);
    let spoof = |mut headers: Vec<(&'static str, String)>| {
        headers.push(("x-dovetail-scope", "staff".to_owned()));
        headers.push(("x-dovetail-customer", B.to_owned()));
        headers
    };
    let caller = |name, headers, answers_as| Caller {
        name,
        headers,
        answers_as,
    };
    use AnswersAs::{CustomerA, CustomerB, NoScope, Nobody, Staff};
    vec![
        caller("no token", vec![], Nobody),
        caller(
            "no token, X-Dovetail-Scope: staff, X-Dovetail-Customer: B",
            spoof(vec![]),
            Nobody,
        ),
        caller(
            "a malformed token",
            vec![auth("Bearer not.a.token".to_owned())],
            Nobody,
        ),
        caller(
            "another scheme",
            vec![auth("Basic dXNlcjpwYXNz".to_owned())],
            Nobody,
        ),
        caller(
            "customer A's token for claim-service",
            vec![auth(bearer(&issuer.customer_token("claim-service", A)))],
            Nobody,
        ),
        caller(
            "a staff token for claim-service",
            vec![auth(bearer(&issuer.staff_token("claim-service")))],
            Nobody,
        ),
        caller(
            "an expired staff token",
            vec![auth(signed(expired))],
            Nobody,
        ),
        caller(
            "a staff token of another issuer",
            vec![auth(signed(foreign_issuer))],
            Nobody,
        ),
        caller("customer A", vec![auth(customer_a.clone())], CustomerA),
        caller(
            "customer A, X-Dovetail-Scope: staff, X-Dovetail-Customer: B",
            spoof(vec![auth(customer_a)]),
            CustomerA,
        ),
        caller("customer B", vec![auth(service.customer(B))], CustomerB),
        caller("staff", vec![auth(staff.clone())], Staff),
        caller(
            "staff, X-Dovetail-Customer: B",
            vec![auth(staff), ("x-dovetail-customer", B.to_owned())],
            Staff,
        ),
        caller(
            "a token without a role, with customer_id A",
            vec![auth(signed(no_role))],
            NoScope,
        ),
        caller(
            "a token of an unknown role only, with customer_id A",
            vec![auth(signed(unknown_role))],
            NoScope,
        ),
        caller(
            "a customer token without customer_id",
            vec![auth(signed(customer_without_id))],
            NoScope,
        ),
    ]
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every endpoint × every caller → the status the rules give, and the headers that go
/// with it: a challenge on every 401, `Vary: Authorization` and no shared caching on
/// every answer of a protected route, a 403 saying what is needed.
pub(crate) async fn every_endpoint_answers_each_caller_as_its_token_allows(service: &Service) {
    let row = |method, uri, [nobody, customer_a, customer_b, staff, no_scope]: [u16; 5]| Row {
        method,
        uri,
        nobody,
        customer_a,
        customer_b,
        staff,
        no_scope,
    };
    // Columns: nobody, customer A, customer B, staff, no scope.
    let table = [
        row(Method::GET, "/search", [401, 200, 200, 200, 403]),
        row(Method::GET, "/search?q=pipe", [401, 200, 200, 200, 403]),
        row(
            Method::GET,
            "/search?customer_id=cust-a",
            [401, 200, 403, 200, 403],
        ),
        row(
            Method::GET,
            "/search?customer_id=cust-b",
            [401, 403, 200, 200, 403],
        ),
        row(Method::GET, "/search?limit=0", [401, 400, 400, 400, 403]),
        row(Method::POST, "/search", [401, 405, 405, 405, 405]),
        // Nothing is indexed: a missing document for everyone in scope.
        row(
            Method::GET,
            "/documents/policy/pol-1",
            [401, 404, 404, 404, 403],
        ),
        row(
            Method::GET,
            "/documents/order/pol-1",
            [401, 400, 400, 400, 403],
        ),
        row(
            Method::DELETE,
            "/documents/policy/pol-1",
            [401, 405, 405, 405, 405],
        ),
        row(Method::GET, "/admin/rebuilds", [401, 403, 403, 200, 403]),
        // With one Idempotency-Key: the second staff caller gets the first one's job.
        row(Method::POST, "/admin/rebuilds", [401, 403, 403, 202, 403]),
        row(
            Method::GET,
            "/admin/rebuilds/nope",
            [401, 403, 403, 404, 403],
        ),
        row(Method::GET, "/openapi.json", [200, 200, 200, 200, 200]),
        row(Method::GET, "/healthz", [200, 200, 200, 200, 200]),
        row(Method::GET, "/readyz", [200, 200, 200, 200, 200]),
        row(Method::GET, "/metrics", [200, 200, 200, 200, 200]),
    ];
    let callers = callers(service);
    for row in &table {
        for caller in &callers {
            let named = format!("{} {} as {}", row.method, row.uri, caller.name);
            let mut headers: Vec<(&str, &str)> = caller
                .headers
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            if row.method == Method::POST && row.uri == "/admin/rebuilds" {
                headers.push(("idempotency-key", "matrix-rebuild"));
            }
            let (status, answer, body) = service.send(row.method.clone(), row.uri, &headers).await;
            let expected = row.expected(caller.answers_as);
            assert_eq!(status, expected, "{named}: {body}");
            if status.is_client_error() {
                assert_eq!(
                    header(&answer, "content-type"),
                    "application/problem+json",
                    "{named}"
                );
                assert!(
                    body["detail"]
                        .as_str()
                        .is_some_and(|detail| !detail.is_empty()),
                    "{named}: {body}"
                );
            }
            if status == StatusCode::UNAUTHORIZED {
                let challenge = header(&answer, "www-authenticate");
                assert!(
                    challenge.starts_with("Bearer realm=\"dovetail\""),
                    "{named}: WWW-Authenticate: {challenge:?}"
                );
            }
            if status == StatusCode::FORBIDDEN {
                let detail = body["detail"].as_str().unwrap();
                let needed = match (row.uri.starts_with("/admin"), caller.answers_as) {
                    (true, _) => "staff role",
                    (false, AnswersAs::NoScope) => "customer_id",
                    (false, _) => "own documents",
                };
                assert!(detail.contains(needed), "{named}: {detail}");
            }
            if row.protected() {
                let vary = header(&answer, "vary").to_ascii_lowercase();
                assert!(
                    vary.contains("authorization") && !vary.contains("x-dovetail"),
                    "{named}: Vary: {vary}"
                );
                let cache_control = header(&answer, "cache-control");
                assert!(
                    cache_control.contains("private") && cache_control.contains("no-store"),
                    "{named}: Cache-Control: {cache_control}"
                );
            }
        }
    }
}

/// Indexes two policies and a claim of each of [`A`] and [`B`], all holding the same
/// words, and waits until staff see all six.
async fn index_both_customers(service: &Service) {
    for customer in [A, B] {
        for n in 1..=2 {
            let id = format!("pol-{customer}-{n}");
            let policy = policy_snapshot(&id, customer, "home", 1, PolicyStatus::Active);
            service
                .publish(
                    dovetail_contracts::policy::TOPIC,
                    "policy-service",
                    ("policy", &id),
                    1,
                    &PolicyIssued { policy },
                )
                .await;
        }
        let id = format!("clm-{customer}");
        let claim = claim_snapshot(
            &id,
            customer,
            "Burst pipe flooded the home",
            1,
            ClaimStatus::Submitted,
        );
        service
            .publish(
                dovetail_contracts::claim::TOPIC,
                "claim-service",
                ("claim", &id),
                1,
                &ClaimFiled { claim },
            )
            .await;
    }
    service
        .until("/search?limit=100", |items| items.len() == 6)
        .await;
}

fn ids(body: &Value) -> BTreeSet<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

fn owners(body: &Value) -> BTreeSet<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["customer_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of `customer`'s documents as [`index_both_customers`] indexes them.
fn documents_of(customer: &str) -> BTreeSet<String> {
    [
        format!("policy:pol-{customer}-1"),
        format!("policy:pol-{customer}-2"),
        format!("claim:clm-{customer}"),
    ]
    .into()
}

/// Each customer, searching with every filter and identity header they might add to
/// widen their search, only ever gets their own documents, or a 403; staff get both
/// customers' and may narrow to either.
pub(crate) async fn a_customer_never_gets_another_customers_hit(service: &Service) {
    index_both_customers(service).await;
    for (own, other) in [(A, B), (B, A)] {
        let token = service.customer(own);
        let plain = vec![("authorization", token.as_str())];
        let spoofed_variants = [
            vec![("x-dovetail-scope", "staff")],
            vec![("x-dovetail-customer", other)],
            vec![
                ("x-dovetail-scope", "staff"),
                ("x-dovetail-customer", other),
            ],
        ];
        let searches = [
            ("/search?limit=100".to_owned(), documents_of(own)),
            (
                "/search?q=burst%20pipe".to_owned(),
                [format!("claim:clm-{own}")].into(),
            ),
            (
                "/search?q=home&type=policy&limit=100".to_owned(),
                documents_of(own)
                    .into_iter()
                    .filter(|id| id.starts_with("policy:"))
                    .collect(),
            ),
            (
                "/search?type=claim&status=submitted".to_owned(),
                [format!("claim:clm-{own}")].into(),
            ),
            (
                format!("/search?customer_id={own}&limit=100&sort=date"),
                documents_of(own),
            ),
        ];
        for (uri, expected) in &searches {
            let (status, _, body) = service.get(uri, &plain).await;
            assert_eq!(status, StatusCode::OK, "{uri} as {own}: {body}");
            assert_eq!(&ids(&body), expected, "{uri} as {own}");
            for spoofed in &spoofed_variants {
                let mut headers = plain.clone();
                headers.extend(spoofed.iter().copied());
                let (status, _, again) = service.get(uri, &headers).await;
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "{uri} as {own} + {spoofed:?}: {again}"
                );
                assert_eq!(ids(&again), ids(&body), "{uri} as {own} + {spoofed:?}");
            }
        }

        // Asking for the other customer is refused, not answered with anything.
        for uri in [
            format!("/search?customer_id={other}"),
            format!("/search?customer_id={other}&q=burst%20pipe"),
            format!("/search?customer_id=%20{other}%20&type=claim"),
        ] {
            for spoofed in std::iter::once(&vec![]).chain(&spoofed_variants) {
                let mut headers = plain.clone();
                headers.extend(spoofed.iter().copied());
                let (status, _, body) = service.get(&uri, &headers).await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{uri} as {own} + {spoofed:?}: {body}"
                );
                assert!(body.get("items").is_none(), "{uri} as {own}: {body}");
            }
        }
        // Naming both is no way round it either.
        let uri = format!("/search?customer_id={own}&customer_id={other}");
        let (status, _, body) = service.get(&uri, &plain).await;
        assert!(status.is_client_error(), "{uri} as {own}: {status} {body}");
        assert!(body.get("items").is_none(), "{uri} as {own}: {body}");

        // Page by page, with a staff header on every page, still only their own.
        let mut headers = plain.clone();
        headers.push(("x-dovetail-scope", "staff"));
        let mut uri = "/search?limit=1&sort=date".to_owned();
        let mut seen = BTreeSet::new();
        loop {
            let (status, _, page) = service.get(&uri, &headers).await;
            assert_eq!(status, StatusCode::OK, "{uri} as {own}: {page}");
            assert!(
                owners(&page).iter().all(|owner| owner == own),
                "{uri} as {own}: {page}"
            );
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => uri = format!("/search?limit=1&sort=date&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen, documents_of(own), "paging as {own}");
    }

    // Staff see both, narrow to either, and a customer header narrows nothing.
    let staff = service.as_staff();
    let (status, _, body) = service.get("/search?limit=100", &staff).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(owners(&body), [A.to_owned(), B.to_owned()].into());
    let with_header = [staff[0], ("x-dovetail-customer", A)];
    let (_, _, again) = service.get("/search?limit=100", &with_header).await;
    assert_eq!(ids(&again), ids(&body), "staff + X-Dovetail-Customer");
    for customer in [A, B] {
        let uri = format!("/search?customer_id={customer}&limit=100");
        let (status, _, body) = service.get(&uri, &staff).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(ids(&body), documents_of(customer), "{uri} as staff");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_caller_as_its_token_allows_on_tantivy() {
    let service = Service::start().await;
    every_endpoint_answers_each_caller_as_its_token_allows(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_never_gets_another_customers_hit_on_tantivy() {
    let service = Service::start().await;
    a_customer_never_gets_another_customers_hit(&service).await;
    service.stop().await;
}
