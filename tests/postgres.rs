//! A real PostgreSQL from Debian, supervised as any user would: it refuses to run as root,
//! so warden starts it as the `postgres` user; killed with SIGKILL, its orphaned backends
//! are cleared from its cgroup and it comes back to answer `SELECT 1`.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
use support::*;

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

#[test]
fn test_a_real_postgresql_runs_as_its_user_and_comes_back_after_kill_9() {
    let bin = postgres_bin_dir();
    let pg = postgres_user();
    let ports = Ports::fresh();
    let mut node = Node::prepare("", ports);
    let data = initdb_in(&node, &bin, &pg);
    let port = ports.db;
    let config = format!(
        "node:\n  name: pg\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: postgres\n    command: {postgres}\n    args: [-D, {data}, -p, '{port}', -k, {data}, -c, listen_addresses=127.0.0.1]\n    user: postgres\n    stop_signal: SIGINT\n    stop_grace_ms: 10000\n    ports: [{port}]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{port}' }}\n    restart: {{ stable_after_ms: 500 }}\nprobes:\n  - name: pg-sql\n    layer: l7\n    target: postgres\n    check: {{ kind: postgres, addr: '127.0.0.1:{port}', user: postgres }}\n  - name: pg-port\n    layer: l4\n    target: postgres\n    check: {{ kind: tcp, addr: '127.0.0.1:{port}' }}\n",
        http = ports.http,
        postgres = bin.join("postgres").display(),
        data = data.display(),
    );
    std::fs::write(node.config_path(), config).unwrap();
    node.spawn(&[]);
    wait_until(
        "postgres running",
        Duration::from_secs(60),
        || matches!(node.service("postgres"), Some((Some(_), ref s)) if s == "running"),
    );
    wait_until("SELECT 1", Duration::from_secs(30), || psql(port, "select 1").as_deref() == Some("1"));
    let (first, _) = node.service("postgres").unwrap();
    assert_eq!(uid_of(first.unwrap()), Some(pg.uid.as_raw()), "runs as the postgres user");
    // warden's own probes speak the protocol (SELECT 1) and see postgres as the port's owner.
    let probe_state = |id: &str| get_json(&node.url(&format!("/api/guardian/probes/{id}"))).unwrap_or_default();
    wait_until("the postgres probes up", Duration::from_secs(30), || {
        probe_state("pg-sql")["state"] == "up" && probe_state("pg-port")["state"] == "up"
    });

    let killed_at = warden_core::time::now_unix_ms();
    kill(first.unwrap(), Signal::SIGKILL);
    wait_until(
        "postgres restarted",
        Duration::from_secs(60),
        || matches!(node.service("postgres"), Some((Some(p), ref s)) if Some(p) != first && s == "running"),
    );
    wait_until("SELECT 1 again", Duration::from_secs(30), || psql(port, "select 1").as_deref() == Some("1"));
    wait_until("the postgres probe passing on the new process", Duration::from_secs(30), || {
        let p = probe_state("pg-sql");
        p["state"] == "up" && p["last_success_unix_ms"].as_u64() > Some(killed_at)
    });

    let groups: Vec<u32> = descendants(node.pid()).into_iter().flat_map(|(p, g)| [p, g]).collect();
    assert!(node.stop().unwrap().success(), "{}", node.stderr());
    wait_until("nothing of postgres left", Duration::from_secs(20), || alive_in_groups(&groups).is_empty());
}

/// The `postgres` user the postgresql package makes.
fn postgres_user() -> nix::unistd::User {
    nix::unistd::User::from_name("postgres").ok().flatten().expect("the postgresql package creates the postgres user")
}

