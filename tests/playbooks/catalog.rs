//! One test per playbook of the catalog, each against a node of real processes, sockets and
//! files: the condition it repairs is made real, its dry run changes nothing (the services'
//! pids, who holds their ports, their files, and what the case itself watches), the real
//! run has its effect, its metrics moved and the audit trail holds a permit and an outcome
//! for each step that needed one. Playbooks tested in their own files (the critical ones
//! with rollbacks, the runtime overrides) are listed in [`ELSEWHERE`]; a test checks that
//! every playbook of the catalog has its test.

use super::*;
use std::os::unix::fs::PermissionsExt;

/// Playbooks whose test lives in `main.rs` or `overrides.rs` (run, effect, rollback).
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "restore_database_snapshot",
        "main::test_restore_database_snapshot_runs_and_rolls_back_to_exactly_the_state_before",
    ),
    ("free_port_foreign", "main::test_free_port_foreign_kills_the_stranger_and_the_service_binds_again"),
    ("rotate_credentials", "main::test_rotate_credentials_and_restore_config_file_roll_back_exactly"),
    ("restore_config_file", "main::test_rotate_credentials_and_restore_config_file_roll_back_exactly"),
    ("restart_dependency_chain", "main::test_restart_dependency_chain_restarts_the_dependency_then_its_dependents"),
    (
        "relocate_port",
        "overrides::test_relocate_port_moves_the_db_and_its_dependents_follow_then_rollback_moves_it_back",
    ),
    ("failover_upstream", "overrides::test_failover_to_standby_upstreams_and_back"),
    ("failover_model_endpoint", "overrides::test_failover_to_standby_upstreams_and_back"),
    (
        "extend_startup_deadline",
        "overrides::test_extend_startup_deadline_lets_the_next_boot_finish_in_time_and_rolls_back",
    ),
    ("staggered_boot", "overrides::test_staggered_boot_starts_one_service_at_a_time_after_it_runs"),
];

/// Playbooks tested here, one `#[test]` each (named `test_<id>_...`).
const HERE: &[&str] = &[
    "restart_hung_service",
    "restart_service",
    "reload_service",
    "quarantine_crashloop",
    "free_port_orphan",
    "reresolve_dns",
    "reset_connection_pool",
    "reload_tls_certificate",
    "restart_database",
    "clear_stale_db_lock",
    "snapshot_database",
    "restart_memory_hog",
    "kill_memory_balloon",
    "compress_logs",
    "prune_temp_files",
    "prune_old_snapshots",
    "compact_store",
    "rollback_config_change",
    "reload_credentials",
    "restart_model_server",
    "warm_model",
];

#[test]
fn test_every_playbook_of_the_catalog_has_its_test() {
    let catalog = warden_core::playbook::Catalog::embedded_default().unwrap();
    let ids: Vec<&str> = catalog.all().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 31, "{ids:?}");
    let source = include_str!("catalog.rs");
    for id in &ids {
        let here = HERE.contains(id) && source.contains(&format!("fn test_{id}_"));
        let elsewhere = ELSEWHERE.iter().find(|(p, _)| p == id).is_some_and(|(_, t)| {
            let (file, name) = t.split_once("::").unwrap();
            let text = match file {
                "main" => include_str!("main.rs"),
                _ => include_str!("overrides.rs"),
            };
            text.contains(&format!("fn {name}()"))
        });
        assert!(here || elsewhere, "playbook `{id}` has no test");
    }
}

