//! Playbooks against a running node with real processes, sockets and files: every
//! playbook's dry run changes nothing (service pids, the processes on their ports, the
//! hashes of the services' files, snapshots and vault), the critical ones have their real
//! effect, and a rollback puts the state back exactly; runs, metrics and the audit trail
//! say what happened, under the caller's name.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

/// One test per playbook of the catalog.
mod catalog;
/// Playbooks that change the running config (runtime overrides).
mod overrides;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use support::*;

fn run(node: &Node, playbook: &str, body: Value) -> Value {
    let resp = slow_http()
        .post(node.url(&format!("/api/guardian/playbooks/{playbook}/run")))
        .bearer_auth(node.admin_token())
        .json(&body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().unwrap();
    assert!(status == 200 || status == 202, "{playbook}: {status} {v}");
    follow(node, v)
}

/// A run answered 202 (still running) followed to its end.
fn follow(node: &Node, v: Value) -> Value {
    let Some(poll) = v["poll"].as_str() else { return v };
    let mut last = Value::Null;
    wait_until("the run's end", Duration::from_secs(120), || {
        last = get_json(&node.url(poll)).unwrap_or(Value::Null);
        last["outcome"].is_string() && last["outcome"] != "running"
    });
    last
}

fn rollback(node: &Node, run_id: u64) -> Value {
    let resp = slow_http()
        .post(node.url(&format!("/api/guardian/runs/{run_id}/rollback")))
        .bearer_auth(node.admin_token())
        .json(&json!({"reason": "test"}))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().unwrap();
    assert!(status == 200 || status == 202, "rollback of {run_id}: {status} {v}");
    follow(node, v)
}

/// Hash of every file under `dir` (relative path → sha256), for before/after comparisons.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// What a dry run must not change: the services' processes, who listens on their ports,
/// and their files, snapshots and vault.
/// Service pids, the pids on each service port, and file hashes.
type NodeState = (Vec<(String, Option<u32>)>, Vec<Vec<u32>>, BTreeMap<String, String>);

fn state(node: &Node) -> NodeState {
    let status = node.status().unwrap();
    let services: Vec<(String, Option<u32>)> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        // A service that is not running may be between attempts of its own supervision
        // (a crash loop's backoff): only a running one's pid is the node's state.
        .map(|s| {
            let pid = s["pid"].as_u64().filter(|_| s["state"] == "running").map(|p| p as u32);
            (s["name"].as_str().unwrap().to_string(), pid)
        })
        .collect();
    let p = &node.ports;
    let holders = [p.db, p.model, p.api]
        .iter()
        .map(|port| {
            let mut pids: Vec<u32> = warden_listeners(*port);
            pids.sort_unstable();
            pids
        })
        .collect();
    let data = node.data_dir();
    let mut files = tree(&data.join("services"));
    for sub in ["snapshots", "vault"] {
        for (k, v) in tree(&data.join(sub)) {
            files.insert(format!("{sub}/{k}"), v);
        }
    }
    (services, holders, files)
}

/// Pids listening on `port`.
fn warden_listeners(port: u16) -> Vec<u32> {
    warden_core::procnet::listeners_of_port(port).unwrap().into_iter().map(|(pid, _)| pid).collect()
}

fn audit_actions(node: &Node, actor: &str) -> Vec<(String, String, String)> {
    let v = get_json(&node.url(&format!("/api/governance/audit?actor={actor}&limit=1000"))).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
                e[if e["kind"] == "outcome" { "outcome" } else { "decision" }].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn db_get(node: &Node, key: &str) -> Option<u16> {
    status_code(&node.api_url(&format!("/api/items/{key}")))
}

fn db_put(node: &Node, key: &str, value: &str) {
    let r = http().put(node.api_url(&format!("/api/items/{key}"))).body(value.to_string()).send().unwrap();
    assert!(r.status().is_success(), "PUT {key}: {:?}", r.text());
}

#[test]
fn test_every_dry_run_changes_nothing_and_the_audit_command_passes() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    // Something for the restore and prune playbooks to find.
    run(&node, "snapshot_database", json!({"target": "db"}));
    let before = state(&node);
    let catalog = get_json(&node.url("/api/guardian/playbooks")).unwrap();
    let ids: Vec<String> =
        catalog["playbooks"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    assert!(ids.len() >= 21, "{ids:?}");
    for id in &ids {
        for target in ["db", "model", "api"] {
            let v = run(&node, id, json!({"target": target, "dry_run": true}));
            assert_eq!(v["dry_run"], true);
            for s in v["steps"].as_array().unwrap() {
                assert!(s["undo"].as_array().unwrap().is_empty(), "a dry run records no undo: {s}");
                assert!(s["permit_audit_seq"].is_null(), "a dry run asks for no permit: {s}");
                if s["ok"] == true {
                    assert!(s["detail"].as_str().unwrap().starts_with("would"), "{id} on {target}: {s}");
                }
            }
        }
    }
    assert_eq!(state(&node), before, "the dry runs changed the node");
    let (ok, out) = node.cli(&["playbooks", "audit"], &[("WARDEN_TOKEN", &node.admin_token())]);
    assert!(ok, "{out}");
    let line = |id: &str| out.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_default().to_string();
    for id in &ids {
        let l = line(id);
        assert!(l.contains("  ok  ") || l.contains("  n/a  "), "every playbook ok or not applicable here: {l}\n{out}");
    }
    // Only where it can help: nothing of the default node declares upstreams; the db's
    // clients (the api) have a pool to reset; only the database has a lock file and a
    // SIGUSR1 compaction; a hung application service is the api (a hung db or model
    // server is their own mode).
    assert!(line("failover_upstream").contains("n/a") && line("failover_upstream").contains("upstreams"), "{out}");
    assert!(line("reset_connection_pool").contains("dry-runs on db;"), "{out}");
    assert!(line("compact_store").contains("`api` does not say it handles SIGUSR1"), "{out}");
    assert!(line("clear_stale_db_lock").contains("dry-runs on db;"), "{out}");
    assert!(line("restart_hung_service").contains("dry-runs on api;"), "{out}");
    let dry = run(&node, "failover_upstream", json!({"target": "api", "dry_run": true}));
    assert_eq!(dry["outcome"], "not_applicable", "a dry run says so: {dry}");
    assert!(dry["detail"].as_str().unwrap().contains("no `upstreams`"), "{dry}");
    assert_eq!(state(&node), before, "the audit changed the node");
    let m = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    for id in &ids {
        let series = format!(r#"warden_playbook_executions_total{{playbook="{id}",outcome="succeeded"}}"#);
        assert!(metric(&m, &series).is_some(), "every playbook's series exists from the start: {series}");
    }
}

#[test]
fn test_restore_database_snapshot_runs_and_rolls_back_to_exactly_the_state_before() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    db_put(&node, "kept", "1");
    let snap = run(&node, "snapshot_database", json!({"target": "db", "reason": "before the migration"}));
    assert_eq!(snap["outcome"], "succeeded", "{snap}");
    db_put(&node, "later", "2");
    let data = node.data_dir().join("services/db/data");
    // LOCK holds the pid of the db process of the moment: not data.
    let tree = |dir: &Path| {
        let mut t = tree(dir);
        t.remove("LOCK");
        t
    };
    let before = tree(&data);

    let dry = run(&node, "restore_database_snapshot", json!({"target": "db", "dry_run": true}));
    assert_eq!(dry["outcome"], "succeeded", "{dry}");
    let said = dry["steps"][1]["detail"].as_str().unwrap();
    assert!(said.contains("would snapshot") && said.contains("governance would allow"), "{said}");
    assert_eq!(tree(&data), before, "the dry run changed the data");
    assert_eq!(db_get(&node, "later"), Some(200));

    let done = run(&node, "restore_database_snapshot", json!({"target": "db"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    assert_eq!(db_get(&node, "later"), Some(404), "the snapshot predates it");
    assert_eq!(db_get(&node, "kept"), Some(200));
    assert_ne!(tree(&data), before);
    let m = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    assert_eq!(
        metric(&m, r#"warden_playbook_executions_total{playbook="restore_database_snapshot",outcome="succeeded"}"#),
        Some(1.0),
        "a dry run is no execution"
    );
    let trail = audit_actions(&node, "admin");
    for action in ["stop_service", "restore_dir", "start_service"] {
        assert!(trail.iter().any(|(k, a, d)| k == "decision" && a == action && d == "allow"), "{action}: {trail:?}");
        assert!(trail.iter().any(|(k, a, o)| k == "outcome" && a == action && o == "succeeded"), "{action}");
    }

    let back = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(back["outcome"], "succeeded", "{back}");
    assert_eq!(back["rollback_of"], done["run_id"]);
    let twice = slow_http()
        .post(node.url(&format!("/api/guardian/runs/{}/rollback", done["run_id"])))
        .bearer_auth(node.admin_token())
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(twice.status().as_u16(), 409, "a run is undone once");
    wait_until("db serves again", Duration::from_secs(20), || db_get(&node, "kept") == Some(200));
    assert_eq!(tree(&data), before, "the data dir is exactly as before the restore");
    assert_eq!(db_get(&node, "later"), Some(200));
    let trail = audit_actions(&node, "admin");
    assert!(trail.iter().any(|(k, a, o)| k == "outcome" && a == "restore_dir" && o == "rolled_back"), "{trail:?}");
    let stats = get_json(&node.url("/api/guardian/playbooks/restore_database_snapshot")).unwrap();
    assert_eq!(stats["stats"]["executions"], 1, "{stats}");
    assert_eq!(stats["stats"]["succeeded"], 1);
}

#[test]
fn test_free_port_foreign_kills_the_stranger_and_the_service_binds_again() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let token = node.admin_token();
    let (ok, out) = node.cli(&["services", "stop", "model"], &[("WARDEN_TOKEN", &token)]);
    assert!(ok, "{out}");
    // A stranger on the model's port: another program entirely.
    let listener = format!("127.0.0.1:{}", node.ports.model);
    let stranger = &mut stranger_on(node.ports.model, node.dir.path());

    let dry = run(&node, "free_port_foreign", json!({"target": "model", "dry_run": true}));
    let said = dry["steps"][1]["detail"].as_str().unwrap().to_string();
    assert!(said.contains(&format!("pid {}", stranger.0.id())), "names the stranger: {said}");
    assert!(stranger.0.try_wait().unwrap().is_none(), "the dry run left it alone");
    let own = run(&node, "free_port_orphan", json!({"target": "model", "dry_run": true}));
    assert!(own["steps"][1]["detail"].as_str().unwrap().contains("to nobody"), "a stranger is no orphan: {own}");

    let done = run(&node, "free_port_foreign", json!({"target": "model"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    let status = wait_exit(&mut stranger.0, Duration::from_secs(10));
    assert!(status.is_some(), "the stranger is gone");
    assert!(done["steps"][2]["detail"].as_str().unwrap().contains("started"), "then the model: {done}");
    wait_until("model serves on its port", Duration::from_secs(30), || {
        status_code(&format!("http://{listener}/api/version")) == Some(200)
    });
    let trail = audit_actions(&node, "admin");
    assert!(trail.iter().any(|(k, a, d)| k == "decision" && a == "kill_process" && d == "allow"), "{trail:?}");

    // Rolled back: the model is stopped again, as it was before the run. The stranger
    // cannot be brought back (the kill step says so: it records no undo).
    assert!(done["steps"][1]["undo"].as_array().unwrap().is_empty());
    let back = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(back["outcome"], "succeeded", "{back}");
    assert_eq!(node.service("model").unwrap(), (None, "stopped".to_string()));
    wait_until("nothing on the model's port", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&listener).is_err()
    });
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn test_rotate_credentials_and_restore_config_file_roll_back_exactly() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let data = node.data_dir();
    let password = data.join("services/db/password");
    let creds = data.join("services/api/credentials");
    let config = data.join("services/api/api.json");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let (pw0, cr0, cf0) = (read(&password), read(&creds), read(&config));

    let done = run(&node, "rotate_credentials", json!({"target": "db"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    assert_ne!(read(&password), pw0, "a new token");
    assert_eq!(read(&password), read(&creds), "one token in both files");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&password).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    wait_until("api healthy with the new token", Duration::from_secs(20), || {
        status_code(&node.api_url("/health")) == Some(200)
    });
    let back = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(back["outcome"], "succeeded", "{back}");
    assert_eq!((read(&password), read(&creds)), (pw0.clone(), cr0.clone()), "both files as before");

    // A config file deleted: restored from the vault, byte for byte; the rollback puts
    // back the state before the run (no file), as the undo data says.
    std::fs::remove_file(&config).unwrap();
    let dry = run(&node, "restore_config_file", json!({"target": "api", "dry_run": true}));
    assert!(!config.exists(), "dry run wrote nothing");
    assert!(dry["steps"][0]["detail"].as_str().unwrap().contains("api.json as the config declares it"), "{dry}");
    let done = run(&node, "restore_config_file", json!({"target": "api"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    assert_eq!(read(&config), cf0);
    let back = rollback(&node, done["run_id"].as_u64().unwrap());
    assert_eq!(back["outcome"], "succeeded", "{back}");
    assert!(!config.exists(), "rolled back to the state before: no file");
    let again = run(&node, "restore_config_file", json!({"target": "api"}));
    assert_eq!(again["outcome"], "succeeded", "{again}");
    assert_eq!(read(&config), cf0);
    // Rolling back a dry run, or a rollback, is refused with the reason.
    let resp =
        node.post_as_admin(&format!("/api/guardian/runs/{}/rollback", dry["run_id"])).json(&json!({})).send().unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    assert!(resp.text().unwrap().contains("dry run"));
}

#[test]
fn test_a_second_run_on_a_service_being_changed_is_refused_until_the_first_ends() {
    // A service that ignores SIGTERM: a restart takes its whole stop grace (long, so the
    // first run is surely still under way when the second is asked for on a busy machine).
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: stubborn\n    command: /bin/sh\n    args: [-c, 'trap \"\" TERM; while true; do sleep 1; done']\n    stop_grace_ms: 10000\n",
        ports.http
    );
    let node = Node::start_with(&hands_off(&config), ports, &[]);
    wait_until("ready", Duration::from_secs(60), || status_code(&node.url("/readyz")) == Some(200));
    // Until the shell has run its `trap`, a TERM still ends it at once (and the first run
    // with it): wait until SIGTERM is in its ignored set.
    let pid = node.service("stubborn").and_then(|(p, _)| p).unwrap();
    wait_until("the service ignores SIGTERM", Duration::from_secs(20), || {
        procfs::process::Process::new(pid as i32)
            .and_then(|p| p.status())
            .is_ok_and(|st| st.sigign & (1 << (libc_sigterm() - 1)) != 0)
    });
    let url = node.url("/api/guardian/playbooks/restart_service/run");
    let token = node.admin_token();
    let first = {
        let (url, token) = (url.clone(), token.clone());
        std::thread::spawn(move || {
            slow_http()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"target": "stubborn"}))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
    };
    wait_until("the first run under way", Duration::from_secs(20), || {
        get_json(&node.url("/api/guardian/runs/1")).is_some_and(|r| r["outcome"] == "running")
    });
    let r = slow_http().post(&url).bearer_auth(&token).json(&json!({"target": "stubborn"})).send().unwrap();
    let first_run = get_json(&node.url("/api/guardian/runs/1"));
    assert_eq!(r.status().as_u16(), 409, "{:?}; the first run: {first_run:?}\n{}", r.text(), node.stderr());
    let body: Value = r.json().unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("is changing `stubborn`"), "{body}");
    assert!([200, 202].contains(&first.join().unwrap()));
    // A dry run is never refused: it changes nothing.
    let dry = run(&node, "restart_service", json!({"target": "stubborn", "dry_run": true}));
    assert_eq!(dry["outcome"], "succeeded", "{dry}");
}

#[test]
fn test_restart_dependency_chain_restarts_the_dependency_then_its_dependents() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let pid = |name: &str| node.service(name).unwrap().0.unwrap();
    let (db, api, model) = (pid("db"), pid("api"), pid("model"));
    let dry = run(&node, "restart_dependency_chain", json!({"target": "db", "dry_run": true}));
    let steps: Vec<&str> = dry["steps"].as_array().unwrap().iter().map(|s| s["detail"].as_str().unwrap()).collect();
    assert!(steps.last().unwrap().contains("service `api`"), "the dependent, named: {steps:?}");
    assert_eq!((pid("db"), pid("api")), (db, api), "the dry run restarted nothing");
    let done = run(&node, "restart_dependency_chain", json!({"target": "db"}));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    assert_ne!(pid("db"), db);
    assert_ne!(pid("api"), api, "the api depends on the db");
    assert_eq!(pid("model"), model, "the model does not");
    let trail = audit_actions(&node, "admin");
    let restarts = trail.iter().filter(|(k, a, d)| k == "decision" && a == "restart_service" && d == "allow").count();
    assert_eq!(restarts, 2, "one governed restart each: {trail:?}");
}

/// The command line of a service's current process.
fn cmdline_of(node: &Node, service: &str) -> String {
    let pid = node.service(service).and_then(|(p, _)| p).unwrap();
    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ")
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// SIGTERM's number.
fn libc_sigterm() -> u64 {
    nix::sys::signal::Signal::SIGTERM as i32 as u64
}
