//! The gateway's one OpenAPI document: the services' own documents, merged under the
//! paths the gateway serves them at (the auth service's under `/auth`), with the
//! composed pages' schemas built from [`dovetail_bff::section_schema`].
//!
//! A component two documents name alike is kept once when both say the same, and is
//! renamed `<Service><Name>` (with every `$ref` to it) when they differ.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// One service's document and what of it the gateway serves.
struct Source {
    service: &'static str,
    document: &'static str,
    prefix: &'static str,
    serves: fn(&str) -> bool,
}

const SOURCES: [Source; 4] = [
    Source {
        service: "Auth",
        document: include_str!("../../auth/src/http/openapi.json"),
        prefix: "/auth",
        serves: |_| true,
    },
    Source {
        service: "Policy",
        document: include_str!("../../policy/src/openapi.json"),
        prefix: "",
        // The gateway's own operations endpoints answer like every service's.
        serves: |path| {
            path.starts_with("/policies")
                || matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
        },
    },
    Source {
        service: "Claim",
        document: include_str!("../../claim/src/openapi.json"),
        prefix: "",
        serves: |path| path.starts_with("/claims"),
    },
    Source {
        service: "Search",
        document: include_str!("../../search/src/openapi.json"),
        prefix: "",
        serves: |path| path == "/search",
    },
];

const COMPONENT_KINDS: [&str; 2] = ["schemas", "responses"];

/// The merged document.
///
/// # Panics
/// Never at run time: the sources are checked in, and a test parses them.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut components: BTreeMap<&str, Map<String, Value>> = COMPONENT_KINDS
        .iter()
        .map(|kind| (*kind, Map::new()))
        .collect();
    let mut renamed: BTreeMap<(&str, &str, String), String> = BTreeMap::new();
    for source in &SOURCES {
        let mut document: Value =
            serde_json::from_str(source.document).expect("a service's OpenAPI document is JSON");
        let mut renames = BTreeMap::new();
        for kind in COMPONENT_KINDS {
            let Some(own) = document["components"][kind].as_object() else {
                continue;
            };
            let merged = components.get_mut(kind).expect("every kind is there");
            for (name, value) in own {
                let name_here = match merged.get(name) {
                    None => name.clone(),
                    Some(existing) if existing == value => name.clone(),
                    Some(_) => format!("{}{name}", source.service),
                };
                renames.insert(format!("#/components/{kind}/{name}"), name_here.clone());
                renamed.insert((source.service, kind, name.clone()), name_here);
            }
        }
        rewrite_refs(&mut document, &renames);
        for kind in COMPONENT_KINDS {
            if let Some(own) = document["components"][kind].as_object() {
                let merged = components.get_mut(kind).expect("every kind is there");
                for (name, value) in own {
                    let name_here = &renamed[&(source.service, kind, name.clone())];
                    merged
                        .entry(name_here.clone())
                        .or_insert_with(|| value.clone());
                }
            }
        }
        let security = document.get("security").cloned();
        let Some(own_paths) = document["paths"].as_object() else {
            continue;
        };
        for (path, item) in own_paths {
            if !(source.serves)(path) {
                continue;
            }
            let mut item = item.clone();
            for operation in item
                .as_object_mut()
                .into_iter()
                .flat_map(|item| item.values_mut())
            {
                let Some(operation) = operation.as_object_mut() else {
                    continue;
                };
                operation.insert("tags".into(), json!([source.service.to_lowercase()]));
                if let Some(security) = &security
                    && !operation.contains_key("security")
                {
                    operation.insert("security".into(), security.clone());
                }
            }
            paths.insert(format!("{}{path}", source.prefix), item);
        }
    }
    let name = |service: &'static str, schema: &str| {
        let here = renamed
            .get(&(service, "schemas", schema.to_owned()))
            .unwrap_or_else(|| panic!("the {service} document has no schema {schema}"));
        json!({"$ref": format!("#/components/schemas/{here}")})
    };
    let problem = name("Policy", "Problem");
    for (path, item) in views(
        &name("Policy", "Policy"),
        &name("Claim", "Claim"),
        &name("Search", "Hit"),
        &problem,
    ) {
        paths.insert(path, item);
    }
    let components: Map<String, Value> = components
        .into_iter()
        .map(|(kind, map)| (kind.to_owned(), Value::Object(map)))
        .chain([(
            "securitySchemes".to_owned(),
            json!({"bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from POST /auth/sessions. The gateway passes it to the service behind each route, which verifies it; the composed pages under /views verify it here too (audience gateway-service)."
            }}),
        )])
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Dovetail gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One origin for the Dovetail services: /auth, /policies, /claims and /search are passed to their service as they are (answers and problems as the service gives them), and /views composes pages from several services in parallel under one deadline (header dovetail-deadline-ms), each section saying what happened to it: ok, timeout, circuit_open, unavailable, forbidden, or stale with the version it holds. A write to /policies or /claims answers a dovetail-consistency token; a /views read that carries it waits until the copies it reads have that version. Errors are RFC 9457 problem+json.",
        },
        "paths": paths,
        "components": components,
    })
}

