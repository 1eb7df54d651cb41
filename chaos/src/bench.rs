//! `warden chaos bench`: time to restore, warden against a peer supervisor, in one run on the
//! same demo api. Three parts, each leaving no process behind:
//!
//! 1. warden: `<this exe> run --data-dir <tmp>` (the embedded default node); its idle RSS and
//!    CPU are sampled before any fault, then `runs` faults of each kind.
//! 2. the api's own start time: db and model started by hand, the api spawned directly,
//!    spawn to first `200` on `/health`.
//! 3. the peer (Monit): same db and model, Monit supervising the api through a pidfile, the
//!    same faults.
//!
//! The harness is a child subreaper, so the api that Monit starts through `sh -c '... &'`
//! is reaped as soon as it dies, like under a real init.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::error::BenchError;
use crate::monit::{self, MonitRc};
use crate::procs::{self, Group};
use crate::report::{Idle, Machine, Method, PeerInfo, Report, SeriesReport};
use crate::restore::{self, Fault, Probe, Timing};
use crate::services::{self, API_PORT, DB_PORT, DemoFiles, MODEL_PORT, NODE_PORTS, WARDEN_PORT};

/// The supervisor warden is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// Monit (Debian package `monit`).
    Monit,
    /// No peer: warden and the api's start time only.
    None,
}

/// Everything a benchmark run needs to know.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub runs: u32,
    pub peer: Peer,
    pub faults: Vec<Fault>,
    pub out: Option<PathBuf>,
    pub json: Option<PathBuf>,
    /// Monit's `set daemon` cycle, seconds.
    pub monit_cycle: u32,
    /// Measure the peer and the api only (for working on the harness).
    pub skip_warden: bool,
    /// How long warden idles before its RSS and CPU are read.
    pub idle: Duration,
    /// Keep the temporary directories (logs, monitrc) for inspection.
    pub keep_tmp: bool,
    pub timing: Timing,
}

impl BenchConfig {
    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let peer = match self.peer {
            Peer::Monit => "monit",
            Peer::None => "none",
        };
        let faults: Vec<&str> = self.faults.iter().map(|f| f.name()).collect();
        let mut cmd = format!("warden chaos bench --runs {} --peer {peer} --faults {}", self.runs, faults.join(","));
        if self.peer == Peer::Monit && self.monit_cycle != 1 {
            cmd.push_str(&format!(" --monit-cycle {}", self.monit_cycle));
        }
        if !self.timing.settle.is_zero() {
            cmd.push_str(&format!(" --settle {}", self.timing.settle.as_secs()));
        }
        if self.idle != Duration::from_secs(5) {
            cmd.push_str(&format!(" --idle-secs {}", self.idle.as_secs()));
        }
        if self.skip_warden {
            cmd.push_str(" --skip-warden");
        }
        if let Some(out) = &self.out {
            cmd.push_str(&format!(" --out {}", out.display()));
        }
        if let Some(json) = &self.json {
            cmd.push_str(&format!(" --json {}", json.display()));
        }
        cmd
    }
}

/// Runs the benchmark and writes `--out` / `--json` when given.
pub async fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("locating this executable"))?;
    let monit = match cfg.peer {
        Peer::Monit => Some(monit::find_monit()?),
        Peer::None => None,
    };
    procs::become_subreaper()?;
    let mut report = Report {
        kind: "restore_bench",
        date: crate::report::today_utc(),
        command: cfg.command(),
        machine: Machine::detect(),
        runs: cfg.runs,
        faults: cfg.faults.clone(),
        method: Method {
            request_timeout_ms: cfg.timing.request_timeout.as_millis() as u64,
            poll_every_ms: cfg.timing.poll_every.as_millis() as u64,
            run_limit_s: cfg.timing.run_limit.as_secs(),
            stable_for_ms: cfg.timing.stable_for.as_millis() as u64,
            max_jitter_ms: 1000,
            settle_s: cfg.timing.settle.as_secs(),
        },
        peer: monit.as_ref().map(|m| PeerInfo {
            name: "monit".to_string(),
            version: monit::version(m),
            cycle_s: cfg.monit_cycle.max(1),
        }),
        api_start: None,
        warden_idle: None,
        results: Vec::new(),
        notes: Vec::new(),
    };

    if !cfg.skip_warden {
        warden_part(cfg, &exe, &mut report).await?;
    }
    peer_part(cfg, &exe, monit.as_deref(), &mut report).await?;

    if let Some(out) = &cfg.out {
        crate::report::write_markdown(out, &report)?;
    }
    if let Some(json) = &cfg.json {
        crate::report::write_json(json, &report)?;
    }
    Ok(report)
}

