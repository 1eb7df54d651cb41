//! Shared helpers for integration tests: free ports, a warden node on its own ports and
//! data dir, bounded waits, and a scan of /proc for leftover processes.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
pub const DEFAULT_NODE_YAML: &str = include_str!("../../config/node.yaml");

/// A port nothing listens on right now, below Linux's ephemeral range (32768–60999) so
/// that the many short outgoing connections of probes can never take it before the
/// service that is meant to bind it does.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(13)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// Polls `pred` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().unwrap()
}

/// A client for calls that wait for a whole playbook run (a stop's grace and a start).
pub fn slow_http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).no_proxy().build().unwrap()
}

pub fn get_json(url: &str) -> Option<serde_json::Value> {
    http().get(url).send().ok()?.json().ok()
}

pub fn status_code(url: &str) -> Option<u16> {
    http().get(url).send().ok().map(|r| r.status().as_u16())
}

/// The ports of one test node.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub db: u16,
    pub model: u16,
    pub api: u16,
}

impl Ports {
    pub fn fresh() -> Self {
        Self { http: free_port(), db: free_port(), model: free_port(), api: free_port() }
    }
}

/// The embedded default node config moved onto `ports`.
pub fn default_config_on(ports: Ports) -> String {
    DEFAULT_NODE_YAML
        .replace("127.0.0.1:7700", &format!("127.0.0.1:{}", ports.http))
        .replace("127.0.0.1:5433", &format!("127.0.0.1:{}", ports.db))
        .replace("ports: [5433]", &format!("ports: [{}]", ports.db))
        .replace("127.0.0.1:11434", &format!("127.0.0.1:{}", ports.model))
        .replace("ports: [11434]", &format!("ports: [{}]", ports.model))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{}", ports.api))
        .replace("ports: [8000]", &format!("ports: [{}]", ports.api))
}

/// `config` with automatic repair off: for tests that make a fault to run a playbook by
/// hand (or to watch a probe), where the healer would repair it first.
pub fn hands_off(config: &str) -> String {
    if config.contains("\nhealing:\n  enabled: false") {
        config.to_string()
    } else if config.contains("\nhealing:\n") {
        config.replacen("\nhealing:\n", "\nhealing:\n  enabled: false\n", 1)
    } else {
        format!("{config}\nhealing:\n  enabled: false\n")
    }
}

/// The demo node's policy (dev mode), as a file beside a test node's config.
pub const DEMO_POLICY: &str = "demo-policy.yaml";

/// A running `warden run` with its own config, ports and data dir; stopped on drop.
pub struct Node {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    pub stderr_path: PathBuf,
}

impl Node {
    /// Starts the default demo node on fresh ports.
    pub fn start_default(extra: &[&str]) -> Self {
        let ports = Ports::fresh();
        Self::start_with(&default_config_on(ports), ports, extra)
    }

    /// The default demo node on fresh ports, with automatic repair off ([`hands_off`]).
    pub fn start_default_hands_off() -> Self {
        let ports = Ports::fresh();
        Self::start_with(&hands_off(&default_config_on(ports)), ports, &[])
    }

    pub fn start_with(config: &str, ports: Ports, extra: &[&str]) -> Self {
        Self::start_with_env(config, ports, extra, &[])
    }

    pub fn start_with_env(config: &str, ports: Ports, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut node = Self::prepare(config, ports);
        node.spawn_with_env(extra, env);
        node
    }

    /// A node's config and dirs, not started yet. A config that names no governance policy
    /// gets the demo node's (dev mode: tier 3 approved at once), as the embedded node has:
    /// these tests exercise repairs, not approvals. [`Node::prepare_as_written`] keeps a
    /// config as it is (a user's node without a policy runs in production mode).
    pub fn prepare(config: &str, ports: Ports) -> Self {
        if config.contains("governance_policies:") {
            return Self::prepare_as_written(config, ports);
        }
        Self::prepare_as_written(&format!("{config}\ngovernance_policies: {DEMO_POLICY}\n"), ports)
    }

