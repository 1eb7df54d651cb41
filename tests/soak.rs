//! `warden chaos soak` on the demo node: a short run of seeded faults, each accounted for
//! (the node's incident, the harness's own restore check), with a control fault that must
//! not heal; and a node that does not notice a fault is a silent failure the soak reports.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

fn soak(dir: &Path, args: &[&str]) -> (bool, String, serde_json::Value) {
    let out = dir.join("soak.json");
    let run =
        Command::new(WARDEN).args(["chaos", "soak", "--out"]).arg(&out).args(args).current_dir(dir).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let report = std::fs::read(&out).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    (run.status.success(), said, report)
}

/// A scratch directory with the demo node, on ports of its own, at `node/node.yaml`.
fn demo_node_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("node");
    std::fs::create_dir(&node_dir).unwrap();
    std::fs::write(node_dir.join("node.yaml"), default_config_on(Ports::fresh())).unwrap();
    dir
}

#[test]
fn test_a_short_soak_accounts_for_every_fault_and_its_control_is_reported_not_healed() {
    let dir = demo_node_dir();
    let kinds = "db-freeze,port-hold,api-hang,slow-answers,config-delete,bad-credentials,model-hang";
    let (ok, said, report) = soak(
        dir.path(),
        &["--config", "node/node.yaml", "--faults", "8", "--interval", "1s", "--seed", "42", "--kinds", kinds],
    );
    assert!(ok, "{said}");
    assert_eq!(report["faults"], 8, "{said}");
    assert_eq!(report["silent"].as_array().map(Vec::len), Some(0), "{said}");
    assert_eq!(report["harmful"].as_array().map(Vec::len), Some(0), "{said}");
    assert_eq!(report["never_fired"].as_array().map(Vec::len), Some(0), "{said}");
    let control = &report["controls"][0];
    assert!(control["restored_ms"].is_null() && control["escalated"] == true, "the control: {control}\n{said}");
    // A person was told: a firing alert about its target reached the harness's webhook.
    assert!(
        control["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == "firing" && a["target"] == control["target"]),
        "the control's alert: {control}\n{said}"
    );
    // One line per fault, each complete.
    let lines = std::fs::read_to_string(dir.path().join("soak.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 8);
    for r in records.iter().filter(|r| r["control"] == false) {
        assert!(r["incident"].is_u64() && r["restored_ms"].is_u64(), "accounted for: {r}");
    }
    let summary = std::fs::read_to_string(dir.path().join("soak.md")).unwrap();
    assert!(summary.contains("passed"), "{summary}");
    // warden itself sampled all along, its latencies in windows.
    let health = &report["node_health"];
    assert!(health["samples"].as_array().unwrap().len() >= 3, "{health}");
    assert!(health["windows"][0]["api"]["n"].as_u64() > Some(0), "{health}");
    assert!(health["samples"][0]["rss_kib"].as_u64() > Some(0), "{health}");
    assert!(summary.contains("## warden itself") && summary.contains("Leak:"), "{summary}");
}

#[test]
fn test_a_stop_file_ends_the_soak_after_the_fault_in_progress_and_resume_carries_on() {
    let dir = demo_node_dir();
    let records = dir.path().join("soak.jsonl");
    let stop = dir.path().join("soak.stop");
    let watched = records.clone();
    let watcher = std::thread::spawn(move || {
        // After the first fault's record, ask it to stop.
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(240) {
            if std::fs::read_to_string(&watched).is_ok_and(|t| t.lines().count() >= 1) {
                std::fs::write(&stop, "").unwrap();
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    });
    let args =
        ["--config", "node/node.yaml", "--faults", "6", "--interval", "1s", "--seed", "5", "--kinds", "api-hang"];
    let (_, said, report) = soak(dir.path(), &args);
    assert!(watcher.join().unwrap(), "no fault was recorded:\n{said}");
    let done = report["faults_done"].as_u64().unwrap();
    assert!((1..6).contains(&done), "stopped early: {done}\n{said}");
    assert!(report["stopped_early"].as_str().is_some_and(|w| w.contains("soak.stop")), "{report}");
    assert_eq!(std::fs::read_to_string(&records).unwrap().lines().count() as u64, done, "every fault made is recorded");
    let left = Command::new("pgrep").arg("-f").arg(dir.path().to_str().unwrap()).output().unwrap();
    assert!(left.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&left.stdout));

    // Another sequence is refused; the same one carries on to its end.
    let mut other = args.to_vec();
    other[9] = "db-freeze";
    let (ok, said, _) = soak(dir.path(), &[other.as_slice(), &["--resume"]].concat());
    assert!(!ok && said.contains("is not fault"), "{said}");
    // A record cut short by a kill is dropped, not run into the next one.
    let mut f = std::fs::OpenOptions::new().append(true).open(&records).unwrap();
    std::io::Write::write_all(&mut f, b"{\"n\": 9, \"fault\": \"api-h").unwrap();
    drop(f);
    let (ok, said, report) = soak(dir.path(), &[args.as_slice(), &["--resume"]].concat());
    assert!(ok, "{said}");
    assert_eq!((report["faults_done"].as_u64(), report["resumed_after"].as_u64()), (Some(6), Some(done)), "{report}");
    let lines = std::fs::read_to_string(&records).unwrap();
    let ns: Vec<u64> =
        lines.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, [1, 2, 3, 4, 5, 6], "one record per fault, in order");
}

/// A node without the probe that sees bad credentials (the api's login to the db) opens no
/// incident for them: the soak counts the fault as silent and fails.
#[test]
fn test_a_fault_the_node_does_not_notice_is_a_silent_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let config = default_config_on(ports);
    let at = config.find("  - name: api-credentials").unwrap();
    let end = at + config[at..].find("\n\n").unwrap();
    let blind = format!("{}{}", &config[..at], &config[end + 1..]);
    assert!(!blind.contains("api-credentials"));
    let node_dir = dir.path().join("node");
    std::fs::create_dir(&node_dir).unwrap();
    std::fs::write(node_dir.join("node.yaml"), blind).unwrap();
    let (ok, said, report) = soak(
        dir.path(),
        &[
            "--config",
            "node/node.yaml",
            "--kinds",
            "bad-credentials",
            "--faults",
            "1",
            "--controls",
            "0",
            "--silent-after",
            "8s",
        ],
    );
    assert!(!ok, "a silent failure fails the soak: {said}");
    let silent = &report["silent"];
    assert_eq!(silent.as_array().map(Vec::len), Some(1), "{said}");
    assert_eq!(silent[0]["fault"], "bad-credentials");
    assert!(silent[0]["silent"].as_str().unwrap().contains("no incident"), "{silent}");
    assert!(
        report["failed"].to_string().contains("control"),
        "no control: its verifier unchecked: {}",
        report["failed"]
    );
}

#[test]
fn test_memory_pressure_on_the_node_is_told_to_a_person_and_accounted_for() {
    // The node-wide fault: a process of no service's takes the node under the floor the
    // harness gives it. The node repairs nothing for it and tells a person; the soak
    // counts that alert as its detection and the fault as escalated, not silent.
    let avail = available_mib();
    if avail < 4096 {
        eprintln!("skipped: {avail} MiB available; node-memory needs 4096 MiB");
        return;
    }
    let dir = demo_node_dir();
    let (_, said, report) = soak(
        dir.path(),
        &[
            "--config",
            "node/node.yaml",
            "--kinds",
            "node-memory",
            "--faults",
            "2",
            "--interval",
            "1s",
            "--controls",
            "0",
        ],
    );
    assert_eq!(report["silent"].as_array().map(Vec::len), Some(0), "{said}");
    assert_eq!(report["harmful"].as_array().map(Vec::len), Some(0), "{said}");
    let lines = std::fs::read_to_string(dir.path().join("soak.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2, "{said}");
    for r in &records {
        assert_eq!(r["target"], "node", "{r}");
        assert!(r["detected_ms"].is_u64() && r["escalated"] == true && r["incident"].is_null(), "{r}");
        assert!(r["restored_ms"].is_u64(), "the node's memory back over its floor once the stranger left: {r}");
        assert!(
            r["alerts"].as_array().unwrap().iter().any(|a| a["name"] == "NodeMemoryLow" && a["status"] == "firing"),
            "{r}"
        );
    }
}

/// A helper holding a slow-answers fault that is told to stop (SIGTERM) leaves its
/// processes running, not stopped halfway through a cycle.
#[test]
fn test_a_stopped_slow_answers_helper_leaves_its_process_running() {
    use std::io::BufRead;
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let mut helper = Command::new(WARDEN)
        .args(["chaos", "helper", "slow-answers", "--secs", "60", "--pids", &victim.id().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(helper.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let state = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')').next().unwrap().split_whitespace().next().unwrap().to_string()
    };
    // Caught while stopped (it is stopped nine tenths of the time).
    let start = std::time::Instant::now();
    while state(victim.id()) != "T" && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(state(victim.id()), "T", "the helper stops it");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(helper.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = helper.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_ne!(state(victim.id()), "T", "left running");
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn test_a_peer_is_given_the_same_sequence_on_the_same_services_and_told_why_not_the_rest() {
    ensure_monit();
    let dir = demo_node_dir();
    let (ok, said, report) = soak(
        dir.path(),
        &[
            "--config",
            "node/node.yaml",
            "--faults",
            "4",
            "--interval",
            "1s",
            "--seed",
            "3",
            "--kinds",
            "api-hang,model-kill,config-delete",
            "--peer",
            "monit",
        ],
    );
    assert!(ok, "{said}");
    let peer = &report["peers"][0];
    assert_eq!(peer["peer"]["name"], "monit", "{said}");
    // The sequence warden was given, fault by fault, on the peer's side.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("soak.monit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let warden: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("soak.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.iter().map(|r| r["fault"].clone()).collect::<Vec<_>>(),
        warden.iter().map(|r| r["fault"].clone()).collect::<Vec<_>>(),
        "{said}"
    );
    for r in &records {
        if r["fault"] == "config-delete" {
            assert!(r["not_run"].as_str().is_some_and(|w| w.contains("description")), "{r}");
        } else {
            // A hang and a kill Monit sees and restores: a new process answering.
            assert!(r["not_run"].is_null() && r["restored_ms"].is_u64(), "{r}\n{said}");
        }
    }
    assert_eq!(peer["silent"].as_array().map(Vec::len), Some(0), "{said}");
    let summary = std::fs::read_to_string(dir.path().join("soak.md")).unwrap();
    assert!(summary.contains("## monit") && summary.contains("beside it"), "{summary}");
}

/// A node started on its own (as systemd would start it) is soaked where it runs: the
/// faults meet it as it is, its alerts reach the soak through the webhook its own config
/// names, and it is left running as it was found.
#[test]
fn test_an_attached_soak_faults_a_running_node_and_leaves_it_running() {
    let ports = Ports::fresh();
    let sink = free_port();
    let config = format!(
        "{}\nalerts:\n  webhooks:\n    - url: \"http://127.0.0.1:{sink}/alerts\"\n",
        default_config_on(ports).trim_end()
    );
    let node = Node::start_with(&config, ports, &[]);
    node.wait_ready();
    let pid = node.pid();
    let dir = tempfile::tempdir().unwrap();
    let config_path = node.config_path();
    let listen = format!("127.0.0.1:{sink}");
    let (ok, said, report) = soak(
        dir.path(),
        &[
            "--attach",
            "--config",
            config_path.to_str().unwrap(),
            "--alerts-listen",
            &listen,
            "--faults",
            "3",
            "--interval",
            "1s",
            "--kinds",
            "api-hang,config-delete",
        ],
    );
    assert!(ok, "{said}");
    assert_eq!(
        (report["faults_done"].as_u64(), report["silent"].as_array().map(Vec::len)),
        (Some(3), Some(0)),
        "{said}"
    );
    assert_eq!(report["harmful"].as_array().map(Vec::len), Some(0), "{said}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("attached to the node running at") && notes.contains(&pid.to_string()), "{notes}");
    assert!(!notes.contains("alerts not received"), "its webhook names the receiver: {notes}");
    let control = &report["controls"][0];
    assert!(control["escalated"] == true && control["restored_ms"].is_null(), "{control}");
    assert!(control["alerts"].as_array().is_some_and(|a| !a.is_empty()), "told through its own webhook: {control}");
    // Left running, the same process, serving, its healing no longer paused.
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "warden is still running");
    node.wait_ready();
    let healing: serde_json::Value = reqwest::blocking::get(node.url("/api/healing")).unwrap().json().unwrap();
    assert_eq!(healing["automatic_repair"], "on", "{healing}");
    assert!(node.service("api").is_some_and(|(_, state)| state == "running"), "{:?}", node.service("api"));
}
