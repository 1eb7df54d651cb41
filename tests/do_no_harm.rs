//! First, do no harm: repairs never turn a degraded service into an outage.
//!
//! Each test makes a real fault from outside and checks what warden did *not* do: restart,
//! signal, kill or quarantine a service whose own checks pass; open two incidents for one
//! fault; resolve an incident while its service keeps dying; act past a pause, maintenance
//! or an open breaker; lose its healing to an audit chain of another data dir.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn incidents(node: &Node) -> Vec<Value> {
    get_json(&node.url("/api/incidents?limit=1000"))
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
}

/// Every automatic decision on the trail for `action` on `target` that was allowed.
fn allowed(node: &Node, action: &str, target: &str) -> Vec<Value> {
    let v = get_json(&node.url(&format!("/api/governance/audit?action={action}&target={target}&limit=1000")))
        .unwrap_or_default();
    v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "decision" && e["decision"] == "allow" && e["actor"] == "system")
        .cloned()
        .collect()
}

fn pid_of(node: &Node, service: &str) -> Option<u32> {
    node.service(service).and_then(|(pid, _)| pid)
}

/// A network namespace with one end of a veth pair, deleted when the test ends (its end
/// of the link goes with it; the host end follows), and the route to its network.
struct Netns {
    ns: String,
    host_end: String,
    ns_end: String,
    host_ip: String,
    ns_ip: String,
    subnet: String,
}

impl Netns {
    /// Made with `tag` in its names (unique per test); `None` where namespaces are refused.
    fn make(tag: u16) -> Option<Self> {
        ensure_iproute2();
        let k = tag % 250 + 1;
        let ns = format!("wdnh{tag}");
        let added = Command::new("ip").args(["netns", "add", &ns]).output().unwrap();
        if !added.status.success() {
            eprintln!("skipped: this machine refuses network namespaces: {}", String::from_utf8_lossy(&added.stderr));
            return None;
        }
        let n = Self {
            host_end: format!("wnh{k}"),
            ns_end: format!("wnn{k}"),
            host_ip: format!("10.252.{k}.1"),
            ns_ip: format!("10.252.{k}.2"),
            subnet: format!("10.252.{k}.0/24"),
            ns,
        };
        ip(&["link", "add", &n.host_end, "type", "veth", "peer", "name", &n.ns_end, "netns", &n.ns]);
        ip(&["addr", "add", &format!("{}/30", n.host_ip), "dev", &n.host_end]);
        ip(&["link", "set", &n.host_end, "up"]);
        ip(&["-n", &n.ns, "addr", "add", &format!("{}/30", n.ns_ip), "dev", &n.ns_end]);
        ip(&["-n", &n.ns, "link", "set", &n.ns_end, "up"]);
        ip(&["-n", &n.ns, "link", "set", "lo", "up"]);
        Some(n)
    }

    /// Cuts the link at the far end: the host's end loses its carrier, packets to the far
    /// side go nowhere (a connect hangs: silence, not a refusal).
    fn cut(&self) {
        ip(&["-n", &self.ns, "link", "set", &self.ns_end, "down"]);
    }