    /// A node's config exactly as given, and its dirs, not started yet (with the demo
    /// policy's file beside it when the config names it).
    pub fn prepare_as_written(config: &str, ports: Ports) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node.yaml"), config).unwrap();
        if config.contains(&format!("governance_policies: {DEMO_POLICY}")) {
            std::fs::write(dir.path().join(DEMO_POLICY), warden_core::policy::DEFAULT_POLICIES_YAML).unwrap();
        }
        let stderr_path = dir.path().join("warden.stderr");
        Self { child: None, dir, ports, stderr_path }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("node.yaml")
    }

    /// Starts `warden run` on this node's config and data dir (again, after a stop).
    pub fn spawn(&mut self, extra: &[&str]) {
        self.spawn_with_env(extra, &[]);
    }

    /// Like [`Node::spawn`], with extra environment variables for warden.
    pub fn spawn_with_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let child = Command::new(WARDEN)
            // Its runtime file in its own folder, not the machine's.
            .env("WARDEN_RUNTIME_DIR", self.runtime_dir())
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(self.dir.path().join("node.yaml"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.stderr_path).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Where it publishes its address for the command line.
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.http)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.api)
    }

    /// The admin token warden made at its first start (the data dir's token book).
    pub fn admin_token(&self) -> String {
        let path = self.data_dir().join("admin.token");
        wait_until("the admin token", Duration::from_secs(30), || path.exists());
        std::fs::read_to_string(&path).unwrap().trim().to_string()
    }

    /// `warden ARGS --config … --data-dir …` for this node, with `env` set: whether it
    /// succeeded, and its stdout followed by its stderr.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let out = std::process::Command::new(WARDEN)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// A POST to warden's API as its admin.
    pub fn post_as_admin(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        http().post(self.url(path)).bearer_auth(self.admin_token())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        get_json(&self.url("/api/status"))
    }

    /// (pid, state) of a service from `/api/status`.
    pub fn service(&self, name: &str) -> Option<(Option<u32>, String)> {
        let s = self.status()?;
        let svc = s["services"].as_array()?.iter().find(|x| x["name"] == name)?.clone();
        Some((svc["pid"].as_u64().map(|p| p as u32), svc["state"].as_str()?.to_string()))
    }

    /// The healing pillar's counters: incidents, runs, outcomes.
    pub fn healer_stats(&self) -> serde_json::Value {
        get_json(&self.url("/api/guardian/healer/stats")).unwrap_or_default()
    }

    /// Hangs the `slow` service (of [`slow_node_config`]) with SIGSTOP and waits until its
    /// incident is open and its playbook runs.
    pub fn hang_slow_service(&self) {
        wait_until(
            "slow service running",
            Duration::from_secs(30),
            || matches!(self.service("slow"), Some((Some(_), ref s)) if s == "running"),
        );
        let (pid, _) = self.service("slow").unwrap();
        kill(pid.unwrap(), nix::sys::signal::Signal::SIGSTOP);
        wait_until("incident opened", Duration::from_secs(20), || self.healer_stats()["incidents"]["open"] == 1);
        wait_until("its playbook running", Duration::from_secs(20), || {
            self.healer_stats()["last_runs"][0]["outcome"] == "running"
        });
    }

    /// Waits until every service runs and the api answers 200.
    pub fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if status_code(&self.url("/readyz")) == Some(200) && status_code(&self.api_url("/health")) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("node not ready after 60 s; status: {:?}\nwarden stderr:\n{}", self.status(), self.stderr());
    }

    /// SIGTERM and wait for exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `signal` and waits (bounded) for exit; returns the exit status.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failing test shows what warden said last.
        if std::thread::panicking() {
            let text = self.stderr();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- warden stderr (last 80 lines) ---\n{}", lines[lines.len().saturating_sub(80)..].join("\n"));
        }
        let pid = self.child.as_ref().map(|c| c.id());
        let children = pid.map(descendants).unwrap_or_default();
        self.stop();
        // Whatever a failed test left behind must not outlive it.
        for (p, pgrp) in children {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgrp as i32), nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// (pid, ppid, pgrp) of every process.
pub fn all_procs() -> Vec<(u32, u32, u32)> {
    procfs::process::all_processes()
        .map(|all| {
            all.flatten()
                .filter_map(|p| p.stat().ok())
                .map(|st| (st.pid as u32, st.ppid as u32, st.pgrp as u32))
                .collect()
        })
        .unwrap_or_default()
}

fn is_zombie(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32).and_then(|p| p.stat()).map(|st| st.state == 'Z').unwrap_or(true)
}

/// Every live process descended from `root`, with its process group.
pub fn descendants(root: u32) -> Vec<(u32, u32)> {
    let procs = all_procs();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid, pgrp) in &procs {
            if ppid == p {
                out.push((pid, pgrp));
                frontier.push(pid);
            }
        }
    }
    out
}

/// Live processes whose pid or process group is in `groups` (zombies excluded).
pub fn alive_in_groups(groups: &[u32]) -> Vec<u32> {
    all_procs()
        .into_iter()
        .filter(|&(pid, _, pgrp)| groups.contains(&pid) || groups.contains(&pgrp))
        .filter(|&(pid, _, _)| !is_zombie(pid))
        .map(|(pid, _, _)| pid)
        .collect()
}

pub fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// promtool and PostgreSQL come from Debian packages; a fresh machine gets them from the
/// project's own install script (quiet and idempotent), so `cargo test` alone suffices.
fn install_deps() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/install-deps.sh");
    let out = Command::new("bash").arg(&script).output().unwrap();
    assert!(out.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
}

