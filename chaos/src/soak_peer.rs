//! The soak's peers (`--peer monit`, `--peer supervisord`): after warden's part, the same
//! seeded fault sequence is made against the demo db, model and api under the peer, in the
//! same run and with the same checks (`warden chaos bench` starts the peer the same way).
//!
//! A peer gets the faults it could be given at all: a kill, a hang (SIGSTOP), a frozen db,
//! a stranger on the port. The others are made through warden's node description (the
//! service's files, cgroup, limits or link), which the peer's services do not have; they are
//! listed as not run, with the reason, as are those the peer is blind to (supervisord checks
//! no health). A peer cannot escalate to a person, so a fault it has not restored within the
//! silent limit is its silent failure, counted as warden's are.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::bench::{Leftovers, Peer};
use crate::error::BenchError;
use crate::inject::Injection;
use crate::report::PeerInfo;
use crate::restore::{self, Fault, Outcome, Probe, Timing};
use crate::services::DemoPorts;
use crate::stats::{Summary, summarize};

/// One fault of the sequence, as the peer's run of it ended.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PeerFaultRecord {
    pub n: u32,
    pub fault: String,
    /// What was done to the peer's services (`hang on port 8000`).
    pub made: Option<String>,
    pub restored_ms: Option<u64>,
    /// Why it is a silent failure, if it is one.
    pub silent: Option<String>,
    /// Why it was not made against the peer.
    pub not_run: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerKind {
    pub fault: String,
    pub made: u32,
    pub restore: Summary,
}

/// A peer's part of the soak.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSoak {
    pub peer: PeerInfo,
    pub faults_made: u32,
    /// Faults of the sequence not made against the peer: (kind, how many, why).
    pub not_run: Vec<(String, u32, String)>,
    pub kinds: Vec<PeerKind>,
    pub silent: Vec<PeerFaultRecord>,
}

/// What a soak fault is on the peer's copy of the demo services: the fault, the port of the
/// process it hits, and the health URL that tells it restored.
fn on_peer(k: Injection, ports: DemoPorts) -> Option<(Fault, u16, String)> {
    let (api, model) = (ports.api_health_url(), ports.model_url());
    match k {
        Injection::ModelKill => Some((Fault::Kill, ports.model, model)),
        Injection::ModelHang => Some((Fault::Hang, ports.model, model)),
        Injection::ApiHang => Some((Fault::Hang, ports.api, api)),
        Injection::DbFreeze => Some((Fault::Freeze, ports.db, api)),
        Injection::PortHold => Some((Fault::Hold5, ports.api, api)),
        _ => None,
    }
}

/// Why `k` is not made against `peer`, if it is not.
pub fn not_run(peer: Peer, k: Injection) -> Option<String> {
    if k.node_wide() {
        return Some(
            "a fault of the node as a whole: the peer is set up to watch the demo services, not the node's memory"
                .into(),
        );
    }
    match on_peer(k, DemoPorts::DEFAULT) {
        None => Some(
            "made through warden's description of the service (its files, cgroup, limits or link), which the peer's \
             services do not have"
                .into(),
        ),
        Some((fault, _, _)) => peer.blind_to(fault).map(String::from),
    }
}

/// Runs `plan` (the soak's sequence, controls included: a peer has no pause, so a control
/// is an ordinary fault to it) against the demo services under `peer`. Each record is
/// appended to `records` as it ends. Stops early when `stop` says so.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    peer: Peer,
    ports: DemoPorts,
    exe: &Path,
    plan: &[Injection],
    silent_after: Duration,
    records: &Path,
    keep_tmp: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<PeerSoak, BenchError> {
    let name = peer.name();
    let Some(binary) = crate::bench::find_peer(peer, exe)? else {
        return Err(BenchError::NodeConfig("`--peer none` is no peer".into()));
    };
    crate::procs::become_subreaper()?;
    crate::procs::ensure_ports_free(&ports.all())?;
    let tmp = crate::procs::temp_dir(&format!("warden-soak-{name}"), keep_tmp)?;
    let dir: PathBuf = tmp.path().to_path_buf();
    // Dropped last: kills what the peer started, on every way out.
    let _guard = Leftovers(ports);
    let mut daemon = crate::bench::spawn_peer(peer, &binary, exe, &dir, 1, ports)?;
    let timing = Timing { run_limit: silent_after, stable_limit: Duration::from_secs(60), ..Timing::default() };
    let api = Probe::new(&ports.api_health_url(), timing)?;
    if !api.wait_stable().await {
        let log = daemon.log_tail(10) + &crate::procs::log_tail(&dir.join(format!("{name}.log")), 10);
        daemon.kill_group().await;
        return Err(BenchError::NotHealthy { what: format!("the demo api under {name}"), secs: 60, log });
    }
    let mut file = std::fs::File::create(records).map_err(BenchError::io(format!("creating {}", records.display())))?;
    let mut out = Vec::new();
    for (i, &k) in plan.iter().enumerate() {
        if stop() {
            break;
        }
        let mut r = PeerFaultRecord {
            n: i as u32 + 1,
            fault: k.name().into(),
            made: None,
            restored_ms: None,
            silent: None,
            not_run: not_run(peer, k),
        };
        if r.not_run.is_none()
            && let Some((fault, port, url)) = on_peer(k, ports)
        {
            let probe = Probe::new(&url, timing)?;
            // The whole node steady first (the api needs the db), then the fault's own check.
            if !api.wait_stable().await || !probe.wait_stable().await {
                r.not_run = Some(format!("the demo services under {name} were not healthy within 60 s before it"));
            } else {
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..1000))).await;
                r.made = Some(format!("{} on port {port}", fault.name()));
                match restore::measure_once(&probe, port, fault, exe).await? {
                    Outcome::Restored { after, .. } => r.restored_ms = Some(after.as_millis() as u64),
                    Outcome::Failed(why) => {
                        r.silent = Some(format!("not restored within {} s: {why}", silent_after.as_secs()))
                    }
                }
            }
        }
        eprintln!(
            "[{name} {}/{}] {}: {}",
            r.n,
            plan.len(),
            r.fault,
            match (&r.not_run, r.restored_ms, &r.silent) {
                (Some(why), ..) => format!("not run ({why})"),
                (None, Some(ms), _) => format!("restored in {:.2} s", ms as f64 / 1000.0),
                (None, None, Some(why)) => format!("SILENT: {why}"),
                (None, None, None) => "?".into(),
            }
        );
        let _ = writeln!(file, "{}", serde_json::to_string(&r).unwrap_or_default()).and_then(|()| file.flush());
        out.push(r);
    }
    daemon.terminate(Duration::from_secs(10)).await;
    Ok(summarize_peer(crate::bench::peer_info(peer, &binary, 1), &out))
}

