//! `warden chaos tracing`: what exporting traces costs warden, measured from outside.
//!
//! Two nodes of the default node's shape run side by side in one window, every probe at
//! 1 Hz (metrics and alerts on, as always); one exports its traces with OTLP/HTTP to a
//! receiver run by the harness, the other exports nothing. Every `--fault-every` seconds the
//! harness hangs both nodes' api (SIGSTOP), so both detect, diagnose, repair and verify, and
//! one of them traces it. The cost is the exporting node's CPU (utime + stime) over the
//! other's. Each round starts both nodes afresh and swaps which port set exports, so a
//! difference between the two sets does not pass for the cost of tracing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, sleep};

use crate::error::BenchError;
use crate::probe_cost::{checks_total, one_hertz_config};
use crate::procs::{self, Group};
use crate::report::Machine;
use crate::restore::{Probe, Timing};
use crate::services::NODE_PORTS;

pub const START_MARKER: &str = "<!-- bench:tracing:start -->";
pub const END_MARKER: &str = "<!-- bench:tracing:end -->";

/// The second node's ports: the default node's plus ten.
const SHIFT: u16 = 10;

#[derive(Debug, Clone)]
pub struct TraceCostConfig {
    /// The measured window of each round.
    pub window: Duration,
    /// Time after both nodes are healthy before the window opens.
    pub warmup: Duration,
    /// Time between hangs of the api.
    pub fault_every: Duration,
    pub rounds: u32,
    /// Where the report goes; whether scratch files are kept.
    pub outputs: crate::report::Outputs,
}

impl TraceCostConfig {
    pub fn command(&self) -> String {
        let cmd = format!(
            "warden chaos tracing --secs {} --fault-every {} --rounds {}",
            self.window.as_secs(),
            self.fault_every.as_secs(),
            self.rounds
        );
        crate::report::with_outputs(cmd, &self.outputs)
    }
}

/// One node's figures, summed over the rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    pub who: String,
    /// Share of one core, percent, over every window.
    pub cpu_percent: f64,
    pub checks_per_s: f64,
    /// Hangs made, and incidents resolved by the end of each window.
    pub faults: u32,
    pub incidents_resolved: u64,
    /// Spans the receiver got from this node.
    pub spans_exported: u64,
    /// RSS at the end of the last window.
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceCostReport {
    pub kind: &'static str,
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub window_s: u64,
    pub rounds: u32,
    pub fault_every_s: u64,
    pub without: Side,
    pub with: Side,
    /// The exporting node's CPU over the other's, percent.
    pub added_percent: f64,
    /// The same, round by round.
    pub added_by_round: Vec<f64>,
    pub notes: Vec<String>,
}

/// The 1 Hz node on the default ports moved by `shift`.
fn config_on(shift: u16) -> String {
    let mut text = crate::modes::unbudgeted(&one_hertz_config());
    for port in NODE_PORTS {
        let to = port + shift;
        for (a, b) in [("127.0.0.1:", ""), ("[", "]"), ("port: ", "")] {
            text = text.replace(&format!("{a}{port}{b}"), &format!("{a}{to}{b}"));
        }
    }
    text
}

/// An OTLP/HTTP JSON receiver on loopback that counts the spans it is sent.
async fn start_receiver(spans: Arc<AtomicU64>) -> Result<(String, tokio::task::JoinHandle<()>), BenchError> {
    use axum::routing::post;
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(BenchError::io("binding the OTLP receiver"))?;
    let addr = listener.local_addr().map_err(BenchError::io("reading the OTLP receiver's address"))?;
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let spans = spans.clone();
            async move {
                let n = serde_json::from_slice::<serde_json::Value>(&body).map_or(0, |v| count_spans(&v));
                spans.fetch_add(n, Ordering::Relaxed);
                ([(axum::http::header::CONTENT_TYPE, "application/json")], "{}")
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), task))
}

/// The spans in one OTLP/JSON export request.
pub fn count_spans(body: &serde_json::Value) -> u64 {
    let all = |v: &serde_json::Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
    all(body, "resourceSpans")
        .iter()
        .flat_map(|rs| all(rs, "scopeSpans"))
        .map(|ss| all(&ss, "spans").len() as u64)
        .sum()
}

struct Running {
    group: Group,
    base: String,
    client: reqwest::Client,
}

impl Running {
    async fn json(&self, path: &str) -> Option<serde_json::Value> {
        self.client.get(format!("{}{path}", self.base)).send().await.ok()?.json().await.ok()
    }

    async fn api_pid(&self) -> Option<u32> {
        let status = self.json("/api/status").await?;
        let api = status["services"].as_array()?.iter().find(|s| s["name"] == "api")?.clone();
        u32::try_from(api["pid"].as_u64()?).ok()
    }

    async fn resolved(&self) -> u64 {
        self.json("/api/incidents?mode=api_timeout&limit=1000").await.map_or(0, |v| {
            v["incidents"].as_array().map_or(0, |a| a.iter().filter(|i| i["status"] == "resolved").count() as u64)
        })
    }