pub fn ensure_promtool() {
    if Command::new("promtool").arg("--version").output().is_err() {
        install_deps();
    }
}

/// `ip` (Debian package `iproute2`), for tests in network namespaces.
pub fn ensure_iproute2() {
    if Command::new("ip").arg("-V").output().is_err() {
        install_deps();
    }
}

/// Installs Monit when it is missing: the soak's peer.
pub fn ensure_monit() {
    let found = Command::new("monit").arg("-V").output().is_ok_and(|o| o.status.success());
    if !found {
        install_deps();
    }
}

/// Installs nftables (`nft`) when it is missing: the link-loss fault's rule.
pub fn ensure_nft() {
    let found = Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        install_deps();
    }
}

/// The directory of PostgreSQL's server binaries (newest version installed).
pub fn postgres_bin_dir() -> PathBuf {
    let find = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("postgres").exists()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs.pop()
    };
    if let Some(dir) = find() {
        return dir;
    }
    install_deps();
    find().expect("postgres installed by .ci/install-deps.sh")
}

/// A node with one service, `slow`, that takes 2 s to come back after a restart (a shell
/// sleeps, then execs the demo model server on `ports.api`), probed at L7 every 100 ms: a
/// hang's playbook spends about 2 s verifying, long enough to land a fault in.
pub fn slow_node_config(ports: Ports) -> String {
    format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http}\nservices:\n  - name: slow\n    command: /bin/sh\n    args: [-c, 'sleep 2; exec {warden} demo model --listen 127.0.0.1:{port}']\n    ports: [{port}]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{port}/api/version' }}\nprobes:\n  - name: slow-http\n    layer: l7\n    target: slow\n    check: {{ kind: http, url: 'http://127.0.0.1:{port}/api/version' }}\n    interval_ms: 150\n    timeout_ms: 140\n    failure_threshold: 2\n",
        http = ports.http,
        port = ports.api,
        warden = WARDEN
    )
}

