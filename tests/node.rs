//! The walking skeleton end to end: a real `warden run` supervising the real demo
//! services, faults injected with real signals, results read through warden's own API.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Hangs the api with SIGSTOP and waits until warden reports the incident resolved.
fn hang_api_and_wait_for_heal(node: &Node) -> u32 {
    let (pid, _) = node.service("api").unwrap();
    let pid = pid.unwrap();
    let resolved_before = node.healer_stats()["incidents"]["resolved"].as_u64().unwrap_or(0);
    kill(pid, Signal::SIGSTOP);
    wait_until("the hang incident to be resolved", Duration::from_secs(30), || {
        node.healer_stats()["incidents"]["resolved"].as_u64().unwrap_or(0) > resolved_before
    });
    pid
}

#[test]
fn test_sigkill_of_each_demo_service_is_restarted_healthy() {
    // A killed service's exit is awaited and it is started again at once.
    let node = Node::start_default(&[]);
    node.wait_ready();
    for svc in ["db", "model", "api"] {
        let (old, _) = node.service(svc).unwrap();
        let old = old.unwrap();
        kill(old, Signal::SIGKILL);
        wait_until(
            &format!("{svc} restarted with a new pid"),
            Duration::from_secs(20),
            || matches!(node.service(svc), Some((Some(p), ref st)) if p != old && st == "running"),
        );
        wait_until("api healthy again", Duration::from_secs(20), || status_code(&node.api_url("/health")) == Some(200));
    }
    let s = node.status().unwrap();
    for svc in s["services"].as_array().unwrap() {
        assert_eq!(svc["restarts"], 1, "each service restarted exactly once: {svc}");
        assert!(svc["last_exit"].as_str().unwrap().contains("SIGKILL"), "exit reason kept: {svc}");
    }
    // Output of every process generation lands in the service's log file.
    let log = std::fs::read_to_string(node.data_dir().join("logs/api.log")).unwrap();
    assert!(log.matches("demo api ready").count() >= 2, "both api processes logged:\n{log}");
}

#[test]
fn test_sigstop_of_api_is_healed_under_a_permit_and_audited() {
    // Hang → incident (mode 7) → permit → audited restart → re-probe → resolved with MTTR.
    let mut node = Node::start_default(&[]);
    node.wait_ready();
    let old = hang_api_and_wait_for_heal(&node);

    let stats = node.healer_stats();
    let run = &stats["last_runs"][0];
    assert_eq!(run["playbook"], "restart_hung_service", "{stats}");
    assert_eq!(run["outcome"], "succeeded", "{stats}");
    assert_eq!(run["failure_mode"], "api_timeout", "{stats}");
    assert!(run["mttr_ms"].as_u64().is_some(), "MTTR stored: {stats}");
    let restart = run["steps"].as_array().unwrap().iter().find(|s| s["action"] == "restart_service").unwrap();
    assert!(restart["permit_audit_seq"].as_u64().is_some(), "restart ran under a permit: {restart}");
    assert_eq!(restart["tier"], 2);
    assert!(stats["mttr"]["rolling_avg_ms"].as_f64().is_some(), "{stats}");
    assert_eq!(stats["success_rate_pct"], 100.0, "{stats}");

    let (new, state) = node.service("api").unwrap();
    assert_ne!(new, Some(old), "the hung process was replaced");
    assert_eq!(state, "running");
    assert!(alive_in_groups(&[old]).is_empty(), "the hung process is gone");
    assert_eq!(status_code(&node.api_url("/health")), Some(200));

    let verify = get_json(&node.url("/api/audit/verify")).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["verified"].as_u64().unwrap() >= 2, "decision and outcome entries: {verify}");

    // On a data dir in use, `audit verify` asks the running warden through its API.
    let (ok, text) = node.cli(&["audit", "verify"], &[]);
    assert!(ok, "{text}");
    assert!(text.contains("is in use by warden pid") && text.contains("/api/audit/verify"), "{text}");
    assert!(text.contains("audit chain verified"), "{text}");

    // The healer's history is read from the store: it survives a restart of warden.
    node.stop();
    let (ok, text) = node.cli(&["audit", "verify"], &[]);
    assert!(ok && text.contains("audit chain verified"), "{text}");

    node.spawn(&[]);
    wait_until("restarted warden answers", Duration::from_secs(30), || {
        get_json(&node.url("/api/guardian/healer/stats")).is_some()
    });
    let after = node.healer_stats();
    assert_eq!(after["last_runs"][0]["run_id"], run["run_id"], "runs survive a restart: {after}");
    assert_eq!(after["incidents"]["resolved"], 1);
}

