//! Time of each playbook's dry run and real run on the demo node, median of 10.
//!
//! `cargo bench --bench playbooks [-- --json FILE]` starts the embedded default node (real
//! db, model server and api) on its own ports with a policy that whitelists every action
//! without rate limits, so runs measure the engine and the real effects, not governance
//! holds. Each playbook runs on the service it is for; before each real run the fault it
//! repairs is made where it needs one (a deleted config file, a changed credential). The
//! time is the API call's, from the request to the stored end of the run (a dry run: the
//! resolution of every step and the gatekeeper's preview). Faults that need a
//! foreign process are made with one (a stranger or an orphan on the model's port, a
//! `flock` holder of the db's lock); the node has a standby db and model server as the
//! api's fallbacks for the failover playbooks. Only `kill_memory_balloon` is timed dry
//! only (its fault is a balloon inside a service's own process group). Runtime overrides
//! (a moved port, a switched upstream, a longer deadline, a staggered boot) are rolled
//! back after each real run. Under `cargo test` it is one dry run of each, to keep it compiling and running.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::*;

const POLICY: &str = "mode: dev\nwhitelist:\n  - { action: restart_service, targets: ['*'] }\n  - { action: signal_service, targets: ['*'] }\n  - { action: stop_service, targets: ['*'] }\n  - { action: quarantine_service, targets: ['*'] }\n  - { action: release_service, targets: ['*'] }\n  - { action: kill_process, targets: ['*'] }\n  - { action: restore_dir, targets: ['*'] }\n  - { action: move_aside, targets: ['*'] }\n  - { action: compress_files, targets: ['*'] }\n  - { action: delete_files, targets: ['*'] }\n  - { action: restore_file, targets: ['*'] }\n  - { action: rotate_secret, targets: ['*'] }\n  - { action: http_call, targets: ['*'] }\n  - { action: run_command, targets: ['*'] }\n  - { action: set_port, targets: ['*'] }\n  - { action: set_endpoint, targets: ['*'] }\n  - { action: set_startup_deadline, targets: ['*'] }\n  - { action: stagger_boot, targets: ['*'] }\napprovers:\n  - name: admin\n";

