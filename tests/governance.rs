//! Governance through a running warden: production mode end to end (a hang waits for an
//! approver; approved, it is healed; rejected, the incident fails and escalates; undecided,
//! it expires), operators' actions under the same gatekeeper with their identity in the
//! trail, two approvers and no self-approval, every state-changing route refusing a
//! missing, wrong or too weak token, and no token ever written to the log or the trail.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

/// `warden tokens add NAME --role ROLE` for `node` (before or while it runs): the token.
fn add_token(node: &Node, name: &str, role: &str) -> String {
    let (ok, out) = node.cli(&["tokens", "add", name, "--role", role], &[]);
    assert!(ok, "{out}");
    // The token is stdout's one line; the note on stderr comes after it.
    out.lines().next().unwrap_or_default().trim().to_string()
}

fn post(node: &Node, token: Option<&str>, path: &str, body: Value) -> (u16, Value) {
    let mut req = http().post(node.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

fn get(node: &Node, token: &str, path: &str) -> Value {
    http().get(node.url(path)).bearer_auth(token).send().unwrap().json().unwrap()
}

/// The default node with its own policy file; not started.
fn node_with_policy(policy: &str) -> Node {
    let ports = Ports::fresh();
    let config = format!("{}\ngovernance_policies: policy.yaml\n", default_config_on(ports));
    let node = Node::prepare(&config, ports);
    std::fs::write(node.dir.path().join("policy.yaml"), policy).unwrap();
    node
}

/// Every allowed decision of tier 2+ that ran has its outcome after it in the trail.
fn assert_every_permitted_action_has_its_outcome(node: &Node, token: &str) {
    let entries = get(node, token, "/api/governance/audit?limit=1000")["entries"].as_array().unwrap().clone();
    for d in
        entries.iter().filter(|e| e["kind"] == "decision" && e["decision"] == "allow" && e["tier"].as_u64() >= Some(2))
    {
        let has_outcome = entries.iter().any(|o| {
            o["kind"] == "outcome"
                && o["seq"].as_u64() > d["seq"].as_u64()
                && o["action"] == d["action"]
                && o["target"] == d["target"]
                && o["actor"] == d["actor"]
                && o["run_id"] == d["run_id"]
        });
        assert!(has_outcome, "decision without its outcome: {d}");
    }
}

fn hang_api(node: &Node) -> u32 {
    let (pid, _) = node.service("api").unwrap();
    kill(pid.unwrap(), Signal::SIGSTOP);
    pid.unwrap()
}

/// The one pending approval, once there is one.
fn wait_pending(node: &Node, token: &str) -> Value {
    let mut found = Value::Null;
    wait_until("an approval request", Duration::from_secs(30), || {
        let list = get(node, token, "/api/governance/approvals");
        match list["approvals"].as_array().and_then(|a| a.first()) {
            Some(a) => {
                found = a.clone();
                true
            }
            None => false,
        }
    });
    found
}

const PRODUCTION: &str = "mode: production\ntiers:\n  restart_service: 3\napprovals:\n  required: 1\n  expire_after_ms: 4000\n  on_expiry: deny\nwhitelist:\n  - action: restart_service\n    targets: ['*']\n  - action: stop_service\n    targets: ['*']\napprovers:\n  - name: alice\n";

#[test]
fn test_production_mode_a_hang_waits_for_an_approver_and_is_healed_rejected_or_expired() {
    let mut node = node_with_policy(PRODUCTION);
    let alice = add_token(&node, "alice", "approver");
    let viewer = add_token(&node, "vic", "viewer");
    node.spawn(&[]);
    node.wait_ready();

    // Approved: the incident waits, says so, and is healed once alice approves.
    let hung = hang_api(&node);
    let pending = wait_pending(&node, &viewer);
    assert_eq!(pending["action"], "restart_service", "{pending}");
    assert!(
        pending["plan"].as_str().unwrap().contains(&format!("pid {hung}")),
        "the plan names the process: {pending}"
    );
    wait_until("the incident says it waits", Duration::from_secs(10), || {
        node.healer_stats()["last_runs"][0]["incident_status"] == "awaiting_approval"
    });
    let id = pending["id"].as_u64().unwrap();
    let (status, body) = post(&node, Some(&alice), &format!("/api/governance/approvals/{id}/approve"), json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    wait_until("healed after the approval", Duration::from_secs(40), || {
        node.healer_stats()["incidents"]["resolved"] == 1
    });
    let trail = get(&node, &viewer, "/api/governance/audit?limit=100")["entries"].as_array().unwrap().clone();
    assert!(trail.iter().any(|e| e["kind"] == "approval" && e["actor"] == "alice"), "the vote is audited");
    assert!(
        trail.iter().any(|e| e["kind"] == "decision"
            && e["decision"] == "allow"
            && e["detail"].as_str().unwrap_or("").contains("approved by alice")),
        "the grant names its approver"
    );
    assert!(trail.iter().any(|e| e["kind"] == "outcome" && e["outcome"] == "succeeded"));
    assert_eq!(get(&node, &viewer, "/api/governance/approvals")["approvals"].as_array().unwrap().len(), 0);

    // Rejected: both playbooks' restarts are refused; the incident fails and escalates.
    hang_api(&node);
    for _ in 0..2 {
        let p = wait_pending(&node, &viewer);
        let id = p["id"].as_u64().unwrap();
        let (status, body) = post(&node, Some(&alice), &format!("/api/governance/approvals/{id}/reject"), json!({}));
        assert_eq!(status, 400, "a rejection needs a reason: {body}");
        let (status, body) =
            post(&node, Some(&alice), &format!("/api/governance/approvals/{id}/reject"), json!({"reason": "not now"}));
        assert_eq!(status, 200, "{body}");
    }
    wait_until("escalated after the rejections", Duration::from_secs(30), || {
        node.healer_stats()["incidents"]["failed"] == 1
    });
    // The store says failed a moment before the log line is out.
    wait_until("the escalation alert logged", Duration::from_secs(30), || {
        node.stderr().contains("alert: incident not healed, a person must look")
    });
    let decided = get(&node, &viewer, "/api/governance/approvals?status=all");
    let reasons: Vec<&str> = decided["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["votes"].as_array().unwrap().iter().filter_map(|v| v["reason"].as_str()))
        .collect();
    assert_eq!(reasons.iter().filter(|r| **r == "not now").count(), 2, "both rejections keep their reason: {decided}");

    // Undecided: the request expires (deny), the incident moves on and escalates.
    let (pid, _) = node.service("api").unwrap();
    kill(pid.unwrap(), Signal::SIGCONT);
    wait_until("api healthy again", Duration::from_secs(30), || status_code(&node.api_url("/health")) == Some(200));
    std::thread::sleep(Duration::from_millis(500));
    hang_api(&node);
    wait_until("both requests expired and the incident escalated", Duration::from_secs(40), || {
        node.healer_stats()["incidents"]["failed"] == 2
    });
    let all = get(&node, &viewer, "/api/governance/approvals?status=all");
    assert!(all["approvals"].as_array().unwrap().iter().any(|a| a["status"] == "expired"), "{all}");
    wait_until("the expiry alert logged", Duration::from_secs(30), || {
        node.stderr().contains("alert: approval request expired")
    });
    assert_every_permitted_action_has_its_outcome(&node, &viewer);
    let (pid, _) = node.service("api").unwrap();
    kill(pid.unwrap(), Signal::SIGCONT);
}

#[test]
fn test_operators_act_through_the_gatekeeper_two_approvers_no_self_approval_and_tokens_stay_secret() {
    let policy = "mode: production\ntiers:\n  stop_service: 3\napprovals:\n  required: 2\nwhitelist:\n  - action: restart_service\n    targets: ['*']\n  - action: stop_service\n    targets: ['*']\napprovers:\n  - name: olga\n  - name: bob\n  - name: carol\n";
    let mut node = node_with_policy(policy);
    let olga = add_token(&node, "olga", "approver");
    let bob = add_token(&node, "bob", "approver");
    let carol = add_token(&node, "carol", "approver");
    let vic = add_token(&node, "vic", "viewer");
    let ops = add_token(&node, "otto", "operator");
    node.spawn(&[]);
    node.wait_ready();

    // Tier 2, whitelisted: done at once, audited as otto.
    let (status, body) = post(&node, Some(&ops), "/api/services/model/restart", json!({"reason": "new weights"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "done");
    let mine = get(&node, &vic, "/api/governance/audit?actor=otto");
    let kinds: Vec<&str> = mine["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["outcome", "decision"], "newest first: {mine}");
    assert!(mine["entries"][1]["rationale"].as_str().unwrap().contains("new weights"));

    // Not whitelisted: refused, with the reason, and audited.
    let (status, body) = post(&node, Some(&ops), "/api/services/db/release", json!({}));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "denied");
    assert!(body["error"]["message"].as_str().unwrap().contains("not whitelisted"), "{body}");
    assert!(body["audit_seq"].as_u64().is_some());

    // Tier 3: waits for two approvers; the asker cannot approve; then it runs for them.
    let (status, body) = post(&node, Some(&olga), "/api/services/model/stop", json!({"reason": "maintenance"}));
    assert_eq!(status, 202, "{body}");
    let id = body["approval_id"].as_u64().unwrap();
    let (status, body) = post(&node, Some(&olga), &format!("/api/governance/approvals/{id}/approve"), json!({}));
    assert_eq!(status, 409, "nobody approves their own request: {body}");
    let (status, body) = post(&node, Some(&ops), &format!("/api/governance/approvals/{id}/approve"), json!({}));
    assert_eq!(status, 403, "an operator is no approver: {body}");
    let (status, body) = post(&node, Some(&bob), &format!("/api/governance/approvals/{id}/approve"), json!({}));
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")), "one of two: {body}");
    assert!(body["ran"].is_null());
    let (status, body) = post(&node, Some(&carol), &format!("/api/governance/approvals/{id}/approve"), json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["ran"]["status"], "done", "approved, it ran for olga: {body}");
    wait_until("model stopped", Duration::from_secs(20), || node.service("model").is_some_and(|(_, s)| s == "stopped"));
    let decision = get(&node, &vic, "/api/governance/audit?actor=olga&action=stop_service&kind=decision");
    assert!(
        decision["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["decision"] == "allow" && e["detail"].as_str().unwrap().contains("approved by bob, carol")),
        "{decision}"
    );

    // Every state-changing route: no token, a wrong token, a too weak role.
    let routes = [
        ("/api/services/api/restart", "operator"),
        ("/api/services/api/stop", "operator"),
        ("/api/services/api/start", "operator"),
        ("/api/services/api/release", "operator"),
        ("/api/governance/approvals/1/approve", "approver"),
        ("/api/governance/approvals/1/reject", "approver"),
        ("/api/debug/crash/guardian/service_supervisor", "admin"),
    ];
    for (path, needs) in routes {
        let (s, b) = post(&node, None, path, json!({}));
        assert_eq!((s, b["error"]["code"].as_str()), (401, Some("unauthorized")), "{path} without a token: {b}");
        let (s, _) = post(&node, Some("wdn_not-a-token"), path, json!({}));
        assert_eq!(s, 401, "{path} with a wrong token");
        let (s, b) = post(&node, Some(&vic), path, json!({}));
        assert_eq!((s, b["error"]["code"].as_str()), (403, Some("forbidden")), "{path} as a viewer: {b}");
        assert!(b["error"]["message"].as_str().unwrap().contains(needs), "{path}: {b}");
    }
    let (s, _) = post(&node, Some(&ops), "/api/debug/crash/guardian/service_supervisor", json!({}));
    assert_eq!(s, 403, "an operator is no admin");

    // No token anywhere warden writes.
    let (_, trail) = node.cli(&["audit", "export"], &[]);
    assert!(trail.lines().count() >= 6, "{trail}");
    let book = std::fs::read_to_string(node.data_dir().join("api-tokens.yaml")).unwrap();
    for t in [&olga, &bob, &carol, &vic, &ops] {
        assert!(!node.stderr().contains(t.as_str()), "a token in the log");
        assert!(!trail.contains(t.as_str()), "a token in the audit trail");
        assert!(!book.contains(t.as_str()), "a token in the token book");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node.data_dir().join("api-tokens.yaml")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_every_permitted_action_has_its_outcome(&node, &vic);
}

#[test]
fn test_the_shell_lists_approves_and_acts_through_the_api() {
    let mut node = node_with_policy(PRODUCTION);
    let alice = add_token(&node, "alice", "approver");
    let otto = add_token(&node, "otto", "operator");
    node.spawn(&[]);
    node.wait_ready();
    let warden = |args: &[&str], token: &str| node.cli(args, &[("WARDEN_TOKEN", token)]);
    let (ok, out) = warden(&["services", "restart", "api", "--reason", "rollout"], &otto);
    assert!(ok, "{out}");
    assert!(out.contains("waits for approvers: approval #1"), "tier 3 in production: {out}");
    let (ok, out) = warden(&["approvals", "list"], &otto);
    assert!(ok && out.contains("#1 pending restart_service on api"), "{out}");
    let (ok, out) = warden(&["approvals", "approve", "1"], &alice);
    assert!(ok, "{out}");
    assert!(out.contains("approved") && out.contains("\"status\":\"done\""), "it ran: {out}");
    let (ok, out) = warden(&["services", "stop", "nope"], &otto);
    assert!(!ok && out.contains("no service `nope`"), "{out}");
}