fn summarize_peer(peer: PeerInfo, records: &[PeerFaultRecord]) -> PeerSoak {
    let mut not_run: Vec<(String, u32, String)> = Vec::new();
    let mut kinds: Vec<PeerKind> = Vec::new();
    for r in records {
        if let Some(why) = &r.not_run {
            match not_run.iter_mut().find(|(k, _, w)| *k == r.fault && w == why) {
                Some(entry) => entry.1 += 1,
                None => not_run.push((r.fault.clone(), 1, why.clone())),
            }
        } else if !kinds.iter().any(|k| k.fault == r.fault) {
            let of_kind: Vec<&PeerFaultRecord> =
                records.iter().filter(|x| x.fault == r.fault && x.not_run.is_none()).collect();
            let times: Vec<Duration> =
                of_kind.iter().filter_map(|x| x.restored_ms.map(Duration::from_millis)).collect();
            let failures = of_kind.len() - times.len();
            kinds.push(PeerKind {
                fault: r.fault.clone(),
                made: of_kind.len() as u32,
                restore: summarize(&times, failures).unwrap_or_default(),
            });
        }
    }
    PeerSoak {
        peer,
        faults_made: records.iter().filter(|r| r.not_run.is_none()).count() as u32,
        not_run,
        kinds,
        silent: records.iter().filter(|r| r.silent.is_some()).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_peer_gets_the_faults_it_can_be_given_and_is_told_why_not_the_others() {
        assert_eq!(not_run(Peer::Monit, Injection::ApiHang), None);
        assert_eq!(not_run(Peer::Monit, Injection::PortHold), None);
        assert!(not_run(Peer::Supervisord, Injection::ApiHang).is_some_and(|w| w.contains("no health")));
        assert_eq!(not_run(Peer::Supervisord, Injection::ModelKill), None);
        assert!(not_run(Peer::Monit, Injection::DiskFull).is_some_and(|w| w.contains("description")));
        assert!(not_run(Peer::Monit, Injection::NodeMemory).is_some_and(|w| w.contains("node as a whole")));
    }

    #[test]
    fn test_the_summary_counts_made_faults_silent_ones_and_groups_the_rest() {
        let rec = |n, fault: &str, restored: Option<u64>, not_run: Option<&str>| PeerFaultRecord {
            n,
            fault: fault.into(),
            made: not_run.is_none().then(|| "x".into()),
            restored_ms: restored,
            silent: (not_run.is_none() && restored.is_none()).then(|| "not restored".into()),
            not_run: not_run.map(String::from),
        };
        let info = PeerInfo { name: "monit".into(), version: "5".into(), setup: String::new() };
        let s = summarize_peer(
            info,
            &[
                rec(1, "api-hang", Some(1500), None),
                rec(2, "api-hang", None, None),
                rec(3, "disk-full", None, Some("why")),
                rec(4, "disk-full", None, Some("why")),
            ],
        );
        assert_eq!(s.faults_made, 2);
        assert_eq!(s.silent.len(), 1);
        assert_eq!(s.not_run, vec![("disk-full".to_string(), 2, "why".to_string())]);
        assert_eq!(s.kinds.len(), 1);
        assert_eq!(s.kinds[0].made, 2);
    }
}
