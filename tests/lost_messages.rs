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
    let r = node.post_as_admin(&format!("/api/debug/crash/{path}?after_ms={after_ms}")).send().unwrap();
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

fn slow_node(extra: &[&str]) -> Node {
    let ports = Ports::fresh();
    Node::start_with(&slow_node_config(ports), ports, extra)
}

#[test]
fn test_incident_closes_when_its_manager_dies_while_the_playbook_runs() {
    // The hang's playbook is still verifying when the incident manager stalls, so the run's
    // end reaches a mailbox that is then lost. The new manager reloads the incident, finds
    // the finished run in the store, and resolves it.
    let node = slow_node(&["--enable-fault-injection"]);
    node.hang_slow_service();
    // Long enough for the run to end meanwhile: the slow boot (2 s) and its stability
    // window (1 s).
    crash(&node, "healing/incident_manager", 6_000);
    wait_until("incident resolved", Duration::from_secs(40), || node.healer_stats()["incidents"]["resolved"] == 1);
    let stats = node.healer_stats();
    assert_eq!(stats["incidents"]["open"], 0, "{stats}");
    assert_eq!(stats["last_runs"][0]["outcome"], "succeeded", "{stats}");
    assert_eq!(actor_restarts(&node, "healing/incident_manager"), Some(1));
    assert!(
        node.stderr().contains("a run ended while the incident manager was down"),
        "resolved by reconciliation from the store:\n{}",
        node.stderr()
    );
}

#[test]
fn test_shutdown_cancels_a_running_playbook_and_the_next_start_finishes_the_incident() {
    // SIGTERM while a playbook verifies: the run is cancelled and recorded as interrupted,
    // warden exits cleanly with nothing left running. The next warden on the same data dir
    // reruns the playbook for the still-open incident and resolves it.
    let mut node = slow_node(&[]);
    node.hang_slow_service();
    let groups: Vec<u32> = descendants(node.pid()).into_iter().flat_map(|(p, g)| [p, g]).collect();
    let status = node.stop().unwrap();
    assert!(status.success(), "clean exit during a run: {status:?}\n{}", node.stderr());
    wait_until("no process of the node left", Duration::from_secs(10), || alive_in_groups(&groups).is_empty());
    assert!(node.stderr().contains("playbook run cancelled"), "{}", node.stderr());

    node.spawn(&[]);
    wait_until("incident resolved after the restart", Duration::from_secs(60), || {
        node.healer_stats()["incidents"]["resolved"] == 1
    });
    let stats = node.healer_stats();
    let outcomes: Vec<&str> =
        stats["last_runs"].as_array().unwrap().iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["succeeded", "interrupted"], "rerun after the interrupted one: {stats}");
    assert_eq!(stats["incidents"]["open"], 0, "{stats}");
}