fn rewrite_refs(value: &mut Value, renames: &BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "$ref"
                    && let Some(target) = inner.as_str()
                    && let Some(name) = renames.get(target)
                {
                    let kind = target.split('/').nth(2).unwrap_or("schemas");
                    *inner = Value::String(format!("#/components/{kind}/{name}"));
                } else {
                    rewrite_refs(inner, renames);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_refs(item, renames)),
        _ => {}
    }
}

/// The composed pages' paths.
fn views(policy: &Value, claim: &Value, hit: &Value, problem: &Value) -> Vec<(String, Value)> {
    use dovetail_bff::section_schema as section;
    let held = section(&json!({
        "type": "object", "required": ["version"],
        "properties": {"version": {"type": "integer", "minimum": 0,
            "description": "The version of the policy this copy holds; 0: none yet."}}
    }));
    let claims = section(&json!({"type": "array", "items": claim}));
    let problem_answer = |description: &str| {
        json!({"description": description,
               "content": {"application/problem+json": {"schema": problem}}})
    };
    let headers = json!([
        {"name": "dovetail-deadline-ms", "in": "header", "required": false,
         "schema": {"type": "integer", "minimum": 0, "maximum": 600_000},
         "description": "The caller's deadline, in milliseconds from now; the page's own budget caps it. Every call the page makes carries what remains."},
        {"name": "dovetail-consistency", "in": "header", "required": false,
         "schema": {"type": "string"},
         "description": "The token a write through the gateway answered: the page waits until the copies it reads have reached the write's version, and answers a copy that has not as stale."}
    ]);
    let answers = |ok: Value| {
        json!({
            "200": {"description": "The page; each section says what happened to it.",
                    "content": {"application/json": {"schema": ok}}},
            "400": problem_answer("A deadline or consistency header that cannot be read."),
            "401": problem_answer("No bearer token, or one that does not verify."),
            "403": problem_answer("The token's roles do not allow this page."),
            "503": problem_answer("A required section is unavailable (Retry-After)."),
            "504": problem_answer("A required section did not answer before the deadline."),
        })
    };
    let mut customer = headers.clone();
    customer.as_array_mut().expect("an array").push(json!(
        {"name": "customer_id", "in": "query", "required": false, "schema": {"type": "string"},
         "description": "Whose dashboard: required for staff; a customer sees their own."}));
    let mut policy_answers = answers(json!({
    "type": "object", "required": ["policy", "claims", "copies"],
    "properties": {
        "policy": section(policy),
        "claims": claims,
        "copies": {"type": "object", "required": ["claim_service", "search"],
            "properties": {"claim_service": held, "search": held}},
    }}));
    policy_answers["404"] = problem_answer("No such policy, or not the caller's.");
    vec![
        (
            "/views/dashboard".to_owned(),
            json!({"get": {
                "tags": ["views"], "security": [{"bearerAuth": []}],
                "summary": "A customer's policies, each with its claims, and their recent activity",
                "parameters": customer,
                "responses": answers(json!({
                    "type": "object", "required": ["customer_id", "policies", "activity"],
                    "properties": {
                        "customer_id": {"type": "string"},
                        "policies": section(&json!({"type": "array", "items": {
                            "type": "object", "required": ["policy", "claims"],
                            "properties": {"policy": policy, "claims": claims}}})),
                        "activity": section(&json!({"type": "array", "items": hit})),
                    }})),
            }}),
        ),
        (
            "/views/policies/{policy_id}".to_owned(),
            json!({"get": {
                "tags": ["views"], "security": [{"bearerAuth": []}],
                "summary": "A policy with its claims, and how far its copies have got",
                "parameters": headers.as_array().expect("an array").iter().cloned().chain([json!(
                    {"name": "policy_id", "in": "path", "required": true, "schema": {"type": "string"}})]).collect::<Vec<_>>(),
                "responses": policy_answers,
            }}),
        ),
        (
            "/views/review-queue".to_owned(),
            json!({"get": {
                "tags": ["views"], "security": [{"bearerAuth": []}],
                "summary": "Staff: the claims awaiting review, each with its policy",
                "parameters": headers,
                "responses": answers(json!({
                    "type": "object", "required": ["claims"],
                    "properties": {"claims": section(&json!({"type": "array", "items": {
                        "type": "object", "required": ["claim", "policy"],
                        "properties": {"claim": hit, "policy": section(policy)}}}))}})),
            }}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match inner.as_str() {
                        Some(target) if key == "$ref" => found.push(target),
                        _ => refs(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_documented_once_and_every_reference_resolves() {
        let document = document();
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/auth/sessions",
            "/auth/users",
            "/auth/.well-known/jwks.json",
            "/policies",
            "/policies/{policy_id}/issue",
            "/claims/{claim_id}/pay",
            "/search",
            "/views/dashboard",
            "/views/policies/{policy_id}",
            "/views/review-queue",
            "/healthz",
        ] {
            assert!(paths.contains_key(path), "{path} is missing");
        }
        for internal in ["/replica/policies/{policy_id}", "/admin/rebuilds", "/users"] {
            assert!(!paths.contains_key(internal), "{internal} is not served");
        }
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 20);
        for target in found {
            let pointer = target.trim_start_matches('#');
            assert!(
                document.pointer(pointer).is_some(),
                "{target} does not resolve"
            );
        }
        // The services' operations keep their own security requirement.
        assert_eq!(
            document["paths"]["/policies"]["get"]["security"],
            json!([{"bearerAuth": []}])
        );
    }
}