#[test]
fn test_service_that_exits_at_once_is_quarantined() {
    // More than max_restarts exits inside the window quarantines the service and alerts.
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: crasher\n    command: /bin/sh\n    args: [-c, 'exit 1']\n    restart: {{ backoff_initial_ms: 10, backoff_max_ms: 50, max_restarts: 3, window_ms: 60000 }}\n",
        ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until(
        "crasher quarantined",
        Duration::from_secs(20),
        || matches!(node.service("crasher"), Some((_, ref s)) if s == "quarantined"),
    );
    let s = node.status().unwrap();
    let svc = &s["services"][0];
    assert_eq!(svc["restarts"], 3, "restarted max_restarts times before quarantine: {svc}");
    assert_eq!(svc["last_exit"], "exited with code 1");
    assert!(node.stderr().contains("alert: service quarantined"), "alert logged:\n{}", node.stderr());
    let ready = http().get(node.url("/readyz")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503, "not ready while a service is quarantined");
    let body: serde_json::Value = ready.json().unwrap();
    assert!(body["reasons"].to_string().contains("service `crasher` is quarantined"), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.status().unwrap()["services"][0]["restarts"], 3, "no restarts once quarantined");
    // Nothing outside the service explains the loop: it waits for a person, said once.
    wait_until("left for a person", Duration::from_secs(10), || node.stderr().contains("a person must look"));
    assert!(node.stderr().contains("quarantined with no cause outside the service"), "{}", node.stderr());

    // Only a release lifts a quarantine: a start or restart is refused, and still audited
    // under the caller's name (start is tier 1, and a person asked).
    for op in ["start", "restart"] {
        let resp =
            node.post_as_admin(&format!("/api/services/crasher/{op}")).json(&serde_json::json!({})).send().unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(status, 409, "{op} of a quarantined service: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("release it"), "{body}");
    }
    assert_eq!(node.service("crasher").unwrap().1, "quarantined");
    // Reads on a loopback listener need no token.
    let trail = get_json(&node.url("/api/governance/audit?actor=admin&action=start_service")).unwrap();
    let kinds: Vec<&str> = trail["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["outcome", "decision"], "a person's tier 1 start is on the trail: {trail}");
    assert!(trail["entries"][0]["detail"].as_str().unwrap().contains("quarantined"), "{trail}");
    let resp = node.post_as_admin("/api/services/crasher/release").json(&serde_json::json!({})).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "release starts it: {:?}", resp.text());
}

#[test]
fn test_service_not_ready_by_its_deadline_is_flagged_slow_boot() {
    // Past startup_deadline_ms without passing its ready check, a service is marked slow.
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: slow\n    command: /bin/sh\n    args: [-c, 'sleep 30']\n    ready: {{ kind: tcp, addr: '127.0.0.1:{}' }}\n    startup_deadline_ms: 300\n",
        ports.http, ports.api
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until("slow boot flagged", Duration::from_secs(20), || {
        node.status().is_some_and(|s| s["services"][0]["slow_boot"] == true)
    });
    assert_eq!(node.service("slow").unwrap().1, "starting", "still waiting to be ready, not killed");
    assert!(node.stderr().contains("alert: slow boot"), "{}", node.stderr());
    assert_eq!(status_code(&node.url("/readyz")), Some(503), "node not ready while a service boots");
}

#[test]
fn test_service_killed_after_a_stable_run_is_never_quarantined() {
    // Exits of a process that stayed ready past stable_after_ms start a fresh history:
    // external kills of a healthy service are healed every time, however many.
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: steady\n    command: /bin/sh\n    args: [-c, 'sleep 60']\n    restart: {{ max_restarts: 2, window_ms: 60000, stable_after_ms: 200 }}\n",
        ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    for round in 1..=4u32 {
        wait_until(
            "steady running",
            Duration::from_secs(20),
            || matches!(node.service("steady"), Some((Some(_), ref s)) if s == "running"),
        );
        std::thread::sleep(Duration::from_millis(300));
        let (pid, _) = node.service("steady").unwrap();
        kill(pid.unwrap(), Signal::SIGKILL);
        wait_until(&format!("restart {round}"), Duration::from_secs(20), || {
            node.status().is_some_and(|s| s["services"][0]["restarts"] == round)
        });
    }
    assert_ne!(node.service("steady").unwrap().1, "quarantined", "four kills of a stable service, budget two");
}

/// Runs `warden run` on `config`; returns (exit code, stderr, whether the service started).
fn run_bad_config(config: &str) -> (Option<i32>, String, bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let marker = dir.path().join("started");
    std::fs::write(&path, config.replace("MARKER", &marker.display().to_string())).unwrap();
    let mut child = Command::new(WARDEN)
        .args(["run", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("warden kept running on a bad config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err, marker.exists(), path.display().to_string())
}

#[test]
fn test_bad_config_names_file_line_column_and_starts_nothing() {
    // Unknown key, wrong type, broken YAML: exit non-zero before any child starts.
    let good = "node:\n  name: t\n  http_listen: 127.0.0.1:1\nservices:\n  - name: marker\n    command: /bin/sh\n    args: [-c, 'touch MARKER; sleep 30']\n";
    let cases = [
        (
            good.replace("    command: /bin/sh\n", "    command: /bin/sh\n    colour: red\n"),
            7,
            5,
            "unknown field `colour`",
        ),
        (good.replace("name: t\n", "name: t\n  startup_deadline_ms: soon\n"), 3, 24, "invalid"),
        (good.replace("args: [-c, 'touch MARKER; sleep 30']", "args: [-c, 'touch MARKER; sleep 30'"), 0, 0, ""),
    ];
    // The governance policy file a node config points at is checked the same way.
    let policies = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policies.path(),
        "mode: dev\nwhitelist:\n  - action: restart_service\n    targets: ['*']\n    ratelimit: 3\n",
    )
    .unwrap();
    let with_policies = format!("{good}governance_policies: {}\n", policies.path().display());
    let (code, err, started, _) = run_bad_config(&with_policies);
    assert_eq!(code, Some(2), "{err}");
    assert!(!started);
    let pos = format!("{}:5:5: unknown field `ratelimit`", policies.path().display());
    assert!(err.contains(&pos), "error names {pos}:\n{err}");
    assert_eq!(err.matches("unknown field `ratelimit`").count(), 1, "reported once:\n{err}");
    for (config, line, col, message) in cases {
        let (code, err, started, path) = run_bad_config(&config);
        assert_eq!(code, Some(2), "exit code for bad config; stderr:\n{err}");
        assert!(!started, "no service may start on a bad config");
        if line > 0 {
            let pos = format!("{path}:{line}:{col}: ");
            assert!(err.contains(&pos), "error names {pos}:\n{err}");
            assert!(err.contains(message), "error says {message}:\n{err}");
        } else {
            assert!(err.contains(&format!("{path}:")), "broken YAML names the file and position:\n{err}");
        }
    }
}

#[test]
fn test_shutdown_stops_services_and_leaves_no_orphans() {
    // SIGINT (like SIGTERM) stops every service in reverse order and warden exits cleanly.
    let mut node = Node::start_default(&[]);
    node.wait_ready();
    let groups: Vec<u32> = descendants(node.pid()).into_iter().flat_map(|(p, g)| [p, g]).collect();
    assert!(groups.len() >= 6, "three services running: {groups:?}");
    let status = node.stop_with(Signal::SIGINT).unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    wait_until("no process of the node left", Duration::from_secs(10), || alive_in_groups(&groups).is_empty());
    let log = node.stderr();
    let order: Vec<usize> = ["service=\"api\"", "service=\"model\"", "service=\"db\""]
        .iter()
        .map(|s| log.find(&format!("service stopped {s}")).unwrap_or_else(|| panic!("{s} stopped:\n{log}")))
        .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "stopped in reverse dependency order:\n{log}");
}

#[test]
fn test_audit_verify_names_an_entry_with_a_flipped_byte() {
    // One changed byte in a stored entry breaks the chain at that entry.
    let mut node = Node::start_default(&[]);
    node.wait_ready();
    hang_api_and_wait_for_heal(&node);
    node.stop();
    let data = node.data_dir();
    let (ok, out) = node.cli(&["audit", "verify"], &[]);
    assert!(ok, "intact chain verifies: {out}");

    {
        // The node is stopped: take its data dir and flip one byte of the first entry.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dd = warden_actors::data_dir::DataDir::new(&data);
            let _lock = dd.lock(None).unwrap();
            let store = warden_actors::store::Store::open(&dd).unwrap();
            let mut raw = store.audit_raw(1).await.unwrap().unwrap();
            let at = raw.windows(8).position(|w| w == b"playbook").expect("rationale text in entry 1");
            raw[at] ^= 0x20; // 'p' → 'P'
            store.audit_put_raw(1, raw).await.unwrap();
        });
    }
    let (ok, out) = node.cli(&["audit", "verify"], &[]);
    assert!(!ok, "tampered chain must fail: {out}");
    assert!(out.contains("entry 0 (seq 1)") && out.contains("modified"), "names the entry: {out}");
}