    fn mend(&self) {
        ip(&["-n", &self.ns, "link", "set", &self.ns_end, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_end]).output();
        let _ = Command::new("ip").args(["route", "del", "unreachable", &self.subnet]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The default node's api with its database across `link` (in the namespace) and a standby
/// database here: the api's upstream `db` names both. The api's probes: its health every
/// 100 ms with an 80 ms timeout (the api gives up on its db after 100 ms, so a db it cannot
/// reach makes it look hung), and the path to the database it uses (the link, the route),
/// slower: the upper failure is seen first.
fn node_behind_a_link(link: &Netns, ports: Ports) -> String {
    let standby = free_port();
    let db = format!("{}:{}", link.ns_ip, ports.db);
    format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: db\n    command: ip\n    args: [netns, exec, {ns}, {WARDEN}, demo, db, --listen, '{db}', --data-dir, '${{data_dir}}/services/db/data', --password-file, '${{data_dir}}/services/db/password']\n    ready: {{ kind: tcp, addr: '{db}' }}\n    files:\n      - path: '${{data_dir}}/services/db/password'\n        content: \"t0k3n\\n\"\n  - name: dbstandby\n    command: '@warden'\n    args: [demo, db, --listen, '127.0.0.1:{standby}', --data-dir, '${{data_dir}}/services/dbstandby/data', --password-file, '${{data_dir}}/services/db/password']\n    ports: [{standby}]\n    depends_on: [db]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{standby}' }}\n  - name: model\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{model}']\n    ports: [{model}]\n  - name: api\n    command: '@warden'\n    args: [demo, api, --listen, '127.0.0.1:{api}', --db, '{db}', --model-url, 'http://127.0.0.1:{model}', --config, '${{data_dir}}/services/api/api.json', --credentials, '${{data_dir}}/services/db/password']\n    ports: [{api}]\n    depends_on: [db, model]\n    signals: {{ reload: SIGHUP }}\n    ready: {{ kind: http, url: 'http://127.0.0.1:{api}/health' }}\n    upstreams:\n      - {{ name: db, address: '{db}', fallbacks: ['127.0.0.1:{standby}'] }}\n    files:\n      - path: '${{data_dir}}/services/api/api.json'\n        content: '{{\"name\": \"t\"}}'\nprobes:\n  - name: api-health\n    layer: l7\n    target: api\n    check: {{ kind: http, url: 'http://127.0.0.1:{api}/health' }}\n    interval_ms: 100\n    timeout_ms: 80\n    failure_threshold: 2\n  - name: api-link\n    layer: l2\n    target: api\n    check: {{ kind: link, interface: {host_end} }}\n    interval_ms: 1500\n    timeout_ms: 500\n    failure_threshold: 2\n  - name: api-db-route\n    layer: l3\n    target: api\n    check: {{ kind: route, host: '{ns_ip}', port: {dbport} }}\n    interval_ms: 1500\n    timeout_ms: 500\n    failure_threshold: 2\n",
        http = ports.http,
        ns = link.ns,
        model = ports.model,
        api = ports.api,
        dbport = ports.db,
        host_end = link.host_end,
        ns_ip = link.ns_ip,
    )
}

#[test]
fn test_a_cut_link_is_failed_over_then_mitigated_with_no_harm_to_the_app_and_one_incident() {
    // The api's own health fails first (its db hangs across the cut link), its path probes
    // later: one incident, the network's; the failover serves again; then nothing more is
    // done to the api (no restart, no signal, no quarantine) while the link stays down, and
    // the incident resolves when the link returns.
    let ports = Ports::fresh();
    let Some(link) = Netns::make(ports.http) else { return };
    let node = Node::start_with(&node_behind_a_link(&link, ports), ports, &[]);
    node.wait_ready();
    link.cut();
    let mut found = Vec::new();
    wait_until("the incident mitigated by the failover", Duration::from_secs(60), || {
        found = incidents(&node);
        found.iter().any(|i| i["mode"] == "network_unreachable" && i["status"] == "mitigated")
    });
    let net = found.iter().find(|i| i["mode"] == "network_unreachable").unwrap().clone();
    assert_eq!(net["playbooks_tried"], json!(["failover_upstream"]), "{net}");
    assert!(net["still_failing"].to_string().contains("api-"), "says what still fails: {net}");
    // One fault, one incident: the api's hang is seen first (its health gives up on the db
    // in 100 ms, past the probe's 80 ms). Its incident, opened before the path's probes
    // failed, is absorbed into the network's (its restart was held meanwhile); or, when a
    // path probe had failed a check already, the hang was held back until that decided.
    let upper: Vec<&Value> = found.iter().filter(|i| i["id"] != net["id"]).collect();
    let log = node.stderr();
    assert!(
        upper.iter().any(|i| i["mode"] == "api_timeout") || log.contains("failure held back"),
        "the upper failure was seen first: {found:?}\n{log}"
    );
    assert!(log.contains("explained by network_unreachable on `api`"), "{log}");
    for i in upper {
        assert_eq!(i["status"], "absorbed", "one fault, one incident: {found:?}");
        assert_eq!(i["absorbed_by"], net["id"], "{i}");
    }
    let healthy = |n: &Node| status_code(&n.api_url("/health")) == Some(200);
    assert!(healthy(&node), "served by the standby");
    let after_failover = pid_of(&node, "api").unwrap();
    let restarts_before = allowed(&node, "restart_service", "api").len();
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(pid_of(&node, "api"), Some(after_failover), "no restart (or death by a signal) of a healthy api");
    assert_eq!(allowed(&node, "restart_service", "api").len(), restarts_before, "no restart was even allowed");
    assert!(allowed(&node, "signal_service", "api").is_empty(), "no signal to the api");
    assert!(allowed(&node, "quarantine_service", "api").is_empty(), "no quarantine");
    assert!(healthy(&node));
    let now = incidents(&node);
    assert_eq!(now.iter().filter(|i| i["status"] != "absorbed").count(), 1, "still one incident: {now:?}");
    link.mend();
    wait_until("the incident resolved once the link is back", Duration::from_secs(30), || {
        incidents(&node).iter().any(|i| i["id"] == net["id"] && i["status"] == "resolved")
    });
    let resolved = incidents(&node).into_iter().find(|i| i["id"] == net["id"]).unwrap();
    assert!(resolved["mttr"]["ms"].as_u64().is_some(), "MTTR to the mitigation: {resolved}");
    assert_eq!(pid_of(&node, "api"), Some(after_failover), "kept on the standby: no fail-back restart");
}

#[test]
fn test_a_healthy_service_whose_l3_probe_fails_is_not_touched() {
    // A plain Python HTTP server that handles no signal, with a route probe to an address
    // that never answers: the network finding has no playbook that fits (no upstreams to
    // fail over, no reload signal to resolve names again), so a person is asked, and the
    // server is left alone.
    // A second server, `hup`, says it handles SIGHUP (and does): `reresolve_dns` fits it,
    // but its own check passes at the moment of decision, so the harm guard sends nothing
    // and the incident is mitigated (what still fails is the route) instead.
    let ports = Ports::fresh();
    let hup_port = free_port();
    let hup_server = format!(
        "import signal, http.server as h; signal.signal(signal.SIGHUP, lambda *a: None); h.ThreadingHTTPServer(('127.0.0.1', {hup_port}), h.SimpleHTTPRequestHandler).serve_forever()"
    );
    let probes = |name: &str, port: u16| {
        format!(
            "  - name: {name}-http\n    layer: l7\n    target: {name}\n    check: {{ kind: http, url: 'http://127.0.0.1:{port}/' }}\n    interval_ms: 300\n    timeout_ms: 250\n  - name: {name}-route\n    layer: l3\n    target: {name}\n    check: {{ kind: route, host: 198.51.100.7, port: 9 }}\n    interval_ms: 300\n    timeout_ms: 250\n    failure_threshold: 2\n"
        )
    };
    // Both fail their route probe at once (one cause): the breaker would hold both, which
    // is not what this test is about.
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: web\n    command: python3\n    args: [-m, http.server, '{port}', --bind, 127.0.0.1]\n    ports: [{port}]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{port}' }}\n  - name: hup\n    command: python3\n    args: [-c, \"{hup_server}\"]\n    ports: [{hup_port}]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{hup_port}' }}\n    signals: {{ reload: SIGHUP }}\nprobes:\n{}{}healing:\n  max_unhealthy: off\n",
        probes("web", ports.api),
        probes("hup", hup_port),
        http = ports.http,
        port = ports.api,
    );
    let node = Node::start_with(&config, ports, &[]);
    let running = |name: &str| matches!(node.service(name), Some((Some(_), ref s)) if s == "running");
    wait_until("both running", Duration::from_secs(30), || running("web") && running("hup"));
    let (pid, hup_pid) = (pid_of(&node, "web").unwrap(), pid_of(&node, "hup").unwrap());
    let of = |name: &str| -> Option<Value> {
        incidents(&node).into_iter().find(|i| i["mode"] == "network_unreachable" && i["service"] == name)
    };
    wait_until("both network incidents", Duration::from_secs(30), || of("web").is_some() && of("hup").is_some());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        assert_eq!(pid_of(&node, "web"), Some(pid), "the healthy server was not restarted or killed");
        assert_eq!(pid_of(&node, "hup"), Some(hup_pid), "nor the one that handles SIGHUP");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(status_code(&format!("http://127.0.0.1:{}/", ports.api)), Some(200));
    assert_eq!(status_code(&format!("http://127.0.0.1:{hup_port}/")), Some(200));
    let all = incidents(&node);
    assert_eq!(all.len(), 2, "one incident each: {all:?}");
    let i = of("web").unwrap();
    assert_eq!(i["status"], "failed", "a person must look: {i}");
    let left_out = i["not_applicable"].to_string();
    assert!(left_out.contains("reresolve_dns") && left_out.contains("SIGHUP"), "{i}");
    assert!(left_out.contains("failover_upstream") && left_out.contains("upstreams"), "{i}");
    let h = of("hup").unwrap();
    assert_eq!(h["status"], "mitigated", "it serves; the route still fails: {h}");
    assert!(h["still_failing"].to_string().contains("hup-route"), "{h}");
    assert!(!h["not_applicable"].to_string().contains("reresolve_dns"), "it fits `hup`: {h}");
    for target in ["web", "hup"] {
        for action in ["signal_service", "restart_service", "quarantine_service", "kill_process"] {
            assert!(allowed(&node, action, target).is_empty(), "no {action} on {target}");
        }
    }
}

