//! Time to restore, measured from outside like a user would see it: find the pid listening
//! on the service's port (`/proc`), note t0, inject the fault (SIGKILL = `kill`, SIGSTOP =
//! `hang`: alive but silent; `hold5`/`hold20`: SIGKILL, then a stranger (the harness)
//! takes the port at once and holds it for 5 or 20 s), then poll `GET /health` on loopback every few milliseconds with
//! a short per-request timeout until a `200` arrives while a *new* pid holds the port. The
//! sample is that first `200` minus t0. Every loop is bounded in time; a run past its limit
//! is a failure, never a hang of the harness.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

use crate::error::BenchError;
use crate::procs;

/// A fault the harness injects into the process that serves the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// SIGKILL: the process is gone at once.
    Kill,
    /// SIGSTOP: the process is alive, holds its port, and answers nothing.
    Hang,
    /// SIGKILL, and a stranger takes the port for 5 s: a restart before it leaves fails
    /// with EADDRINUSE.
    Hold5,
    /// As `hold5`, for 20 s.
    Hold20,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Hang => "hang",
            Self::Hold5 => "hold5",
            Self::Hold20 => "hold20",
        }
    }

    fn signal(self) -> Signal {
        match self {
            Self::Hang => Signal::SIGSTOP,
            Self::Kill | Self::Hold5 | Self::Hold20 => Signal::SIGKILL,
        }
    }

    /// How long a stranger holds the port after the kill.
    pub fn hold(self) -> Option<Duration> {
        match self {
            Self::Hold5 => Some(Duration::from_secs(5)),
            Self::Hold20 => Some(Duration::from_secs(20)),
            Self::Kill | Self::Hang => None,
        }
    }
}

/// How the poller behaves; the defaults are the ones the published numbers use.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Per-request timeout of a health poll.
    pub request_timeout: Duration,
    /// Pause between two polls.
    pub poll_every: Duration,
    /// A run that has not restored by then is a failure.
    pub run_limit: Duration,
    /// How long health must answer 200 without a miss to count as stable.
    pub stable_for: Duration,
    /// Bound on waiting for stability.
    pub stable_limit: Duration,
    /// Extra pause before each fault, so that a supervisor's restart window (crash-loop
    /// budget, backoff) can forget the previous one: faults become independent.
    pub settle: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_millis(100),
            poll_every: Duration::from_millis(3),
            run_limit: Duration::from_secs(30),
            stable_for: Duration::from_secs(1),
            stable_limit: Duration::from_secs(30),
            settle: Duration::ZERO,
        }
    }
}

/// A loopback HTTP health probe: fresh connection per request, no proxy, short timeout.
pub struct Probe {
    client: reqwest::Client,
    url: String,
    timing: Timing,
}