/// The dry run changes nothing (the node's state, and `watch`'s), the real run succeeds,
/// its execution is counted and every step that needed a permit has one and an outcome.
fn exercise<W: PartialEq + std::fmt::Debug>(node: &Node, playbook: &str, target: &str, watch: impl Fn() -> W) -> Value {
    let (before, watched) = (state(node), watch());
    let dry = run(node, playbook, json!({"target": target, "dry_run": true}));
    assert_eq!(dry["outcome"], "succeeded", "{playbook} dry run: {dry}");
    for s in dry["steps"].as_array().unwrap() {
        assert!(s["detail"].as_str().unwrap().starts_with("would"), "{playbook}: {s}");
    }
    assert_eq!(state(node), before, "{playbook}: the dry run changed the node");
    assert_eq!(watch(), watched, "{playbook}: the dry run changed what it acts on");

    let done = run(node, playbook, json!({"target": target}));
    assert_eq!(done["outcome"], "succeeded", "{playbook}: {done}");
    let m = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    let series = format!(r#"warden_playbook_executions_total{{playbook="{playbook}",outcome="succeeded"}}"#);
    assert_eq!(metric(&m, &series), Some(1.0), "{series}");
    let stats = get_json(&node.url(&format!("/api/guardian/playbooks/{playbook}"))).unwrap();
    assert_eq!(stats["stats"]["executions"], 1, "{stats}");
    let trail = audit_actions(node, "admin");
    for s in done["steps"].as_array().unwrap().iter().filter(|s| s["tier"].as_u64().unwrap() >= 2) {
        let action = s["action"].as_str().unwrap();
        assert!(s["permit_audit_seq"].is_u64(), "{playbook}: {s}");
        assert!(trail.iter().any(|(k, a, d)| k == "decision" && a == action && d == "allow"), "{action}: {trail:?}");
        assert!(trail.iter().any(|(k, a, o)| k == "outcome" && a == action && o == "succeeded"), "{action}: {trail:?}");
    }
    done
}

/// A playbook that replaces `service`'s process on the default node: the old pid is gone,
/// a new one serves.
fn replaces_the_process(playbook: &str, service: &str) -> Node {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let old = pid_of(&node, service);
    exercise(&node, playbook, service, || ());
    assert!(!alive(old));
    assert_ne!(pid_of(&node, service), old);
    node
}

fn pid_of(node: &Node, service: &str) -> u32 {
    node.service(service).and_then(|(p, _)| p).unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}

fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| rest.starts_with('T')))
}

fn log_of(node: &Node, service: &str) -> String {
    std::fs::read_to_string(node.data_dir().join(format!("logs/{service}.log"))).unwrap_or_default()
}

fn healthy(node: &Node) -> bool {
    status_code(&node.api_url("/health")) == Some(200)
}

// ---- service ----

#[test]
fn test_restart_hung_service_replaces_a_stopped_process() {
    // The healer would see this hang too; its probe is made patient so the test's run is
    // the only one.
    let ports = Ports::fresh();
    let config = default_config_on(ports).replacen("failure_threshold: 2", "failure_threshold: 100000", 1);
    let node = Node::start_with(&hands_off(&config), ports, &[]);
    node.wait_ready();
    let hung = pid_of(&node, "api");
    kill(hung, nix::sys::signal::Signal::SIGSTOP);
    wait_until("api hung", Duration::from_secs(10), || stopped(hung));
    exercise(&node, "restart_hung_service", "api", || stopped(hung));
    assert!(!alive(hung), "the hung process is gone");
    assert_ne!(pid_of(&node, "api"), hung);
    assert!(healthy(&node));
}

#[test]
fn test_restart_service_replaces_the_process() {
    replaces_the_process("restart_service", "model");
}

#[test]
fn test_reload_service_delivers_sighup_and_keeps_the_process() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let pid = pid_of(&node, "api");
    let reloads = |n: &Node| log_of(n, "api").matches("sighup received").count();
    exercise(&node, "reload_service", "api", || reloads(&node));
    wait_until("the api logged the reload", Duration::from_secs(10), || reloads(&node) == 1);
    assert_eq!(pid_of(&node, "api"), pid, "no restart");
}

#[test]
fn test_quarantine_crashloop_stops_the_service_and_keeps_it_stopped() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let old = pid_of(&node, "model");
    exercise(&node, "quarantine_crashloop", "model", || ());
    assert!(!alive(old));
    assert_eq!(node.service("model").unwrap(), (None, "quarantined".to_string()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.service("model").unwrap().1, "quarantined", "not restarted");
    assert!(!listening(node.ports.model));
}

// ---- network ----

#[test]
fn test_free_port_orphan_kills_a_leftover_of_the_services_own_program() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let (ok, out) = node.cli(&["services", "stop", "model"], &[("WARDEN_TOKEN", &node.admin_token())]);
    assert!(ok, "{out}");
    // The model's own program, started outside warden: what an earlier life leaves behind.
    let listen = format!("127.0.0.1:{}", node.ports.model);
    let orphan = std::process::Command::new(WARDEN)
        .args(["demo", "model", "--listen", &listen])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut orphan = KillOnDrop(orphan);
    let pid = orphan.0.id();
    wait_until("the orphan listens", Duration::from_secs(20), || listening(node.ports.model));
    let done = exercise(&node, "free_port_orphan", "model", || alive(pid));
    assert!(done["steps"][1]["detail"].as_str().unwrap().contains(&pid.to_string()), "{done}");
    assert!(wait_exit(&mut orphan.0, Duration::from_secs(10)).is_some(), "the orphan is gone");
    wait_until("model started by warden", Duration::from_secs(20), || {
        node.service("model").is_some_and(|(p, s)| p.is_some() && s == "running")
    });
    assert_eq!(warden_listeners(node.ports.model), vec![pid_of(&node, "model")]);
}