#[test]
fn test_metrics_pass_promtool_check() {
    // /metrics is valid Prometheus text with restarts, incidents, MTTR and playbook runs.
    let node = Node::start_default(&[]);
    node.wait_ready();
    hang_api_and_wait_for_heal(&node);
    let text = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    for name in [
        "warden_service_restarts_total",
        "warden_incidents_total",
        "warden_mttr_seconds_count",
        "warden_playbook_executions_total",
    ] {
        assert!(text.contains(name), "{name} in /metrics:\n{text}");
    }
    ensure_promtool();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found after .ci/install-deps.sh");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn test_http_serves_while_a_pillar_actor_restarts() {
    // A panicking service supervisor is restarted by its supervisor; the API keeps
    // answering and the new instance adopts the running services.
    let node = Node::start_default(&["--enable-fault-injection"]);
    node.wait_ready();
    let (api_pid, _) = node.service("api").unwrap();
    let r = node.post_as_admin("/api/debug/crash/guardian/service_supervisor").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        assert_eq!(status_code(&node.url("/api/status")), Some(200), "API answers during the restart");
    }
    // Generous: the whole suite runs beside it on two cores.
    let supervisor = || {
        node.status().and_then(|s| {
            s["actors"].as_array().and_then(|a| a.iter().find(|x| x["path"] == "guardian/service_supervisor").cloned())
        })
    };
    let start = Instant::now();
    while !supervisor().is_some_and(|a| a["restarts"] == 1 && a["state"] == "running") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "service supervisor not restarted: {:?}\nwarden stderr:\n{}",
            supervisor(),
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(node.service("api").unwrap().0, api_pid, "running services adopted, not restarted");
    // The new instance still restarts a killed service.
    kill(api_pid.unwrap(), Signal::SIGKILL);
    wait_until(
        "api restarted by the new instance",
        Duration::from_secs(20),
        || matches!(node.service("api"), Some((Some(p), ref s)) if Some(p) != api_pid && s == "running"),
    );
}