/// A fault made before a real run, so the playbook has something to repair.
#[derive(Clone, Copy)]
enum Setup {
    None,
    /// The api's config file deleted.
    DeleteApiConfig,
    /// The api's config file changed (a bad deploy).
    ChangeApiConfig,
    /// The api's credentials overwritten with a wrong token.
    BreakCredentials,
    /// The model stopped and its own program (an orphan of an earlier life) on its port.
    OrphanOnModelPort,
    /// The model stopped and another program on its port.
    StrangerOnModelPort,
    /// A stranger holds the db's lock (util-linux `flock`) and the db fails to start.
    DbLockHeld,
    /// A primary the api talks to stopped (its standby runs).
    StopPrimary(&'static str),
    /// Timed dry only: its fault needs what the demo node cannot have (a balloon inside
    /// a service's own process group).
    DryOnly(&'static str),
}

const CASES: &[(&str, &str, Setup)] = &[
    ("restart_hung_service", "api", Setup::None),
    ("restart_service", "api", Setup::None),
    ("reload_service", "api", Setup::None),
    ("restart_dependency_chain", "db", Setup::None),
    ("quarantine_crashloop", "model", Setup::None),
    ("free_port_orphan", "model", Setup::OrphanOnModelPort),
    ("free_port_foreign", "model", Setup::StrangerOnModelPort),
    ("restart_database", "db", Setup::None),
    ("clear_stale_db_lock", "db", Setup::DbLockHeld),
    ("restore_database_snapshot", "db", Setup::None),
    ("snapshot_database", "db", Setup::None),
    ("restart_memory_hog", "api", Setup::None),
    ("kill_memory_balloon", "api", Setup::DryOnly("its fault is a balloon inside the service's own process group")),
    ("compress_logs", "api", Setup::None),
    ("prune_temp_files", "api", Setup::None),
    ("prune_old_snapshots", "db", Setup::None),
    ("restore_config_file", "api", Setup::DeleteApiConfig),
    ("rollback_config_change", "api", Setup::ChangeApiConfig),
    ("reload_credentials", "api", Setup::BreakCredentials),
    ("rotate_credentials", "db", Setup::None),
    ("restart_model_server", "model", Setup::None),
    ("warm_model", "model", Setup::None),
    ("relocate_port", "api", Setup::None),
    ("failover_upstream", "api", Setup::StopPrimary("db")),
    ("failover_model_endpoint", "model", Setup::StopPrimary("model")),
    ("extend_startup_deadline", "api", Setup::None),
    ("staggered_boot", "api", Setup::None),
    ("reresolve_dns", "api", Setup::None),
    ("reset_connection_pool", "db", Setup::None),
    ("reload_tls_certificate", "model", Setup::None),
    ("compact_store", "db", Setup::None),
];

/// Playbooks whose change stays until rolled back (runtime overrides): each real run is
/// rolled back before the next.
const ROLLED_BACK_AFTER: &[&str] =
    &["relocate_port", "extend_startup_deadline", "staggered_boot", "failover_upstream", "failover_model_endpoint"];

/// One run (followed to its end); its time, outcome and id.
fn timed_run(node: &Node, token: &str, playbook: &str, target: &str, dry: bool) -> (Duration, String, u64) {
    let started = Instant::now();
    let resp = slow_http()
        .post(node.url(&format!("/api/guardian/playbooks/{playbook}/run")))
        .bearer_auth(token)
        .json(&json!({"target": target, "dry_run": dry, "reason": "benchmark"}))
        .send()
        .unwrap();
    let mut v: Value = resp.json().unwrap();
    if let Some(poll) = v["poll"].as_str().map(str::to_string) {
        while v["outcome"] == "running" || v["outcome"].is_null() {
            std::thread::sleep(Duration::from_millis(20));
            v = slow_http().get(node.url(&poll)).send().unwrap().json().unwrap();
        }
    }
    (started.elapsed(), v["outcome"].as_str().unwrap_or("?").to_string(), v["run_id"].as_u64().unwrap_or(0))
}

/// Makes the fault; returns the foreign process it started, if any (reaped after the run).
fn setup(node: &Node, s: Setup) -> Option<std::process::Child> {
    let api = node.data_dir().join("services/api");
    let token = node.admin_token();
    let cli = |args: &[&str]| node.cli(args, &[("WARDEN_TOKEN", &token)]);
    let quiet = |c: &mut std::process::Command| {
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
    };
    match s {
        Setup::DeleteApiConfig => {
            let _ = std::fs::remove_file(api.join("api.json"));
        }
        Setup::ChangeApiConfig => {
            std::fs::write(api.join("api.json"), "{\"name\": \"demo-api\", \"greeting\": \"changed\"}\n").unwrap();
            // The change is seen (vaulted) at a start, as a deploy would be.
            let (ok, out) = cli(&["services", "restart", "api"]);
            assert!(ok, "{out}");
        }
        Setup::BreakCredentials => std::fs::write(api.join("credentials"), "wrong-token\n").unwrap(),
        Setup::OrphanOnModelPort | Setup::StrangerOnModelPort => {
            let (ok, out) = cli(&["services", "stop", "model"]);
            assert!(ok, "{out}");
            let listen = format!("127.0.0.1:{}", node.ports.model);
            let mut c = std::process::Command::new(WARDEN);
            if matches!(s, Setup::OrphanOnModelPort) {
                c.args(["demo", "model", "--listen", &listen]);
            } else {
                c.args(["demo", "db", "--listen", &listen, "--data-dir"]).arg(node.dir.path().join("stranger"));
            }
            let child = quiet(&mut c);
            wait_until("the holder listens", Duration::from_secs(20), || std::net::TcpStream::connect(&listen).is_ok());
            return Some(child);
        }
        Setup::DbLockHeld => {
            let (ok, out) = cli(&["services", "stop", "db"]);
            assert!(ok, "{out}");
            let lock = node.data_dir().join("services/db/data/LOCK");
            let child = quiet(std::process::Command::new("flock").arg("-x").arg(&lock).args(["sleep", "600"]));
            std::thread::sleep(Duration::from_millis(200));
            let _ = cli(&["services", "start", "db"]);
            return Some(child);
        }
        Setup::StopPrimary(service) => {
            let (ok, out) = cli(&["services", "stop", service]);
            assert!(ok, "{out}");
        }
        Setup::None | Setup::DryOnly(_) => {}
    }
    None
}

/// After a run: what must be undone for the next one (a quarantine lifted, an override
/// rolled back).
fn after(node: &Node, token: &str, playbook: &str, target: &str, run_id: u64, s: Setup) {
    if ROLLED_BACK_AFTER.contains(&playbook) {
        let r = slow_http()
            .post(node.url(&format!("/api/guardian/runs/{run_id}/rollback")))
            .bearer_auth(token)
            .json(&json!({"reason": "benchmark"}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "rollback of {playbook}: {:?}", r.text());
        let mut v: Value = r.json().unwrap();
        while let Some(poll) = v["poll"].as_str().map(str::to_string) {
            std::thread::sleep(Duration::from_millis(20));
            v = slow_http().get(node.url(&poll)).send().unwrap().json().unwrap();
            if v["outcome"] != "running" {
                break;
            }
        }
    }
    if playbook == "quarantine_crashloop" {
        let r = slow_http()
            .post(node.url(&format!("/api/services/{target}/release")))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "release: {:?}", r.text());
    }
    if let Setup::StopPrimary(service) = s {
        let (ok, out) = node.cli(&["services", "start", service], &[("WARDEN_TOKEN", token)]);
        assert!(ok, "{out}");
    }
    wait_until("the node ready again", Duration::from_secs(60), || {
        get_json(&node.url("/readyz")).is_some_and(|v| v["ready"] == true)
    });
}

fn median(mut d: Vec<Duration>) -> Option<Duration> {
    d.sort();
    d.get(d.len() / 2).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("—".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let json_out = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
    let reps = if full { 10 } else { 1 };
    let ports = Ports::fresh();
    let config = format!("{}\ngovernance_policies: policy.yaml\n", with_standbys(&default_config_on(ports), ports).0);
    let mut node = Node::prepare(&config, ports);
    std::fs::write(node.dir.path().join("policy.yaml"), POLICY).unwrap();
    node.spawn(&[]);
    node.wait_ready();
    let token = node.admin_token();
    // A snapshot for the restore to find.
    assert_eq!(timed_run(&node, &token, "snapshot_database", "db", false).1, "succeeded");
    after(&node, &token, "snapshot_database", "db", 0, Setup::None);

    let mut rows = Vec::new();
    for &(playbook, target, s) in CASES {
        let dry: Vec<Duration> = (0..reps)
            .map(|_| {
                let (d, outcome, _) = timed_run(&node, &token, playbook, target, true);
                assert_eq!(outcome, "succeeded", "dry run of {playbook} on {target}");
                d
            })
            .collect();
        let mut real = Vec::new();
        let mut outcomes = Vec::new();
        // Real runs restart real services: only in a full run, not in the test suite's.
        if full && !matches!(s, Setup::DryOnly(_)) {
            for _ in 0..reps {
                let foreign = setup(&node, s);
                let (d, outcome, run_id) = timed_run(&node, &token, playbook, target, false);
                real.push(d);
                outcomes.push(outcome);
                if let Some(mut child) = foreign {
                    // The playbook ended it; reaped here (killed if it did not).
                    let _ = child.kill();
                    let _ = child.wait();
                }
                after(&node, &token, playbook, target, run_id, s);
            }
        }
        let ok = outcomes.iter().filter(|o| *o == "succeeded").count();
        let row = json!({
            "playbook": playbook,
            "target": target,
            "dry_median_ms": median(dry.clone()).map(|d| d.as_secs_f64() * 1000.0),
            "real_median_ms": median(real.clone()).map(|d| d.as_secs_f64() * 1000.0),
            "real_runs": real.len(),
            "real_succeeded": ok,
        });
        println!(
            "| `{playbook}` | {target} | {} | {} | {} |",
            ms(median(dry)),
            ms(median(real.clone())),
            match (real.is_empty(), full) {
                (true, true) => match s {
                    Setup::DryOnly(why) => format!("dry only: {why}"),
                    _ => "dry only".to_string(),
                },
                (true, false) => "smoke round: dry only".to_string(),
                (false, _) => format!("{ok}/{} succeeded", real.len()),
            }
        );
        rows.push(row);
    }
    node.stop();
    if let Some(path) = json_out {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::write(&path, serde_json::to_string_pretty(&json!({ "reps": reps, "playbooks": rows })).unwrap())
            .unwrap();
        println!("wrote {}", path.display());
    }
}
