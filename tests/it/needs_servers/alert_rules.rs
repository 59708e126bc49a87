//! `promtool check rules` and `promtool test rules` on `ops/prometheus/`: the rules parse,
//! and each fires and stays quiet where its unit tests say. `cargo xtask test` unpacks
//! promtool (Debian's `prometheus` package) and names it in `DOVETAIL_PROMTOOL`.

use std::path::Path;
use std::process::Command;

fn promtool() -> String {
    std::env::var("DOVETAIL_PROMTOOL").unwrap_or_else(|_| {
        panic!(
            "DOVETAIL_PROMTOOL is not set: run the tests with `cargo xtask test`, which \
             installs promtool, or point it at a promtool binary"
        )
    })
}

fn run(args: &[&str]) -> String {
    let rules_dir = Path::new(crate::alerts::RULES).parent().unwrap();
    let output = Command::new(promtool())
        .args(args)
        .current_dir(rules_dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run promtool ({}): {error}", promtool()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let text = run(&["check", "rules", "dovetail-alerts.yml"]);
    assert!(text.contains("SUCCESS: 11 rules found"), "{text}");
}

#[test]
fn every_alert_rule_has_firing_and_quiet_cases_that_pass_promtool_test_rules() {
    let rules = std::fs::read_to_string(crate::alerts::RULES).unwrap();
    let tests = std::fs::read_to_string(
        Path::new(crate::alerts::RULES).with_file_name("dovetail-alerts.test.yml"),
    )
    .unwrap();
    for alert in rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
    {
        let name = format!("alertname: {alert}\n");
        let cases = tests.matches(&name).count();
        assert!(
            cases >= 2,
            "{alert} has {cases} test case(s): it needs one firing, one quiet"
        );
    }
    let text = run(&["test", "rules", "dovetail-alerts.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}