#[test]
fn test_fault_injection_is_refused_unless_enabled() {
    // Without the flag, the crash endpoint answers 403 with a JSON error.
    let node = Node::start_default(&[]);
    wait_until("warden answers", Duration::from_secs(30), || status_code(&node.url("/healthz")) == Some(200));
    let r = node.post_as_admin("/api/debug/crash/guardian/service_supervisor").send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let r = http().get(node.url("/api/nope")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["error"]["code"], "not_found");
}

#[test]
fn test_second_warden_on_a_locked_data_dir_fails_with_one_line() {
    // The data dir belongs to one warden; a second gets a one-line error naming the holder.
    let node = Node::start_default(&[]);
    wait_until("warden answers", Duration::from_secs(30), || status_code(&node.url("/healthz")) == Some(200));
    let other = default_config_on(Ports::fresh());
    let cfg = node.dir.path().join("other.yaml");
    std::fs::write(&cfg, other).unwrap();
    let out = Command::new(WARDEN)
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(node.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line:\n{err}");
    assert!(
        lines[0].contains("is locked by another warden") && lines[0].contains(&format!("pid {}", node.pid())),
        "{err}"
    );
}

#[test]
fn test_unusable_data_dir_is_a_one_line_error() {
    // A data dir that cannot be created fails the start with one clear line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let cfg = dir.path().join("node.yaml");
    std::fs::write(&cfg, default_config_on(Ports::fresh())).unwrap();
    let out = Command::new(WARDEN)
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(file.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("cannot create data dir") && lines[0].contains("plain-file"), "{err}");
}

#[test]
fn test_a_service_waits_out_a_stranger_on_its_port_instead_of_crash_looping_into_quarantine() {
    // A stranger holds the port for 3 s: restarting into EADDRINUSE would spend the restart
    // budget (max_restarts 3) within a second and quarantine the service for good. It waits
    // for the port instead, budget untouched, and starts once the port is free.
    let ports = Ports::fresh();
    let port = ports.api;
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: web\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{port}']\n    ports: [{port}]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{port}/api/version' }}\n    restart: {{ backoff_initial_ms: 10, backoff_max_ms: 50, max_restarts: 3, window_ms: 60000 }}\nhealing:\n  enabled: false\n",
        ports.http
    );
    // Supervision alone (healing off): the wait. With healing on, the port_in_use incident
    // asks the holder to leave instead (tests/self_healing_scenarios.rs).
    let mut node = Node::prepare(&config, ports);
    let mut stranger = stranger_on(port, node.dir.path());
    node.spawn(&[]);
    let web = |n: &Node| {
        n.status()
            .and_then(|s| s["services"].as_array()?.iter().find(|x| x["name"] == "web").cloned())
            .unwrap_or_default()
    };
    wait_until("web waiting for its port", Duration::from_secs(20), || web(&node)["waiting_for_port"].is_string());
    let waiting = web(&node);
    assert!(
        waiting["waiting_for_port"].as_str().unwrap().contains(&format!("pid {}", stranger.0.id())),
        "names the holder: {waiting}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let still = web(&node);
    assert_eq!(still["state"], "backoff", "waiting, not quarantined: {still}");
    assert!(still["restarts"].as_u64().unwrap() <= 1, "no crash loop: {still}");
    assert_eq!(node.stderr().matches("another process holds the service's port").count(), 1, "said once");

    let _ = stranger.0.kill();
    let _ = stranger.0.wait();
    wait_until("web running on its port", Duration::from_secs(20), || web(&node)["state"] == "running");
    assert!(web(&node)["waiting_for_port"].is_null());
    assert_eq!(status_code(&format!("http://127.0.0.1:{port}/api/version")), Some(200));
    assert!(node.stderr().contains("port free again"), "{}", node.stderr());
}