#[test]
fn test_a_users_own_config_without_a_policy_runs_in_production_and_asks_before_it_kills() {
    // The user's own config names no policy: production mode. A stranger holds the
    // service's port; freeing it means killing a process warden did not start (tier 3),
    // which waits for an approver, and the request names the stranger's pid.
    let ports = Ports::fresh();
    let port = ports.api;
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: web\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{port}']\n    ports: [{port}]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{port}/api/version' }}\n",
        ports.http
    );
    let mut node = Node::prepare_as_written(&config, ports);
    let (ok, out) = node.cli(&["check-config"], &[]);
    assert!(ok && out.contains("production mode"), "{out}");
    let mut stranger = stranger_on(port, node.dir.path());
    let stranger_pid = stranger.0.id();
    node.spawn(&[]);
    wait_until("it says production mode at start", Duration::from_secs(20), || {
        node.stderr().contains("governance in production mode")
    });
    let token = node.admin_token();
    let pending = || -> Vec<Value> {
        http()
            .get(node.url("/api/governance/approvals"))
            .bearer_auth(&token)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .and_then(|v| v["approvals"].as_array().cloned())
            .unwrap_or_default()
    };
    let mut asked = Value::Null;
    wait_until("an approval to kill the stranger", Duration::from_secs(40), || {
        match pending().into_iter().find(|a| a["action"] == "kill_process") {
            Some(a) => {
                asked = a;
                true
            }
            None => false,
        }
    });
    assert!(asked["touches"].to_string().contains(&format!("pid {stranger_pid}")), "names what it kills: {asked}");
    assert!(matches!(stranger.0.try_wait(), Ok(None)), "not killed without an approver");
    let id = asked["id"].as_u64().unwrap();
    let r = node.post_as_admin(&format!("/api/governance/approvals/{id}/approve")).json(&json!({})).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    wait_until("the stranger gone and web running", Duration::from_secs(40), || {
        matches!(stranger.0.try_wait(), Ok(Some(_))) && node.service("web").is_some_and(|(_, s)| s == "running")
    });
}