/// Live (not zombie) processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    procfs::process::all_processes()
        .map(|all| {
            all.flatten()
                .filter(|p| p.stat().is_ok_and(|st| st.state != 'Z'))
                .filter(|p| p.cmdline().is_ok_and(|c| c.join(" ").contains(needle)))
                .map(|p| p.pid as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes whose whole command line is `cmdline` (words separated by spaces).
pub fn processes_exactly(cmdline: &str) -> Vec<u32> {
    let want: Vec<&str> = cmdline.split(' ').collect();
    procfs::process::all_processes()
        .map(|all| {
            all.flatten()
                .filter(|p| p.stat().is_ok_and(|st| st.state != 'Z'))
                .filter(|p| p.cmdline().is_ok_and(|c| c == want))
                .map(|p| p.pid as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether warden put its services in cgroups (it says so in its log at start).
pub fn node_has_cgroups(node: &Node) -> bool {
    wait_until("warden reports its containment", Duration::from_secs(20), || node.stderr().contains("containment="));
    node.stderr().contains("containment=cgroup")
}

/// An HTTP receiver on loopback that keeps every JSON body posted to it (a webhook sink
/// like Alertmanager's receivers). Answers 500 to the first `fail_first` requests, then 200.
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Each request's line and headers, lower-cased.
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (b, r, h) = (bodies.clone(), requests.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                h.lock().unwrap().push(head);
                let n = r.fetch_add(1, Ordering::SeqCst);
                let status = if n < fail_first { "500 Internal Server Error" } else { "200 OK" };
                if n >= fail_first
                    && let Ok(v) = serde_json::from_slice(&body)
                {
                    b.lock().unwrap().push(v);
                }
                let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Self { addr, bodies, requests, heads }
    }

    /// Every request's line and headers so far, lower-cased.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every body accepted so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Requests received, refused ones included.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The value of the first sample of `/metrics` text whose line starts with `series`
/// (a name with its labels, as far as given).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// A test CA and the certificates for `localhost` it signs (real TLS peers for probe and
/// playbook tests).
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "warden test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca, ca_key }
    }

    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `localhost`, valid from a week ago until `expires_in` from now.
    pub fn leaf(&self, expires_in: time::Duration) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(7);
        params.not_after = now + expires_in;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert, key)
    }

    /// Writes a certificate for `localhost` expiring in `expires_in`, and its key, as PEM.
    pub fn write_leaf(&self, cert: &Path, key: &Path, expires_in: time::Duration) {
        let (leaf, leaf_key) = self.leaf(expires_in);
        std::fs::write(cert, leaf.pem()).unwrap();
        std::fs::write(key, leaf_key.serialize_pem()).unwrap();
    }
}

/// `config` (the default node) with a standby db and a standby model server, declared as
/// the api's upstream fallbacks; with the standbys' ports.
pub fn with_standbys(config: &str, ports: Ports) -> (String, u16, u16) {
    let (db2, model2) = (free_port(), free_port());
    let config = config
        .replace(
            "  - name: api\n",
            &format!(
                "  - name: dbstandby\n    command: \"@warden\"\n    args: [demo, db, --listen, \"127.0.0.1:{db2}\", --data-dir, \"${{data_dir}}/services/dbstandby/data\", --password-file, \"${{data_dir}}/services/db/password\"]\n    ports: [{db2}]\n    depends_on: [db]\n    ready: {{ kind: tcp, addr: \"127.0.0.1:{db2}\" }}\n\n  - name: modelstandby\n    command: \"@warden\"\n    args: [demo, model, --listen, \"127.0.0.1:{model2}\"]\n    ports: [{model2}]\n    ready: {{ kind: http, url: \"http://127.0.0.1:{model2}/api/version\" }}\n\n  - name: api\n"
            ),
        )
        .replace(
            "    depends_on: [db, model]\n",
            &format!(
                "    depends_on: [db, model]\n    upstreams:\n      - {{ name: db, address: \"127.0.0.1:{}\", fallbacks: [\"127.0.0.1:{db2}\"] }}\n      - {{ name: model, address: \"http://127.0.0.1:{}\", fallbacks: [\"http://127.0.0.1:{model2}\"] }}\n",
                ports.db, ports.model
            ),
        );
    (config, db2, model2)
}

/// A child process killed (and reaped) when the test ends, whatever happened.
pub struct KillOnDrop(pub Child);

/// A stranger on `port`: another program entirely (the demo db, data in `dir`), once it
/// listens.
pub fn stranger_on(port: u16, dir: &Path) -> KillOnDrop {
    let stranger = Command::new(WARDEN)
        .args(["demo", "db", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("stranger"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stranger = KillOnDrop(stranger);
    wait_until("the stranger listens", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    stranger
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real SMTP server on loopback that accepts every message (an SMTP sink, like a test
/// mail catcher): greets, answers EHLO/HELO, MAIL, RCPT, DATA (until the lone dot), RSET,
/// NOOP and QUIT, and keeps each message's envelope and text.
pub struct SmtpSink {
    pub addr: std::net::SocketAddr,
    messages: std::sync::Arc<std::sync::Mutex<Vec<SmtpMessage>>>,
}

#[derive(Debug, Clone, Default)]
pub struct SmtpMessage {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl SmtpSink {
    pub fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut out) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let _ = out.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut lines = BufReader::new(out.try_clone().unwrap());
                    let mut say = |text: &str| out.write_all(format!("{text}\r\n").as_bytes()).is_ok();
                    if !say("220 sink ESMTP ready") {
                        return;
                    }
                    let mut msg = SmtpMessage::default();
                    loop {
                        let mut line = String::new();
                        if lines.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let upper = line.trim_end().to_ascii_uppercase();
                        let ok = if upper.starts_with("EHLO") {
                            say("250-sink") && say("250 8BITMIME")
                        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                            say("250 ok")
                        } else if upper.starts_with("MAIL FROM:") {
                            msg.from = line.trim_end()[10..].trim().to_string();
                            say("250 ok")
                        } else if upper.starts_with("RCPT TO:") {
                            msg.to.push(line.trim_end()[8..].trim().to_string());
                            say("250 ok")
                        } else if upper == "DATA" {
                            if !say("354 end with <CRLF>.<CRLF>") {
                                return;
                            }
                            loop {
                                let mut l = String::new();
                                if lines.read_line(&mut l).unwrap_or(0) == 0 {
                                    return;
                                }
                                if l == ".\r\n" || l == ".\n" {
                                    break;
                                }
                                msg.data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            }
                            kept.lock().unwrap().push(std::mem::take(&mut msg));
                            say("250 queued")
                        } else if upper.starts_with("RSET") {
                            msg = SmtpMessage::default();
                            say("250 ok")
                        } else if upper.starts_with("QUIT") {
                            let _ = say("221 bye");
                            return;
                        } else {
                            say("502 not implemented")
                        };
                        if !ok {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, messages }
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.messages.lock().unwrap().clone()
    }
}

/// PostgreSQL, Redis and nginx from Debian, for the real-services reference node.
pub fn ensure_reference_packages() {
    let _ = postgres_bin_dir();
    let present = |cmd: &str| Command::new(cmd).arg("-v").output().is_ok() || Path::new("/usr/sbin").join(cmd).exists();
    if !present("redis-server") || !present("nginx") {
        install_deps();
    }
}

/// The node's available memory now (`MemAvailable`), in MiB.
pub fn available_mib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}
