use super::*;
use crate::source::Source;

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
    assert_eq!((probe.interval, probe.timeout), (Duration::from_millis(100), Duration::from_millis(200)));
    assert!(matches!(&probe.check, ProbeCheck::Http { url, .. } if url.port() == Some(8000)));
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
