//! The alert pipeline from outside: silences made through the API mute what they match
//! (told to the log only) until they end, and what still fails then is told; a failing
//! lower layer inhibits the alerts of the layers above it on the same target; bad silence
//! requests get 4xx JSON errors; email reaches a real SMTP server.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;

/// The firing `ProbeFailing` alerts the receiver got, by probe name.
fn firing_probes(rx: &Receiver) -> Vec<String> {
    rx.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["status"] == "firing" && a["labels"]["alertname"] == "ProbeFailing")
        .map(|a| a["labels"]["probe"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn test_silences_mute_and_a_failing_lower_layer_inhibits_the_layers_above() {
    let rx = Receiver::start(0);
    let ports = Ports::fresh();
    let web = free_port();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: web\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{web}']\n    ports: [{web}]\n\
         probes:\n  - name: web-port\n    layer: l4\n    target: web\n    check: {{ kind: tcp, addr: '127.0.0.1:{web}' }}\n    interval_ms: 100\n    timeout_ms: 80\n    failure_threshold: 1\n\
         \x20 - name: web-http\n    layer: l7\n    target: web\n    check: {{ kind: http, url: 'http://127.0.0.1:{web}/api/tags' }}\n    interval_ms: 200\n    timeout_ms: 150\n    failure_threshold: 2\n\
         healing:\n  enabled: false\nalerts:\n  group_wait_ms: 1500\n  webhooks:\n    - url: {hook}\n      timeout_ms: 2000\n",
        http = ports.http,
        hook = rx.url("/hook"),
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until("the node ready", Duration::from_secs(30), || status_code(&node.url("/readyz")) == Some(200));
    let up = |probe: &str| {
        node.status()
            .and_then(|v| v["probes"].as_array().cloned())
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == probe && p["state"] == "up"))
    };
    wait_until("both probes up", Duration::from_secs(20), || up("web-port") && up("web-http"));

    // Bad requests: 4xx with a JSON error, nothing made.
    for (body, why) in [
        (json!({"matchers": {}, "duration_ms": 60000, "comment": "x"}), "matcher"),
        (json!({"matchers": {"target": "web"}, "duration_ms": 0, "comment": "x"}), "lasts"),
        (json!({"matchers": {"target": "web"}, "duration_ms": 60000, "comment": " "}), "comment"),
        (json!({"matchers": {"target": "web"}}), "duration_ms"),
    ] {
        let resp = node.post_as_admin("/api/alerts/silences").json(&body).send().unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let err: Value = resp.json().unwrap();
        assert!(err["error"]["message"].as_str().unwrap().contains(why), "{why}: {err}");
    }
    let anonymous = http().post(node.url("/api/alerts/silences")).json(&json!({})).send().unwrap();
    assert!(matches!(anonymous.status().as_u16(), 401 | 403), "operators only: {}", anonymous.status());

    // A silence on `web`: its failure reaches the log only.
    let resp = node
        .post_as_admin("/api/alerts/silences")
        .json(&json!({"matchers": {"target": "web"}, "duration_ms": 600000, "comment": "maintenance"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let silence: Value = resp.json().unwrap();
    assert_eq!(silence["active"], true, "{silence}");
    assert_eq!(silence["created_by"], "admin", "{silence}");
    let listed = get_json(&node.url("/api/alerts/silences")).unwrap();
    assert_eq!(listed["silences"][0]["id"], silence["id"], "{listed}");
    let stop = |node: &Node| {
        let r = node.post_as_admin("/api/services/web/stop").json(&json!({"reason": "test"})).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    let start = |node: &Node| {
        let r = node.post_as_admin("/api/services/web/start").json(&json!({})).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    stop(&node);
    wait_until("the silenced alert in the log", Duration::from_secs(20), || {
        node.stderr().contains("alert silenced: told to the log only")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(firing_probes(&rx).is_empty(), "nothing reached the webhook: {:?}", firing_probes(&rx));

    // Ended, the next failure is told; the http check's alert is inhibited by the port's.
    let id = silence["id"].as_u64().unwrap();
    let ended = reqwest::blocking::Client::new()
        .delete(node.url(&format!("/api/alerts/silences/{id}")))
        .bearer_auth(node.admin_token())
        .send()
        .unwrap();
    assert_eq!(ended.status().as_u16(), 200);
    let missing = reqwest::blocking::Client::new()
        .delete(node.url("/api/alerts/silences/999"))
        .bearer_auth(node.admin_token())
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    // What the silence kept back and still fails is told now that it has ended.
    wait_until("the muted alert told as its silence ends", Duration::from_secs(20), || {
        firing_probes(&rx).iter().any(|p| p == "web-port")
    });
    assert!(node.stderr().contains("still firing as its silence ends"), "{}", node.stderr());
    start(&node);
    wait_until("both probes up again", Duration::from_secs(20), || up("web-port") && up("web-http"));
    std::thread::sleep(Duration::from_secs(2));
    let before = firing_probes(&rx).len();
    stop(&node);
    wait_until("the port's alert at the webhook", Duration::from_secs(20), || {
        firing_probes(&rx)[before..].iter().any(|p| p == "web-port")
    });
    std::thread::sleep(Duration::from_secs(3));
    let told = firing_probes(&rx)[before..].to_vec();
    assert!(!told.iter().any(|p| p == "web-http"), "the l7 alert is inhibited by the l4 one: {told:?}");
    assert!(node.stderr().contains("inhibited by the failing lower-layer probe"), "said in the log: {}", node.stderr());
}

#[test]
fn test_alerts_reach_a_real_smtp_server_by_email() {
    // Email as a sink beside the log: a failing probe's alert arrives as a mail with the
    // alert in its subject and body, through a real SMTP conversation on loopback.
    let sink = SmtpSink::start();
    let ports = Ports::fresh();
    let closed = free_port();
    let config = format!(
        "node:\n  name: mailnode\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: one\n    command: /bin/sh\n    args: [-c, 'exec sleep 120']\n\
         probes:\n  - name: one-port\n    layer: l4\n    target: one\n    check: {{ kind: tcp, addr: '127.0.0.1:{closed}', owner: false }}\n    interval_ms: 200\n    timeout_ms: 150\n\
         healing:\n  enabled: false\nalerts:\n  group_wait_ms: 0\n  email:\n    server: '{smtp}'\n    tls: none\n    from: warden@example.com\n    to: [ops@example.com, oncall@example.com]\n    timeout_ms: 5000\n",
        http = ports.http,
        smtp = sink.addr,
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until("the alert by email", Duration::from_secs(30), || {
        sink.messages().iter().any(|m| m.data.contains("ProbeFailing"))
    });
    let mail = sink.messages().into_iter().find(|m| m.data.contains("ProbeFailing")).unwrap();
    assert!(mail.from.contains("warden@example.com"), "{mail:?}");
    assert_eq!(mail.to.len(), 2, "{mail:?}");
    assert!(mail.data.contains("Subject: [warden mailnode] FIRING: ProbeFailing (1 alert)"), "{}", mail.data);
    assert!(mail.data.contains("probe: one-port"), "{}", mail.data);
    let metrics = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    let sent = metric(&metrics, &format!("warden_alerts_sent_total{{sink=\"email {}\",outcome=\"sent\"}}", sink.addr));
    assert!(sent.is_some_and(|n| n >= 1.0), "counted: {metrics}");

    // A config naming a bad address is refused with its position.
    let bad = Node::prepare(
        "node:\n  name: t\n  http_listen: 127.0.0.1:1\nservices: []\nalerts:\n  email:\n    server: nowhere\n    from: nobody\n    to: []\n",
        Ports::fresh(),
    );
    let (ok, out) = bad.cli(&["check-config"], &[]);
    assert!(!ok, "{out}");
    for (line, text) in [(7, "must be HOST:PORT"), (8, "not an email address"), (9, "at least one address")] {
        assert!(out.contains(&format!("node.yaml:{line}:")) && out.contains(text), "{line} {text}: {out}");
    }
}

/// The `WardenIncidentNeedsPerson` alerts the receiver got: (status, target, summary).
fn person_alerts(rx: &Receiver) -> Vec<(String, String, String)> {
    rx.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == "WardenIncidentNeedsPerson")
        .map(|a| {
            let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
            (s(&a["status"]), s(&a["labels"]["target"]), s(&a["annotations"]["summary"]))
        })
        .collect()
}

#[test]
fn test_an_incident_whose_repair_is_paused_tells_a_person_and_says_when_it_no_longer_needs_one() {
    // Healing paused for `web` (a person's pause): its hang opens an incident that no
    // repair will touch, so a person is told through the sinks, not only the log; and the
    // probe's own alert is not held back for a repair that is not under way. Resumed, the
    // repair runs and the person is told the incident no longer needs them.
    let rx = Receiver::start(0);
    let ports = Ports::fresh();
    let web = free_port();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: web\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{web}']\n    ports: [{web}]\n\
         probes:\n  - name: web-http\n    layer: l7\n    target: web\n    check: {{ kind: http, url: 'http://127.0.0.1:{web}/api/tags' }}\n    interval_ms: 200\n    timeout_ms: 150\n    failure_threshold: 2\n\
         healing:\n  operator_hold_ms: 0\nalerts:\n  group_wait_ms: 500\n  webhooks:\n    - url: {hook}\n      timeout_ms: 2000\n",
        http = ports.http,
        hook = rx.url("/hook"),
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until("the node ready", Duration::from_secs(30), || status_code(&node.url("/readyz")) == Some(200));
    let paused = node
        .post_as_admin("/api/healing/pause")
        .json(&json!({"service": "web", "for_ms": 600000, "reason": "test: a person's pause"}))
        .send()
        .unwrap();
    assert_eq!(paused.status().as_u16(), 200, "{:?}", paused.text());
    // Serving first: a process stopped before it listens is another fault.
    wait_until("the probe up", Duration::from_secs(20), || {
        node.status().is_some_and(|s| s["probes"][0]["state"] == "up")
    });
    let (Some(pid), _) = node.service("web").unwrap() else { panic!("web has no pid") };
    kill(pid, nix::sys::signal::Signal::SIGSTOP);
    let start = std::time::Instant::now();
    while !person_alerts(&rx).iter().any(|(st, target, _)| st == "firing" && target == "web") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no person told of the paused incident; incidents: {:?}\n{}",
            get_json(&node.url("/api/incidents")),
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let told = person_alerts(&rx);
    assert!(told[0].2.contains("paused"), "says why: {told:?}");
    wait_until("the probe's alert, not held for a repair", Duration::from_secs(20), || {
        firing_probes(&rx).iter().any(|p| p == "web-http")
    });
    assert!(node.stderr().contains("alert: the incident needs a person"), "{}", node.stderr());

    let resumed =
        node.post_as_admin("/api/healing/resume").json(&json!({"service": "web", "reason": "test over"})).send();
    assert_eq!(resumed.unwrap().status().as_u16(), 200);
    wait_until("the person told it no longer needs them", Duration::from_secs(60), || {
        person_alerts(&rx).iter().any(|(st, target, _)| st == "resolved" && target == "web")
    });
    let firing = person_alerts(&rx).iter().filter(|(st, target, _)| st == "firing" && target == "web").count();
    assert_eq!(firing, 1, "told once: {:?}", person_alerts(&rx));
}

#[test]
fn test_low_memory_on_the_node_is_told_with_who_holds_it_and_nothing_is_killed() {
    // A process warden does not run takes 2 GiB; the node's floor is set 1 GiB under what
    // is available at the start, so the stranger takes the node under it. warden tells a
    // person (naming the stranger as not its own), kills nothing, and says when it is over.
    let avail = available_mib();
    if avail < 4096 {
        eprintln!("skipped: {avail} MiB available, the test needs 4 GiB to take 2 GiB safely");
        return;
    }
    let rx = Receiver::start(0);
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: idle\n    command: /bin/sleep\n    args: ['600']\n\
         healing:\n  node_memory_min_available_pct: 99\n  node_memory_min_available_mb: {floor}\n\
         alerts:\n  group_wait_ms: 500\n  webhooks:\n    - url: {hook}\n      timeout_ms: 2000\n",
        http = ports.http,
        floor = avail - 1024,
        hook = rx.url("/hook"),
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until("the node ready", Duration::from_secs(30), || status_code(&node.url("/readyz")) == Some(200));
    let memory_alerts = |status: &str| -> Vec<Value> {
        rx.bodies()
            .iter()
            .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["alertname"] == "NodeMemoryLow" && a["status"] == status)
            .collect()
    };
    std::thread::sleep(Duration::from_secs(3));
    assert!(memory_alerts("firing").is_empty(), "not low before the stranger: {:?}", memory_alerts("firing"));
    let mut stranger = std::process::Command::new("python3")
        .args(["-c", "import time\nb = b'x' * (2048 * 2**20)\ntime.sleep(15)"])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while memory_alerts("firing").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "no NodeMemoryLow alert; log:\n{}", node.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let firing = memory_alerts("firing");
    let summary = firing[0]["annotations"]["summary"].as_str().unwrap().to_string();
    assert!(summary.contains(&format!("pid {} (python3", stranger.id())), "names the stranger: {summary}");
    assert!(summary.contains("not run by warden"), "{summary}");
    assert!(matches!(stranger.try_wait(), Ok(None)), "the stranger is not killed");
    let _ = stranger.kill();
    let _ = stranger.wait();
    wait_until("the resolve", Duration::from_secs(30), || !memory_alerts("resolved").is_empty());
    assert_eq!(memory_alerts("firing").len(), 1, "told once");
    assert!(node.stderr().contains("alert: the node's memory is low"), "{}", node.stderr());
}