    async fn checks(&self) -> f64 {
        let text = async { self.client.get(format!("{}/metrics", self.base)).send().await.ok()?.text().await.ok() };
        text.await.map_or(0.0, |m| checks_total(&m))
    }
}

async fn start_node(exe: &Path, dir: &Path, shift: u16, otlp: Option<&str>) -> Result<Running, BenchError> {
    std::fs::create_dir_all(dir).map_err(BenchError::io("creating a node's directory"))?;
    let config = dir.join("node.yaml");
    std::fs::write(&config, config_on(shift)).map_err(BenchError::io("writing a node config"))?;
    let args = vec![
        "run".to_string(),
        "--config".to_string(),
        config.to_string_lossy().into_owned(),
        "--data-dir".to_string(),
        dir.join("data").to_string_lossy().into_owned(),
    ];
    let env: Vec<(String, String)> = match otlp {
        Some(endpoint) => vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/json".into()),
        ],
        None => Vec::new(),
    };
    let name = if otlp.is_some() { "warden run (OTLP export)" } else { "warden run" };
    let group = Group::spawn_with_env(name, exe, &args, &env, &dir.join("warden.log"))?;
    let base = format!("http://127.0.0.1:{}", crate::services::WARDEN_PORT + shift);
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    Ok(Running { group, base, client })
}

async fn wait_healthy(node: &mut Running, shift: u16) -> Result<(), BenchError> {
    let timing = Timing::default();
    let healthz = Probe::new(&format!("{}/healthz", node.base), timing)?;
    let api = Probe::new(&format!("http://127.0.0.1:{}/health", crate::services::API_PORT + shift), timing)?;
    if healthz.first_ok(Instant::now(), Duration::from_secs(60)).await.is_some() && api.wait_stable().await {
        return Ok(());
    }
    let log = node.group.log_tail(30);
    node.group.kill_group().await;
    Err(BenchError::NotHealthy { what: node.group.name().to_string(), secs: 60, log })
}

pub async fn run(cfg: &TraceCostConfig) -> Result<TraceCostReport, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("locating this executable"))?;
    procs::become_subreaper()?;
    let shifted: Vec<u16> = NODE_PORTS.iter().map(|p| p + SHIFT).collect();
    procs::ensure_ports_free(&NODE_PORTS)?;
    procs::ensure_ports_free(&shifted)?;
    let tmp = procs::temp_dir("warden-trace-cost", cfg.outputs.keep_tmp)?;
    let spans = Arc::new(AtomicU64::new(0));
    let (endpoint, receiver) = start_receiver(spans.clone()).await?;
    let hz =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|&h| h > 0).unwrap_or(100) as f64;
    let mut without = Side { who: "without export".into(), ..Side::default() };
    let mut with = Side { who: "with OTLP export".into(), ..Side::default() };
    let (mut ticks, mut checks, mut secs) = ([0u64; 2], [0f64; 2], 0f64);
    let mut notes = Vec::new();
    let mut added_by_round = Vec::new();
    if cfg.rounds % 2 == 1 {
        notes.push("an odd number of rounds: one port set exported once more than the other".into());
    }
    for round in 0..cfg.rounds {
        // Round 0: the default ports export; round 1: the shifted ones; and so on.
        let exporting_shift = if round % 2 == 0 { 0 } else { SHIFT };
        let mut nodes = Vec::new();
        for (i, shift) in [0, SHIFT].into_iter().enumerate() {
            let dir = tmp.path().join(format!("round{round}-node{i}"));
            let otlp = (shift == exporting_shift).then_some(endpoint.as_str());
            nodes.push((otlp.is_some(), start_node(&exe, &dir, shift, otlp).await?));
        }
        for (i, (_, node)) in nodes.iter_mut().enumerate() {
            wait_healthy(node, if i == 0 { 0 } else { SHIFT }).await?;
        }
        sleep(cfg.warmup).await;
        let spans0 = spans.load(Ordering::Relaxed);
        let mut before = Vec::new();
        for (_, node) in &nodes {
            before.push((procs::stat_of(node.group.pid()).map_or(0, |s| s.cpu_ticks), node.checks().await));
        }
        let start = Instant::now();
        let mut faults = [0u32; 2];
        while start.elapsed() + cfg.fault_every <= cfg.window {
            sleep(cfg.fault_every).await;
            for (i, (_, node)) in nodes.iter().enumerate() {
                if let Some(pid) = node.api_pid().await
                    && procs::signal(pid, nix::sys::signal::Signal::SIGSTOP).is_ok()
                {
                    faults[i] += 1;
                }
            }
        }
        sleep(cfg.window.saturating_sub(start.elapsed())).await;
        let elapsed = start.elapsed().as_secs_f64();
        secs += elapsed;
        let mut round_ticks = [0u64; 2];
        for (i, ((exports, node), (t0, c0))) in nodes.iter_mut().zip(before).enumerate() {
            let side = if *exports { &mut with } else { &mut without };
            let k = usize::from(*exports);
            round_ticks[k] = procs::stat_of(node.group.pid()).map_or(0, |s| s.cpu_ticks).saturating_sub(t0);
            ticks[k] += round_ticks[k];
            checks[k] += node.checks().await - c0;
            side.faults += faults[i];
            side.incidents_resolved += node.resolved().await;
            side.rss_kib = procs::rss_kib(node.group.pid()).unwrap_or(0);
            if !node.group.is_running() {
                notes.push(format!("round {round}: {} exited during the window (see its log)", node.group.name()));
            }
        }
        for (_, node) in &mut nodes {
            if !node.group.terminate(Duration::from_secs(20)).await {
                notes.push(format!("round {round}: {} did not exit within 20 s of SIGTERM", node.group.name()));
            }
        }
        if round_ticks[0] > 0 {
            added_by_round.push((round_ticks[1] as f64 - round_ticks[0] as f64) / round_ticks[0] as f64 * 100.0);
        }
        // Spans the exporter flushed at exit count for its window.
        with.spans_exported += spans.load(Ordering::Relaxed) - spans0;
        procs::kill_our_listeners(&NODE_PORTS);
        procs::kill_our_listeners(&shifted);
        procs::reap_zombies_except(0);
    }
    receiver.abort();
    for (k, side) in [&mut without, &mut with].into_iter().enumerate() {
        side.cpu_percent = ticks[k] as f64 / hz / secs * 100.0;
        side.checks_per_s = checks[k] / secs;
    }
    if with.spans_exported == 0 {
        notes.push("the receiver got no spans: the exporting node traced nothing".into());
    }
    let added_percent = if without.cpu_percent > 0.0 {
        (with.cpu_percent - without.cpu_percent) / without.cpu_percent * 100.0
    } else {
        0.0
    };
    let report = TraceCostReport {
        kind: "trace_cost_bench",
        date: crate::report::today_utc(),
        command: cfg.command(),
        machine: Machine::detect(),
        window_s: cfg.window.as_secs(),
        rounds: cfg.rounds,
        fault_every_s: cfg.fault_every.as_secs(),
        without,
        with,
        added_percent,
        added_by_round,
        notes,
    };
    cfg.outputs.save(&report, &report.markdown(), (START_MARKER, END_MARKER))?;
    Ok(report)
}

