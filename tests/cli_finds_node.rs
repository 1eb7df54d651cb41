//! The command line finds the running node without `--config`: the node publishes its
//! address and data dir in a runtime file; `--url`/`WARDEN_URL` override it; with none
//! running, a command says what it tried.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use support::*;

fn warden(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden")).args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn test_commands_find_the_one_running_node_and_say_what_they_tried_when_none_runs() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let run_dir = node.runtime_dir();
    let runtime = run_dir.to_str().unwrap();
    // No --config, no token: the node's published file gives its address and data dir
    // (where its admin token is).
    let (ok, out) = warden(&["healing", "status"], &[("WARDEN_RUNTIME_DIR", runtime)]);
    assert!(ok, "{out}");
    let (ok, out) = warden(&["incidents", "list"], &[("WARDEN_RUNTIME_DIR", runtime)]);
    assert!(ok, "{out}");
    // `probes check` checks this node's probes (its ports), not the embedded default's.
    let (_, out) = warden(&["probes", "check", "api-health", "db-ping", "--json"], &[("WARDEN_RUNTIME_DIR", runtime)]);
    assert!(out.contains("checking the probes of the running node"), "{out}");
    for probe in ["api-health", "db-ping"] {
        let line = out.lines().find(|l| l.contains(&format!("\"probe\":\"{probe}\""))).unwrap_or_default();
        assert!(line.contains("\"result\":\"ok\""), "{probe} of the running node passes: {out}");
    }
    // So does `chaos inject`: its dry run finds the node's db on the node's own port.
    let (ok, out) = warden(&["chaos", "inject", "db-freeze", "--dry-run"], &[("WARDEN_RUNTIME_DIR", runtime)]);
    assert!(ok && out.contains("SIGSTOP `db`"), "{out}");
    // WARDEN_URL wins over the runtime file: a node that is not there is named as tried.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (ok, out) = warden(&["healing", "status"], &[("WARDEN_RUNTIME_DIR", runtime), ("WARDEN_URL", &nowhere)]);
    assert!(!ok && out.contains(&nowhere) && out.contains("WARDEN_URL"), "{out}");
    // `run` starts a node; it does not take another's URL.
    let (ok, out) = warden(&["run", "--url", &nowhere], &[]);
    assert!(!ok && out.contains("--url"), "{out}");

    let published = std::fs::read_dir(&run_dir).unwrap().count();
    assert_eq!(published, 1, "one file for the one node");
    let mut node = node;
    assert!(node.stop().unwrap().success());
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 0, "its file went with it");
    // None running: the command says where it looked.
    let (ok, out) = warden(&["healing", "status"], &[("WARDEN_RUNTIME_DIR", runtime)]);
    assert!(!ok && out.contains("no running node published itself"), "{out}");
}