#[test]
fn test_a_service_killed_by_the_oom_killer_at_every_start_is_not_resolved_and_keeps_its_backoff() {
    let ports = Ports::fresh();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: hog\n    command: python3\n    args: [-c, 'import time; b = b\"x\" * (256 << 20); time.sleep(600)']\n    memory_limit_mb: 64\n    restart: {{ backoff_initial_ms: 1000, backoff_max_ms: 4000, max_restarts: 50, window_ms: 120000, stable_after_ms: 2000 }}\n",
        http = ports.http,
    );
    let node = Node::start_with(&config, ports, &[]);
    if !node_has_cgroups(&node) {
        eprintln!("skipped: no cgroups here, so no memory limit to be killed by");
        return;
    }
    wait_until("the out_of_memory incident", Duration::from_secs(30), || {
        incidents(&node).iter().any(|i| i["mode"] == "out_of_memory")
    });
    let started = Instant::now();
    let restarts = |n: &Node| {
        n.status().and_then(|s| s["services"].as_array().unwrap().iter().find(|x| x["name"] == "hog").cloned()).unwrap()
            ["restarts"]
            .as_u64()
            .unwrap()
    };
    let first = restarts(&node);
    std::thread::sleep(Duration::from_secs(20));
    let all = incidents(&node);
    assert!(all.iter().all(|i| i["status"] != "resolved"), "never resolved while it keeps dying: {all:?}");
    assert_eq!(all.iter().filter(|i| i["mode"] == "out_of_memory").count(), 1, "one fault, one incident: {all:?}");
    // Its supervisor's backoff (1 s, 2 s, 4 s, 4 s ...) allows about six starts in 20 s; a
    // repair that started it at once each time would make many more.
    let made = restarts(&node) - first;
    let secs = started.elapsed().as_secs();
    assert!(made <= 8, "{made} restarts in {secs} s: past the backoff");
}