impl TraceCostReport {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(START_MARKER);
        md.push_str("\n## What tracing costs\n\n");
        md.push_str(&crate::report::reproduce(&self.date, &self.machine, "", &self.command));
        md.push_str(&format!(
            "Two nodes of the default node's shape side by side, every probe at 1 Hz, metrics and alerts on; one \
             exports its traces with OTLP/HTTP (JSON) to a receiver on loopback, the other exports nothing. Every {} s \
             the api of both is hung (SIGSTOP), so both detect, diagnose, repair and verify, and one traces it. \
             {} round(s) of {} s; each round starts both nodes afresh and swaps which port set exports. CPU is the \
             share of one core (utime + stime) over all windows.\n\n",
            self.fault_every_s, self.rounds, self.window_s
        ));
        md.push_str("| | CPU % of a core | checks/s | api hangs | incidents resolved | spans exported | RSS MiB |\n");
        md.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for s in [&self.without, &self.with] {
            md.push_str(&format!(
                "| {} | {:.3} | {:.1} | {} | {} | {} | {:.1} |\n",
                s.who,
                s.cpu_percent,
                s.checks_per_s,
                s.faults,
                s.incidents_resolved,
                s.spans_exported,
                s.rss_kib as f64 / 1024.0
            ));
        }
        md.push_str(&format!(
            "\nAdded by OTLP export: {:+.1} % of warden's CPU (aim: under 5 %: {}); round by round: {}. A clock \
             tick is 10 ms: over one round's window one tick is about {:.1} % of a node's CPU, so differences of a few \
             percent are within the measurement's noise.\n",
            self.added_percent,
            if self.added_percent < 5.0 { "**met**" } else { "**missed**" },
            self.added_by_round.iter().map(|a| format!("{a:+.1} %")).collect::<Vec<_>>().join(", "),
            if self.without.cpu_percent > 0.0 {
                1.0 / (self.without.cpu_percent * self.window_s as f64 / 100.0 * 100.0) * 100.0
            } else {
                0.0
            }
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

    #[test]
    fn test_the_second_node_has_every_port_moved() {
        let text = config_on(SHIFT);
        for port in NODE_PORTS {
            assert!(!text.contains(&format!(":{port}")) && !text.contains(&format!("[{port}]")), "{port} left");
            assert!(text.contains(&format!("{}", port + SHIFT)), "{port} not moved");
        }
        let cfg = warden_core::config::NodeConfig::load(
            &warden_core::source::Source { name: "t", dir: Path::new("/"), text: &text },
            &warden_core::config::LoadOptions { data_dir: Some("/d".into()) },
        )
        .expect("valid");
        assert_eq!(cfg.probes.len(), 20);
    }

    #[test]
    fn test_spans_are_counted_across_resources_and_scopes() {
        let body = serde_json::json!({"resourceSpans": [
            {"scopeSpans": [{"spans": [{}, {}]}, {"spans": [{}]}]},
            {"scopeSpans": [{"spans": [{}]}]}
        ]});
        assert_eq!(count_spans(&body), 4);
        assert_eq!(count_spans(&serde_json::json!({})), 0);
    }
}
