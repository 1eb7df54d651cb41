//! `warden chaos reliability`: what happens to warden itself, measured from outside on the
//! embedded default node.
//!
//! 1. A flood: `connections` idle TCP connections to warden's API are opened and held;
//!    warden's descriptors and RSS are read, and `requests` API calls (a fresh connection
//!    each, as a monitoring system makes them) are timed, before and during the flood.
//! 2. warden's own death: `restarts` times, warden is killed with SIGKILL and started
//!    again on the same data dir; the time from the new `warden run` to every service
//!    healthy (warden `/readyz` 200 and the api's `/health` 200) is recorded, and so is
//!    whether the services were adopted (same pids) or restarted.

use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, sleep};

use crate::error::BenchError;
use crate::procs::{self, Group};
use crate::report::Machine;
use crate::restore::{Probe, Timing};
use crate::services::{self, NODE_PORTS};
use crate::stats::{self, Summary};

pub const START_MARKER: &str = "<!-- bench:reliability:start -->";
pub const END_MARKER: &str = "<!-- bench:reliability:end -->";

#[derive(Debug, Clone)]
pub struct ReliabilityConfig {
    pub connections: usize,
    pub requests: u32,
    pub restarts: u32,
    /// Where the report goes; whether scratch files are kept.
    pub outputs: crate::report::Outputs,
}

impl ReliabilityConfig {
    pub fn command(&self) -> String {
        let cmd = format!(
            "warden chaos reliability --connections {} --requests {} --restarts {}",
            self.connections, self.requests, self.restarts
        );
        crate::report::with_outputs(cmd, &self.outputs)
    }
}

/// warden's process at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub open_fds: usize,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReliabilityReport {
    pub kind: &'static str,
    pub date: String,
    pub command: String,
    pub machine: Machine,
    /// Idle connections the flood managed to open and hold.
    pub connections_opened: usize,
    pub before: Footprint,
    pub during: Footprint,
    /// API latency, a fresh connection per request, without and with the flood.
    pub api_before: Summary,
    pub api_during: Summary,
    /// `warden run` after a SIGKILL of warden to every service healthy.
    pub restart_to_healthy: Summary,
    /// How many of those restarts kept every service's process (adopted, not restarted).
    pub restarts_adopting_all: u32,
    pub notes: Vec<String>,
}

fn footprint(pid: u32) -> Footprint {
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    Footprint { open_fds, rss_kib: procs::rss_kib(pid).unwrap_or(0) }
}

/// `requests` GETs of warden's `/api/status`, each on a new connection.
async fn time_api(requests: u32) -> Result<Summary, BenchError> {
    let client =
        reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build()?;
    let url = format!("http://127.0.0.1:{}/api/status", services::WARDEN_PORT);
    let mut samples = Vec::new();
    let mut failures = 0;
    for _ in 0..requests {
        let start = Instant::now();
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => samples.push(start.elapsed()),
            _ => failures += 1,
        }
    }
    stats::summarize(&samples, failures)
}

async fn spawn_node(exe: &std::path::Path, tmp: &std::path::Path, n: u32) -> Result<Group, BenchError> {
    let data = tmp.join("data");
    let args = vec!["run".to_string(), "--data-dir".to_string(), data.to_string_lossy().into_owned()];
    Group::spawn("warden run", exe, &args, &tmp.join(format!("warden-{n}.log")))
}

