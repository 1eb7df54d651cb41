//! warden survives what happens to it and contains what it runs: its own `kill -9`,
//! services that fork away, hog memory, cannot be executed or hang before they are ready,
//! and services that must run as someone else.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::time::Duration;
use support::*;

fn service_json(node: &Node, name: &str) -> serde_json::Value {
    node.status()
        .and_then(|s| s["services"].as_array()?.iter().find(|x| x["name"] == name).cloned())
        .unwrap_or_default()
}

#[test]
fn test_kill_9_of_warden_during_a_healing_run_then_restart_ends_with_one_healthy_process() {
    // warden dies mid-repair (the playbook is verifying a restart). The next warden on the
    // same data dir adopts or replaces what it finds, never starts a second copy, finishes
    // the interrupted incident, and its audit chain still verifies.
    let ports = Ports::fresh();
    // The service takes 5 s to come up, so the kill lands inside the run's verify step
    // even on a loaded machine (with 2 s, the run sometimes ended before the kill).
    let config = slow_node_config(ports).replace("sleep 2;", "sleep 5;");
    let mut node = Node::start_with(&config, ports, &[]);
    node.hang_slow_service();
    let mut warden = node.child.take().unwrap();
    kill(warden.id(), Signal::SIGKILL);
    let _ = warden.wait();
    let service_cmd = format!("demo model --listen 127.0.0.1:{}", ports.api);

    node.spawn(&[]);
    wait_until("the interrupted incident resolved", Duration::from_secs(60), || {
        node.healer_stats()["incidents"]["resolved"] == 1
    });
    wait_until(
        "slow service running",
        Duration::from_secs(30),
        || matches!(node.service("slow"), Some((Some(_), ref s)) if s == "running"),
    );
    let stats = node.healer_stats();
    assert_eq!(stats["incidents"]["open"], 0, "{stats}");
    assert_eq!(stats["last_runs"][1]["outcome"], "interrupted", "the run warden died in: {stats}");
    assert_eq!(stats["last_runs"][0]["outcome"], "succeeded", "{stats}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        processes_with(&service_cmd).len(),
        1,
        "exactly one process of the service: {:?}",
        processes_with(&service_cmd)
    );
    assert_eq!(service_json(&node, "slow")["state"], "running", "not quarantined");
    assert_eq!(status_code(&format!("http://127.0.0.1:{}/api/version", ports.api)), Some(200));
    let verify = get_json(&node.url("/api/audit/verify")).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}

#[test]
fn test_kill_9_of_warden_then_restart_adopts_healthy_services() {
    // Nothing is restarted: the healthy processes are adopted, on their ports, and watched.
    let mut node = Node::start_default(&[]);
    node.wait_ready();
    let before: Vec<u32> = ["db", "model", "api"].iter().map(|s| node.service(s).unwrap().0.unwrap()).collect();
    let mut warden = node.child.take().unwrap();
    kill(warden.id(), Signal::SIGKILL);
    let _ = warden.wait();
    node.spawn(&[]);
    node.wait_ready();
    let after: Vec<u32> = ["db", "model", "api"].iter().map(|s| node.service(s).unwrap().0.unwrap()).collect();
    assert_eq!(before, after, "the same processes, adopted");
    assert!(node.stderr().contains("adopted the running process"), "{}", node.stderr());
    for s in ["db", "model", "api"] {
        assert_eq!(service_json(&node, s)["restarts"], 0, "{s} was not restarted");
    }
    // An adopted process is watched like a child: its death is noticed and healed.
    kill(after[2], Signal::SIGKILL);
    wait_until(
        "adopted api restarted",
        Duration::from_secs(20),
        || matches!(node.service("api"), Some((Some(p), ref s)) if p != after[2] && s == "running"),
    );
}