#[test]
fn test_reresolve_dns_makes_the_service_resolve_its_upstream_again() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let pid = pid_of(&node, "api");
    let resolved = |n: &Node| log_of(n, "api").matches("resolved the db address").count();
    wait_until("the api resolved the db once", Duration::from_secs(10), || resolved(&node) == 1);
    exercise(&node, "reresolve_dns", "api", || resolved(&node));
    wait_until("resolved again", Duration::from_secs(10), || resolved(&node) == 2);
    assert_eq!(pid_of(&node, "api"), pid, "without a restart");
}

#[test]
fn test_reset_connection_pool_closes_the_pooled_db_connections() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    db_put(&node, "k", "v");
    // Concurrent requests leave several connections in the api's pool.
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..5 {
                    let _ = db_get(&node, "k");
                }
            });
        }
    });
    let pooled = |n: &Node| get_json(&n.api_url("/")).unwrap()["pooled_db_connections"].as_u64().unwrap();
    let established = |n: &Node| warden_core::procnet::census(Duration::ZERO).unwrap().counts(n.ports.db).0;
    let before = pooled(&node);
    assert!(before >= 2, "{before}");
    assert!(established(&node) as u64 >= before);
    // A db incident's playbook: it resets the pools of the services that use the db.
    let done = exercise(&node, "reset_connection_pool", "db", || pooled(&node));
    assert!(done["steps"][1]["detail"].as_str().unwrap().contains("200"), "{done}");
    assert_eq!(pooled(&node), 0);
    wait_until("the db's connections from the pool closed", Duration::from_secs(10), || {
        (established(&node) as u64) < before
    });
    assert_eq!(db_get(&node, "k"), Some(200), "fresh connections serve");
}

#[test]
fn test_reload_tls_certificate_makes_the_server_present_the_renewed_certificate() {
    let pki = Pki::new();
    let (cert_file, key_file) = (pki.dir.path().join("cert.pem"), pki.dir.path().join("key.pem"));
    // Expires in two days: under the probe's 7-day fail threshold.
    pki.write_leaf(&cert_file, &key_file, time::Duration::days(2));
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: secure\n    command: \"@warden\"\n    args: [demo, model, --listen, \"127.0.0.1:{port}\", --tls-cert, \"{cert}\", --tls-key, \"{key}\"]\n    ports: [{port}]\n    signals: {{ reload: SIGHUP }}\n    ready: {{ kind: tcp, addr: \"127.0.0.1:{port}\" }}\nprobes:\n  - name: secure-tls\n    layer: l6\n    target: secure\n    check: {{ kind: tls, addr: \"127.0.0.1:{port}\", server_name: localhost, ca_file: \"{ca}\", warn_days: 14, fail_days: 7 }}\n    interval_ms: 500\n    timeout_ms: 400\n",
        http = ports.http,
        port = ports.api,
        cert = cert_file.display(),
        key = key_file.display(),
        ca = pki.ca_file().display(),
    );
    let node = Node::start_with(&hands_off(&config), ports, &[]);
    let probe = |n: &Node| get_json(&n.url("/api/guardian/probes/secure-tls")).unwrap_or_default();
    wait_until("the tls probe fails on the expiring certificate", Duration::from_secs(30), || {
        probe(&node)["state"] == "down"
    });
    // Renewed on disk (as a certificate manager would); the server still has the old one.
    pki.write_leaf(&cert_file, &key_file, time::Duration::days(90));
    let pid = pid_of(&node, "secure");
    exercise(&node, "reload_tls_certificate", "secure", || ());
    assert_eq!(pid_of(&node, "secure"), pid, "reloaded, not restarted");
    wait_until("the tls probe passes", Duration::from_secs(20), || probe(&node)["state"] == "up");
}

// ---- database ----

#[test]
fn test_restart_database_replaces_the_db_and_keeps_its_data() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    db_put(&node, "kept", "1");
    let old = pid_of(&node, "db");
    exercise(&node, "restart_database", "db", || ());
    assert!(!alive(old));
    assert_ne!(pid_of(&node, "db"), old);
    assert_eq!(db_get(&node, "kept"), Some(200));
}

