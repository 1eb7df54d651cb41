//! The ten failure modes, one scenario each: a node starts, the chaos harness makes the
//! real fault from outside (`warden chaos inject`, the node's addresses from its config),
//! and the scenario checks that the mode's detector fired, which playbook the diagnosis
//! chose, that the gatekeeper allowed its steps and the trail has their outcomes, that the
//! harness's own checks saw the service restored, and that the incident's MTTR is stored.
//!
//! Each scenario fails with healing off: `test_with_healing_off_a_frozen_database_stays_down`
//! shows it once (the same fault, `healing.enabled: false`: detected, not repaired).
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::*;

/// `warden chaos inject FAULT ARGS --json` against `node`: the harness's report.
fn inject(node: &Node, fault: &str, args: &[&str]) -> Value {
    let mut all = vec!["chaos", "inject", fault, "--json", "--verify-secs", "60"];
    all.extend_from_slice(args);
    let (ok, out) = node.cli(&all, &[]);
    let report: Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from `warden chaos inject {fault}`: {out}"));
    assert!(ok && report["restored"] == true, "not restored by the harness's count: {out}\n{}", node.stderr());
    report
}

/// The incidents of `mode`, newest first.
fn incidents(node: &Node, mode: &str) -> Vec<Value> {
    get_json(&node.url(&format!("/api/incidents?mode={mode}")))
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
}