/// Waits until warden is ready and the api answers; how long it took, or `None`.
async fn healthy_within(limit: Duration) -> Option<Duration> {
    let timing = Timing { request_timeout: Duration::from_millis(200), ..Timing::default() };
    let ready = Probe::new(&format!("http://127.0.0.1:{}/readyz", services::WARDEN_PORT), timing).ok()?;
    let api = Probe::new(&services::api_health_url(), timing).ok()?;
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready.is_ok().await && api.is_ok().await {
            return Some(start.elapsed());
        }
        sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The pids of the node's three services, from warden's API.
async fn service_pids() -> Vec<Option<u64>> {
    let url = format!("http://127.0.0.1:{}/api/status", services::WARDEN_PORT);
    let Ok(resp) = reqwest::Client::builder().no_proxy().build().map(|c| c.get(url)) else { return vec![] };
    let Ok(body) = resp.send().await else { return vec![] };
    let Ok(json) = body.json::<serde_json::Value>().await else { return vec![] };
    json["services"].as_array().map(|a| a.iter().map(|s| s["pid"].as_u64()).collect()).unwrap_or_default()
}

pub async fn run(cfg: &ReliabilityConfig) -> Result<ReliabilityReport, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("locating this executable"))?;
    procs::become_subreaper()?;
    let nofile = procs::raise_nofile();
    procs::ensure_ports_free(&NODE_PORTS)?;
    let tmp = procs::temp_dir("warden-reliability", cfg.outputs.keep_tmp)?;
    let mut node = spawn_node(&exe, tmp.path(), 0).await?;
    let mut notes = Vec::new();
    if healthy_within(Duration::from_secs(60)).await.is_none() {
        let log = node.log_tail(30);
        node.kill_group().await;
        return Err(BenchError::NotHealthy { what: "the default node".into(), secs: 60, log });
    }
    sleep(Duration::from_secs(1)).await;

    // 1. The flood.
    let before = footprint(node.pid());
    let api_before = time_api(cfg.requests).await?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], services::WARDEN_PORT));
    let mut held = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    eprintln!("flood: {} idle connections held", held.len());
    if held.len() < cfg.connections {
        notes.push(format!("the flood stopped at {} connections (this process may open {nofile} files)", held.len()));
    }
    sleep(Duration::from_millis(500)).await;
    let during = footprint(node.pid());
    let api_during = time_api(cfg.requests).await?;
    let connections_opened = held.len();
    drop(held);
    sleep(Duration::from_secs(1)).await;

    // 2. warden's own death, again and again.
    let mut samples = Vec::new();
    let mut failures = 0;
    let mut adopting_all = 0;
    for n in 1..=cfg.restarts {
        let pids = service_pids().await;
        procs::signal(node.pid(), nix::sys::signal::Signal::SIGKILL)?;
        node.kill_group().await;
        node = spawn_node(&exe, tmp.path(), n).await?;
        match healthy_within(Duration::from_secs(60)).await {
            Some(t) => {
                eprintln!("restart {n}/{}: healthy after {:.3} s", cfg.restarts, t.as_secs_f64());
                samples.push(t);
                if !pids.is_empty() && service_pids().await == pids {
                    adopting_all += 1;
                }
            }
            None => {
                failures += 1;
                notes.push(format!("restart {n}: not healthy within 60 s{}", node.log_tail(10)));
            }
        }
        procs::reap_zombies_except(node.pid());
        sleep(Duration::from_millis(500)).await;
    }
    let clean = node.stop_leader(Duration::from_secs(20)).await;
    node.kill_group().await;
    procs::kill_our_listeners(&NODE_PORTS);
    procs::reap_zombies_except(0);
    if !clean {
        notes.push("warden did not exit within 20 s of SIGTERM".into());
    }
    let report = ReliabilityReport {
        kind: "reliability_bench",
        date: crate::report::today_utc(),
        command: cfg.command(),
        machine: Machine::detect(),
        connections_opened,
        before,
        during,
        api_before,
        api_during,
        restart_to_healthy: stats::summarize(&samples, failures)?,
        restarts_adopting_all: adopting_all,
        notes,
    };
    cfg.outputs.save(&report, &report.markdown(), (START_MARKER, END_MARKER))?;
    Ok(report)
}