#[test]
fn test_json_logs_are_one_object_per_line_with_a_ready_line() {
    // `--log-format json`: every line on stderr is one JSON object (a log shipper's input),
    // and the node says once that it is ready, with what it runs.
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: one\n    command: /bin/sh\n    args: [-c, 'exec sleep 60']\n",
        ports.http
    );
    let node = Node::start_with(&config, ports, &["--log-format", "json"]);
    wait_until("the ready line", Duration::from_secs(20), || node.stderr().contains("node ready"));
    let lines: Vec<String> = node.stderr().lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    let ready: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "node ready")
        .collect();
    assert_eq!(ready.len(), 1, "said once: {lines:?}");
    assert_eq!(ready[0]["services"], 1, "{}", ready[0]);
    assert_eq!(ready[0]["api"], format!("http://127.0.0.1:{}", ports.http), "{}", ready[0]);
    // Config errors in JSON too, every problem with its position.
    let bad = Node::prepare("node:\n  name: t\n  http_listen: nowhere\nservices: []\n", Ports::fresh());
    let out = Command::new(WARDEN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(bad.config_path())
        .arg("--data-dir")
        .arg(bad.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_str(err.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(v["message"], "invalid configuration", "{v}");
    assert!(v["problems"].as_str().unwrap().contains("node.yaml:3:"), "{v}");
}
