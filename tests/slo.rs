//! Service level objectives from outside: a node whose probes fail half the time shows it
//! in `GET /api/slo` and `/metrics` and alerts on it; every SLO series is there from the
//! start; the rule file `warden slo rules` writes passes `promtool check rules` and the
//! unit tests in `tests/slo/rules_test.yml` (`promtool test rules`).
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::*;

fn promtool(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    ensure_promtool();
    let out = Command::new("promtool").args(args).current_dir(dir).output().expect("promtool after install-deps");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn test_the_generated_rules_pass_promtool_check_and_its_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("slo_rules.yml");
    let out = Command::new(WARDEN)
        .args(["slo", "rules", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, said) = promtool(dir.path(), &["check", "rules", "slo_rules.yml"]);
    assert!(ok, "promtool check rules: {said}\n{}", std::fs::read_to_string(&rules).unwrap());
    // Lint findings (duplicate rules: two objectives' alerts with the same labels) do not
    // fail promtool's exit code; they are defects all the same.
    assert!(!said.contains("FAILED") && said.contains("SUCCESS"), "promtool check rules: {said}");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slo/rules_test.yml"), dir.path().join("rules_test.yml"))
        .unwrap();
    let (ok, said) = promtool(dir.path(), &["test", "rules", "rules_test.yml"]);
    assert!(ok, "promtool test rules: {said}\n{}", std::fs::read_to_string(&rules).unwrap());

    // The targets come from the config.
    let config = dir.path().join("node.yaml");
    std::fs::write(
        &config,
        "node:\n  name: t\n  http_listen: 127.0.0.1:1\nservices: []\nslo:\n  health_target_pct: 99.9\n  trust_target_pct: 100\n",
    )
    .unwrap();
    let out = Command::new(WARDEN).args(["slo", "rules", "--config"]).arg(&config).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("node.yaml:7:") && said.contains("below 100"), "{said}");
}

#[test]
fn test_failing_checks_show_in_the_health_objective_api_metrics_and_alerts() {
    let rx = Receiver::start(0);
    let ports = Ports::fresh();
    let closed = free_port();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: one\n    command: /bin/sh\n    args: [-c, 'exec sleep 120']\n\
         probes:\n  - name: passes\n    layer: l4\n    target: one\n    check: {{ kind: tcp, addr: '127.0.0.1:{http}', owner: false }}\n    interval_ms: 200\n    timeout_ms: 150\n\
         \x20 - name: fails\n    layer: l4\n    target: one\n    check: {{ kind: tcp, addr: '127.0.0.1:{closed}', owner: false }}\n    interval_ms: 200\n    timeout_ms: 150\n\
         healing:\n  enabled: false\n\
         alerts:\n  group_wait_ms: 0\n  webhooks:\n    - url: {hook}\n      timeout_ms: 2000\n",
        http = ports.http,
        hook = rx.url("/hook"),
    );
    let node = Node::start_with(&config, ports, &[]);
    // Every SLO series from the start, before any event.
    wait_until("the API", Duration::from_secs(20), || status_code(&node.url("/healthz")) == Some(200));
    let text = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    for slo in ["health", "trust", "confidence", "mttr"] {
        for series in [
            format!("warden_slo_events_total{{slo=\"{slo}\",result=\"bad\"}}"),
            format!("warden_slo_value_ratio{{slo=\"{slo}\"}}"),
            format!("warden_slo_error_budget_left_ratio{{slo=\"{slo}\"}}"),
            format!("warden_slo_burn_rate{{slo=\"{slo}\",window=\"1h\"}}"),
        ] {
            assert!(text.contains(&series), "{series} in /metrics:\n{text}");
        }
    }

    let mut slo = Value::Null;
    wait_until("half the checks counted as bad", Duration::from_secs(60), || {
        slo = get_json(&node.url("/api/slo")).unwrap_or(Value::Null);
        slo["slos"][0]["total"].as_u64().unwrap_or(0) >= 20
    });
    let health = &slo["slos"][0];
    assert_eq!(health["slo"], "health", "{slo}");
    let value = health["value"].as_f64().unwrap();
    assert!((0.3..0.7).contains(&value), "about half pass: {health}");
    assert_eq!(health["target"], 0.85, "{health}");
    assert!((health["alert_below"].as_f64().unwrap() - 0.80).abs() < 1e-9, "{health}");
    assert_eq!(health["below_threshold"], true, "{health}");
    assert!(health["error_budget_left"].as_f64().unwrap() < 0.0, "overspent: {health}");
    assert!(health["burn_rates"]["5m"].as_f64().unwrap() > 1.0, "{health}");
    assert_eq!(slo["slos"][1]["slo"], "trust");
    assert!(slo["slos"][1]["value"].is_null(), "no repair ran: {slo}");

    let text = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    let bad = metric(&text, "warden_slo_events_total{slo=\"health\",result=\"bad\"}").unwrap();
    assert!(bad >= 5.0, "bad checks counted: {bad}");
    let v = metric(&text, "warden_slo_value_ratio{slo=\"health\"}").unwrap();
    assert!(v < 0.8, "{v}");
    // The threshold alert reached the log and the webhook (once).
    wait_until("the SLO alert at the webhook", Duration::from_secs(30), || {
        rx.bodies()
            .iter()
            .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
            .any(|a| a["labels"]["alertname"] == "WardenSloBelowThreshold" && a["labels"]["slo"] == "health")
    });
    assert!(node.stderr().contains("alert: service level objective"), "{}", node.stderr());
}

#[test]
fn test_every_query_of_the_grafana_dashboard_names_a_metric_that_exists() {
    // docs/grafana/warden.json is imported as it is: valid JSON, unique panel ids, and each
    // query's metric names exist on a fresh default node's /metrics (from the start) or in
    // the rules `warden slo rules` writes.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/warden.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dash["uid"], "warden-node");
    let panels = dash["panels"].as_array().unwrap();
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "unique panel ids");

    let node = Node::start_default_hands_off();
    node.wait_ready();
    let metrics = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    let names: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let (ok, rules) = node.cli(&["slo", "rules"], &[]);
    assert!(ok, "{rules}");
    let mut queries = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            queries += 1;
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter(|w| w.starts_with("warden_") || w.starts_with("warden:") || w.starts_with("process_"))
                .collect();
            assert!(!used.is_empty(), "{}: no metric in `{expr}`", p["title"]);
            for name in used {
                let known = names.contains(name) || rules.contains(&format!("record: {name}\n"));
                assert!(known, "{}: `{name}` is neither on /metrics nor a recorded rule:\n{metrics}", p["title"]);
            }
        }
    }
    assert!(queries >= 25, "{queries}");
}
