//! The alert rules in `ops/prometheus/dovetail-alerts.yml` read only metrics the services
//! really expose: the whole stack runs on embedded backends, the demo drives traffic
//! through it, and every metric name an `expr:` uses must show in `/metrics`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dovetail_service_kit::Shutdown;
use dovetail_stack::users::Seeding;
use dovetail_stack::{StackConfig, demo};

/// The rules file, from the workspace root.
pub(crate) const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ops/prometheus/dovetail-alerts.yml"
);

/// The text of every `expr:` of a rules file (folded `>` blocks included).
pub(crate) fn expressions(rules: &str) -> Vec<String> {
    let mut expressions = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut expression = rest.trim().trim_start_matches(['>', '|']).to_owned();
        while let Some(next) = lines.peek() {
            let next_indent = next.len() - next.trim_start().len();
            if next.trim().is_empty() || next_indent <= indent {
                break;
            }
            expression.push(' ');
            expression.push_str(next.trim());
            lines.next();
        }
        expressions.push(expression);
    }
    expressions
}

/// The metric names an expression reads: Dovetail's own families (`dovetail_`, and the
/// reference services' `claim_` and `search_`); label names and functions never start so.
fn metric_names(expression: &str) -> BTreeSet<String> {
    expression
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            ["dovetail_", "claim_", "search_"]
                .iter()
                .any(|prefix| word.starts_with(prefix))
        })
        .map(str::to_owned)
        .collect()
}

/// The metric names of a Prometheus text scrape.
fn exposed(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_rule_expressions_are_all_found_and_name_the_metrics_they_read() {
    let rules = std::fs::read_to_string(RULES).unwrap();
    let expressions = expressions(&rules);
    assert_eq!(
        expressions.len(),
        rules.matches("- alert:").count(),
        "one expr per alert"
    );
    let slow = expressions
        .iter()
        .find(|expression| expression.contains("run_seconds_sum"))
        .unwrap();
    assert_eq!(
        metric_names(slow),
        BTreeSet::from([
            "dovetail_consistency_run_seconds_count".to_owned(),
            "dovetail_consistency_run_seconds_sum".to_owned(),
        ]),
        "a folded expression is read whole: {slow}"
    );
}

#[tokio::test]
async fn alert_rules_read_only_metrics_the_stack_exposes() {
    let rules = std::fs::read_to_string(RULES).unwrap();
    let wanted: BTreeSet<String> = expressions(&rules)
        .iter()
        .flat_map(|expression| metric_names(expression))
        .collect();
    assert!(
        wanted.len() >= 7,
        "the rules read Dovetail's metrics: {wanted:?}"
    );

    let dir =
        std::env::temp_dir().join(format!("dovetail-alerts-{}", uuid::Uuid::new_v4().simple()));
    let mut config = StackConfig::on_free_ports(dir.clone());
    config.relay_poll_interval_ms = 100;
    let stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let Seeding::Created(credentials) = &stack.users else {
        panic!("a fresh data directory gets new users");
    };
    let services = demo::Services::of(&stack);
    demo::run(&services, credentials, &mut Vec::new(), None)
        .await
        .unwrap();
    // One consistency run, for the runner's series.
    let run = dovetail_stack::check::run(
        &dovetail_stack::check::Endpoints::of(&stack),
        credentials,
        &mut Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(run.findings(), 0, "{run:?}");

    // Every service renders the process's one recorder; gauges appear at their next sample.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let missing = loop {
        let scrape = http
            .get(format!("http://{}/metrics", stack.policy))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let exposed = exposed(&scrape);
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|name| !exposed.contains(*name))
            .collect();
        if missing.is_empty() || started.elapsed() > Duration::from_secs(30) {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stack.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        missing.is_empty(),
        "dovetail-alerts.yml reads metrics no service exposes: {missing:?}"
    );
}
