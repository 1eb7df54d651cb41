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

fn select_1(port: u16) -> Option<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-tAc", "select 1"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

#[test]
fn test_a_real_postgresql_runs_as_its_user_and_comes_back_after_kill_9() {
    let bin = postgres_bin_dir();
    let Ok(Some(pg)) = nix::unistd::User::from_name("postgres") else {
        panic!("the postgresql package creates the postgres user");
    };
    let ports = Ports::fresh();
    let mut node = Node::prepare("", ports);
    // postgres must be able to reach its data dir through ours.
    std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = node.dir.path().join("pgdata");
    std::fs::create_dir(&data).unwrap();
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
    wait_until("SELECT 1", Duration::from_secs(30), || select_1(port).as_deref() == Some("1"));
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
    wait_until("SELECT 1 again", Duration::from_secs(30), || select_1(port).as_deref() == Some("1"));
    wait_until("the postgres probe passing on the new process", Duration::from_secs(30), || {
        let p = probe_state("pg-sql");
        p["state"] == "up" && p["last_success_unix_ms"].as_u64() > Some(killed_at)
    });

    let groups: Vec<u32> = descendants(node.pid()).into_iter().flat_map(|(p, g)| [p, g]).collect();
    assert!(node.stop().unwrap().success(), "{}", node.stderr());
    wait_until("nothing of postgres left", Duration::from_secs(20), || alive_in_groups(&groups).is_empty());
}
