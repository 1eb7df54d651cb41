use super::*;
use crate::source::Source;
use std::collections::BTreeSet;

const MINIMAL: &str = "node:\n  name: t\n  http_listen: 127.0.0.1:7700\nservices:\n  - name: a\n    command: /bin/true\n  - name: b\n    command: /bin/true\n    depends_on: [a]\n";

fn service<'a>(cfg: &'a NodeConfig, name: &str) -> Option<&'a ServiceSpec> {
    cfg.services.iter().find(|s| s.name == name)
}

fn load_in(dir: &Path, text: &str) -> Result<NodeConfig, Problems> {
    NodeConfig::load(&Source { name: "t.yaml", dir, text }, &LoadOptions { data_dir: Some("/d".into()) })
}

fn load(text: &str) -> Result<NodeConfig, Problems> {
    load_in(Path::new("/etc/warden"), text)
}

/// `(line, column, message)` of every problem.
fn problems(text: &str) -> Vec<(u64, u64, String)> {
    load(text)
        .expect_err("config must be refused")
        .list()
        .iter()
        .map(|p| (p.pos.line, p.pos.column, p.message.clone()))
        .collect()
}

#[test]
fn test_embedded_default_node_is_valid_and_ordered() {
    let cfg = NodeConfig::embedded_default(Path::new("/srv"), &LoadOptions::default()).expect("embedded default");
    let order: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["db", "model", "api"], "dependency order");
    assert_eq!(cfg.data_dir, Path::new("/srv/.warden-data"), "relative data dir resolves against the config's folder");
    assert_eq!(service(&cfg, "api").map(|s| s.program.clone()), Some(Program::SelfExe));
    assert!(cfg.probes.iter().any(|p| p.layer == Layer::L7 && p.target == "api"));
}

#[test]
fn test_values_are_parsed_into_their_types() {
    let cfg = NodeConfig::embedded_default(Path::new("/srv"), &LoadOptions { data_dir: Some("/var/lib/w".into()) })
        .expect("embedded default");
    let db = service(&cfg, "db").expect("db");
    assert_eq!(db.ready, Some(ReadyCheck::Tcp { addr: "127.0.0.1:5433".parse().expect("addr") }));
    assert_eq!(db.stop_grace, Duration::from_secs(3));
    assert!(db.args.contains(&"/var/lib/w/services/db/data".to_string()), "${{data_dir}} expanded: {:?}", db.args);
    assert_eq!(db.files[0].path, Path::new("/var/lib/w/services/db/password"));
    let probe = &cfg.probes[0];
    assert_eq!((probe.interval, probe.timeout), (Duration::from_millis(150), Duration::from_millis(140)));
    assert!(matches!(&probe.check, ProbeCheck::Http { url, body: Some(_), .. } if url.port() == Some(8000)));
    // Every layer for every service.
    for service in ["db", "model", "api"] {
        let layers: BTreeSet<Layer> =
            cfg.probes.iter().filter(|p| p.target == service).map(|p| p.check.layer()).collect();
        assert_eq!(layers.len(), 6, "{service}: {layers:?}");
    }
}

#[test]
fn test_dependents_are_found_through_others_in_start_order() {
    let text = format!(
        "{MINIMAL}  - name: c\n    command: /bin/true\n    depends_on: [b]\n  - name: d\n    command: /bin/true\n"
    );
    let cfg = load(&text).expect("valid");
    let name = |n: &str| ServiceName::parse(n).expect("name");
    let of_a: Vec<String> = cfg.dependents_of(&name("a")).iter().map(|s| s.to_string()).collect();
    assert_eq!(of_a, ["b", "c"], "c depends on a through b; d on nothing");
    assert!(cfg.dependents_of(&name("c")).is_empty());
}

#[test]
fn test_start_order_puts_dependencies_first() {
    let text = MINIMAL.replace(
        "- name: a\n    command: /bin/true\n  - name: b\n    command: /bin/true\n    depends_on: [a]",
        "- name: b\n    command: /bin/true\n    depends_on: [a]\n  - name: a\n    command: /bin/true",
    );
    let cfg = load(&text).expect("valid");
    let order: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["a", "b"]);
}