/// After an injection of `mode`: exactly one incident, resolved, first tried `playbook`,
/// its MTTR stored; the gatekeeper's allow decisions and the outcomes of its run's steps in
/// the audit trail. The incident.
fn assert_healed(node: &Node, mode: &str, playbook: &str) -> Value {
    let mut found = Vec::new();
    wait_until(&format!("a resolved {mode} incident"), Duration::from_secs(30), || {
        found = incidents(node, mode);
        found.iter().any(|i| i["status"] == "resolved")
    });
    assert_eq!(found.len(), 1, "one fault, one incident: {found:?}");
    let incident = &found[0];
    assert_eq!(incident["attempts"][0]["playbook"], playbook, "the diagnosis chose: {incident}");
    assert!(incident["mttr"]["ms"].as_u64().is_some(), "MTTR stored: {incident}");
    assert!(incident["mttr"]["from_detection_ms"].as_u64().is_some(), "{incident}");
    assert!(matches!(incident["mttr"]["from"].as_str(), Some("onset" | "detection")), "{incident}");
    let run_id = incident["attempts"][0]["run_id"].as_u64().unwrap();
    let detail = get_json(&node.url(&format!("/api/incidents/{}", incident["id"]))).unwrap();
    assert_eq!(detail["runs"][0]["run_id"], run_id, "{detail}");
    // The trail is read until the run's allow and outcome are in it (a bounded wait: a
    // loaded machine may answer a large page slowly); a failed read is kept for the message.
    let mut of_run: Vec<Value> = Vec::new();
    let mut last_error = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match slow_http().get(node.url("/api/governance/audit?limit=1000")).send().and_then(|r| r.json::<Value>()) {
            Ok(trail) => {
                of_run = trail["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["run_id"].as_u64() == Some(run_id))
                    .cloned()
                    .collect();
                last_error.clear();
            }
            Err(e) => last_error = e.to_string(),
        }
        let complete = of_run.iter().any(|e| e["kind"] == "decision" && e["decision"] == "allow")
            && of_run.iter().any(|e| e["kind"] == "outcome" && e["outcome"] == "succeeded");
        if complete || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(last_error.is_empty(), "the trail could not be read: {last_error}");
    assert!(
        of_run.iter().any(|e| e["kind"] == "decision" && e["decision"] == "allow"),
        "the gatekeeper's allow is in the trail: {of_run:?}"
    );
    assert!(
        of_run.iter().any(|e| e["kind"] == "outcome" && e["outcome"] == "succeeded"),
        "the step's outcome is in the trail: {of_run:?}"
    );
    assert!(of_run.iter().all(|e| e["incident_id"] == incident["id"]), "linked to the incident: {of_run:?}");
    incident.clone()
}

fn default_node() -> Node {
    let node = Node::start_default(&[]);
    node.wait_ready();
    node
}

/// The firing alerts a webhook receiver got, as `target/probe`.
fn firing(rx: &Receiver) -> Vec<String> {
    rx.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["status"] == "firing")
        .map(|a| {
            format!(
                "{}/{}",
                a["labels"]["target"].as_str().unwrap_or("?"),
                a["labels"]["probe"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The default node on fresh ports, its alerts posted to `rx`; `healing` is the text of
/// extra keys under `healing:`.
fn node_alerting_to(rx: &Receiver, healing: &str) -> Node {
    let ports = Ports::fresh();
    let config = format!(
        "{}\nalerts:\n  webhooks:\n    - url: {}\n      timeout_ms: 2000\n",
        default_config_on(ports).replace("\nhealing:\n", &format!("\nhealing:\n{healing}")),
        rx.url("/hook")
    );
    let node = Node::start_with(&config, ports, &[]);
    node.wait_ready();
    node
}

#[test]
fn test_1_a_frozen_database_is_restarted_at_the_database_not_at_its_dependents() {
    let rx = Receiver::start(0);
    let node = node_alerting_to(&rx, "");
    let api_pid = node.service("api").unwrap().0;
    let report = inject(&node, "db-freeze", &[]);
    assert_eq!(report["mode"], "database_unavailable");
    let incident = assert_healed(&node, "database_unavailable", "restart_database");
    assert_eq!(incident["service"], "db");
    assert_eq!(incident["cause"], "hung", "{incident}");
    assert_eq!(node.service("api").unwrap().0, api_pid, "the api was not restarted for the db's fault");
    assert!(incidents(&node, "api_timeout").is_empty(), "no incident at the dependent");
    // The probe alerts of the db and of the api that depends on it waited for the repair,
    // which fixed it: nobody was paged (past the 2 s group wait, and a tick).
    std::thread::sleep(Duration::from_secs(4));
    assert!(firing(&rx).is_empty(), "no page for a fault repaired in time: {:?}", firing(&rx));
    let log = node.stderr();
    assert!(
        log.contains("its held alert is dropped") || log.contains("recovered within its group wait"),
        "the probes' failures were seen and held: {log}"
    );
}

#[test]
fn test_1_a_corrupt_database_file_is_restored_from_its_snapshot() {
    let node = default_node();
    let put = http().put(node.api_url("/api/items/greeting")).body("hello").send().unwrap();
    assert!(put.status().is_success(), "{put:?}");
    // Yesterday's backup, as an operator's nightly job would have taken it.
    let (ok, out) = node.cli(
        &["playbooks", "run", "snapshot_database", "--target", "db", "--reason", "nightly backup"],
        &[("WARDEN_TOKEN", &node.admin_token())],
    );
    assert!(ok, "{out}");
    node.wait_ready();
    inject(&node, "db-corrupt", &[]);
    let incident = assert_healed(&node, "database_unavailable", "restore_database_snapshot");
    assert_eq!(incident["cause"], "corrupt", "{incident}");
    let got = http().get(node.api_url("/api/items/greeting")).send().unwrap().text().unwrap();
    assert!(got.contains("hello"), "the snapshot's data is back: {got}");
    assert!(
        !incident["plan"].as_array().unwrap().iter().any(|p| p == "restart_database"),
        "a restart cannot fix bad data"
    );
}

#[test]
fn test_2_a_stranger_on_the_port_is_asked_to_leave_within_a_second_of_being_seen() {
    let node = default_node();
    let report = inject(&node, "port-hold", &["--secs", "20"]);
    assert!(
        report["restored_after_ms"].as_u64().unwrap() < 10_000,
        "restored long before the 20 s hold ends: {report}"
    );
    let incident = assert_healed(&node, "port_in_use", "free_port_foreign");
    assert!(incident["evidence"].as_str().unwrap().contains("held by pid"), "names the holder: {incident}");
    let (_, state) = node.service("api").unwrap();
    assert_eq!(state, "running");
}

#[test]
fn test_3_a_boot_past_its_deadline_gets_a_longer_deadline() {
    let ports = Ports::fresh();
    let config = default_config_on(ports)
        .replace("/health\" }\n    startup_deadline_ms: 30000", "/health\" }\n    startup_deadline_ms: 2000");
    assert!(config.contains("startup_deadline_ms: 2000"));
    let node = Node::start_with(&config, ports, &[]);
    node.wait_ready();
    let env_file = node.data_dir().join("services/api/env");
    let env_before = std::fs::read_to_string(&env_file).unwrap();
    // The boot is starved of CPU past the 2 s deadline; nothing of its config is touched.
    inject(&node, "slow-boot", &["--secs", "3"]);
    let incident = assert_healed(&node, "slow_boot", "extend_startup_deadline");
    assert_eq!(incident["service"], "api");
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), env_before, "its env file as it was");
    let overrides = get_json(&node.url("/api/guardian/overrides")).unwrap();
    assert!(overrides.to_string().contains("startup_deadline"), "{overrides}");
}

#[test]
fn test_4_memory_growing_past_the_limit_is_found_and_the_service_restarted() {
    let node = default_node();
    if !node_has_cgroups(&node) {
        eprintln!("skipped: no memory cgroup here for a limit to be real");
        return;
    }
    let report = inject(&node, "memory-growth", &[]);
    assert_eq!(report["mode"], "out_of_memory");
    let incident = assert_healed(&node, "out_of_memory", "restart_memory_hog");
    assert!(incident["evidence"].as_str().unwrap().contains("memory limit"), "{incident}");
}

#[test]
fn test_5_a_full_volume_under_the_database_is_freed_by_pruning_what_fills_it() {
    let ports = Ports::fresh();
    let mut node = Node::prepare(&default_config_on(ports), ports);
    // The db's folder on a small volume of its own, as a real deployment mounts one.
    let volume = node.data_dir().join("services/db");
    std::fs::create_dir_all(&volume).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&volume).output().unwrap();
    if !mounted.status.success() {
        eprintln!("skipped: cannot mount a tmpfs here: {}", String::from_utf8_lossy(&mounted.stderr));
        return;
    }
    let _unmount = Unmount(volume.clone());
    node.spawn(&[]);
    node.wait_ready();
    inject(&node, "disk-full", &[]);
    let incident = assert_healed(&node, "disk_full", "prune_temp_files");
    assert_eq!((incident["service"].as_str(), incident["cause"].as_str()), (Some("db"), Some("disk_full_of_temp")));
    node.stop();
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

#[test]
fn test_6_a_cut_link_to_the_database_fails_the_api_over_to_its_standby() {
    a_link_fault_fails_the_api_over_to_its_standby("link-down");
}

#[test]
fn test_6_a_link_that_is_up_and_carries_nothing_fails_the_api_over_to_its_standby() {
    // Every packet out of the host's end dropped (nftables): the carrier is there, L2
    // passes, the path is gone. The same repair as a cut, found at L3 instead of L2.
    ensure_nft();
    a_link_fault_fails_the_api_over_to_its_standby("link-loss");
}

/// The db across a link (a network namespace and a veth pair), its standby on this side;
/// `fault` made on the link: the api is failed over to the standby, and the incident ends
/// once the link carries again.
fn a_link_fault_fails_the_api_over_to_its_standby(fault: &str) {
    ensure_iproute2();
    let ports = Ports::fresh();
    let k = ports.http % 250 + 1;
    let ns = format!("wdh{}", ports.http);
    let added = Command::new("ip").args(["netns", "add", &ns]).output().unwrap();
    if !added.status.success() {
        eprintln!("skipped: this machine refuses network namespaces: {}", String::from_utf8_lossy(&added.stderr));
        return;
    }
    let _ns = Netns(ns.clone(), format!("10.253.{}.0/24", ports.http % 250 + 1));
    let (host_end, ns_end) = (format!("wvh{k}"), format!("wvn{k}"));
    let (host_ip, db_ip) = (format!("10.253.{k}.1"), format!("10.253.{k}.2"));
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end, "netns", &ns]);
    ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_end]);
    ip(&["link", "set", &host_end, "up"]);
    ip(&["-n", &ns, "addr", "add", &format!("{db_ip}/30"), "dev", &ns_end]);
    ip(&["-n", &ns, "link", "set", &ns_end, "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    // The db's network is reached through that link only (no default route leads there):
    // with the link down, the path is gone.
    ip(&["route", "add", "unreachable", &format!("10.253.{k}.0/24"), "metric", "4000"]);
    // The db across the link (in the namespace), its standby here; the api's upstream db
    // names both; its L3 probe watches the path to the one it uses.
    let standby = free_port();
    let db = format!("{db_ip}:{}", ports.db);
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: db\n    command: ip\n    args: [netns, exec, {ns}, {WARDEN}, demo, db, --listen, '{db}', --data-dir, '${{data_dir}}/services/db/data', --password-file, '${{data_dir}}/services/db/password']\n    ready: {{ kind: tcp, addr: '{db}' }}\n    files:\n      - path: '${{data_dir}}/services/db/password'\n        content: \"t0k3n\\n\"\n  - name: dbstandby\n    command: '@warden'\n    args: [demo, db, --listen, '127.0.0.1:{standby}', --data-dir, '${{data_dir}}/services/dbstandby/data', --password-file, '${{data_dir}}/services/db/password']\n    ports: [{standby}]\n    depends_on: [db]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{standby}' }}\n  - name: model\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{model}']\n    ports: [{model}]\n  - name: api\n    command: '@warden'\n    args: [demo, api, --listen, '127.0.0.1:{api}', --db, '{db}', --model-url, 'http://127.0.0.1:{model}', --config, '${{data_dir}}/services/api/api.json', --credentials, '${{data_dir}}/services/db/password']\n    ports: [{api}]\n    depends_on: [db, model]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{api}/health' }}\n    upstreams:\n      - {{ name: db, address: '{db}', fallbacks: ['127.0.0.1:{standby}'] }}\n    files:\n      - path: '${{data_dir}}/services/api/api.json'\n        content: '{{\"name\": \"t\"}}'\nprobes:\n  - name: api-health\n    layer: l7\n    target: api\n    check: {{ kind: http, url: 'http://127.0.0.1:{api}/health' }}\n    interval_ms: 300\n    timeout_ms: 250\n  - name: api-db-route\n    layer: l3\n    target: api\n    check: {{ kind: route, host: '{db_ip}', port: {dbport} }}\n    interval_ms: 200\n    timeout_ms: 150\n    failure_threshold: 2\n",
        http = ports.http,
        model = ports.model,
        api = ports.api,
        dbport = ports.db,
    );
    let node = Node::start_with(&config, ports, &[]);
    node.wait_ready();
    inject(&node, fault, &["--interface", &host_end, "--target", "api"]);
    let incident = assert_healed(&node, "network_unreachable", "failover_upstream");
    assert_eq!(incident["service"], "api");
    let overrides = get_json(&node.url("/api/guardian/overrides")).unwrap();
    assert!(overrides.to_string().contains(&format!("127.0.0.1:{standby}")), "{overrides}");
}

