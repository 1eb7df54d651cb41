//! warden under a service manager: SIGHUP reloads, systemd's notify protocol and watchdog,
//! and the documented exit code when the tree gives up.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

fn sleeper(name: &str, secs: u32) -> String {
    format!("  - name: {name}\n    command: /bin/sh\n    args: [-c, 'exec sleep {secs}']\n")
}

fn pid_of(node: &Node, s: &str) -> Option<u32> {
    node.service(s).and_then(|(p, state)| (state == "running").then_some(p).flatten())
}

#[test]
fn test_sighup_restarts_changed_services_only_and_refuses_an_invalid_config() {
    let ports = Ports::fresh();
    let tag = ports.api;
    let head = format!("node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n", ports.http);
    let first = format!("{head}{}{}", sleeper("a", tag as u32 * 10 + 1), sleeper("b", tag as u32 * 10 + 2));
    let mut node = Node::start_with(&first, ports, &[]);
    wait_until("a and b running", Duration::from_secs(20), || {
        pid_of(&node, "a").is_some() && pid_of(&node, "b").is_some()
    });
    let (a, b) = (pid_of(&node, "a").unwrap(), pid_of(&node, "b").unwrap());

    // a's command changes, b stays, c is new.
    let second = format!(
        "{head}{}{}{}",
        sleeper("a", tag as u32 * 10 + 3),
        sleeper("b", tag as u32 * 10 + 2),
        sleeper("c", tag as u32 * 10 + 4)
    );
    std::fs::write(node.config_path(), &second).unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("a restarted and c started", Duration::from_secs(20), || {
        pid_of(&node, "a").is_some_and(|p| p != a) && pid_of(&node, "c").is_some()
    });
    assert_eq!(pid_of(&node, "b"), Some(b), "an unchanged service is not touched");
    assert!(node.stderr().contains("configuration reloaded"), "{}", node.stderr());
    let c = pid_of(&node, "c").unwrap();
    let a2 = pid_of(&node, "a").unwrap();

    // An invalid file is refused with its problem; nothing changes.
    std::fs::write(node.config_path(), second.replace("  name: t\n", "  name: t\n  colour: red\n")).unwrap();
    kill(node.pid(), Signal::SIGHUP);
    let path = node.config_path().display().to_string();
    wait_until("reload refused", Duration::from_secs(20), || node.stderr().contains("configuration reload refused"));
    assert!(node.stderr().contains(&format!("{path}:3:3: unknown field `colour`")), "{}", node.stderr());
    // What only a restart can change is refused too.
    let other_port = Ports::fresh().http;
    std::fs::write(node.config_path(), second.replace(&format!(":{}", node.ports.http), &format!(":{other_port}")))
        .unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("restart-only change refused", Duration::from_secs(20), || {
        node.stderr().contains("only a restart of warden can change: node.http_listen")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((pid_of(&node, "a"), pid_of(&node, "b"), pid_of(&node, "c")), (Some(a2), Some(b), Some(c)));
    assert_eq!(status_code(&node.url("/healthz")), Some(200));

    // Removing a service stops it.
    std::fs::write(
        node.config_path(),
        first.replace(&format!("sleep {}", tag as u32 * 10 + 1), &format!("sleep {}", tag as u32 * 10 + 3)),
    )
    .unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("c removed", Duration::from_secs(20), || node.service("c").is_none());
    assert!(alive_in_groups(&[c]).is_empty(), "the removed service's process is gone");
    assert!(node.stop().unwrap().success());
}

#[test]
fn test_sighup_stops_and_starts_single_probes_and_many_reloads_melt_nothing() {
    let ports = Ports::fresh();
    let tag = ports.api;
    let probe = |name: &str| {
        format!(
            "  - name: {name}\n    layer: l4\n    target: a\n    check: {{ kind: tcp, addr: '127.0.0.1:{}', owner: false }}\n    interval_ms: 200\n    timeout_ms: 150\n",
            ports.http
        )
    };
    let head = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n{}probes:\n",
        ports.http,
        sleeper("a", tag as u32 * 10 + 5)
    );
    let config = |probes: &[&str]| format!("{head}{}", probes.iter().map(|p| probe(p)).collect::<String>());
    let mut node = Node::start_with(&config(&["keep", "drop"]), ports, &[]);
    wait_until("ready", Duration::from_secs(30), || status_code(&node.url("/readyz")) == Some(200));
    let actor = |path: &str| {
        node.status().and_then(|s| s["actors"].as_array().and_then(|a| a.iter().find(|x| x["path"] == path).cloned()))
    };
    wait_until("both probes run", Duration::from_secs(20), || {
        actor("guardian/probe/keep").is_some() && actor("guardian/probe/drop").is_some()
    });
    let since = actor("guardian/probe/keep").unwrap()["since_unix_ms"].clone();

    std::fs::write(node.config_path(), config(&["keep"])).unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("the dropped probe is gone", Duration::from_secs(20), || actor("guardian/probe/drop").is_none());
    assert_eq!(status_code(&node.url("/readyz")), Some(200), "a removed probe is no reason to be unready");
    let probes = node.status().unwrap()["probes"].to_string();
    assert!(!probes.contains("\"drop\""), "{probes}");

    // Seven reloads within seconds, each adding or removing a probe: the guardian (5
    // restarts in 10 s) neither restarts nor melts down, the unchanged probe runs on.
    for round in 0..7 {
        let set: &[&str] = if round % 2 == 0 { &["keep", "extra"] } else { &["keep"] };
        std::fs::write(node.config_path(), config(set)).unwrap();
        kill(node.pid(), Signal::SIGHUP);
        let want = round % 2 == 0;
        wait_until("the reload applied", Duration::from_secs(20), || actor("guardian/probe/extra").is_some() == want);
    }
    let keep = actor("guardian/probe/keep").unwrap();
    assert_eq!((keep["restarts"].as_u64(), &keep["since_unix_ms"]), (Some(0), &since), "untouched: {keep}");
    let supervisor = actor("guardian/service_supervisor").unwrap();
    assert_eq!(supervisor["restarts"], 0, "the guardian was not restarted: {supervisor}");
    assert_eq!(status_code(&node.url("/readyz")), Some(200));
    assert!(!node.stderr().contains("restart intensity exceeded"), "{}", node.stderr());
    assert!(node.stop().unwrap().success());
}

#[test]
fn test_a_service_added_back_while_its_removal_is_still_stopping_it_stays() {
    // Removed by one SIGHUP, it takes its 3 s grace to stop (it ignores SIGTERM); a second
    // SIGHUP puts it back meanwhile. It must end up running, not be dropped by the first.
    let ports = Ports::fresh();
    let tag = ports.api;
    let head = format!("node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n", ports.http);
    let stubborn = format!(
        "  - name: s\n    command: /bin/sh\n    args: [-c, 'trap \"\" TERM; exec sleep {}']\n    stop_grace_ms: 3000\n",
        tag as u32 * 10 + 6
    );
    let with = format!("{head}{}{stubborn}", sleeper("a", tag as u32 * 10 + 7));
    let without = format!("{head}{}", sleeper("a", tag as u32 * 10 + 7));
    let mut node = Node::start_with(&with, ports, &[]);
    // Past its `trap` (it has exec'd sleep): from now on it ignores SIGTERM.
    let sleep = format!("sleep {}", tag as u32 * 10 + 6);
    wait_until("s ignoring TERM", Duration::from_secs(20), || processes_exactly(&sleep).len() == 1);
    let first = pid_of(&node, "s").unwrap();
    std::fs::write(node.config_path(), &without).unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("s stopping", Duration::from_secs(20), || node.service("s").is_some_and(|(_, st)| st == "stopping"));
    std::fs::write(node.config_path(), &with).unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("s running again", Duration::from_secs(30), || pid_of(&node, "s").is_some_and(|p| p != first));
    std::thread::sleep(Duration::from_millis(500));
    assert!(pid_of(&node, "s").is_some(), "still there: {:?}", node.status());
    assert!(node.stop().unwrap().success());
}

/// Collects what warden sends on a notify socket.
struct NotifySocket {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let got: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Bounded: the test's own lifetime; the socket file goes with the temp dir.
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    sink.lock().unwrap().push((Instant::now(), msg));
                }
            }
        });
        Self { path, got, _dir: dir }
    }

    fn count(&self, what: &str, since: Instant, until: Instant) -> usize {
        self.got.lock().unwrap().iter().filter(|(t, m)| *t >= since && *t < until && m.contains(what)).count()
    }
}