#[test]
fn test_stop_reaches_grandchildren_and_setsid_escapees() {
    // A service whose shell leaves a background child and a child in a new session (out of
    // its process group): a stop of the node leaves none of them running.
    let ports = Ports::fresh();
    let tag = ports.api;
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: forky\n    command: /bin/sh\n    args: [-c, '(sleep {tag}1 &); setsid sleep {tag}2 & exec sleep {tag}3']\n",
        ports.http
    );
    let mut node = Node::start_with(&config, ports, &[]);
    if !node_has_cgroups(&node) {
        eprintln!("skipped: no writable cgroups on this machine ({})", node.stderr().lines().next().unwrap_or(""));
        return;
    }
    let left = || [1, 2, 3].iter().flat_map(|i| processes_exactly(&format!("sleep {tag}{i}"))).collect::<Vec<_>>();
    wait_until("three sleeps running", Duration::from_secs(20), || left().len() == 3);
    let status = node.stop().unwrap();
    assert!(status.success(), "{}", node.stderr());
    wait_until("nothing of the service left", Duration::from_secs(10), || left().is_empty());
}

#[test]
fn test_a_crash_kills_what_the_process_left_before_the_restart() {
    // The main process dies; the child it forked must not outlive it into the next run.
    let ports = Ports::fresh();
    let tag = ports.api;
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: forky\n    command: /bin/sh\n    args: [-c, 'setsid sleep {tag}4 & exec sleep {tag}5']\n    restart: {{ stable_after_ms: 100 }}\n",
        ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    if !node_has_cgroups(&node) {
        eprintln!("skipped: no writable cgroups on this machine");
        return;
    }
    let child = || processes_exactly(&format!("sleep {tag}4"));
    wait_until("both running", Duration::from_secs(20), || {
        child().len() == 1 && processes_exactly(&format!("sleep {tag}5")).len() == 1
    });
    let first_child = child()[0];
    std::thread::sleep(Duration::from_millis(300));
    let (main, _) = node.service("forky").unwrap();
    kill(main.unwrap(), Signal::SIGKILL);
    wait_until("restarted with a new child", Duration::from_secs(20), || {
        // One scan: the list may change between two reads.
        matches!(child().as_slice(), [pid] if *pid != first_child)
    });
    assert!(alive_in_groups(&[first_child]).is_empty(), "the old child was killed before the restart");
}

#[test]
fn test_a_quarantined_crash_loop_leaves_nothing_it_forked_running() {
    // Each start leaves a background child in its process group (and cgroup) and exits
    // with an error; once the loop is quarantined none of those children may still run.
    let ports = Ports::fresh();
    let tag = ports.api;
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: loopy\n    command: /bin/sh\n    args: [-c, '(sleep {tag}6 &); sleep 0.2; exit 1']\n    restart: {{ max_restarts: 2, backoff_initial_ms: 50, backoff_max_ms: 100 }}\n",
        ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until("quarantined", Duration::from_secs(20), || service_json(&node, "loopy")["state"] == "quarantined");
    wait_until("nothing of the loop left", Duration::from_secs(10), || {
        processes_exactly(&format!("sleep {tag}6")).is_empty()
    });
}

#[test]
fn test_a_service_removed_while_warden_was_down_is_stopped_on_the_next_start() {
    let ports = Ports::fresh();
    let tag = ports.api;
    let keep = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: keep\n    command: /bin/sh\n    args: [-c, 'exec sleep {tag}7']\n",
        ports.http
    );
    let both = format!("{keep}  - name: gone\n    command: /bin/sh\n    args: [-c, 'exec sleep {tag}8']\n");
    let mut node = Node::start_with(&both, ports, &[]);
    wait_until("both running", Duration::from_secs(20), || {
        processes_exactly(&format!("sleep {tag}7")).len() == 1 && processes_exactly(&format!("sleep {tag}8")).len() == 1
    });
    let kept = processes_exactly(&format!("sleep {tag}7"));
    let mut warden = node.child.take().unwrap();
    kill(warden.id(), Signal::SIGKILL);
    let _ = warden.wait();
    std::fs::write(node.config_path(), &keep).unwrap();
    node.spawn(&[]);
    wait_until("the removed service's process is stopped", Duration::from_secs(20), || {
        processes_exactly(&format!("sleep {tag}8")).is_empty()
    });
    assert!(node.stderr().contains("no longer in the config"), "{}", node.stderr());
    wait_until("keep adopted", Duration::from_secs(20), || service_json(&node, "keep")["state"] == "running");
    assert_eq!(processes_exactly(&format!("sleep {tag}7")), kept, "the configured one is adopted, not restarted");
}