#[test]
fn test_unknown_dependency_names_its_position() {
    let p = problems(&MINIMAL.replace("depends_on: [a]", "depends_on: [zz]"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].0, p[0].1), (9, 18), "{p:?}");
    assert!(p[0].2.contains("unknown service `zz`"), "{p:?}");
}

#[test]
fn test_cycle_is_reported_at_each_service_in_it() {
    let text = MINIMAL
        .replace("- name: a\n    command: /bin/true\n", "- name: a\n    command: /bin/true\n    depends_on: [b]\n");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p.iter().all(|(_, _, m)| m.contains("dependency cycle")), "{p:?}");
}

#[test]
fn test_three_mistakes_are_reported_at_once_with_positions() {
    // A bad listen address, a command that does not exist and a zero grace period: all
    // three come back from one load, each at its own line and column.
    let text = MINIMAL.replace("127.0.0.1:7700", "nowhere").replace(
        "  - name: b\n    command: /bin/true\n",
        "  - name: b\n    command: /no/such/binary\n    stop_grace_ms: 0\n",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!((p[0].0, p[0].1), (3, 16), "{p:?}");
    assert!(p[0].2.contains("not an IP:port address"), "{p:?}");
    assert_eq!((p[1].0, p[1].1), (8, 14), "{p:?}");
    assert!(p[1].2.contains("does not exist"), "{p:?}");
    assert_eq!((p[2].0, p[2].1), (9, 20), "{p:?}");
    assert!(p[2].2.contains("stop_grace_ms must be positive"), "{p:?}");
}

#[test]
fn test_values_that_cannot_work_are_refused() {
    let svc = "  - name: c\n    command: /bin/true\n";
    let cases = [
        ("    ports: [0]\n", "port 0"),
        ("    ready: { kind: tcp, addr: 'localhost:80' }\n", "not an IP:port address"),
        ("    ready: { kind: http, url: 'ftp://x/' }\n", "http:// or https://"),
        ("    restart: { window_ms: 0 }\n", "window_ms must be positive"),
        ("    restart: { max_restarts: 0 }\n", "max_restarts must be at least 1"),
        ("    restart: { backoff_initial_ms: 500, backoff_max_ms: 100 }\n", "below backoff_initial_ms"),
        ("    logs: { max_bytes: 0 }\n", "logs.max_bytes"),
        ("    startup_deadline_ms: 0\n", "startup_deadline_ms must be positive"),
        ("    args: ['${datadir}/x']\n", "unknown variable `${datadir}`"),
        ("    workdir: /no/such/dir\n", "is not a directory"),
        ("    network_namespace: a/b\n", "neither a name"),
        ("    network_namespace: /run/netns/../x\n", "must not contain `..`"),
        (
            "    ports: [9001]\n    network_namespace: wns\n",
            "ports cannot be declared for a service in another network namespace",
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{MINIMAL}{svc}{extra}");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{extra}: {p:?}");
        assert_eq!(p[0].0, 12, "{extra}: the problem is on the key's line: {p:?}");
        assert!(p[0].2.contains(expected), "{extra}: expected `{expected}` in {p:?}");
    }
}

#[test]
fn test_an_owner_probe_of_a_service_in_another_network_namespace_is_refused() {
    let text = format!(
        "{MINIMAL}  - name: c\n    command: /bin/true\n    network_namespace: wns\nprobes:\n  - name: p\n    layer: l4\n    target: c\n    check: {{ kind: tcp, addr: '10.0.0.2:80' }}\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].2.contains("set `owner: false`"), "{p:?}");
    assert!(load(&text.replace("'10.0.0.2:80' }", "'10.0.0.2:80', owner: false }")).is_ok());
}

#[test]
fn test_a_network_namespace_is_a_name_under_run_netns_or_a_path() {
    let svc = "  - name: c\n    command: /bin/true\n";
    for (given, path) in [("wns", "/run/netns/wns"), ("/proc/1/ns/net", "/proc/1/ns/net")] {
        let c = load(&format!("{MINIMAL}{svc}    network_namespace: {given}\n")).expect("valid");
        let spec = c.services.iter().find(|s| s.name.as_str() == "c").expect("c");
        assert_eq!(spec.network_namespace.as_deref(), Some(std::path::Path::new(path)));
    }
}

#[test]
fn test_probe_with_bad_url_and_zero_interval_reports_both() {
    let text = format!(
        "{MINIMAL}probes:\n  - name: p\n    layer: l7\n    target: a\n    check: {{ kind: http, url: 'not a url' }}\n    interval_ms: 0\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].2.contains("is not a URL"), "{p:?}");
    assert!(p[1].2.contains("interval_ms must be positive") && p[1].0 == 15, "{p:?}");
}

#[test]
fn test_duplicate_port_and_name_are_refused() {
    let text = MINIMAL
        .replace("command: /bin/true\n  - name: b", "command: /bin/true\n    ports: [9000]\n  - name: a")
        .replace("depends_on: [a]", "ports: [9000]");
    let p = problems(&text);
    assert!(p.iter().any(|(_, _, m)| m.contains("defined twice")), "{p:?}");
    assert!(p.iter().any(|(_, _, m)| m.contains("port 9000 is also declared by a")), "{p:?}");
}

#[test]
fn test_commands_resolve_through_path_and_the_config_folder() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_path_buf();
    let script = dir.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\n").expect("write script");
    let plain = dir.join("plain.txt");
    std::fs::write(&plain, "not a program").expect("write plain");
    let ok =
        MINIMAL.replace("/bin/true\n  - name: b\n    command: /bin/true", "sh\n  - name: b\n    command: ./run.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let cfg = load_in(&dir, &ok).expect("sh from PATH, ./run.sh from the config folder");
    assert!(
        matches!(&service(&cfg, "a").expect("a").program, Program::Path(p) if p.ends_with("sh") && p.is_absolute())
    );
    assert_eq!(service(&cfg, "b").expect("b").program, Program::Path(dir.join("run.sh")));
    let bad = MINIMAL.replace(
        "/bin/true\n  - name: b\n    command: /bin/true",
        "no-such-cmd-xyz\n  - name: b\n    command: plain.txt",
    );
    let err = load_in(&dir, &bad.replace("command: plain.txt", "command: ./plain.txt")).expect_err("both refused");
    let text = err.to_string();
    assert!(text.contains("`no-such-cmd-xyz` is not found in PATH"), "{text}");
    assert!(text.contains("is not executable"), "{text}");
}

#[test]
fn test_unknown_key_is_a_yaml_error_with_position() {
    let text =
        MINIMAL.replace("    command: /bin/true\n  - name: b", "    command: /bin/true\n    colour: red\n  - name: b");
    let err = load(&text).expect_err("unknown key");
    assert!(err.to_string().starts_with("t.yaml:7:5: unknown field `colour`"), "{err}");
    assert_eq!(err.len(), 1, "reported once: {err}");
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn test_a_stop_signal_that_cannot_stop_is_refused_with_its_position() {
    let text = MINIMAL.replace("  - name: b\n", "    stop_signal: SIGSTOP\n  - name: b\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (7, 18), "{found:?}");
    assert!(found[0].2.contains("stop_signal SIGSTOP cannot stop a process"), "{found:?}");
    let ok = MINIMAL.replace("  - name: b\n", "    stop_signal: SIGINT\n  - name: b\n");
    let cfg = load(&ok).expect("valid");
    assert_eq!(service(&cfg, "a").map(|s| s.stop_signal), Some(crate::signal::SignalName::Int));
}

/// `MINIMAL` with these probes on service `a`.
fn with_probes(probes: &[(&str, &str, &str)]) -> String {
    let mut text = format!("{MINIMAL}probes:\n");
    for (name, layer, check) in probes {
        text.push_str(&format!("  - name: {name}\n    layer: {layer}\n    target: a\n    check: {check}\n"));
    }
    text
}

#[test]
fn test_every_kind_of_check_parses_into_its_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), "x").expect("write");
    let text = with_probes(&[
        ("l2", "l2", "{ kind: link, interface: eth0, gateway: true, min_mtu: 1400 }"),
        ("l3", "l3", "{ kind: route, host: '::1', port: 22 }"),
        ("l4", "l4", "{ kind: tcp, addr: '127.0.0.1:80', owner: false }"),
        ("l4u", "l4", "{ kind: udp, addr: '127.0.0.1:53', send: hi, expect: ho }"),
        (
            "l5",
            "l5",
            "{ kind: session, addr: '127.0.0.1:5433', send: PING, expect: PONG, requests: 3, max_time_wait: 9 }",
        ),
        (
            "l6",
            "l6",
            "{ kind: tls, addr: '127.0.0.1:443', server_name: example.test, ca_file: ca.pem, warn_days: 20, fail_days: 5 }",
        ),
        ("l6e", "l6", "{ kind: encoding, url: 'http://127.0.0.1:1/', format: json }"),
        ("l7", "l7", "{ kind: http, url: 'http://127.0.0.1:1/x', expect_status: 204, body: ok, max_latency_ms: 50 }"),
        ("l7d", "l7", "{ kind: dns, query: example.test, resolver: '127.0.0.1:5353', expect: 10.0.0.1 }"),
        ("l7p", "l7", "{ kind: postgres, addr: '127.0.0.1:5432', user: postgres }"),
        ("l7o", "l7", "{ kind: ollama, url: 'http://127.0.0.1:11434', model: 'demo:latest' }"),
        ("l7l", "l7", "{ kind: line, addr: '127.0.0.1:5433', send: PING, expect: PONG }"),
    ]);
    let cfg = load_in(dir.path(), &text).expect("valid");
    let check = |name: &str| cfg.probes.iter().find(|p| p.name == name).map(|p| p.check.clone()).expect(name);
    assert_eq!(check("l2"), ProbeCheck::Link { interface: "eth0".into(), gateway: true, min_mtu: Some(1400) });
    assert_eq!(check("l3"), ProbeCheck::Route { host: "::1".parse().expect("ip"), port: Some(22) });
    assert!(matches!(check("l4"), ProbeCheck::Tcp { owner: false, .. }));
    assert!(matches!(
        check("l5"),
        ProbeCheck::Session {
            requests: 3,
            max_time_wait: Some(9),
            max_established: None,
            exchange: Exchange::Line { .. }
        }
    ));
    assert!(
        matches!(check("l6"), ProbeCheck::Tls { warn_days: 20, fail_days: 5, ca_file: Some(ref f), .. } if f.ends_with("ca.pem"))
    );
    assert!(matches!(check("l6e"), ProbeCheck::Encoding { format: Format::Json, exchange: Exchange::Http { .. } }));
    assert!(
        matches!(check("l7"), ProbeCheck::Http { expect_status: Some(204), max_latency: Some(d), .. } if d == Duration::from_millis(50))
    );
    assert!(matches!(check("l7d"), ProbeCheck::Dns { resolver: Some(_), expect: Some(_), .. }));
    assert!(matches!(check("l7p"), ProbeCheck::Postgres { ref dbname, .. } if dbname == "postgres"));
    assert!(matches!(check("l7o"), ProbeCheck::Ollama { model: Some(_), .. }));
    assert!(matches!(check("l7l"), ProbeCheck::Line { .. }));
    // A tcp probe checks the port's owner unless told not to.
    let owner = load(&with_probes(&[("t", "l4", "{ kind: tcp, addr: '127.0.0.1:80' }")])).expect("valid");
    assert!(matches!(owner.probes[0].check, ProbeCheck::Tcp { owner: true, .. }));
}

#[test]
fn test_probe_mistakes_are_all_reported_with_their_positions() {
    let mut text = with_probes(&[
        ("wrong-layer", "l7", "{ kind: tcp, addr: '127.0.0.1:80' }"),
        ("foreign-key", "l4", "{ kind: tcp, addr: '127.0.0.1:80', interface: eth0 }"),
        ("no-host", "l3", "{ kind: route }"),
        ("bad-addr", "l4", "{ kind: tcp, addr: 'localhost:80' }"),
        ("bad-name", "l7", "{ kind: dns, query: 'no spaces please' }"),
        ("days", "l6", "{ kind: tls, addr: '127.0.0.1:443', warn_days: 1, fail_days: 7 }"),
        ("no-format", "l6", "{ kind: encoding, url: 'http://127.0.0.1:1/' }"),
        ("one-request", "l5", "{ kind: session, url: 'http://127.0.0.1:1/', requests: 1 }"),
        ("no-ca", "l6", "{ kind: tls, addr: '127.0.0.1:443', ca_file: /no/such/ca.pem }"),
    ]);
    text.push_str("  - name: slow\n    layer: l4\n    target: a\n    check: { kind: tcp, addr: '127.0.0.1:80' }\n    interval_ms: 100\n    timeout_ms: 100\n");
    let p = problems(&text);
    let has = |line: u64, what: &str| p.iter().any(|(l, _, m)| *l == line && m.contains(what));
    assert!(has(12, "kind tcp is a layer 4 check, not l7"), "{p:?}");
    assert!(has(18, "`interface` does not apply to kind tcp"), "{p:?}");
    assert!(has(22, "kind route needs `host`"), "{p:?}");
    assert!(has(26, "is not an IP:port address"), "{p:?}");
    assert!(has(30, "is not a DNS name"), "{p:?}");
    assert!(has(34, "warn_days 1 is below fail_days 7"), "{p:?}");
    assert!(has(38, "needs `format`"), "{p:?}");
    assert!(has(42, "requests must be at least 2"), "{p:?}");
    assert!(has(46, "is not a readable file"), "{p:?}");
    assert!(has(52, "timeout_ms 100 must be below interval_ms 100"), "{p:?}");
    assert_eq!(p.len(), 10, "{p:?}");
}

#[test]
fn test_an_unknown_layer_is_refused_at_its_position() {
    let p = problems(&with_probes(&[("x", "l8", "{ kind: tcp, addr: '127.0.0.1:80' }")]));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, 12, "{p:?}");
    assert!(p[0].2.contains("l8"), "{p:?}");
}

#[test]
fn test_alert_settings_are_parsed_and_every_mistake_reported() {
    let ok = load(&format!(
        "{MINIMAL}alerts:\n  flap_window_ms: 60000\n  flap_max_changes: 4\n  webhooks:\n    - url: http://127.0.0.1:9093/hook\n      max_attempts: 2\n"
    ))
    .expect("valid");
    assert_eq!(ok.alerts.flap.window, Duration::from_secs(60));
    assert_eq!(ok.alerts.flap.max_changes, 4);
    assert_eq!(ok.alerts.webhooks[0].url.as_str(), "http://127.0.0.1:9093/hook");
    assert_eq!((ok.alerts.webhooks[0].max_attempts, ok.alerts.webhooks[0].timeout), (2, Duration::from_secs(5)));
    assert_eq!(ok.alerts.group_wait, Duration::from_millis(DEFAULT_GROUP_WAIT_MS), "the default group wait");
    let at_once = load(&format!("{MINIMAL}alerts:\n  group_wait_ms: 0\n")).expect("valid");
    assert_eq!(at_once.alerts.group_wait, Duration::ZERO);
    let p = problems(&format!(
        "{MINIMAL}alerts:\n  flap_max_changes: 1\n  webhooks:\n    - url: ftp://x\n    - url: http://h/\n      timeout_ms: 0\n      max_attempts: 0\n"
    ));
    let has = |line: u64, text: &str| p.iter().any(|(l, _, m)| *l == line && m.contains(text));
    assert!(has(11, "flap_max_changes must be at least 2"), "{p:?}");
    assert!(has(13, "alerts.webhooks[0].url `ftp://x`"), "{p:?}");
    assert!(has(15, "alerts.webhooks[1].timeout_ms must be positive"), "{p:?}");
    assert!(has(16, "alerts.webhooks[1].max_attempts must be at least 1"), "{p:?}");
    assert_eq!(p.len(), 4, "{p:?}");
}

#[test]
fn test_upstreams_are_checked_at_load_with_positions() {
    let ok = MINIMAL.replace(
        "    depends_on: [a]\n",
        "    depends_on: [a]\n    args: [--db, 127.0.0.1:5433]\n    upstreams:\n      - { name: db, address: \"127.0.0.1:5433\", fallbacks: [\"127.0.0.1:5434\"] }\n",
    );
    let cfg = load(&ok).expect("valid");
    let b = service(&cfg, "b").expect("b");
    assert_eq!(b.upstreams[0].candidates().collect::<Vec<_>>(), ["127.0.0.1:5433", "127.0.0.1:5434"]);
    let bad = MINIMAL.replace(
        "    depends_on: [a]\n",
        "    depends_on: [a]\n    args: [--db, 127.0.0.1:5433]\n    upstreams:\n      - { name: db, address: \"127.0.0.1:9\", fallbacks: [\"nowhere\"] }\n      - { name: db, address: \"127.0.0.1:5433\" }\n",
    );
    let p = problems(&bad);
    let says = |needle: &str| p.iter().find(|(_, _, m)| m.contains(needle)).map(|(l, c, _)| (*l, *c));
    assert_eq!(says("`nowhere` is not HOST:PORT"), Some((12, 57)), "{p:?}");
    assert_eq!(says("`127.0.0.1:9` appears in none of its args"), Some((12, 30)), "{p:?}");
    assert_eq!(says("upstream `db` is defined twice"), Some((13, 17)), "{p:?}");
    assert_eq!(says("upstream `db` needs at least one fallback"), Some((13, 17)), "{p:?}");
}

#[test]
fn test_repair_paths_must_be_the_services_own() {
    let hooks =
        "    lock_file: ${data_dir}/services/a/LOCK\n    data: /var/lib/pg/main\n    credentials_file: ./creds\n";
    let ok = MINIMAL.replace("  - name: b\n", &format!("{hooks}  - name: b\n"));
    let cfg = load(&ok).expect("valid");
    let a = service(&cfg, "a").map(|s| s.hooks.clone()).expect("a");
    assert_eq!(a.lock_file.as_deref(), Some(Path::new("/d/services/a/LOCK")));
    assert_eq!(a.credentials_file.as_deref(), Some(Path::new("/etc/warden/creds")));
    let spelled = "    data: /usr/local/pgsql/data\n    lock_file: ${data_dir}/services/../services/a/LOCK\n";
    let cfg = load(&MINIMAL.replace("  - name: b\n", &format!("{spelled}  - name: b\n"))).expect("valid");
    let a = service(&cfg, "a").map(|s| s.hooks.clone()).expect("a");
    assert_eq!(a.lock_file.as_deref(), Some(Path::new("/d/services/a/LOCK")), "`..` worked out");
    let bad = "    lock_file: ${data_dir}/services/../store/LOCK\n    data: /usr/lib\n    credentials_file: /var/../bin/sh\n    secret_files: [/, /srv, ./.warden-audit.key, /etc]\n";
    let found = problems(&MINIMAL.replace("  - name: b\n", &format!("{bad}  - name: b\n")));
    let lines: Vec<u64> = found.iter().map(|p| p.0).collect();
    assert!(lines.iter().all(|l| (7..=10).contains(l)), "every one, at its line: {found:?}");
    let said = |line: u64, what: &str| found.iter().any(|p| p.0 == line && p.2.contains(what));
    assert!(said(7, "warden's own data"), "{found:?}");
    assert!(said(8, "system folder") && said(9, "system folder"), "{found:?}");
    assert!(said(10, "top-level") && said(10, "warden's own files"), "{found:?}");
    assert_eq!(
        found.iter().filter(|p| p.0 == 10).count(),
        4,
        "/, /srv, the audit key, /etc (holds the config): {found:?}"
    );
}

#[test]
fn test_max_unhealthy_takes_a_count_a_share_or_off() {
    use crate::holds::MaxUnhealthy;
    let with = |v: &str| load(&format!("{MINIMAL}healing:\n  max_unhealthy: {v}\n")).map(|c| c.healing.max_unhealthy);
    assert_eq!(with("3").expect("count"), MaxUnhealthy::Count(3));
    assert_eq!(with("\"40%\"").expect("share"), MaxUnhealthy::Percent(40));
    assert_eq!(with("off").expect("a bare off"), MaxUnhealthy::Off);
    assert_eq!(with("\"off\"").expect("a quoted off"), MaxUnhealthy::Off);
    for bad in ["on", "\"0%\"", "\"150%\"", "lots"] {
        let found = problems(&format!("{MINIMAL}healing:\n  max_unhealthy: {bad}\n"));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert_eq!(found[0].0, 11, "{bad}: {found:?}");
        assert!(found[0].2.contains("healing.max_unhealthy"), "{bad}: {found:?}");
    }
}

#[test]
fn test_snapshot_files_and_diagnose_keys_are_checked_all_at_once() {
    let base = "node:\n  name: t\n  http_listen: 127.0.0.1:7700\nservices:\n  - name: pg\n    command: /bin/true\n";
    let good = format!(
        "{base}    data: ${{data_dir}}/services/pg/data\n    credentials_file: ${{data_dir}}/services/pg/pw\n    snapshot: {{ method: command, command: [pg_basebackup, -D, '${{snapshot}}'], keep: 5, max_mb: 10 }}\n    diagnose:\n      - {{ pattern: 'checksum failure', cause: corrupt }}\n    files:\n      - {{ path: '${{data_dir}}/services/pg/pw', content: x }}\n      - {{ path: '${{data_dir}}/services/pg/app.conf', content: y }}\n      - {{ path: '${{data_dir}}/services/pg/other', content: z, mode: '0640' }}\n"
    );
    let cfg = load(&good).expect("valid");
    let pg = service(&cfg, "pg").expect("pg");
    let snap = &pg.hooks.snapshot;
    assert_eq!(snap.method, SnapshotMethod::Command(vec!["pg_basebackup".into(), "-D".into(), "${snapshot}".into()]));
    assert_eq!((snap.keep, snap.max_bytes), (5, 10 << 20));
    assert_eq!(pg.diagnose[0].cause, crate::diagnose::Cause::Corrupt);
    let modes: Vec<u32> = pg.files.iter().map(|f| f.mode).collect();
    assert_eq!(modes, [0o600, 0o644, 0o640], "its credentials are a secret; other files readable");
    // Without `snapshot:` a service's data is copied only while it is stopped.
    let plain = load(&format!("{base}    data: ${{data_dir}}/services/pg/data\n")).expect("valid");
    assert_eq!(service(&plain, "pg").expect("pg").hooks.snapshot, SnapshotPolicy::default());

    let bad = format!(
        "{base}    data: ${{data_dir}}/services/pg/data\n    snapshot: {{ method: command, keep: 0, max_mb: 0 }}\n    diagnose:\n      - {{ pattern: '(unclosed', cause: corrupt }}\n    files:\n      - {{ path: '${{data_dir}}/services/pg/x', content: x, mode: '999' }}\n"
    );
    let found = problems(&bad);
    let lines: Vec<u64> = found.iter().map(|p| p.0).collect();
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(found.iter().any(|p| p.2.contains("needs snapshot.command")), "{found:?}");
    assert!(found.iter().any(|p| p.2.contains("snapshot.keep")), "{found:?}");
    assert!(found.iter().any(|p| p.2.contains("snapshot.max_mb")), "{found:?}");
    assert!(found.iter().any(|p| p.2.contains("not a regular expression")), "{found:?}");
    assert!(found.iter().any(|p| p.2.contains("file mode `999`")), "{found:?}");
    assert!(lines.iter().all(|l| *l >= 8), "each at its own line: {found:?}");
    // A command that does not say where to write is refused.
    let nowhere = format!(
        "{base}    data: ${{data_dir}}/services/pg/data\n    snapshot: {{ method: command, command: [true] }}\n"
    );
    assert!(problems(&nowhere).iter().any(|p| p.2.contains("${snapshot}")));
}
