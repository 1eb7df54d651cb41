//! relocate_port, failover_upstream, failover_model_endpoint, extend_startup_deadline and
//! staggered_boot: runs that change the running config, and their rollbacks.

use super::*;

#[test]
fn test_relocate_port_moves_the_db_and_its_dependents_follow_then_rollback_moves_it_back() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let old = node.ports.db;
    let overrides = node.data_dir().join("overrides.json");
    let api_before = cmdline_of(&node, "api");
    let probes_before = get_json(&node.url("/api/guardian/probes")).unwrap();

    let dry = run(&node, "relocate_port", json!({"target": "db", "dry_run": true}));
    let said = dry["steps"][1]["detail"].as_str().unwrap().to_string();
    assert!(said.contains(&format!("would set port {old} of `db` moved to")), "{said}");
    assert!(said.contains("restarts: db, api"), "the dependent names the port too: {said}");
    assert!(!overrides.exists(), "the dry run wrote nothing");
    assert_eq!(cmdline_of(&node, "api"), api_before);

    let done = run(&node, "relocate_port", json!({"target": "db"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&overrides).unwrap()).unwrap();
    let new = doc["services"]["db"]["ports"][old.to_string()].as_u64().unwrap() as u16;
    assert_ne!(new, old);
    wait_until("api healthy through the moved db", Duration::from_secs(30), || {
        listening(new) && status_code(&node.api_url("/health")) == Some(200)
    });
    assert!(!listening(old), "nothing on the old port");
    assert!(cmdline_of(&node, "api").contains(&format!("127.0.0.1:{new}")), "{}", cmdline_of(&node, "api"));
    assert!(cmdline_of(&node, "db").contains(&format!("127.0.0.1:{new}")));
    // The port probe follows the db (nothing listens on the old port any more).
    wait_until("db-port probe up on the new port", Duration::from_secs(20), || {
        get_json(&node.url("/api/guardian/probes/db-port")).is_some_and(|p| p["state"] == "up")
    });
    let trail = audit_actions(&node, "admin");
    assert!(trail.iter().any(|(k, a, o)| k == "outcome" && a == "set_port" && o == "succeeded"), "{trail:?}");
    let shown = get_json(&node.url("/api/guardian/overrides")).unwrap();
    assert_eq!(shown["overrides"]["services"]["db"]["ports"][old.to_string()], new, "{shown}");

    // Moved again by a second run: the first run's rollback would overwrite the second's
    // change, so it is refused until the second is rolled back.
    let second = run(&node, "relocate_port", json!({"target": "db"}));
    assert_eq!(second["outcome"], "succeeded", "{second}");
    let refused = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(refused["outcome"], "failed", "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("take back the later change first"), "{refused}");
    let back2 = rollback(&node, second["run_id"].as_u64().unwrap());
    assert_eq!(back2["outcome"], "succeeded", "{back2}");
    wait_until("db on its first new port", Duration::from_secs(30), || listening(new));

    let back = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(back["outcome"], "succeeded", "{back}");
    wait_until("db back on its port, api healthy", Duration::from_secs(30), || {
        listening(old) && status_code(&node.api_url("/health")) == Some(200)
    });
    assert!(!listening(new));
    assert_eq!(cmdline_of(&node, "api"), api_before, "the api's arguments are as before");
    assert_eq!(std::fs::read_to_string(&overrides).unwrap(), "{}");
    assert_eq!(get_json(&node.url("/api/guardian/overrides")).unwrap()["overrides"], json!({}));
    let ids = |v: &Value| v["probes"].as_array().unwrap().iter().map(|p| p["id"].to_string()).collect::<Vec<_>>();
    wait_until("db-port probe up on the old port", Duration::from_secs(20), || {
        get_json(&node.url("/api/guardian/probes/db-port")).is_some_and(|p| p["state"] == "up")
    });
    assert_eq!(ids(&get_json(&node.url("/api/guardian/probes")).unwrap()), ids(&probes_before));
}

#[test]
fn test_relocate_port_away_from_a_stranger_survives_a_restart_of_warden() {
    let mut node = Node::start_default_hands_off();
    node.wait_ready();
    let token = node.admin_token();
    let (ok, out) = node.cli(&["services", "stop", "model"], &[("WARDEN_TOKEN", &token)]);
    assert!(ok, "{out}");
    let held = node.ports.model;
    let stranger = std::net::TcpListener::bind(("127.0.0.1", held)).unwrap();
    let done = run(&node, "relocate_port", json!({"target": "model"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    let detail = done["steps"][1]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("restarts: model, api"), "{detail}");
    let new: u16 = detail.split("moved to ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    wait_until("model on its new port", Duration::from_secs(30), || {
        status_code(&format!("http://127.0.0.1:{new}/api/version")) == Some(200)
    });
    wait_until("api healthy", Duration::from_secs(30), || status_code(&node.api_url("/health")) == Some(200));
    drop(stranger);
    // A new warden on the same data dir runs the overridden config from the start.
    node.stop();
    node.spawn(&[]);
    node.wait_ready();
    assert!(cmdline_of(&node, "model").contains(&format!("127.0.0.1:{new}")), "{}", cmdline_of(&node, "model"));
    assert!(node.stderr().contains("runtime overrides applied"), "{}", node.stderr());
}

/// The default node with a standby db and a standby model server as the api's fallbacks.
fn node_with_standbys() -> (Node, u16, u16) {
    let ports = Ports::fresh();
    let (config, db2, model2) = with_standbys(&default_config_on(ports), ports);
    (Node::start_with(&hands_off(&config), ports, &[]), db2, model2)
}

#[test]
fn test_failover_to_standby_upstreams_and_back() {
    let (node, db2, model2) = node_with_standbys();
    node.wait_ready();
    let token = node.admin_token();
    let api_before = cmdline_of(&node, "api");

    let idle = run(&node, "failover_upstream", json!({"target": "api", "dry_run": true}));
    assert!(idle["steps"][1]["detail"].as_str().unwrap().contains("every upstream of `api` answers"), "{idle}");

    // The model server goes away: the api is pointed at the standby.
    let (ok, out) = node.cli(&["services", "stop", "model"], &[("WARDEN_TOKEN", &token)]);
    assert!(ok, "{out}");
    let dry = run(&node, "failover_model_endpoint", json!({"target": "model", "dry_run": true}));
    let said = dry["steps"][1]["detail"].as_str().unwrap();
    assert!(said.contains(&format!("would set upstream `model` of `api` at http://127.0.0.1:{model2}")), "{said}");
    assert_eq!(cmdline_of(&node, "api"), api_before, "the dry run changed nothing");
    let done = run(&node, "failover_model_endpoint", json!({"target": "model"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    assert!(cmdline_of(&node, "api").contains(&format!("http://127.0.0.1:{model2}")), "{}", cmdline_of(&node, "api"));
    assert_eq!(status_code(&node.api_url("/health")), Some(200));

    // The db too, through the generic playbook: it picks the upstream that does not answer.
    let (ok, out) = node.cli(&["services", "stop", "db"], &[("WARDEN_TOKEN", &token)]);
    assert!(ok, "{out}");
    let db_done = run(&node, "failover_upstream", json!({"target": "api"}));
    assert_eq!(db_done["outcome"], "succeeded", "{db_done}");
    let now = cmdline_of(&node, "api");
    assert!(now.contains(&format!("127.0.0.1:{db2}")) && now.contains(&format!("127.0.0.1:{model2}")), "{now}");
    let trail = audit_actions(&node, "admin");
    assert!(trail.iter().filter(|(k, a, o)| k == "outcome" && a == "set_endpoint" && o == "succeeded").count() >= 2);

    // The primaries come back; rolled back newest first, the api is as it was.
    for s in ["db", "model"] {
        let (ok, out) = node.cli(&["services", "start", s], &[("WARDEN_TOKEN", &token)]);
        assert!(ok, "{out}");
    }
    for run_id in [&db_done, &done].map(|r| r["run_id"].as_u64().unwrap()) {
        let back = rollback(&node, run_id);
        assert_eq!(back["outcome"], "succeeded", "{back}");
    }
    wait_until("api healthy on its primaries", Duration::from_secs(30), || {
        status_code(&node.api_url("/health")) == Some(200)
    });
    assert_eq!(cmdline_of(&node, "api"), api_before);
    assert_eq!(std::fs::read_to_string(node.data_dir().join("overrides.json")).unwrap(), "{}");
}

/// Services `first` and `second` (no dependencies between them), each taking `boot` seconds to be
/// ready, with a startup deadline of `deadline_ms`.
fn slow_pair(ports: Ports, boot: &str, deadline_ms: u64) -> String {
    let svc = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    command: /bin/sh\n    args: [-c, 'sleep {boot}; exec {WARDEN} demo model --listen 127.0.0.1:{port}']\n    ports: [{port}]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{port}/api/version' }}\n    startup_deadline_ms: {deadline_ms}\n"
        )
    };
    // The playbooks are run by hand here: the slow_boot incident would run them too.
    format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n{}{}healing:\n  enabled: false\n",
        ports.http,
        svc("first", ports.api),
        svc("second", ports.model)
    )
}

/// Both services' states from one status answer (two reads could straddle a change).
fn states(node: &Node) -> Vec<String> {
    let status = node.status().unwrap_or_default();
    ["first", "second"]
        .iter()
        .map(|name| {
            status["services"]
                .as_array()
                .and_then(|all| all.iter().find(|s| s["name"] == *name))
                .and_then(|s| s["state"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn test_extend_startup_deadline_lets_the_next_boot_finish_in_time_and_rolls_back() {
    let ports = Ports::fresh();
    let node = Node::start_with(&slow_pair(ports, "1.4", 1000), ports, &[]);
    wait_until("a slow boot reported", Duration::from_secs(20), || node.stderr().contains("alert: slow boot"));
    let pid = node.service("first").unwrap().0;
    let done = run(&node, "extend_startup_deadline", json!({"target": "first"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    assert!(done["steps"][1]["detail"].as_str().unwrap().contains("startup deadline of `first` 2000 ms"), "{done}");
    assert_eq!(node.service("first").unwrap().0, pid, "the boot under way was not restarted");
    let slow_boots_of_first =
        |n: &Node| n.stderr().lines().filter(|l| l.contains("alert: slow boot") && l.contains("first")).count();
    wait_until("both running", Duration::from_secs(20), || states(&node) == ["running", "running"]);
    let before = slow_boots_of_first(&node);
    assert!(before >= 1, "{}", node.stderr());
    // The next boot of `first` (1.4 s) has 2 s: no slow boot this time.
    let (ok, out) = node.cli(&["services", "restart", "first"], &[("WARDEN_TOKEN", &node.admin_token())]);
    assert!(ok, "{out}");
    wait_until("first running again", Duration::from_secs(20), || states(&node)[0] == "running");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slow_boots_of_first(&node), before, "the second boot was in time: {}", node.stderr());
    let back = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(back["outcome"], "succeeded", "{back}");
    assert_eq!(std::fs::read_to_string(node.data_dir().join("overrides.json")).unwrap(), "{}");
}

#[test]
fn test_staggered_boot_starts_one_service_at_a_time_after_it_runs() {
    let ports = Ports::fresh();
    let mut node = Node::start_with(&slow_pair(ports, "1", 30_000), ports, &[]);
    // Without it both boot at once.
    wait_until("both starting at once", Duration::from_secs(20), || states(&node) == ["starting", "starting"]);
    wait_until("both running", Duration::from_secs(20), || states(&node) == ["running", "running"]);
    let done = run(&node, "staggered_boot", json!({"target": "first"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    node.stop();
    node.spawn(&[]);
    let mut seen = Vec::new();
    wait_until("both running after a staggered boot", Duration::from_secs(30), || {
        let s = states(&node);
        seen.push(s.clone());
        s == ["running", "running"]
    });
    assert!(!seen.iter().any(|s| s == &["starting", "starting"]), "never two boots at once: {seen:?}");
    assert!(seen.iter().any(|s| s == &["starting", "pending"]), "second waited for first: {seen:?}");
    let back = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(back["outcome"], "succeeded", "{back}");
    assert_eq!(std::fs::read_to_string(node.data_dir().join("overrides.json")).unwrap(), "{}");
}
