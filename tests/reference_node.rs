//! The real-services reference node (`config/examples/reference`: PostgreSQL, Redis with a
//! password, nginx in front of a Python app), as shipped, under every fault that applies
//! to it: `warden chaos modes --config` makes each fault from outside and checks recovery
//! with its own checks. Each service ends healthy, its incident has the right cause and
//! the right first playbook, nothing harmful was done, and the database's snapshots stay
//! within three times its data.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// The reference node's folder with its ports moved to free ones (a node already running
/// on the shipped ports is left alone).
fn reference_copy(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/reference");
    let mut yaml = std::fs::read_to_string(src.join("node.yaml")).unwrap();
    for shipped in ["7720", "5442", "6392", "8092", "8093"] {
        assert!(yaml.contains(shipped), "the reference node uses port {shipped}");
        yaml = yaml.replace(shipped, &free_port().to_string());
    }
    let node = dir.join("node.yaml");
    std::fs::write(&node, yaml).unwrap();
    std::fs::copy(src.join("app.py"), dir.join("app.py")).unwrap();
    node
}

/// `warden chaos modes` on the node of `config` (from `dir`): its JSON report and what it said.
fn modes(dir: &Path, config: &Path, runs: u32, faults: &str) -> (serde_json::Value, String) {
    let out = dir.join("modes.json");
    let started = Instant::now();
    let run = Command::new(WARDEN)
        .args(["chaos", "modes", "--runs", &runs.to_string(), "--faults", faults, "--config"])
        .arg(config)
        .arg("--json")
        .arg(&out)
        .current_dir(dir)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "chaos modes failed after {:?}:\n{said}", started.elapsed());
    (serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap(), said)
}

#[test]
fn test_the_reference_node_of_real_services_heals_every_fault_that_applies_without_harm() {
    ensure_reference_packages();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = reference_copy(dir.path());
    // (fault, its incident's cause, the first playbook tried). A balloon may outrun the
    // pressure detector: then the kernel's OOM kill is what is seen first.
    let expected = [
        ("db-freeze", "hung", "restart_database"),
        ("db-corrupt", "corrupt", "restore_database_snapshot"),
        ("port-hold", "port_stranger", "free_port_foreign"),
        ("slow-boot", "slow_start", "extend_startup_deadline"),
        ("memory-growth", "memory_pressure|oom_killed", "restart_memory_hog"),
        ("disk-full", "disk_full_of_temp", "prune_temp_files"),
        ("api-hang", "hung", "restart_hung_service"),
        // Answers late, now and then in time: only a repair ends it within the harness's
        // wait (the fault lasts longer), so a guard fooled by one good answer fails here.
        ("slow-answers", "hung", "restart_hung_service"),
        ("config-delete", "file_missing", "restore_config_file"),
        ("bad-credentials", "credentials_refused", "reload_credentials"),
    ];
    let faults: Vec<&str> = expected.iter().map(|e| e.0).collect();
    let started = Instant::now();
    let (report, said) = modes(dir.path(), &node, 1, &faults.join(","));
    assert_eq!(report["node"], "reference");
    for (fault, cause, first) in expected {
        let r = report["results"].as_array().unwrap().iter().find(|r| r["fault"] == fault).unwrap();
        assert_eq!(
            (r["summary"]["n"].as_u64(), r["summary"]["failures"].as_u64()),
            (Some(1), Some(0)),
            "{fault} healed: {r}\n{said}"
        );
        assert_eq!(r["harmful"].as_array().map(Vec::len), Some(0), "{fault}: nothing harmful: {r}");
        let seen = r["diagnosed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| cause.split('|').any(|c| d[0][0] == c) && d[0][1] == first);
        assert!(seen, "{fault}: an incident with cause {cause}, first playbook {first}: {}", r["diagnosed"]);
    }
    let snaps = &report["snapshots"];
    assert!(
        snaps["snapshot_bytes"].as_u64().unwrap() <= 3 * snaps["data_bytes"].as_u64().unwrap(),
        "snapshots within 3× the data: {snaps}"
    );
    // Nothing of the node is left running.
    let left = Command::new("pgrep").arg("-f").arg(dir.path().to_str().unwrap()).output().unwrap();
    assert!(left.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&left.stdout));
    assert!(started.elapsed() < Duration::from_secs(900));
}

/// Removes the test's namespace and link however the test ends.
struct LinkGuard(std::path::PathBuf, String, String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("sh").arg(&self.0).args(["down", &self.1, &self.2]).output();
    }
}

#[test]
fn test_a_cut_link_to_postgres_fails_the_app_over_to_the_standby_as_one_incident() {
    ensure_reference_packages();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/reference");
    // Its own ports, namespace and subnet (a reference node may run beside it).
    let k = std::process::id() % 200 + 20;
    let (ns, prefix) = (format!("wrt{k}"), format!("10.254.{k}"));
    let mut yaml = std::fs::read_to_string(src.join("link.yaml")).unwrap();
    for shipped in ["7721", "5444", "5445", "6393", "8094"] {
        assert!(yaml.contains(shipped), "the link node uses port {shipped}");
        yaml = yaml.replace(shipped, &free_port().to_string());
    }
    yaml = yaml.replace("10.254.0.", &format!("{prefix}.")).replace("wref", &ns);
    let node = dir.path().join("link.yaml");
    std::fs::write(&node, yaml).unwrap();
    for f in ["app.py", "link.sh"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let script = dir.path().join("link.sh");
    let _link = LinkGuard(script.clone(), ns.clone(), prefix.clone());
    let made = Command::new("sh").arg(&script).args(["up", &ns, &prefix]).output().unwrap();
    assert!(made.status.success(), "link.sh up: {}", String::from_utf8_lossy(&made.stderr));
    // Pulled (link-down) and up but carrying nothing (link-loss: the primary's SQL check
    // then times out across it as well, which is the same cut, not a database fault).
    let (report, said) = modes(dir.path(), &node, 2, "link-down,link-loss");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{report}");
    for (r, fault) in results.iter().zip(["link-down", "link-loss"]) {
        assert_eq!(r["fault"], fault);
        assert_eq!(
            (r["summary"]["n"].as_u64(), r["summary"]["failures"].as_u64()),
            (Some(2), Some(0)),
            "healed: {r}\n{said}"
        );
        // One incident per cut (the primary's own probes seeing it are linked to the app's),
        // nothing restarted that was healthy: the harness counts both.
        assert_eq!(r["harmful"].as_array().map(Vec::len), Some(0), "nothing harmful: {r}");
        assert_eq!(r["diagnosed"], serde_json::json!([[["unreachable", "failover_upstream"], 2]]), "{r}");
        assert_eq!(r["playbooks"], serde_json::json!([["failover_upstream", 2]]), "{r}");
    }
    let left = Command::new("pgrep").arg("-f").arg(dir.path().to_str().unwrap()).output().unwrap();
    assert!(left.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&left.stdout));
}