impl ReliabilityReport {
    pub fn markdown(&self) -> String {
        let ms = |s: Option<f64>| s.map_or_else(|| "—".to_string(), |v| format!("{:.1}", v * 1000.0));
        let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
        let mut md = String::new();
        md.push_str(START_MARKER);
        md.push_str("\n## warden under faults to itself\n\n");
        md.push_str(&crate::report::reproduce(&self.date, &self.machine, "", &self.command));
        md.push_str(&format!(
            "**A flood of idle connections.** {} idle TCP connections to warden's API were opened and held. \
             API latency is `GET /api/status` on a fresh connection each time. \
             warden keeps at most `http.max_connections` (default 512) open and closes the oldest idle one \
             for each new connection, so its descriptors stay bounded however many clients connect.\n\n",
            self.connections_opened
        ));
        md.push_str("| | open fds | RSS MiB | API p50 ms | API p99 ms | API max ms | failed |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (name, fp, api) in
            [("before", &self.before, &self.api_before), ("during the flood", &self.during, &self.api_during)]
        {
            md.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} | {} |\n",
                fp.open_fds,
                mib(fp.rss_kib),
                ms(api.median_s),
                ms(api.p99_s),
                ms(api.max_s),
                api.failures
            ));
        }
        let r = &self.restart_to_healthy;
        md.push_str(&format!(
            "\n**warden killed with SIGKILL, then `warden run` again on the same data dir** ({} times): from the new \
             `warden run` to `/readyz` 200 and the api's `/health` 200, median {} s, p99 {} s, max {} s, {} failed. \
             In {} of {} restarts every service kept its process (adopted, not restarted).\n",
            r.n + r.failures,
            stats::fmt_secs(r.median_s),
            stats::fmt_secs(r.p99_s),
            stats::fmt_secs(r.max_s),
            r.failures,
            self.restarts_adopting_all,
            r.n + r.failures
        ));
        for note in &self.notes {
            md.push_str(&format!("\n- {note}"));
        }
        md.push('\n');
        md.push_str(END_MARKER);
        md.push('\n');
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(ms: &[u64], failures: usize) -> Summary {
        let samples: Vec<Duration> = ms.iter().map(|&m| Duration::from_millis(m)).collect();
        stats::summarize(&samples, failures).expect("histogram")
    }

    fn sample_report() -> ReliabilityReport {
        ReliabilityReport {
            kind: "reliability_bench",
            date: "2026-11-25".into(),
            command: "warden chaos reliability --connections 5000 --requests 200 --restarts 3".into(),
            machine: Machine { nproc: 2, kernel: "6.1.0".into(), cpu: "Test CPU".into() },
            connections_opened: 5000,
            before: Footprint { open_fds: 19, rss_kib: 13 * 1024 },
            during: Footprint { open_fds: 531, rss_kib: 22 * 1024 },
            api_before: summary(&[1, 1, 2], 0),
            api_during: summary(&[1, 2, 3], 1),
            restart_to_healthy: summary(&[10, 20], 1),
            restarts_adopting_all: 2,
            notes: vec!["restart 3: not healthy within 60 s".into()],
        }
    }

    #[test]
    fn test_markdown_is_one_marked_section_with_every_figure() {
        let md = sample_report().markdown();
        assert!(md.starts_with(START_MARKER) && md.trim_end().ends_with(END_MARKER));
        assert_eq!(md.matches(START_MARKER).count(), 1);
        assert!(md.contains("| before | 19 | 13.0 |"), "{md}");
        assert!(md.contains("| during the flood | 531 | 22.0 |"), "{md}");
        // The failed request during the flood is shown, not dropped.
        assert!(md.contains("| 1 |\n"), "{md}");
        assert!(md.contains("(3 times)"), "{md}");
        assert!(md.contains("1 failed"), "{md}");
        assert!(md.contains("In 2 of 3 restarts"), "{md}");
        assert!(md.contains("- restart 3: not healthy within 60 s"), "{md}");
        assert!(md.contains("--restarts 3"), "{md}");
    }

    #[test]
    fn test_command_names_the_outputs() {
        let cfg = ReliabilityConfig {
            connections: 10,
            requests: 5,
            restarts: 1,
            outputs: crate::report::Outputs {
                out: Some("docs/benchmarks.md".into()),
                json: Some("r.json".into()),
                keep_tmp: false,
            },
        };
        assert_eq!(
            cfg.command(),
            "warden chaos reliability --connections 10 --requests 5 --restarts 1 --out docs/benchmarks.md --json r.json"
        );
    }
}