/// warden's half: start the default node, sample it idle, inject the faults, stop it.
async fn warden_part(cfg: &BenchConfig, exe: &Path, report: &mut Report) -> Result<(), BenchError> {
    procs::ensure_ports_free(&NODE_PORTS)?;
    let tmp = procs::temp_dir("warden-bench-node", cfg.keep_tmp)?;
    let data = tmp.path().join("data");
    let args = vec!["run".to_string(), "--data-dir".to_string(), data.to_string_lossy().into_owned()];
    let mut node = Group::spawn("warden run", exe, &args, &tmp.path().join("warden.log"))?;
    eprintln!("warden: started node pid {}", node.pid());

    let healthz = Probe::new(&services::warden_health_url(), cfg.timing)?;
    let api = Probe::new(&services::api_health_url(), cfg.timing)?;
    let boot_limit = Duration::from_secs(60);
    let booted = healthz.first_ok(Instant::now(), boot_limit).await.is_some();
    if !booted || !api.wait_stable().await {
        let what = if booted { "the demo api under warden" } else { "warden's API (GET /healthz)" };
        let log = node.log_tail(30);
        node.kill_group().await;
        return Err(BenchError::NotHealthy { what: what.to_string(), secs: boot_limit.as_secs(), log });
    }

    report.warden_idle = Some(sample_idle(node.pid(), cfg.idle).await);
    eprintln!("warden: idle RSS {} KiB", report.warden_idle.as_ref().map_or(0, |i| i.rss_kib));

    for &fault in &cfg.faults {
        let series = restore::measure_series(&api, API_PORT, fault, cfg.runs, "warden").await?;
        report.results.push(SeriesReport::new("warden", Some(fault), &series.samples, series.failures)?);
    }

    if !node.is_running() {
        report.notes.push("warden itself exited during the faults (see the run's log)".to_string());
    }
    let clean = node.stop_leader(Duration::from_secs(20)).await;
    let mut left = Vec::new();
    for port in [API_PORT, DB_PORT, MODEL_PORT, WARDEN_PORT] {
        if !procs::holders(port)?.is_empty() {
            left.push(port);
        }
    }
    node.kill_group().await;
    procs::kill_our_listeners(&NODE_PORTS);
    if !clean {
        report.notes.push("warden did not exit within 20 s of SIGTERM and was killed".to_string());
    }
    if !left.is_empty() {
        report.notes.push(format!(
            "after warden exited, ports {left:?} were still held by its services (killed by the harness)"
        ));
    }
    wait_ports_free(&NODE_PORTS).await;
    Ok(())
}

/// RSS and CPU share of `pid` over an idle window.
async fn sample_idle(pid: u32, window: Duration) -> Idle {
    let ticks0 = procs::stat_of(pid).map_or(0, |s| s.cpu_ticks);
    let start = Instant::now();
    sleep(window).await;
    let elapsed = start.elapsed().as_secs_f64();
    let ticks1 = procs::stat_of(pid).map_or(ticks0, |s| s.cpu_ticks);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|&hz| hz > 0).unwrap_or(100)
        as f64;
    Idle {
        rss_kib: procs::rss_kib(pid).unwrap_or(0),
        cpu_percent: (ticks1.saturating_sub(ticks0)) as f64 / hz / elapsed.max(1e-9) * 100.0,
        window_s: window.as_secs(),
    }
}

/// The api's own start time, then the peer's half, sharing one db and one model.
async fn peer_part(cfg: &BenchConfig, exe: &Path, monit: Option<&Path>, report: &mut Report) -> Result<(), BenchError> {
    procs::ensure_ports_free(&[API_PORT, DB_PORT, MODEL_PORT])?;
    let tmp = procs::temp_dir("warden-bench-peer", cfg.keep_tmp)?;
    let files = DemoFiles::create(tmp.path())?;
    // Dropped last: kills an api that Monit started, on every way out of this function.
    let _api_guard = OrphanApi { pidfile: tmp.path().join("api.pid") };
    let (mut db, mut model) = files.start_dependencies(exe).await?;
    eprintln!("deps: db pid {}, model pid {}", db.pid(), model.pid());

    let api = Probe::new(&services::api_health_url(), cfg.timing)?;
    let (samples, failures) = api_start_times(exe, &files, &api, cfg.runs).await?;
    report.api_start.replace(SeriesReport::new("api", None, &samples, failures)?);

    if let Some(monit) = monit {
        monit_part(cfg, monit, exe, &files, &api, report).await?;
    }
    db.terminate(Duration::from_secs(5)).await;
    model.terminate(Duration::from_secs(5)).await;
    procs::reap_orphans();
    Ok(())
}