/// Four services of their own (no dependencies between them), each the demo model server
/// with an L7 probe, on free ports.
fn four_services(http: u16) -> (String, Vec<u16>) {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut config = format!("node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n");
    for (i, p) in ports.iter().enumerate() {
        config.push_str(&format!(
            "  - name: s{i}\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{p}']\n    ports: [{p}]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{p}/api/version' }}\n"
        ));
    }
    config.push_str("probes:\n");
    for (i, p) in ports.iter().enumerate() {
        config.push_str(&format!(
            "  - name: s{i}-http\n    layer: l7\n    target: s{i}\n    check: {{ kind: http, url: 'http://127.0.0.1:{p}/api/version' }}\n    interval_ms: 150\n    timeout_ms: 140\n    failure_threshold: 2\n"
        ));
    }
    (config, ports)
}

fn running_all(node: &Node, names: &[&str]) -> bool {
    names.iter().all(|n| matches!(node.service(n), Some((Some(_), ref s)) if s == "running"))
}

#[test]
fn test_the_breaker_stops_automatic_repair_when_most_services_fail_at_once_until_resumed() {
    let ports = Ports::fresh();
    let (config, _) = four_services(ports.http);
    let node = Node::start_with(&config, ports, &[]);
    wait_until("all four running", Duration::from_secs(30), || running_all(&node, &["s0", "s1", "s2", "s3"]));
    let hung: Vec<u32> = ["s0", "s1", "s2"].iter().map(|s| pid_of(&node, s).unwrap()).collect();
    for pid in &hung {
        kill(*pid, Signal::SIGSTOP);
    }
    wait_until("the breaker open", Duration::from_secs(20), || {
        get_json(&node.url("/api/healing")).is_some_and(|h| h["blocked"].to_string().contains("\"breaker\""))
    });
    std::thread::sleep(Duration::from_secs(5));
    for (s, pid) in ["s0", "s1", "s2"].iter().zip(&hung) {
        assert_eq!(pid_of(&node, s), Some(*pid), "{s}: no automatic restart while the breaker is open");
        assert!(allowed(&node, "restart_service", s).is_empty(), "{s}: no tier 2 action was allowed");
    }
    let ready = get_json(&node.url("/readyz")).unwrap();
    assert!(ready["reasons"].to_string().contains("circuit breaker open"), "{ready}");
    let metrics = http().get(node.url("/metrics")).send().unwrap().text().unwrap();
    assert_eq!(metric(&metrics, r#"warden_healing_blocked{reason="breaker"}"#), Some(1.0));
    let said = node.stderr().matches("alert: automatic repair is blocked for the whole node").count();
    assert_eq!(said, 1, "one alert says why:\n{}", node.stderr());
    let (ok, out) = node
        .cli(&["healing", "resume", "--reason", "the host is fine again"], &[("WARDEN_TOKEN", &node.admin_token())]);
    assert!(ok, "{out}");
    wait_until("the three healed after the resume", Duration::from_secs(40), || {
        ["s0", "s1", "s2"].iter().zip(&hung).all(|(s, pid)| pid_of(&node, s).is_some_and(|p| p != *pid))
            && running_all(&node, &["s0", "s1", "s2"])
    });
    let trail = get_json(&node.url("/api/governance/audit?kind=control&limit=100")).unwrap();
    let actions: Vec<&str> = trail["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"open_breaker") && actions.contains(&"resume_healing"), "audited: {actions:?}");
}

#[test]
fn test_a_hung_service_is_left_alone_while_paused_or_in_maintenance_and_healed_after() {
    let ports = Ports::fresh();
    let node = Node::start_with(&slow_node_config(ports), ports, &[]);
    wait_until("slow running", Duration::from_secs(30), || running_all(&node, &["slow"]));
    let token = node.admin_token();
    let cli = |args: &[&str]| {
        let (ok, out) = node.cli(args, &[("WARDEN_TOKEN", &token)]);
        assert!(ok, "{args:?}: {out}");
        out
    };
    for (hold, lift) in [
        (
            vec!["healing", "pause", "slow", "--for", "10m", "--reason", "debugging it"],
            vec!["healing", "resume", "slow", "--reason", "done"],
        ),
        (
            vec!["services", "unmonitor", "slow", "--reason", "upgrading it"],
            vec!["services", "monitor", "slow", "--reason", "upgraded"],
        ),
    ] {
        cli(&hold);
        let pid = pid_of(&node, "slow").unwrap();
        kill(pid, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_secs(6));
        assert_eq!(pid_of(&node, "slow"), Some(pid), "{hold:?}: the hung service is left alone");
        let status = cli(&["healing", "status"]);
        assert!(status.contains("`slow`"), "{status}");
        cli(&lift);
        wait_until("healed once lifted", Duration::from_secs(40), || {
            pid_of(&node, "slow").is_some_and(|p| p != pid) && running_all(&node, &["slow"])
        });
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGCONT);
    }
    let trail = get_json(&node.url("/api/governance/audit?kind=control&limit=100")).unwrap();
    let actions: Vec<&str> = trail["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["pause_healing", "resume_healing", "unmonitor", "monitor"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}

/// `warden run` on `config` with data dir `data` (the same working dir as the other runs).
fn run_on(config: &Path, data: &Path, stderr: &Path) -> KillOnDrop {
    KillOnDrop(
        Command::new(WARDEN)
            .args(["run", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Hangs `slow` and waits until it is restarted by a repair (a tier 2 step, so only a
/// node whose audit chain is trusted can do it).
fn heals_a_hang(ports: &Ports) -> bool {
    let api = format!("http://127.0.0.1:{}", ports.http);
    let service = |field: &str| -> Option<Value> {
        get_json(&format!("{api}/api/status"))?["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "slow")
            .map(|s| s[field].clone())
    };
    wait_until("slow running", Duration::from_secs(30), || service("state").is_some_and(|s| s == "running"));
    let pid = service("pid").unwrap().as_u64().unwrap() as u32;
    kill(pid, Signal::SIGSTOP);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(25) {
        if service("pid").and_then(|p| p.as_u64()).is_some_and(|p| p as u32 != pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    false
}

#[test]
fn test_two_data_dirs_from_one_working_dir_both_heal_and_a_wiped_one_waits_for_retire() {
    let ports = Ports::fresh();
    let node = Node::prepare(&slow_node_config(ports), ports);
    let (a, b) = (node.dir.path().join("data-a"), node.dir.path().join("data-b"));
    let log = |n: &str| node.dir.path().join(format!("{n}.stderr"));
    for (data, name) in [(&a, "a"), (&b, "b")] {
        let mut w = run_on(&node.config_path(), data, &log(name));
        assert!(heals_a_hang(&ports), "data dir {name} heals:\n{}", std::fs::read_to_string(log(name)).unwrap());
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.0.id() as i32), Signal::SIGTERM);
        let _ = w.0.wait();
    }
    // A reset of data dir a (the common `rm -rf`): its chain is gone, and warden says so.
    std::fs::remove_dir_all(&a).unwrap();
    let mut w = run_on(&node.config_path(), &a, &log("a2"));
    let ready = format!("http://127.0.0.1:{}/readyz", ports.http);
    let mut reasons = String::new();
    wait_until("readyz names the gone chain", Duration::from_secs(30), || {
        reasons = get_json(&ready).map(|r| r["reasons"].to_string()).unwrap_or_default();
        reasons.contains("is gone")
    });
    assert!(!heals_a_hang(&ports), "no tier 2 repair while the chain is not trusted");
    let chain = reasons.split("audit retire ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().to_string();
    let out = Command::new(WARDEN)
        .args(["audit", "retire", &chain, "--reason", "data dir reset on purpose", "--config"])
        .arg(node.config_path())
        .arg("--data-dir")
        .arg(&a)
        .env("WARDEN_TOKEN", std::fs::read_to_string(a.join("admin.token")).unwrap().trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(heals_a_hang(&ports), "healing again once retired:\n{}", std::fs::read_to_string(log("a2")).unwrap());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.0.id() as i32), Signal::SIGTERM);
    let _ = w.0.wait();
}

#[test]
fn test_a_run_held_after_it_stopped_its_service_puts_it_back() {
    // restore_dir is not whitelisted: the restore playbook stops the db, is denied its
    // restore, and must not leave the db down.
    let ports = Ports::fresh();
    let policy = warden_core::policy::DEFAULT_POLICIES_YAML
        .replace("  - action: restore_dir\n    targets: [\"*\"]\n    rate_limit: { max: 3, per_ms: 3600000 }\n", "");
    let config = format!("{}\ngovernance_policies: policy.yaml\n", hands_off(&default_config_on(ports)));
    let mut node = Node::prepare(&config, ports);
    std::fs::write(node.dir.path().join("policy.yaml"), policy).unwrap();
    node.spawn(&[]);
    node.wait_ready();
    let run = |body: Value| -> Value {
        let r = node.post_as_admin("/api/guardian/playbooks/restore_database_snapshot/run").json(&body).send().unwrap();
        r.json().unwrap()
    };
    node.post_as_admin("/api/guardian/playbooks/snapshot_database/run").json(&json!({"target": "db"})).send().unwrap();
    let done = run(json!({"target": "db", "reason": "test"}));
    assert_eq!(done["outcome"], "denied", "{done}");
    assert!(done["detail"].as_str().unwrap().contains("put back"), "{done}");
    wait_until("the db running again", Duration::from_secs(20), || running_all(&node, &["db"]));
}