#[test]
fn test_memory_hog_over_its_limit_is_oom_killed_and_seen_as_such() {
    // memory_limit_mb is the kernel's limit: a balloon growing past it is killed by the OOM
    // killer, and warden says so.
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: hog\n    command: '@warden'\n    args: [demo, hog, --mb, '256', --step-mb, '16', --step-ms, '10']\n    memory_limit_mb: 48\n    restart: {{ max_restarts: 1, backoff_initial_ms: 5000, backoff_max_ms: 5000 }}\n",
        ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    if !node_has_cgroups(&node) {
        eprintln!("skipped: no writable cgroups on this machine");
        return;
    }
    wait_until("the hog is OOM-killed", Duration::from_secs(30), || {
        service_json(&node, "hog")["last_exit"].as_str().is_some_and(|e| e.contains("OOM killer"))
    });
}

#[test]
fn test_a_binary_made_non_executable_after_a_stable_run_backs_off_and_says_why() {
    // After running fine, the program loses its execute bit and the process dies: restarts
    // fail with EACCES, back off, and the service is quarantined after its budget, not
    // retried thousands of times.
    let ports = Ports::fresh();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("svc.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: svc\n    command: {}\n    restart: {{ max_restarts: 3, backoff_initial_ms: 50, backoff_max_ms: 200, stable_after_ms: 200 }}\n",
        ports.http,
        script.display()
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until(
        "running",
        Duration::from_secs(20),
        || matches!(node.service("svc"), Some((Some(_), ref s)) if s == "running"),
    );
    std::thread::sleep(Duration::from_millis(400));
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    kill(node.service("svc").unwrap().0.unwrap(), Signal::SIGKILL);
    wait_until("quarantined", Duration::from_secs(20), || service_json(&node, "svc")["state"] == "quarantined");
    let svc = service_json(&node, "svc");
    let why = svc["last_exit"].as_str().unwrap_or_default();
    assert!(why.contains("EACCES") && why.contains("did not start"), "the real reason: {svc}");
    assert!(svc["restarts"].as_u64().unwrap() <= 4, "bounded attempts: {svc}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(service_json(&node, "svc")["restarts"], svc["restarts"], "no attempts once quarantined");
}

#[test]
fn test_a_service_hung_before_it_is_ready_is_a_failed_start() {
    // A process that stops itself before it ever answers its ready check is killed and
    // retried with backoff, not left to wait for the slow-boot alert.
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: stuck\n    command: /bin/sh\n    args: [-c, 'kill -STOP $$; sleep 60']\n    ready: {{ kind: tcp, addr: '127.0.0.1:{}' }}\n    startup_deadline_ms: 60000\n    restart: {{ max_restarts: 2, backoff_initial_ms: 50, backoff_max_ms: 100 }}\n",
        ports.http, ports.api
    );
    let node = Node::start_with(&config, ports, &[]);
    wait_until("quarantined after repeated hangs", Duration::from_secs(20), || {
        service_json(&node, "stuck")["state"] == "quarantined"
    });
    let svc = service_json(&node, "stuck");
    assert!(svc["last_exit"].as_str().unwrap_or_default().contains("hung before its first ready check"), "{svc}");
    assert!(node.stderr().contains("alert: service hung before its first ready check"), "{}", node.stderr());
}

#[test]
fn test_a_service_runs_as_its_user_with_umask_env_file_and_limits() {
    // user, umask, env_file and limits.open_files reach the process, as systemd's User=,
    // UMask=, EnvironmentFile= and LimitNOFILE= do.
    let ports = Ports::fresh();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = dir.path().join("out");
    let env = dir.path().join("svc.env");
    std::fs::write(&env, "# read at every start\nFROM_FILE=\"hello file\"\n").unwrap();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: who\n    command: /bin/sh\n    args: [-c, 'echo \"$(id -un) $(umask) $FROM_FILE $(ulimit -n)\" > {}; exec sleep 60']\n    user: nobody\n    umask: '027'\n    env_file: {}\n    limits: {{ open_files: 321 }}\n",
        ports.http,
        out.display(),
        env.display()
    );
    let _node = Node::start_with(&config, ports, &[]);
    wait_until("the service wrote who it is", Duration::from_secs(20), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n'))
    });
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), "nobody 0027 hello file 321", "{text}");
}