/// A network namespace deleted when the test ends (its veth ends go with it), and the
/// route to its network.
struct Netns(String, String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        let _ = Command::new("ip").args(["route", "del", "unreachable", &self.1]).output();
    }
}

#[test]
fn test_7_a_hung_api_is_restarted() {
    let node = default_node();
    inject(&node, "api-hang", &[]);
    let incident = assert_healed(&node, "api_timeout", "restart_hung_service");
    assert_eq!(incident["service"], "api");
}

#[test]
fn test_the_harness_finds_the_data_dir_the_running_node_was_given() {
    let node = default_node();
    // No --data-dir: the config alone names another; the node says which it uses.
    let out = Command::new(WARDEN)
        .args(["chaos", "inject", "api-hang", "--json", "--verify-secs", "60", "--config"])
        .arg(node.config_path())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = text.lines().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_default();
    assert!(out.status.success() && report["restored"] == true, "{text}{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn test_8_a_deleted_config_file_is_restored_from_the_vault() {
    let node = default_node();
    let file = node.data_dir().join("services/api/api.json");
    let before = std::fs::read(&file).unwrap();
    inject(&node, "config-delete", &[]);
    assert_healed(&node, "missing_config", "restore_config_file");
    assert_eq!(std::fs::read(&file).unwrap(), before, "its last known version, byte for byte");
}

#[test]
fn test_9_invalidated_credentials_are_put_back() {
    let node = default_node();
    let file = node.data_dir().join("services/api/credentials");
    let good = std::fs::read_to_string(&file).unwrap();
    inject(&node, "bad-credentials", &[]);
    let incident = assert_healed(&node, "invalid_credentials", "reload_credentials");
    assert_eq!(incident["cause"], "credentials_refused");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), good);
}