#[test]
fn test_notify_protocol_ready_watchdog_withheld_when_wedged_and_stopping() {
    let sock = NotifySocket::new();
    let ports = Ports::fresh();
    let notify = sock.path.display().to_string();
    let env = [("NOTIFY_SOCKET", notify.as_str()), ("WATCHDOG_USEC", "200000")];
    let mut node = Node::start_with_env(&default_config_on(ports), ports, &["--enable-fault-injection"], &env);
    node.wait_ready();
    let t0 = Instant::now();
    wait_until("READY=1", Duration::from_secs(20), || {
        sock.count("READY=1", t0 - Duration::from_secs(60), Instant::now()) == 1
    });
    wait_until("pings every 100 ms", Duration::from_secs(10), || sock.count("WATCHDOG=1", t0, Instant::now()) >= 3);

    // The service supervisor stalls for 3 s: no ping while it cannot answer.
    let r = node.post_as_admin("/api/debug/crash/guardian/service_supervisor?after_ms=3000").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let stalled = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    let during = sock.count("WATCHDOG=1", stalled + Duration::from_millis(500), stalled + Duration::from_millis(2500));
    assert_eq!(during, 0, "the watchdog ping is withheld while warden is wedged");
    wait_until("pings resume after the restart", Duration::from_secs(20), || {
        sock.count("WATCHDOG=1", stalled + Duration::from_millis(3000), Instant::now()) >= 2
    });
    assert!(node.stderr().contains("watchdog ping withheld"), "{}", node.stderr());

    assert!(node.stop().unwrap().success());
    assert!(sock.count("STOPPING=1", t0, Instant::now()) >= 1);
}

