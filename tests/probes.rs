//! Probes through a running warden, with real faults: the model server's model unlisted
//! and restored (API, metrics, log, webhook, flap damping), a stranger holding a
//! service's port, an interface that does not exist, a link cut in a network namespace,
//! and ICMP where the process may not use it.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// One probe from `/api/guardian/probes/{id}`, read as the node's admin (a listener off
/// loopback needs a token for reads).
fn probe(node: &Node, base: &str, id: &str) -> Value {
    let url = format!("{base}/api/guardian/probes/{id}");
    http().get(url).bearer_auth(node.admin_token()).send().ok().and_then(|r| r.json().ok()).unwrap_or_default()
}

fn wait_probe_state(base: &str, id: &str, state: &str, node: &Node) {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if probe(node, base, id)["state"] == state {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut p = probe(node, base, id);
    if let Some(recent) = p["recent"].as_array_mut() {
        recent.truncate(5);
    }
    panic!("probe {id} not {state} after 30 s: {p}\nwarden stderr:\n{}", node.stderr());
}

fn metrics_text(node: &Node) -> String {
    http().get(node.url("/metrics")).send().unwrap().text().unwrap()
}

/// Webhook bodies of alert `name` with `status`, for probe `probe`.
fn payloads(rx: &Receiver, name: &str, status: &str, probe: &str) -> Vec<Value> {
    rx.bodies()
        .into_iter()
        .filter(|b| {
            let a = &b["alerts"][0];
            a["labels"]["alertname"] == name && a["status"] == status && a["labels"]["probe"] == probe
        })
        .collect()
}

fn model_request(node: &Node, method: reqwest::Method, path: &str) -> u16 {
    let url = format!("http://127.0.0.1:{}{path}", node.ports.model);
    http().request(method, url).body(r#"{"model":"demo:latest","stream":false}"#).send().unwrap().status().as_u16()
}

#[test]
fn test_an_unlisted_model_fails_its_probe_everywhere_and_a_flapping_one_is_told_once() {
    // The model server answers but no longer lists the model: the L7 ollama probe fails;
    // the API, /metrics, the log and the webhook all say so, and say so again when it
    // recovers. The second failure and recovery in the window make it flapping: told once.
    let rx = Receiver::start(1);
    let ports = Ports::fresh();
    // Probes and alerts only: warden would pull the model back (warm_model) at once. No
    // group wait: each change is told at once, this test is about flap damping.
    let config = format!(
        "{}\nalerts:\n  flap_window_ms: 300000\n  flap_max_changes: 4\n  group_wait_ms: 0\n  webhooks:\n    - url: {}\n      timeout_ms: 2000\n",
        default_config_on(ports).replace("\nhealing:\n", "\nhealing:\n  enabled: false\n"),
        rx.url("/hook")
    );
    let node = Node::start_with(&config, ports, &[]);
    node.wait_ready();
    let base = node.url("");
    wait_probe_state(&base, "model-tags", "up", &node);
    let m = metrics_text(&node);
    assert_eq!(metric(&m, r#"warden_probe_up{probe="model-tags""#), Some(1.0), "{m}");
    assert_eq!(metric(&m, r#"warden_service_state{service="model",state="running"}"#), Some(1.0));
    assert_eq!(metric(&m, r#"warden_service_state{service="model",state="quarantined"}"#), Some(0.0));
    assert!(m.contains(r#"warden_probe_latency_seconds_count{probe="model-tags""#), "latency histogram");
    assert!(m.lines().any(|l| l.starts_with("warden_probe_latency_seconds_bucket{le=") && l.contains("model-tags")));
    assert!(metric(&m, r#"warden_probe_last_success_timestamp_seconds{probe="model-tags""#).unwrap() > 1.7e9);

    assert_eq!(model_request(&node, reqwest::Method::DELETE, "/api/delete"), 200);
    wait_probe_state(&base, "model-tags", "down", &node);
    let p = probe(&node, &base, "model-tags");
    assert_eq!(p["last_failure"]["kind"], "response", "{p}");
    assert!(p["last_failure"]["message"].as_str().unwrap().contains("demo:latest is not listed"), "{p}");
    assert!(p["failing_since_unix_ms"].is_u64(), "{p}");
    let m = metrics_text(&node);
    assert_eq!(metric(&m, r#"warden_probe_up{probe="model-tags""#), Some(0.0));
    assert_eq!(
        metric(&m, r#"warden_probe_state{probe="model-tags",layer="l7",target="model",state="down"}"#),
        Some(1.0)
    );
    wait_until("the failing alert at the webhook", Duration::from_secs(20), || {
        !payloads(&rx, "ProbeFailing", "firing", "model-tags").is_empty()
    });
    let firing = payloads(&rx, "ProbeFailing", "firing", "model-tags").remove(0);
    assert_eq!(firing["version"], "4", "{firing}");
    assert_eq!(firing["alerts"][0]["labels"]["layer"], "l7");
    assert!(rx.requests() >= 2, "the first delivery was refused (500) and retried");
    assert!(node.stderr().contains("alert: probe failing"), "{}", node.stderr());

    assert_eq!(model_request(&node, reqwest::Method::POST, "/api/pull"), 200);
    wait_probe_state(&base, "model-tags", "up", &node);
    wait_until("the resolved alert at the webhook", Duration::from_secs(20), || {
        !payloads(&rx, "ProbeFailing", "resolved", "model-tags").is_empty()
    });
    let resolved = payloads(&rx, "ProbeFailing", "resolved", "model-tags").remove(0);
    assert_eq!(resolved["alerts"][0]["fingerprint"], firing["alerts"][0]["fingerprint"], "the same alert, resolved");
    assert!(node.stderr().contains("probe recovered"), "recovery is logged as plainly as the failure");
    let detail = probe(&node, &base, "model-tags");
    let results: Vec<&str> =
        detail["recent"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert!(results.contains(&"fail") && results[0] == "ok", "{results:?}");
    assert!(detail["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{detail}");

    // Changes 3 and 4 in the window: the failure is told, the recovery starts flapping.
    assert_eq!(model_request(&node, reqwest::Method::DELETE, "/api/delete"), 200);
    wait_probe_state(&base, "model-tags", "down", &node);
    assert_eq!(model_request(&node, reqwest::Method::POST, "/api/pull"), 200);
    wait_probe_state(&base, "model-tags", "up", &node);
    wait_until("the flapping alert", Duration::from_secs(20), || {
        !payloads(&rx, "ProbeFlapping", "firing", "model-tags").is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(payloads(&rx, "ProbeFailing", "firing", "model-tags").len(), 2);
    assert_eq!(payloads(&rx, "ProbeFailing", "resolved", "model-tags").len(), 1, "held back while flapping");
    assert_eq!(payloads(&rx, "ProbeFlapping", "firing", "model-tags").len(), 1, "told once");
    assert!(node.stderr().contains("alert: probe flapping"));
}

#[test]
fn test_a_stranger_on_a_service_port_is_named_and_a_missing_interface_is_unsupported() {
    let ports = Ports::fresh();
    let port = ports.api;
    // The stranger takes the port before warden starts the service.
    let mut stranger = Command::new(WARDEN)
        .args(["demo", "model", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the stranger listens", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: web\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{port}']\n    ports: [{port}]\n    restart: {{ backoff_initial_ms: 200, max_restarts: 50 }}\nprobes:\n  - name: web-port\n    layer: l4\n    target: web\n    check: {{ kind: tcp, addr: '127.0.0.1:{port}' }}\n    interval_ms: 200\n    timeout_ms: 150\n    failure_threshold: 2\n  - name: web-link\n    layer: l2\n    target: web\n    check: {{ kind: link, interface: nosuch0 }}\n    interval_ms: 200\n    timeout_ms: 150\nhealing:\n  enabled: false\n",
        http = ports.http
    );
    let node = Node::start_with(&config, ports, &[]);
    let base = node.url("");
    wait_probe_state(&base, "web-port", "down", &node);
    let p = probe(&node, &base, "web-port");
    let f = &p["last_failure"];
    assert_eq!(f["kind"], "stranger", "{p}");
    assert_eq!(f["pid"].as_u64(), Some(u64::from(stranger.id())), "the holder's pid, as a number: {p}");
    assert_eq!(f["port"].as_u64(), Some(u64::from(port)), "{p}");
    assert_eq!(f["command"], "warden", "the holder's process name, not its command line: {p}");
    assert!(f["message"].is_string());
    wait_probe_state(&base, "web-link", "unsupported", &node);
    let l = probe(&node, &base, "web-link");
    assert!(l["unsupported"].as_str().unwrap().contains("no interface `nosuch0`"), "{l}");
    let m = metrics_text(&node);
    assert_eq!(metric(&m, r#"warden_probe_up{probe="web-link""#), Some(0.0), "never a false up");
    assert_eq!(
        metric(&m, r#"warden_probe_state{probe="web-link",layer="l2",target="web",state="unsupported"}"#),
        Some(1.0)
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Two network namespaces, removed on drop.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[test]
fn test_a_cut_link_fails_the_l2_and_l3_probes_and_they_recover_when_it_returns() {
    // warden runs in namespace A; its default gateways (IPv4 and IPv6) are B, across a
    // veth pair. Cutting the link (B's end down: no carrier on A's), silencing the gateway
    // (its address removed: A's neighbour entry fails, the carrier stays) and A's end down
    // (no route at all) each fail the link and route probes; undoing it recovers them. The
    // API is reached over a second veth pair from this namespace.
    ensure_iproute2();
    let ports = Ports::fresh();
    let n = ports.http % 10_000;
    let k = ports.http % 250 + 1;
    let (a, b) = (format!("wdA{n}"), format!("wdB{n}"));
    let probe_add = Command::new("ip").args(["netns", "add", &a]).output().unwrap();
    if !probe_add.status.success() {
        eprintln!("skipped: this machine refuses network namespaces: {}", String::from_utf8_lossy(&probe_add.stderr));
        return;
    }
    let _ns = Netns(vec![a.clone(), b.clone()]);
    ip(&["netns", "add", &b]);
    let (mh, ma, la, lb) = (format!("wm{n}h"), format!("wm{n}a"), format!("wl{n}a"), format!("wl{n}b"));
    let (mgmt_host, mgmt_a) = (format!("10.251.{k}.1"), format!("10.251.{k}.2"));
    let (gw_a, gw_b) = (format!("10.252.{k}.1"), format!("10.252.{k}.2"));
    ip(&["link", "add", &mh, "type", "veth", "peer", "name", &ma, "netns", &a]);
    ip(&["addr", "add", &format!("{mgmt_host}/30"), "dev", &mh]);
    ip(&["link", "set", &mh, "up"]);
    ip(&["-n", &a, "addr", "add", &format!("{mgmt_a}/30"), "dev", &ma]);
    ip(&["-n", &a, "link", "set", &ma, "up"]);
    ip(&["-n", &a, "link", "set", "lo", "up"]);
    ip(&["-n", &a, "link", "add", &la, "type", "veth", "peer", "name", &lb, "netns", &b]);
    ip(&["-n", &a, "addr", "add", &format!("{gw_a}/30"), "dev", &la]);
    ip(&["-n", &a, "link", "set", &la, "up"]);
    ip(&["-n", &b, "addr", "add", &format!("{gw_b}/30"), "dev", &lb]);
    ip(&["-n", &b, "link", "set", &lb, "up"]);
    ip(&["-n", &b, "link", "set", "lo", "up"]);
    ip(&["-n", &a, "route", "add", "default", "via", &gw_b]);
    // IPv6 beside it: the link probe must find the NDP entry of the IPv6 gateway too.
    let (gw6_a, gw6_b) = (format!("fd00:252:{k}::1"), format!("fd00:252:{k}::2"));
    ip(&["-n", &a, "addr", "add", &format!("{gw6_a}/64"), "dev", &la, "nodad"]);
    ip(&["-n", &b, "addr", "add", &format!("{gw6_b}/64"), "dev", &lb, "nodad"]);
    ip(&["-n", &a, "-6", "route", "add", "default", "via", &gw6_b]);
    // Short neighbour timers in A, so a gateway that stops answering turns FAILED in
    // seconds; IPv6 addresses kept across a link down.
    let sysctls = [
        (&a, format!("net/ipv4/neigh/{la}/base_reachable_time_ms=1000")),
        (&a, format!("net/ipv4/neigh/{la}/delay_first_probe_time=1")),
        (&a, format!("net/ipv6/neigh/{la}/base_reachable_time_ms=1000")),
        (&a, format!("net/ipv6/neigh/{la}/delay_first_probe_time=1")),
        (&a, format!("net/ipv6/conf/{la}/keep_addr_on_down=1")),
        (&b, format!("net/ipv6/conf/{lb}/keep_addr_on_down=1")),
    ];
    for (ns, s) in &sysctls {
        let (key, value) = s.split_once('=').unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", ns.as_str(), "sh", "-c", &format!("echo {value} > /proc/sys/{key}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{s}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let api = format!("{mgmt_a}:{}", ports.http);
    let config = format!(
        "node:\n  name: netns\n  http_listen: '{api}'\nservices:\n  - name: svc\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{port}']\n    ports: [{port}]\nprobes:\n  - name: gw-link\n    layer: l2\n    target: svc\n    check: {{ kind: link, interface: {la}, gateway: true, min_mtu: 1280 }}\n    interval_ms: 200\n    timeout_ms: 150\n    failure_threshold: 2\n  - name: gw-route\n    layer: l3\n    target: svc\n    check: {{ kind: route, host: '{gw_b}' }}\n    interval_ms: 200\n    timeout_ms: 150\n    failure_threshold: 2\n",
        port = ports.api
    );
    let mut node = Node::prepare(&config, ports);
    let child = Command::new("ip")
        .args(["netns", "exec", &a, WARDEN, "run", "--config"])
        .arg(node.config_path())
        .arg("--data-dir")
        .arg(node.data_dir())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&node.stderr_path).unwrap())
        .spawn()
        .unwrap();
    node.child = Some(child);
    let base = format!("http://{api}");
    wait_probe_state(&base, "gw-link", "up", &node);
    wait_probe_state(&base, "gw-route", "up", &node);
    assert!(probe(&node, &base, "gw-route")["method"].as_str().unwrap().starts_with("ICMP echo"));

    // The far end goes down: no carrier here, and the gateway stops answering.
    ip(&["-n", &b, "link", "set", &lb, "down"]);
    wait_probe_state(&base, "gw-link", "down", &node);
    wait_probe_state(&base, "gw-route", "down", &node);
    let link = probe(&node, &base, "gw-link");
    assert_eq!(link["last_failure"]["kind"], "link", "{link}");
    let route = probe(&node, &base, "gw-route");
    assert!(
        ["timeout", "host_unreachable", "network_unreachable"]
            .contains(&route["last_failure"]["kind"].as_str().unwrap()),
        "{route}"
    );
    ip(&["-n", &b, "link", "set", &lb, "up"]);
    wait_probe_state(&base, "gw-link", "up", &node);
    wait_probe_state(&base, "gw-route", "up", &node);

    // The gateway stops answering (its address is gone) while the link stays up: its
    // neighbour entry fails, and so does the route probe's echo.
    ip(&["-n", &b, "addr", "del", &format!("{gw_b}/30"), "dev", &lb]);
    wait_probe_state(&base, "gw-link", "down", &node);
    let link = probe(&node, &base, "gw-link");
    let message = link["last_failure"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("gateway {gw_b}")) && message.contains("neighbour entry"), "{link}");
    wait_probe_state(&base, "gw-route", "down", &node);
    ip(&["-n", &b, "addr", "add", &format!("{gw_b}/30"), "dev", &lb]);
    wait_probe_state(&base, "gw-link", "up", &node);
    wait_probe_state(&base, "gw-route", "up", &node);

    // Our end administratively down: the connected and default routes go with it.
    ip(&["-n", &a, "link", "set", &la, "down"]);
    wait_probe_state(&base, "gw-link", "down", &node);
    wait_probe_state(&base, "gw-route", "down", &node);
    let link = probe(&node, &base, "gw-link");
    assert!(link["last_failure"]["message"].as_str().unwrap().contains("administratively down"), "{link}");
    let route = probe(&node, &base, "gw-route");
    assert_eq!(route["last_failure"]["kind"], "network_unreachable", "no route: ENETUNREACH: {route}");
    ip(&["-n", &a, "link", "set", &la, "up"]);
    ip(&["-n", &a, "route", "replace", "default", "via", &gw_b]);
    ip(&["-n", &a, "-6", "route", "replace", "default", "via", &gw6_b]);
    wait_probe_state(&base, "gw-link", "up", &node);
    wait_probe_state(&base, "gw-route", "up", &node);
    assert!(node.stderr().contains("probe recovered"));
}

#[test]
fn test_icmp_that_this_user_may_not_use_falls_back_to_tcp_or_says_unsupported() {
    // As `nobody`, ICMP sockets exist only where net.ipv4.ping_group_range includes its
    // group; elsewhere a route probe with a port connects instead, one without says it
    // cannot run: never a false up.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: svc\n    command: /bin/true\nprobes:\n  - name: with-port\n    layer: l3\n    target: svc\n    check: {{ kind: route, host: 127.0.0.1, port: {port} }}\n  - name: no-port\n    layer: l3\n    target: svc\n    check: {{ kind: route, host: 127.0.0.1 }}\n",
        free_port()
    );
    let path = dir.path().join("node.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", WARDEN, "probes", "check", "--json", "--config"])
        .arg(&path)
        .output();
    let out = match out {
        // setpriv's own failure, or the binary is not reachable for nobody (a private
        // checkout): nothing of warden ran.
        Ok(o) if o.stdout.is_empty() && String::from_utf8_lossy(&o.stderr).starts_with("setpriv:") => {
            eprintln!("skipped: cannot run warden as nobody here: {}", String::from_utf8_lossy(&o.stderr));
            return;
        }
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: no setpriv: {e}");
            return;
        }
    };
    assert!(!out.stdout.is_empty(), "warden printed nothing: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let get = |name: &str| lines.iter().find(|l| l["probe"] == name).cloned().unwrap();
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let bounds: Vec<u32> = range.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let unprivileged_icmp = bounds.len() == 2 && bounds[0] <= 65534 && 65534 <= bounds[1];
    let (with_port, no_port) = (get("with-port"), get("no-port"));
    if unprivileged_icmp {
        assert_eq!(with_port["method"], "ICMP echo, unprivileged ICMP socket", "{with_port}");
        assert_eq!(no_port["result"], "ok", "{no_port}");
    } else {
        assert_eq!(with_port["result"], "ok", "{with_port}");
        assert!(with_port["method"].as_str().unwrap().starts_with("TCP connect"), "{with_port}");
        assert_eq!(no_port["result"], "unsupported", "{no_port}");
        assert!(no_port["detail"].as_str().unwrap().contains("ping_group_range"), "{no_port}");
        assert!(!out.status.success(), "an unsupported check is not a pass");
    }
    drop(listener);
}

#[test]
fn test_a_firing_alert_is_resolved_after_a_restart_of_warden_and_after_its_probe_is_removed() {
    // What was told survives warden: the failing model probe told before a restart is
    // resolved once the new warden finds it well (the model server starts with its model
    // listed again). A probe a reload removes while it fails has its alert resolved too.
    let rx = Receiver::start(0);
    let ports = Ports::fresh();
    // Alerts only: the healer would pull the model back before the alert could be watched.
    let config = format!(
        "{}\nalerts:\n  webhooks:\n    - url: {}\n      timeout_ms: 2000\n",
        hands_off(&default_config_on(ports)),
        rx.url("/hook")
    );
    let mut node = Node::start_with(&config, ports, &[]);
    node.wait_ready();
    let base = node.url("");
    wait_probe_state(&base, "model-tags", "up", &node);
    assert_eq!(model_request(&node, reqwest::Method::DELETE, "/api/delete"), 200);
    wait_until("the failing alert", Duration::from_secs(30), || {
        !payloads(&rx, "ProbeFailing", "firing", "model-tags").is_empty()
    });
    assert!(node.stop().unwrap().success(), "{}", node.stderr());
    assert!(payloads(&rx, "ProbeFailing", "resolved", "model-tags").is_empty(), "nothing resolved it yet");

    node.spawn(&[]);
    node.wait_ready();
    wait_until("the alert resolved by the new warden", Duration::from_secs(30), || {
        !payloads(&rx, "ProbeFailing", "resolved", "model-tags").is_empty()
    });
    let firing = payloads(&rx, "ProbeFailing", "firing", "model-tags");
    assert_eq!(firing.len(), 1, "not told twice");
    let resolved = payloads(&rx, "ProbeFailing", "resolved", "model-tags").remove(0);
    assert_eq!(resolved["alerts"][0]["fingerprint"], firing[0]["alerts"][0]["fingerprint"]);

    // Failing again, then removed by a reload: resolved as removed.
    assert_eq!(model_request(&node, reqwest::Method::DELETE, "/api/delete"), 200);
    wait_until("failing again", Duration::from_secs(30), || {
        payloads(&rx, "ProbeFailing", "firing", "model-tags").len() == 2
    });
    let start = config.find("  - name: model-tags").unwrap();
    let end = start + config[start..].find("\nhealing:").unwrap();
    std::fs::write(node.config_path(), format!("{}{}", &config[..start], &config[end..])).unwrap();
    kill(node.pid(), nix::sys::signal::Signal::SIGHUP);
    wait_until("the removed probe's alert resolved", Duration::from_secs(30), || {
        payloads(&rx, "ProbeFailing", "resolved", "model-tags")
            .iter()
            .any(|p| p["alerts"][0]["annotations"]["summary"].as_str().unwrap_or("").contains("removed"))
    });
}