/// Spawns the api `runs` times by hand: spawn to first 200 on `/health`.
async fn api_start_times(
    exe: &Path,
    files: &DemoFiles,
    probe: &Probe,
    runs: u32,
) -> Result<(Vec<Duration>, Vec<String>), BenchError> {
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    let log = files.dir.join("api-direct.log");
    let limit = Duration::from_secs(30);
    for run in 1..=runs {
        wait_ports_free(&[API_PORT]).await;
        let t0 = Instant::now();
        let mut child = Group::spawn("demo api", exe, &files.api_args(), &log)?;
        match probe.first_ok(t0, limit).await {
            Some(after) => {
                eprintln!("api start {run}/{runs}: {:.3} s", after.as_secs_f64());
                samples.push(after);
            }
            None => {
                let reason = format!("no 200 within {} s{}", limit.as_secs(), child.log_tail(5));
                eprintln!("api start {run}/{runs}: FAILED: {reason}");
                failures.push(reason);
            }
        }
        child.kill_group().await;
    }
    wait_ports_free(&[API_PORT]).await;
    Ok((samples, failures))
}

/// Monit's half: control file, Monit in the foreground, the faults, then stop everything.
async fn monit_part(
    cfg: &BenchConfig,
    monit: &Path,
    exe: &Path,
    files: &DemoFiles,
    api: &Probe,
    report: &mut Report,
) -> Result<(), BenchError> {
    let dir = files.dir.clone();
    let rc = MonitRc {
        cycle_secs: cfg.monit_cycle,
        program_timeout_secs: 1,
        dir: dir.clone(),
        pidfile: dir.join("api.pid"),
        program: exe.to_path_buf(),
        args: files.api_args(),
        api_log: dir.join("api.log"),
        port: API_PORT,
    };
    let rc_path = dir.join("monitrc");
    monit::write_and_check(monit, &rc_path, &rc.render()?)?;
    let mut daemon = Group::spawn("monit", monit, &monit::args(&rc_path), &dir.join("monit.out"))?;
    eprintln!("monit: started pid {}", daemon.pid());
    if !api.wait_stable().await {
        let mut log = daemon.log_tail(10);
        log.push_str(&procs::log_tail(&dir.join("monit.log"), 20));
        log.push_str(&procs::log_tail(&dir.join("api.log"), 10));
        daemon.kill_group().await;
        return Err(BenchError::NotHealthy {
            what: "the demo api under monit".to_string(),
            secs: cfg.timing.stable_limit.as_secs(),
            log,
        });
    }
    for &fault in &cfg.faults {
        let series = restore::measure_series(api, API_PORT, fault, cfg.runs, "monit").await?;
        report.results.push(SeriesReport::new("monit", Some(fault), &series.samples, series.failures)?);
    }
    daemon.terminate(Duration::from_secs(5)).await;
    kill_orphan_api(&rc.pidfile);
    wait_ports_free(&[API_PORT]).await;
    Ok(())
}

/// Kills the api a peer started (by pidfile, and whatever of ours still listens on the api's
/// port), then reaps it.
fn kill_orphan_api(pidfile: &Path) {
    if let Some(pid) = monit::read_pidfile(pidfile)
        && procs::runs_our_exe(pid)
    {
        let _ = procs::signal(pid, nix::sys::signal::Signal::SIGKILL);
        procs::reap(pid);
    }
    procs::kill_our_listeners(&[API_PORT]);
    procs::reap_orphans();
}

/// Drop guard for [`kill_orphan_api`].
struct OrphanApi {
    pidfile: PathBuf,
}

impl Drop for OrphanApi {
    fn drop(&mut self) {
        kill_orphan_api(&self.pidfile);
    }
}

/// Waits (up to 10 s) until nothing listens on `ports`.
async fn wait_ports_free(ports: &[u16]) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let busy = ports.iter().any(|&p| procs::holders(p).is_ok_and(|h| !h.is_empty()));
        if !busy {
            return;
        }
        procs::reap_orphans();
        sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BenchConfig {
        BenchConfig {
            runs: 20,
            peer: Peer::Monit,
            faults: vec![Fault::Kill, Fault::Hang],
            out: Some("docs/benchmarks.md".into()),
            json: Some("reports/bench_restore.json".into()),
            monit_cycle: 1,
            skip_warden: false,
            idle: Duration::from_secs(5),
            keep_tmp: false,
            timing: Timing::default(),
        }
    }

    #[test]
    fn test_command_reproduces_the_run() {
        assert_eq!(
            config().command(),
            "warden chaos bench --runs 20 --peer monit --faults kill,hang \
             --out docs/benchmarks.md --json reports/bench_restore.json"
        );
        let mut cfg = config();
        cfg.monit_cycle = 30;
        cfg.faults = vec![Fault::Hang];
        cfg.out = None;
        cfg.json = None;
        cfg.skip_warden = true;
        cfg.timing.settle = Duration::from_secs(61);
        assert_eq!(
            cfg.command(),
            "warden chaos bench --runs 20 --peer monit --faults hang --monit-cycle 30 --settle 61 --skip-warden"
        );
    }
}