#[test]
fn test_meltdown_exits_with_the_documented_code_after_stopping_services_and_syncing() {
    // A governance subtree allowed one restart, under a node that allows none: the second
    // gatekeeper crash melts governance down, and the node gives up.
    let ports = Ports::fresh();
    let config = default_config_on(ports)
        .replace(
            "governance: { strategy: rest_for_one, max_restarts: 5,",
            "governance: { strategy: rest_for_one, max_restarts: 1,",
        )
        .replace(
            "node:       { strategy: one_for_one,  max_restarts: 10,",
            "node:       { strategy: one_for_one,  max_restarts: 0,",
        );
    let mut node = Node::start_with(&config, ports, &["--enable-fault-injection"]);
    node.wait_ready();
    let groups: Vec<u32> = descendants(node.pid()).into_iter().flat_map(|(p, g)| [p, g]).collect();
    let mut child = node.child.take().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "warden should have given up");
        let _ = node.post_as_admin("/api/debug/crash/governance/gatekeeper").send();
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(70), "{}", node.stderr());
    assert!(node.stderr().contains("restart intensity exceeded"), "{}", node.stderr());
    assert!(!node.stderr().contains("polled after completion"), "no panic on the way out: {}", node.stderr());
    wait_until("no service left", Duration::from_secs(10), || alive_in_groups(&groups).is_empty());
    let (ok, out) = node.cli(&["audit", "verify"], &[]);
    assert!(ok, "store synced and released: {out}");
}