#[test]
fn test_clear_stale_db_lock_kills_the_lock_holder_so_the_db_starts() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let token = node.admin_token();
    let (ok, out) = node.cli(&["services", "stop", "db"], &[("WARDEN_TOKEN", &token)]);
    assert!(ok, "{out}");
    // A stranger holds the db's lock (util-linux flock): the db cannot start (exit 75).
    let lock = node.data_dir().join("services/db/data/LOCK");
    let holder = std::process::Command::new("flock").arg("-x").arg(&lock).args(["sleep", "600"]).spawn().unwrap();
    let mut holder = KillOnDrop(holder);
    let pid = holder.0.id();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out) = node.cli(&["services", "start", "db"], &[("WARDEN_TOKEN", &token)]);
    assert!(!ok || node.service("db").unwrap().1 != "running", "{out}");
    wait_until("db failing to start", Duration::from_secs(20), || log_of(&node, "db").contains("is locked by"));
    let done = exercise(&node, "clear_stale_db_lock", "db", || alive(pid));
    assert!(done["steps"][0]["detail"].as_str().unwrap().contains(&pid.to_string()), "names the holder: {done}");
    assert!(wait_exit(&mut holder.0, Duration::from_secs(10)).is_some(), "the holder is gone");
    wait_until("db serves", Duration::from_secs(20), || healthy(&node));
}

#[test]
fn test_snapshot_database_adds_a_copy_of_the_data() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    db_put(&node, "kept", "1");
    let snapshots = node.data_dir().join("snapshots/db");
    let count = || std::fs::read_dir(&snapshots).map(|d| d.count()).unwrap_or(0);
    exercise(&node, "snapshot_database", "db", count);
    assert_eq!(count(), 1);
    let snap = std::fs::read_dir(&snapshots).unwrap().next().unwrap().unwrap().path();
    let log = std::fs::read_to_string(snap.join("tree/data.log")).unwrap();
    assert!(log.contains("SET kept 1"), "{log}");
    wait_until("db back", Duration::from_secs(20), || db_get(&node, "kept") == Some(200));
}

// ---- resources ----

#[test]
fn test_restart_memory_hog_replaces_the_process() {
    let node = replaces_the_process("restart_memory_hog", "api");
    assert!(healthy(&node));
}

#[test]
fn test_kill_memory_balloon_kills_the_largest_process_of_the_service_only() {
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: leaky\n    command: /bin/sh\n    args: [-c, '{WARDEN} demo hog --mb 96 & exec {WARDEN} demo model --listen 127.0.0.1:{}']\n    ports: [{}]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{}/api/version' }}\n",
        ports.http, ports.api, ports.api, ports.api
    );
    let node = Node::start_with(&hands_off(&config), ports, &[]);
    wait_until("leaky running", Duration::from_secs(30), || {
        node.service("leaky").is_some_and(|(p, s)| p.is_some() && s == "running")
    });
    let hogs = || processes_exactly(&format!("{WARDEN} demo hog --mb 96"));
    wait_until("the balloon is full", Duration::from_secs(30), || {
        hogs().first().is_some_and(|p| {
            procfs::process::Process::new(*p as i32)
                .and_then(|p| p.status())
                .is_ok_and(|s| s.vmrss.unwrap_or(0) > 90 * 1024)
        })
    });
    let hog = hogs()[0];
    let main = pid_of(&node, "leaky");
    let done = exercise(&node, "kill_memory_balloon", "leaky", || alive(hog));
    assert!(done["steps"][0]["detail"].as_str().unwrap().contains(&hog.to_string()), "{done}");
    wait_until("the balloon is gone", Duration::from_secs(10), || !alive(hog));
    assert_eq!(pid_of(&node, "leaky"), main, "the service's own process stays");
}

#[test]
fn test_compress_logs_gzips_rotated_logs() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let rotated = node.data_dir().join("logs/api.log.7");
    std::fs::write(&rotated, "old line\n".repeat(1000)).unwrap();
    let hash = || std::fs::read(&rotated).ok().map(|b| hex::encode(Sha256::digest(&b)));
    exercise(&node, "compress_logs", "api", hash);
    assert!(!rotated.exists());
    let gz = node.data_dir().join("logs/api.log.7.gz");
    assert!(std::fs::metadata(&gz).unwrap().len() < 9000, "compressed");
}

#[test]
fn test_prune_temp_files_deletes_only_old_temp_files() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let tmp = node.data_dir().join("services/db/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let old = tmp.join("old.tmp");
    let fresh = tmp.join("fresh.tmp");
    std::fs::write(&old, "x".repeat(4096)).unwrap();
    std::fs::write(&fresh, "y").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
    let done = exercise(&node, "prune_temp_files", "db", || (old.exists(), fresh.exists()));
    assert!(done["steps"][0]["detail"].as_str().unwrap().contains("4096"), "names the bytes: {done}");
    assert!(!old.exists());
    assert!(fresh.exists(), "younger than an hour: kept");
}

