//! `warden check-config` validates a node's files like `monit -t`: every problem with its
//! file:line:column, exit status 2, and nothing started or created.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use support::*;

#[test]
fn test_check_config_reports_every_mistake_and_starts_nothing() {
    // Three mistakes in the node config (a bad listen address, a missing program, a zero
    // grace period) and two in the policy it names are all reported in one run.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "mode: dev\nwhitelist:\n  - action: restart_service\n    targets: [ghost]\n    hours_utc: { from: 25, to: 2 }\n",
    )
    .unwrap();
    let good = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:1\n  data_dir: data\nservices:\n  - name: marker\n    command: /bin/sh\n    args: [-c, 'touch {}; sleep 30']\ngovernance_policies: policy.yaml\n",
        marker.display()
    );
    let config = dir.path().join("node.yaml");
    std::fs::write(&config, &good).unwrap();
    let out = Command::new(WARDEN).args(["check-config", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the policy's problems fail the check:\n{err}");
    let p = policy.display().to_string();
    assert!(err.contains(&format!("{p}:4:15: whitelist: unknown target `ghost`")), "{err}");
    assert!(err.contains(&format!("{p}:5:16: whitelist: hours_utc.from is 25")), "{err}");

    std::fs::write(&policy, "mode: dev\n").unwrap();
    let bad = good
        .replace("127.0.0.1:1", "nowhere")
        .replace("command: /bin/sh", "command: /no/such/program\n    stop_grace_ms: 0");
    std::fs::write(&config, bad).unwrap();
    let out = Command::new(WARDEN).args(["check-config", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let c = config.display().to_string();
    for expected in [
        format!("{c}:3:16: node.http_listen `nowhere` is not an IP:port address"),
        format!("{c}:7:14: service `marker`: command `/no/such/program` does not exist"),
        format!("{c}:8:20: service `marker`: stop_grace_ms must be positive"),
    ] {
        assert!(err.contains(&expected), "expected `{expected}` in:\n{err}");
    }
    assert!(!marker.exists(), "check-config starts no service");
    assert!(!dir.path().join("data").exists(), "check-config creates no data dir");
}

#[test]
fn test_check_config_accepts_the_embedded_default_and_says_what_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(WARDEN).arg("check-config").current_dir(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("configuration ok: node `demo`"), "{text}");
    assert!(text.contains("services (start order): db, model, api"), "{text}");
    assert!(!dir.path().join(".warden-data").exists(), "nothing created");
}

#[test]
fn test_relative_paths_resolve_against_the_config_folder() {
    // A config in another folder than the working directory: its relative data dir and
    // relative program are found next to it.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).unwrap();
    let script = sub.join("svc.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\n  data_dir: state\nservices:\n  - name: svc\n    command: ./svc.sh\n",
        ports.http
    );
    std::fs::write(sub.join("node.yaml"), &config).unwrap();
    let out = Command::new(WARDEN)
        .args(["check-config", "--config", "conf/node.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("data dir: {}", sub.join("state").display())), "{text}");
}