#[test]
fn test_five_thousand_idle_connections_starve_neither_the_api_nor_healing() {
    // A flood of idle connections: warden keeps its descriptors bounded (the oldest idle
    // connection makes room for a new one), the API answers, and a killed service is
    // still restarted.
    let node = Node::start_default(&[]);
    node.wait_ready();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", node.ports.http).parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..5000 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            held.push(s);
        }
    }
    assert!(held.len() >= 4500, "the flood got its connections: {}", held.len());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", node.pid())).unwrap().count();
    assert!(fds < 512 + 400, "warden holds at most max_connections API sockets: {fds} descriptors");
    for _ in 0..20 {
        let start = std::time::Instant::now();
        assert_eq!(status_code(&node.url("/api/status")), Some(200), "the API answers under the flood");
        assert!(start.elapsed() < Duration::from_secs(2), "promptly: {:?}", start.elapsed());
    }
    let (api, _) = node.service("api").unwrap();
    kill(api.unwrap(), Signal::SIGKILL);
    wait_until(
        "api restarted under the flood",
        Duration::from_secs(20),
        || matches!(node.service("api"), Some((Some(p), ref s)) if Some(p) != api && s == "running"),
    );
    drop(held);
}

#[test]
fn test_oversized_bodies_and_wrong_methods_get_json_errors() {
    let node = Node::start_default(&["--enable-fault-injection"]);
    wait_until("warden answers", Duration::from_secs(30), || status_code(&node.url("/healthz")) == Some(200));
    let big = vec![b'x'; 200 * 1024];
    let r = node.post_as_admin("/api/debug/crash/healing/incident_manager").body(big).send().unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["error"]["code"], "payload_too_large");
    let r = http().delete(node.url("/api/status")).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["error"]["code"], "method_not_allowed");
}

#[test]
fn test_a_rate_limited_repair_waits_and_runs_when_the_limit_allows() {
    // restart_service may run once per 4 s. A second hang right after the first is held by
    // governance (the incident stays open, with an alert) and repaired when the window moves
    // on, not failed and forgotten.
    let ports = Ports::fresh();
    let mut node = Node::prepare("", ports);
    let policy = node.dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "mode: dev\nwhitelist:\n  - action: restart_service\n    targets: ['*']\n    rate_limit: { max: 1, per_ms: 4000 }\n",
    )
    .unwrap();
    let config = format!("{}governance_policies: {}\n", default_config_on(ports), policy.display());
    std::fs::write(node.config_path(), config).unwrap();
    node.spawn(&[]);
    node.wait_ready();
    for round in 1..=2u64 {
        let (pid, _) = node.service("api").unwrap();
        kill(pid.unwrap(), Signal::SIGSTOP);
        if round == 2 {
            wait_until("the repair is held", Duration::from_secs(20), || {
                node.stderr().contains("alert: governance holds the repair")
            });
            assert_eq!(node.healer_stats()["incidents"]["open"], 1, "held, still open");
        }
        wait_until("healed", Duration::from_secs(30), || node.healer_stats()["incidents"]["resolved"] == round);
    }
    let stats = node.healer_stats();
    let outcomes: Vec<&str> =
        stats["last_runs"].as_array().unwrap().iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(&outcomes[..3], ["succeeded", "throttled", "succeeded"], "{stats}");
    assert_eq!(stats["incidents"]["failed"], 0, "{stats}");
    let held = &stats["last_runs"][1];
    let (retry, started) = (held["retry_at_unix_ms"].as_u64().unwrap(), held["started_unix_ms"].as_u64().unwrap());
    assert!(retry > started && retry <= started + 4_500, "held until the window moves on: {held}");
    assert_eq!(held["incident_status"], "resolved", "{held}");
}