#[test]
fn test_prune_old_snapshots_keeps_the_newest_three() {
    // The db's own retention (`snapshot.keep`) raised, so the playbook has something to do.
    let ports = Ports::fresh();
    let config = hands_off(&default_config_on(ports)).replace("keep: 3, max_mb: 64", "keep: 10, max_mb: 64");
    assert!(config.contains("keep: 10"), "the default node declares its snapshot retention");
    let node = Node::start_with(&config, ports, &[]);
    node.wait_ready();
    for _ in 0..4 {
        assert_eq!(run(&node, "snapshot_database", json!({"target": "db"}))["outcome"], "succeeded");
    }
    let snapshots = node.data_dir().join("snapshots/db");
    let names = || {
        let mut v: Vec<String> =
            std::fs::read_dir(&snapshots).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    let all = names();
    assert_eq!(all.len(), 4);
    exercise(&node, "prune_old_snapshots", "db", names);
    assert_eq!(names(), all[1..].to_vec(), "the oldest went");
}

#[test]
fn test_snapshots_are_pruned_to_the_services_keep_as_they_are_taken() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let snapshots = node.data_dir().join("snapshots/db");
    let mut made = Vec::new();
    for _ in 0..5 {
        let done = run(&node, "snapshot_database", json!({"target": "db"}));
        assert_eq!(done["outcome"], "succeeded", "{done}");
        made.push(std::fs::read_dir(&snapshots).unwrap().count());
    }
    assert_eq!(made, [1, 2, 3, 3, 3], "the default node keeps 3 of the db's");
}

#[test]
fn test_compact_store_shrinks_the_db_file_and_keeps_every_key() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    for i in 0..300 {
        db_put(&node, "counter", &i.to_string());
    }
    db_put(&node, "other", "x");
    let file = node.data_dir().join("services/db/data/data.log");
    let size = || std::fs::metadata(&file).unwrap().len();
    let before = size();
    exercise(&node, "compact_store", "db", || ());
    wait_until("the data file compacted", Duration::from_secs(10), || size() < before / 10);
    let v = get_json(&node.api_url("/api/items/counter")).unwrap();
    assert_eq!(v["value"], "299");
    assert_eq!(db_get(&node, "other"), Some(200));
    assert!(node.data_dir().join("snapshots/db").read_dir().unwrap().count() == 1, "snapshot taken first");
}

// ---- config and credentials ----

#[test]
fn test_rollback_config_change_writes_back_the_version_before() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let config = node.data_dir().join("services/api/api.json");
    let original = std::fs::read_to_string(&config).unwrap();
    // A change warden did not make (an operator's edit): the previous version is the one
    // vaulted when warden first saw the file.
    std::fs::write(&config, "{\"name\": \"changed\", \"greeting\": \"bye\"}\n").unwrap();
    let old = pid_of(&node, "api");
    exercise(&node, "rollback_config_change", "api", || std::fs::read_to_string(&config).unwrap());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert_ne!(pid_of(&node, "api"), old, "restarted to read it");
    assert_eq!(get_json(&node.api_url("/")).unwrap()["name"], "demo-api");
}

#[test]
fn test_reload_credentials_puts_back_the_working_token() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let creds = node.data_dir().join("services/api/credentials");
    let good = std::fs::read_to_string(&creds).unwrap();
    std::fs::write(&creds, "a-wrong-token\n").unwrap();
    wait_until("api unhealthy on the wrong token", Duration::from_secs(10), || !healthy(&node));
    exercise(&node, "reload_credentials", "api", || std::fs::read_to_string(&creds).unwrap());
    assert_eq!(std::fs::read_to_string(&creds).unwrap(), good);
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(healthy(&node));
}

// ---- model server ----

#[test]
fn test_restart_model_server_replaces_the_process() {
    replaces_the_process("restart_model_server", "model");
}

#[test]
fn test_warm_model_runs_one_generation() {
    let node = Node::start_default_hands_off();
    node.wait_ready();
    let generations = |n: &Node| log_of(n, "model").matches("generate").count();
    let done = exercise(&node, "warm_model", "model", || generations(&node));
    assert!(done["steps"][0]["detail"].as_str().unwrap().contains("200"), "the pull: {done}");
    assert!(done["steps"][1]["detail"].as_str().unwrap().contains("200"), "the generation: {done}");
}
