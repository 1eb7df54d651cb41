//! No state change hangs on a message alone: a pillar actor that dies with messages in its
//! mailbox loses them, and its next instance catches up from the facts (the service table,
//! the store). Each test makes an actor stall in a handler (so the message queues up behind
//! it) and then panic, with the fault landing exactly in that window.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::time::Duration;
use support::*;

fn actor_restarts(node: &Node, path: &str) -> Option<u64> {
    let s = node.status()?;
    s["actors"].as_array()?.iter().find(|a| a["path"] == path)?["restarts"].as_u64()
}

fn crash(node: &Node, path: &str, after_ms: u64) {
    let r = http().post(node.url(&format!("/api/debug/crash/{path}?after_ms={after_ms}"))).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "crash accepted: {:?}", r.text());
}

#[test]
fn test_service_that_dies_while_its_supervisor_is_down_is_restarted() {
    // The api is killed while the service supervisor stalls; its exit notice dies with the
    // supervisor's mailbox. The new supervisor finds the exit in the table and restarts it.
    let node = Node::start_default(&["--enable-fault-injection"]);
    node.wait_ready();
    let (old, _) = node.service("api").unwrap();
    crash(&node, "guardian/service_supervisor", 1_000);
    std::thread::sleep(Duration::from_millis(100));
    kill(old.unwrap(), Signal::SIGKILL);
    wait_until("service supervisor restarted", Duration::from_secs(20), || {
        actor_restarts(&node, "guardian/service_supervisor") == Some(1)
    });
    wait_until(
        "api restarted with a new pid",
        Duration::from_secs(20),
        || matches!(node.service("api"), Some((Some(p), ref s)) if Some(p) != old && s == "running"),
    );
    assert_eq!(status_code(&node.api_url("/health")), Some(200));
    assert!(
        node.stderr().contains("exit happened while the supervisor was down"),
        "the restart came from reconciliation, not from the lost message:\n{}",
        node.stderr()
    );
}

#[test]
fn test_incident_closes_when_its_manager_dies_while_the_playbook_runs() {
    // A service that takes 2 s to come back: the hang's playbook is still verifying when
    // the incident manager stalls, so the run's end reaches a mailbox that is then lost.
    // The new manager reloads the incident, finds the finished run in the store, resolves.
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: slow\n    command: /bin/sh\n    args: [-c, 'sleep 2; exec {warden} demo model --listen 127.0.0.1:{port}']\n    ports: [{port}]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{port}/api/version' }}\nprobes:\n  - name: slow-http\n    layer: l7\n    target: slow\n    check: {{ kind: http, url: 'http://127.0.0.1:{port}/api/version' }}\n    interval_ms: 100\n    timeout_ms: 200\n    failure_threshold: 2\n",
        http = ports.http,
        port = ports.api,
        warden = WARDEN
    );
    let node = Node::start_with(&config, ports, &["--enable-fault-injection"]);
    wait_until(
        "slow service running",
        Duration::from_secs(30),
        || matches!(node.service("slow"), Some((Some(_), ref s)) if s == "running"),
    );
    let (pid, _) = node.service("slow").unwrap();
    kill(pid.unwrap(), Signal::SIGSTOP);
    wait_until("incident opened", Duration::from_secs(20), || {
        get_json(&node.url("/api/guardian/healer/stats")).is_some_and(|s| s["incidents"]["open"] == 1)
    });
    crash(&node, "healing/incident_manager", 3_000);
    wait_until("incident resolved", Duration::from_secs(40), || {
        get_json(&node.url("/api/guardian/healer/stats")).is_some_and(|s| s["incidents"]["resolved"] == 1)
    });
    let stats = get_json(&node.url("/api/guardian/healer/stats")).unwrap();
    assert_eq!(stats["incidents"]["open"], 0, "{stats}");
    assert_eq!(stats["last_runs"][0]["outcome"], "succeeded", "{stats}");
    assert_eq!(actor_restarts(&node, "healing/incident_manager"), Some(1));
    assert!(
        node.stderr().contains("a run ended while the incident manager was down"),
        "resolved by reconciliation from the store:\n{}",
        node.stderr()
    );
}