#[test]
fn test_10_a_hung_model_server_is_restarted() {
    let node = default_node();
    inject(&node, "model-hang", &[]);
    let incident = assert_healed(&node, "model_server_down", "restart_model_server");
    assert_eq!(incident["service"], "model");
}

#[test]
fn test_with_healing_off_a_frozen_database_stays_down() {
    // The control for every scenario above: the same fault, repair turned off. The
    // detector still opens the incident (and says a person must look); nothing heals it.
    let rx = Receiver::start(0);
    let node = node_alerting_to(&rx, "  enabled: false\n");
    let (ok, out) = node.cli(&["chaos", "inject", "db-freeze", "--json", "--verify-secs", "8"], &[]);
    assert!(!ok, "not restored without healing: {out}");
    let report: Value = out.lines().find_map(|l| serde_json::from_str(l).ok()).expect("report");
    assert_eq!(report["restored"], false, "{report}");
    let open = incidents(&node, "database_unavailable");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["status"], "open");
    assert!(open[0]["attempts"].as_array().unwrap().is_empty(), "no playbook ran: {}", open[0]);
    assert!(open[0]["detail"].as_str().unwrap().contains("automatic repair is off"), "{}", open[0]);
    // No repair runs, so nothing holds the alerts back: a person is paged.
    wait_until("the db's probe alert at the webhook", Duration::from_secs(20), || {
        firing(&rx).iter().any(|a| a.starts_with("db/"))
    });
    // Leave no stopped process behind.
    if let Some((Some(pid), _)) = node.service("db") {
        kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn test_a_fault_that_cannot_be_made_here_is_refused_and_changes_nothing() {
    let node = default_node();
    let before = std::fs::read_dir(node.data_dir().join("services/api")).unwrap().count();
    let (ok, out) = node.cli(&["chaos", "inject", "config-delete", "--target", "nosuch"], &[]);
    assert!(!ok && out.contains("no service `nosuch`"), "{out}");
    let (ok, out) = node.cli(&["chaos", "inject", "disk-full"], &[]);
    assert!(!ok && out.contains("small volume"), "the data dir is no small volume: {out}");
    let (ok, out) = node.cli(&["chaos", "inject", "link-down", "--interface", "lo"], &[]);
    assert!(!ok && out.contains("cannot be made here"), "{out}");
    assert_eq!(std::fs::read_dir(node.data_dir().join("services/api")).unwrap().count(), before);
    node.wait_ready();
    assert!(get_json(&node.url("/api/incidents")).unwrap()["incidents"].as_array().unwrap().is_empty());
}

#[test]
fn test_a_fault_its_checks_never_see_is_reported_as_not_made_not_as_restored() {
    // A link no service of the node uses, taken down: the target's checks pass at the
    // first look. The harness must not call that a restore in no time.
    ensure_iproute2();
    let node = default_node();
    let dummy = format!("wnm{}", node.ports.http);
    // A veth pair (its other end goes with it): dummy links need a module many kernels lack.
    let peer = format!("wnp{}", node.ports.http);
    let added =
        Command::new("ip").args(["link", "add", &dummy, "type", "veth", "peer", "name", &peer]).output().unwrap();
    assert!(added.status.success(), "ip link add: {}", String::from_utf8_lossy(&added.stderr));
    let _link = Link(dummy.clone());
    let _ = Command::new("ip").args(["link", "set", &dummy, "up"]).output();
    let _ = Command::new("ip").args(["link", "set", &peer, "up"]).output();
    let (ok, out) = node.cli(
        &["chaos", "inject", "link-down", "--interface", &dummy, "--secs", "1", "--json", "--verify-secs", "10"],
        &[],
    );
    assert!(!ok, "{out}");
    let report: Value = out.lines().find_map(|l| serde_json::from_str(l).ok()).expect("report");
    assert_eq!(report["restored"], false, "{report}");
    assert!(report["error"].as_str().unwrap().starts_with("not made"), "{report}");
}

/// A link deleted when the test ends.
struct Link(String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[test]
fn test_a_crash_loop_caused_by_a_stopped_dependency_waits_for_it_instead_of_quarantine() {
    // A worker that exits when its dependency does not answer, killed while the dependency
    // is stopped for maintenance: it is not restarted into the same failure (and not
    // quarantined); it waits, budget untouched, and starts once the dependency runs.
    let ports = Ports::fresh();
    let dep_port = free_port();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  \
         - name: dep\n    command: \"@warden\"\n    args: [demo, model, --listen, '127.0.0.1:{dep_port}']\n    \
         ports: [{dep_port}]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{dep_port}' }}\n  \
         - name: worker\n    command: /bin/bash\n    \
         args: [-c, 'exec 3<>/dev/tcp/127.0.0.1/{dep_port} && exec sleep 600']\n    depends_on: [dep]\n    \
         restart: {{ backoff_initial_ms: 10, backoff_max_ms: 50, max_restarts: 3, window_ms: 60000 }}\n",
        http = ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    let running = |name: &str| matches!(node.service(name), Some((Some(_), ref s)) if s == "running");
    wait_until("both running", Duration::from_secs(30), || running("dep") && running("worker"));
    // Running is not yet connected: the worker holds its dependency's connection once bash
    // has replaced itself with `sleep`. Stopping `dep` before that would fail its connect.
    wait_until("the worker connected to its dependency", Duration::from_secs(20), || {
        node.service("worker")
            .and_then(|(pid, _)| pid)
            .is_some_and(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep"))
    });
    let resp = node.post_as_admin("/api/services/dep/stop").json(&serde_json::json!({"reason": "maintenance"})).send();
    assert_eq!(resp.unwrap().status().as_u16(), 200);
    let Some((Some(worker), _)) = node.service("worker") else { panic!("worker has no pid") };
    kill(worker, nix::sys::signal::Signal::SIGKILL);
    wait_until("the worker waiting for its dependency", Duration::from_secs(20), || {
        node.status().is_some_and(|s| {
            s["services"].as_array().unwrap().iter().any(|x| {
                x["name"] == "worker"
                    && x["state"] == "backoff"
                    && x["waiting_for_dependencies"].as_str().is_some_and(|w| w.contains("`dep` is stopped"))
            })
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    let status = node.status().unwrap();
    let w = status["services"].as_array().unwrap().iter().find(|x| x["name"] == "worker").unwrap().clone();
    assert_eq!(w["state"], "backoff", "waiting, not quarantined: {w}");
    assert!(w["restarts"].as_u64().unwrap() <= 1, "no budget spent on restarts that would fail: {w}");
    let resp = node.post_as_admin("/api/services/dep/start").json(&serde_json::json!({})).send();
    assert_eq!(resp.unwrap().status().as_u16(), 200);
    wait_until("worker running again", Duration::from_secs(20), || running("worker"));
    assert!(node.stderr().contains("a dependency is not running; waiting for it"), "{}", node.stderr());
}

#[test]
fn test_a_service_quarantined_for_a_dependency_not_serving_is_retried_once_it_serves() {
    // The dependency runs but does not serve (its port check fails): the worker that needs
    // it crash-loops into quarantine. Once the dependency serves again, warden releases the
    // worker by itself, through governance, on the trail as the system.
    let ports = Ports::fresh();
    let dep_port = free_port();
    let mut listener = Some(std::net::TcpListener::bind(("127.0.0.1", dep_port)).unwrap());
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  \
         - name: dep\n    command: /bin/sh\n    args: [-c, 'exec sleep 600']\n  \
         - name: worker\n    command: /bin/bash\n    \
         args: [-c, 'exec 3<>/dev/tcp/127.0.0.1/{dep_port} && exec sleep 600']\n    depends_on: [dep]\n    \
         restart: {{ backoff_initial_ms: 10, backoff_max_ms: 50, max_restarts: 3, window_ms: 60000 }}\n\
         probes:\n  - name: dep-port\n    layer: l4\n    target: dep\n    \
         check: {{ kind: tcp, addr: '127.0.0.1:{dep_port}', owner: false }}\n    interval_ms: 200\n    timeout_ms: 150\n",
        http = ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    let running = |name: &str| matches!(node.service(name), Some((Some(_), ref s)) if s == "running");
    wait_until("both running", Duration::from_secs(30), || running("dep") && running("worker"));

    drop(listener.take());
    wait_until("the dependency's check failing", Duration::from_secs(20), || {
        node.status().is_some_and(|s| s["probes"][0]["state"] == "down")
    });
    // Killed while its dependency does not serve, it cannot come back: every restart exits.
    wait_until("worker quarantined", Duration::from_secs(20), || match node.service("worker") {
        Some((Some(pid), ref s)) if s == "running" => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            false
        }
        Some((_, ref s)) => s == "quarantined",
        None => false,
    });
    wait_until("the wait said", Duration::from_secs(10), || {
        node.stderr().contains("quarantined; released once its cause clears")
    });
    assert!(node.stderr().contains("dependency `dep` is not serving"), "{}", node.stderr());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(node.service("worker").unwrap().1, "quarantined", "not released while its dependency does not serve");

    listener = Some(std::net::TcpListener::bind(("127.0.0.1", dep_port)).unwrap());
    wait_until("worker released and running", Duration::from_secs(30), || running("worker"));
    wait_until("the release said", Duration::from_secs(10), || {
        node.stderr().contains("quarantine lifted: its cause cleared")
    });
    let trail = get_json(&node.url("/api/governance/audit?action=release_service")).unwrap();
    let entries = trail["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["kind"] == "decision" && e["actor"] == "system"),
        "the release was a governed decision of the system: {trail}"
    );
    assert!(entries.iter().any(|e| e["kind"] == "outcome"), "{trail}");
    drop(listener);
}