fn psql(port: u16, sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-tAc", sql])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A PostgreSQL data dir made by `initdb` as `postgres`, inside the node's data dir (where
/// playbooks may snapshot and restore it): its path.
fn initdb_in(node: &Node, bin: &std::path::Path, pg: &nix::unistd::User) -> std::path::PathBuf {
    std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = node.data_dir().join("services/postgres/data");
    std::fs::create_dir_all(&data).unwrap();
    for d in [node.data_dir(), node.data_dir().join("services"), node.data_dir().join("services/postgres")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    nix::unistd::chown(&data, Some(pg.uid), Some(pg.gid)).unwrap();
    let init = Command::new(bin.join("initdb"))
        .args(["-D"])
        .arg(&data)
        .args(["--auth=trust", "-U", "postgres", "--no-sync"])
        .env("LC_ALL", "C")
        .uid(pg.uid.as_raw())
        .gid(pg.gid.as_raw())
        .output()
        .unwrap();
    assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
    data
}

/// The snapshot a command made while PostgreSQL ran (`pg_basebackup`, as the postgres user)
/// keeps its owner and mode; a corrupted `global/pg_control` is diagnosed from PostgreSQL's
/// own last words as corrupt data, not a plain crash loop, and restored from that snapshot
/// first: PostgreSQL starts on it and answers with the data it held.
#[test]
fn test_a_corrupt_pg_control_is_diagnosed_from_the_log_and_restored_from_a_pg_basebackup_snapshot() {
    use std::os::unix::fs::MetadataExt;
    let bin = postgres_bin_dir();
    let pg = postgres_user();
    let ports = Ports::fresh();
    let mut node = Node::prepare("", ports);
    let data = initdb_in(&node, &bin, &pg);
    let port = ports.db;
    let playbooks = node.dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("backup.yaml"),
        "playbooks:\n  - id: backup_database\n    name: Back up the database\n    description: A snapshot of its data, made as it declares (here pg_basebackup while it runs).\n    category: database\n    tier: 1\n    triggers: [database_unavailable]\n    max_retries: 0\n    timeout_ms: 60000\n    steps:\n      - do: snapshot_dir\n        path: \"${data}\"\n",
    )
    .unwrap();
    let config = format!(
        "node:\n  name: pg\n  http_listen: 127.0.0.1:{http}\nplaybooks_dir: playbooks\ngovernance_policies: {DEMO_POLICY}\nservices:\n  - name: postgres\n    role: database\n    command: {postgres}\n    args: [-D, {data}, -p, '{port}', -k, {data}, -c, listen_addresses=127.0.0.1]\n    user: postgres\n    stop_signal: SIGINT\n    stop_grace_ms: 10000\n    ports: [{port}]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{port}' }}\n    restart: {{ stable_after_ms: 500, backoff_initial_ms: 100, backoff_max_ms: 400 }}\n    data: {data}\n    snapshot:\n      method: command\n      command: [{basebackup}, -D, '${{snapshot}}', -h, 127.0.0.1, -p, '{port}', -U, postgres, --no-sync]\n      keep: 2\nprobes:\n  - name: pg-sql\n    layer: l7\n    target: postgres\n    check: {{ kind: postgres, addr: '127.0.0.1:{port}', user: postgres }}\n    interval_ms: 500\n    timeout_ms: 400\n  - name: pg-port\n    layer: l4\n    target: postgres\n    check: {{ kind: tcp, addr: '127.0.0.1:{port}' }}\n",
        http = ports.http,
        postgres = bin.join("postgres").display(),
        basebackup = bin.join("pg_basebackup").display(),
        data = data.display(),
    );
    std::fs::write(node.config_path(), config).unwrap();
    node.spawn(&[]);
    wait_until("SELECT 1", Duration::from_secs(60), || psql(port, "select 1").as_deref() == Some("1"));
    assert!(psql(port, "create table kept(x int); insert into kept values (42)").is_some());

    // Three backups while it runs: two are kept (its `keep`), pruned as each is made. The
    // last through the shipped `snapshot_database`, which does not stop a database whose
    // snapshots are made while it runs.
    let token = node.admin_token();
    let before = node.service("postgres").and_then(|(p, _)| p).expect("running");
    for (i, playbook) in ["backup_database", "backup_database", "snapshot_database"].into_iter().enumerate() {
        let (ok, out) = node.cli(
            &["playbooks", "run", playbook, "--target", "postgres", "--reason", &format!("backup {i}")],
            &[("WARDEN_TOKEN", &token)],
        );
        assert!(ok, "{out}");
    }
    assert_eq!(node.service("postgres").and_then(|(p, _)| p), Some(before), "never stopped for a backup");
    let snaps = node.data_dir().join("snapshots/postgres");
    let kept: Vec<std::path::PathBuf> = std::fs::read_dir(&snaps).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(kept.len(), 2, "pruned to its keep: {kept:?}");
    let tree = kept[0].join("tree");
    let meta = std::fs::metadata(&tree).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (pg.uid.as_raw(), 0o700), "as PostgreSQL needs its data dir");
    assert_eq!(std::fs::metadata(tree.join("global/pg_control")).unwrap().uid(), pg.uid.as_raw());
    let first_pid = node.service("postgres").and_then(|(p, _)| p).expect("running");

    // Bytes flipped in its control file; then it dies hard and must read the file again.
    let control = data.join("global/pg_control");
    let mut bytes = std::fs::read(&control).unwrap();
    for b in &mut bytes[16..48] {
        *b ^= 0xff;
    }
    std::fs::write(&control, bytes).unwrap();
    kill(first_pid, Signal::SIGKILL);

    let mut incident = serde_json::Value::Null;
    wait_until("a resolved database incident", Duration::from_secs(90), || {
        let all = get_json(&node.url("/api/incidents?limit=100")).unwrap_or_default();
        incident = all["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["mode"] == "database_unavailable")
            .cloned()
            .unwrap_or_default();
        incident["status"] == "resolved"
    });
    assert_eq!(incident["cause"], "corrupt", "PostgreSQL's log said so: {incident}");
    assert_eq!(incident["attempts"][0]["playbook"], "restore_database_snapshot", "{incident}");
    wait_until("the data back", Duration::from_secs(30), || psql(port, "select x from kept").as_deref() == Some("42"));
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (pg.uid.as_raw(), 0o700), "the restored data dir is PostgreSQL's");
    let groups: Vec<u32> = descendants(node.pid()).into_iter().flat_map(|(p, g)| [p, g]).collect();
    assert!(node.stop().unwrap().success(), "{}", node.stderr());
    wait_until("nothing of postgres left", Duration::from_secs(20), || alive_in_groups(&groups).is_empty());
}