impl Probe {
    pub fn new(url: &str, timing: Timing) -> Result<Self, BenchError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timing.request_timeout)
            .connect_timeout(timing.request_timeout)
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Self { client, url: url.to_string(), timing })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One `GET`: true on a 200.
    pub async fn is_ok(&self) -> bool {
        matches!(self.client.get(&self.url).send().await, Ok(r) if r.status() == reqwest::StatusCode::OK)
    }

    /// Time from `start` to the first 200, or `None` once `limit` has passed since `start`.
    pub async fn first_ok(&self, start: Instant, limit: Duration) -> Option<Duration> {
        while start.elapsed() < limit {
            if self.is_ok().await {
                return Some(start.elapsed());
            }
            sleep(self.timing.poll_every).await;
        }
        None
    }

    /// Waits until `stable_for` of uninterrupted 200s; false past `stable_limit`.
    pub async fn wait_stable(&self) -> bool {
        let start = Instant::now();
        let mut ok_since: Option<Instant> = None;
        while start.elapsed() < self.timing.stable_limit {
            if self.is_ok().await {
                let since = *ok_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.timing.stable_for {
                    return true;
                }
            } else {
                ok_since = None;
                procs::reap_orphans();
            }
            sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// The result of one fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Restored after this long, by a new process.
    Restored { after: Duration, old: Vec<u32>, new: Vec<u32> },
    /// Not restored; why.
    Failed(String),
}

/// Injects `fault` into whoever listens on `port` and times the restore.
pub async fn measure_once(probe: &Probe, port: u16, fault: Fault) -> Result<Outcome, BenchError> {
    let old = procs::holders(port)?;
    if old.is_empty() {
        return Ok(Outcome::Failed(format!("nothing listens on port {port}")));
    }
    let limit = probe.timing.run_limit;
    let t0 = Instant::now();
    for &pid in &old {
        procs::signal(pid, fault.signal())?;
    }
    // The stranger: the harness binds the port the moment the old process lets go (before
    // a supervisor's restart can, or the run says so) and lets go after the hold.
    let mut stranger = match fault.hold() {
        Some(hold) => match take_port(port, &old, t0).await {
            Some(l) => Some((l, t0 + hold)),
            None => return Ok(Outcome::Failed("the supervisor's restart took the port before the stranger".into())),
        },
        None => None,
    };
    while t0.elapsed() < limit {
        if stranger.as_ref().is_some_and(|(_, until)| Instant::now() >= *until) {
            stranger = None;
        }
        // A start that failed (EADDRINUSE) leaves an exited process; as subreaper the
        // harness reaps it, or a peer that checks by pidfile sees a zombie that never goes.
        if fault.hold().is_some() {
            procs::reap_orphans();
        }
        for &pid in &old {
            procs::reap(pid);
        }
        if probe.is_ok().await {
            let after = t0.elapsed();
            let new = procs::holders(port)?;
            if !new.is_empty() && new.iter().all(|p| !old.contains(p)) {
                return Ok(Outcome::Restored { after, old, new });
            }
        }
        sleep(probe.timing.poll_every).await;
    }
    // Leave no stopped process behind for the next run: finish what the supervisor did not.
    if fault == Fault::Hang {
        for &pid in &old {
            if procs::is_alive(pid) {
                let _ = procs::signal(pid, Signal::SIGKILL);
                procs::reap(pid);
            }
        }
    }
    Ok(Outcome::Failed(format!("no 200 from a new pid within {} s", limit.as_secs())))
}

/// Binds `port` as soon as the killed `old` holders let go (bounded: 2 s); `None` if
/// someone else bound it first.
async fn take_port(port: u16, old: &[u32], t0: Instant) -> Option<std::net::TcpListener> {
    while t0.elapsed() < Duration::from_secs(2) {
        for &pid in old {
            procs::reap(pid);
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Some(l);
        }
        if procs::holders(port).is_ok_and(|h| h.iter().any(|p| !old.contains(p))) {
            return None;
        }
        tokio::task::yield_now().await;
    }
    None
}

/// The samples and failures of `runs` faults of one kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub samples: Vec<Duration>,
    pub failures: Vec<String>,
}

/// Runs `runs` faults, waiting for stable health (plus a jitter so faults do not line up
/// with a supervisor's poll cycle) before each. `label` prefixes the progress lines.
pub async fn measure_series(
    probe: &Probe,
    port: u16,
    fault: Fault,
    runs: u32,
    label: &str,
) -> Result<Series, BenchError> {
    let mut series = Series::default();
    for run in 1..=runs {
        if run > 1 {
            sleep(probe.timing.settle).await;
        }
        if !probe.wait_stable().await {
            let reason =
                format!("{} not stable within {} s before run {run}", probe.url(), probe.timing.stable_limit.as_secs());
            eprintln!("{label} {}: {reason}; skipping the remaining runs", fault.name());
            for _ in run..=runs {
                series.failures.push(reason.clone());
            }
            break;
        }
        sleep(Duration::from_millis(rand::random_range(0..1000))).await;
        match measure_once(probe, port, fault).await? {
            Outcome::Restored { after, old, new } => {
                eprintln!(
                    "{label} {} {run}/{runs}: {:.3} s (pid {old:?} -> {new:?})",
                    fault.name(),
                    after.as_secs_f64()
                );
                series.samples.push(after);
            }
            Outcome::Failed(reason) => {
                eprintln!("{label} {} {run}/{runs}: FAILED: {reason}", fault.name());
                series.failures.push(reason);
            }
        }
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_probe_fails_fast_on_closed_port() {
        // Invariant: a refused connection is "not ok", promptly, and first_ok is bounded.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let probe = Probe::new(&format!("http://127.0.0.1:{port}/health"), Timing::default()).expect("client");
        let start = Instant::now();
        assert!(!probe.is_ok().await);
        assert!(probe.first_ok(Instant::now(), Duration::from_millis(50)).await.is_none());
        assert!(start.elapsed() < Duration::from_secs(2), "bounded");
    }

    #[tokio::test]
    async fn test_measure_once_without_listener_is_a_failure() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let probe = Probe::new(&format!("http://127.0.0.1:{port}/health"), Timing::default()).expect("client");
        let outcome = measure_once(&probe, port, Fault::Kill).await.expect("runs");
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    }
}