#[test]
fn test_the_watchdog_keeps_pinging_while_a_stubborn_leftover_is_stopped() {
    // After a kill -9 of warden, a leftover whose definition changed must be stopped; it
    // ignores SIGTERM, so that takes its whole 3 s grace. warden stays responsive all along:
    // the watchdog is pinged, the API answers that it is still starting.
    let sock = NotifySocket::new();
    let ports = Ports::fresh();
    let tag = ports.api;
    let config = |marker: &str| {
        format!(
            "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: stubborn\n    command: /bin/sh\n    args: [-c, 'trap \"\" TERM; exec sleep {tag}9']\n    env: {{ MARK: {marker} }}\n    stop_grace_ms: 3000\n",
            ports.http
        )
    };
    let mut node = Node::start_with(&config("one"), ports, &[]);
    wait_until("running", Duration::from_secs(20), || processes_exactly(&format!("sleep {tag}9")).len() == 1);
    let old = processes_exactly(&format!("sleep {tag}9"));
    let mut warden = node.child.take().unwrap();
    kill(warden.id(), Signal::SIGKILL);
    let _ = warden.wait();
    std::fs::write(node.config_path(), config("two")).unwrap();
    let notify = sock.path.display().to_string();
    node.spawn_with_env(&[], &[("NOTIFY_SOCKET", notify.as_str()), ("WATCHDOG_USEC", "400000")]);
    let t0 = Instant::now();
    wait_until("warden answers", Duration::from_secs(20), || status_code(&node.url("/healthz")) == Some(200));
    if t0.elapsed() < Duration::from_millis(2000) {
        let r = http().get(node.url("/readyz")).send().unwrap();
        assert_eq!(r.status().as_u16(), 503, "still taking over");
    }
    wait_until("the new process runs", Duration::from_secs(30), || {
        let now = processes_exactly(&format!("sleep {tag}9"));
        now.len() == 1 && now != old
    });
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(2500), "the stop took its grace ({took:?})");
    let pings = sock.count("WATCHDOG=1", t0, t0 + took);
    assert!(pings as u128 >= took.as_millis() / 200 / 2, "{pings} pings in {took:?}: warden never looked wedged");
    assert!(!node.stderr().contains("watchdog ping withheld"), "{}", node.stderr());
}

#[test]
fn test_a_service_gets_default_signals_its_own_environment_and_the_original_open_files_limit() {
    // warden's launcher is a Rust program (which ignores SIGPIPE) and warden raises its own
    // open-files limit and may run under systemd: none of that may reach a service.
    let sock = NotifySocket::new();
    let ports = Ports::fresh();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen");
    let config = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: look\n    command: /bin/sh\n    args: [-c, 'grep SigIgn /proc/self/status > {o}.tmp; env >> {o}.tmp; echo \"soft $(ulimit -Sn)\" >> {o}.tmp; mv {o}.tmp {o}; exec sleep 60']\n",
        ports.http,
        o = out.display()
    );
    let notify = sock.path.display().to_string();
    // A soft limit below the hard one, so that warden's raise is visible (this process's
    // limit is what warden inherits; 1000 is plenty for this test binary).
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard > 1000 {
        setrlimit(Resource::RLIMIT_NOFILE, 1000, hard).unwrap();
    }
    let node = Node::start_with_env(&config, ports, &[], &[("NOTIFY_SOCKET", notify.as_str())]);
    wait_until("the service wrote what it saw", Duration::from_secs(20), || out.exists());
    let seen = std::fs::read_to_string(&out).unwrap();
    let ignored = seen
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap();
    assert_eq!(ignored & (1 << (libc_sigpipe() - 1)), 0, "SIGPIPE is not ignored: {seen}");
    assert!(!seen.contains("NOTIFY_SOCKET"), "warden's notify socket is warden's own: {seen}");
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(seen.contains(&format!("soft {soft}\n")), "the open-files limit warden was given ({soft}): {seen}");
    drop(node);
}

fn libc_sigpipe() -> u32 {
    Signal::SIGPIPE as u32
}
