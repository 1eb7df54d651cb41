//! Harmful actions, counted from outside: what a repair did that made things worse.
//!
//! While a fault is made and repaired, a [`Watch`] runs every service's own checks (its L7
//! probes' checks and its ready check, done by the harness itself) every
//! [`SAMPLE_EVERY`]. Afterwards [`judge`] reads what the node decided (the audit trail) and
//! what it opened (its incidents) over that time, and counts as harmful:
//!
//! - a restart, stop, signal, kill, quarantine, restore or switch of a service whose own
//!   checks passed, by the harness's last sample before the decision (within
//!   [`FRESH_WITHIN`], with no failing one in between), unless the finding was about the
//!   service itself in a way its checks cannot show (its memory, its disk, a stranger on
//!   its port: the node's diagnosis, read from the incident);
//! - a service left unable to start (quarantined, or stopped, once the node settled);
//! - a second incident for one fault (an incident absorbed into another counts once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_core::config::NodeConfig;

use crate::inject::{Check, check_once, own_checks};

/// How often the watch runs each service's checks.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// A check counts for a decision only if it ended this shortly before it.
pub const FRESH_WITHIN: Duration = Duration::from_millis(600);
/// Actions that disturb a running service.
pub const DISRUPTIVE: &[&str] = &[
    "restart_service",
    "stop_service",
    "signal_service",
    "kill_process",
    "quarantine_service",
    "restore_dir",
    "set_endpoint",
    "set_port",
];
/// Diagnoses about the service itself that its checks cannot show: acting is due anyway.
const ABOUT_ITSELF: &[&str] = &[
    "memory_pressure",
    "oom_killed",
    "port_stranger",
    "disk_full_of_data",
    "disk_full_of_logs",
    "disk_full_of_temp",
    "disk_full_of_snapshots",
];

/// One harmful action, in words.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Harm {
    pub kind: String,
    pub detail: String,
}

/// One check of a service: when it ran (Unix ms) and whether it passed.
#[derive(Debug, Clone, Copy)]
struct Sample {
    started_unix_ms: u64,
    ended_unix_ms: u64,
    ok: bool,
}

/// Every service's checks, run again and again until dropped: one thread per service, so
/// a service whose check hangs to its timeout does not leave the others unsampled.
pub struct Watch {
    samples: Arc<Mutex<Vec<(String, Sample)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub fn start(config: &NodeConfig) -> Self {
        let samples: Arc<Mutex<Vec<(String, Sample)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for service in &config.services {
            let checks: Vec<Check> = own_checks(config, service);
            if checks.is_empty() {
                continue;
            }
            let (name, out, halt) = (service.name.to_string(), samples.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let timeout = Duration::from_millis(250);
                let Ok(client) = reqwest::blocking::Client::builder().timeout(timeout).no_proxy().build() else {
                    return;
                };
                while !halt.load(Ordering::Relaxed) {
                    let round = Instant::now();
                    let started_unix_ms = warden_core::time::now_unix_ms();
                    let ok = checks.iter().all(|c| check_once(&client, c, timeout).is_ok());
                    let sample = Sample { started_unix_ms, ended_unix_ms: warden_core::time::now_unix_ms(), ok };
                    out.lock().unwrap_or_else(|p| p.into_inner()).push((name.clone(), sample));
                    std::thread::sleep(SAMPLE_EVERY.saturating_sub(round.elapsed()));
                }
            }));
        }
        Self { samples, stop, threads }
    }

    /// Whether `service` served well right before `at` (Unix ms): its last check that
    /// ended before it passed, ended within [`FRESH_WITHIN`], and none failed since.
    fn served_before(&self, service: &str, at: u64) -> Option<u64> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let recent: Vec<&Sample> = samples
            .iter()
            .filter(|(s, x)| {
                s == service && x.ended_unix_ms <= at && at - x.ended_unix_ms <= FRESH_WITHIN.as_millis() as u64
            })
            .map(|(_, x)| x)
            .collect();
        let last = recent.iter().max_by_key(|x| x.ended_unix_ms)?;
        (last.ok && recent.iter().all(|x| x.ok)).then(|| at - last.started_unix_ms)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the node did between `from` and `to` (Unix ms) that did harm, by `watch`'s
/// samples; `base` is the node's API.
pub fn judge(client: &reqwest::blocking::Client, base: &str, watch: &Watch, from: u64, to: u64) -> Vec<Harm> {
    let get =
        |path: &str| -> Option<serde_json::Value> { client.get(format!("{base}{path}")).send().ok()?.json().ok() };
    let mut out = Vec::new();
    let incidents: Vec<serde_json::Value> = get(&format!("/api/incidents?since={from}&limit=1000"))
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["detected_unix_ms"].as_u64().is_some_and(|t| t <= to))
        .collect();
    let cause_of = |id: Option<u64>| -> String {
        incidents
            .iter()
            .find(|i| i["id"].as_u64() == id && id.is_some())
            .and_then(|i| i["cause"].as_str())
            .unwrap_or("")
            .to_string()
    };
    // Oldest first (the API lists the newest first): the first is the fault's own.
    let mut counted: Vec<&serde_json::Value> = incidents.iter().filter(|i| i["status"] != "absorbed").collect();
    counted.sort_by_key(|i| i["id"].as_u64());
    // Each incident past the first is one harm: three incidents for one fault are two.
    if let Some((first, more)) = counted.split_first() {
        for extra in more {
            out.push(Harm {
                kind: "second_incident".into(),
                detail: format!(
                    "incident {} ({} on {}) for the fault incident {} ({} on {}) was opened for",
                    extra["id"],
                    text(&extra["mode"]),
                    text(&extra["service"]),
                    first["id"],
                    text(&first["mode"]),
                    text(&first["service"])
                ),
            });
        }
    }
    let trail = get(&format!(
        "/api/governance/audit?kind=decision&decision=allow&actor=system&since_unix_ms={from}&limit=1000"
    ))
    .and_then(|v| v["entries"].as_array().cloned())
    .unwrap_or_default();
    for e in trail {
        let (action, target) = (text(&e["action"]), text(&e["target"]));
        let at = e["ts_unix_ms"].as_u64().unwrap_or(0);
        if !DISRUPTIVE.contains(&action.as_str()) || at > to {
            continue;
        }
        let cause = cause_of(e["incident_id"].as_u64());
        if ABOUT_ITSELF.contains(&cause.as_str()) {
            continue;
        }
        if let Some(ago) = watch.served_before(&target, at) {
            out.push(Harm {
                kind: "healthy_service".into(),
                detail: format!("{action} on `{target}` while its own checks passed ({ago} ms before; cause {cause})"),
            });
        }
    }
    if let Some(status) = get("/api/status") {
        for s in status["services"].as_array().into_iter().flatten() {
            if matches!(s["state"].as_str(), Some("quarantined" | "stopped")) {
                out.push(Harm {
                    kind: "left_down".into(),
                    detail: format!("`{}` left {} after the repair", text(&s["name"]), text(&s["state"])),
                });
            }
        }
    }
    out
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
