//! Time to restore, measured from outside like a user would see it: find the pid listening
//! on the faulted service's port (`/proc`), note t0, inject the fault, then poll the api's
//! `GET /health` on loopback every few milliseconds with a short per-request timeout until
//! a `200` arrives while a *new* pid holds the faulted port. The sample is that first `200`
//! minus t0. Faults: SIGKILL the api (`kill`); SIGSTOP it (`hang`: alive but silent);
//! SIGKILL it while a stranger takes its port for 5 or 20 s (`hold5`, `hold20`); SIGSTOP
//! the db the api depends on (`freeze`: the api is unhealthy until the db is replaced).
//! The stranger is a process of its own (`chaos helper hold`), started and armed before
//! t0, so a supervisor that asks the holder to leave does not hit the harness. Every loop
//! is bounded in time; a run past its limit is a failure, never a hang of the harness.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::{Instant, sleep, timeout};

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
    /// SIGSTOP the db: the api lives on and answers `/health` with an error until the
    /// frozen dependency is replaced.
    Freeze,
}

/// The service a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Api,
    Db,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Hang => "hang",
            Self::Hold5 => "hold5",
            Self::Hold20 => "hold20",
            Self::Freeze => "freeze",
        }
    }

    pub fn target(self) -> Target {
        match self {
            Self::Freeze => Target::Db,
            Self::Kill | Self::Hang | Self::Hold5 | Self::Hold20 => Target::Api,
        }
    }

    /// True when the faulted process stays alive: only a supervisor that checks health
    /// sees it.
    pub fn needs_health_check(self) -> bool {
        self.signal() == Signal::SIGSTOP
    }

    fn signal(self) -> Signal {
        match self {
            Self::Hang | Self::Freeze => Signal::SIGSTOP,
            Self::Kill | Self::Hold5 | Self::Hold20 => Signal::SIGKILL,
        }
    }

    /// How long a stranger holds the port after the kill.
    pub fn hold(self) -> Option<Duration> {
        match self {
            Self::Hold5 => Some(Duration::from_secs(5)),
            Self::Hold20 => Some(Duration::from_secs(20)),
            Self::Kill | Self::Hang | Self::Freeze => None,
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

/// Injects `fault` into whoever listens on `port` and times the restore of the api that
/// `probe` checks. `exe` is this executable, for the stranger of the hold faults.
pub async fn measure_once(probe: &Probe, port: u16, fault: Fault, exe: &Path) -> Result<Outcome, BenchError> {
    let old = procs::holders(port)?;
    if old.is_empty() {
        return Ok(Outcome::Failed(format!("nothing listens on port {port}")));
    }
    let limit = probe.timing.run_limit;
    let mut stranger = match fault.hold() {
        Some(hold) => Some(Stranger::arm(exe, port, hold, &old).await?),
        None => None,
    };
    let t0 = Instant::now();
    match stranger.as_mut() {
        // The stranger kills the old holders and binds the port the moment they let go,
        // before a supervisor's restart can (or the run says so).
        Some(s) => {
            if !s.go().await {
                return Ok(Outcome::Failed("the supervisor's restart took the port before the stranger".into()));
            }
        }
        None => {
            for &pid in &old {
                procs::signal(pid, fault.signal())?;
            }
        }
    }
    while t0.elapsed() < limit {
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
    if fault.needs_health_check() {
        for &pid in &old {
            if procs::is_alive(pid) {
                let _ = procs::signal(pid, Signal::SIGKILL);
                procs::reap(pid);
            }
        }
    }
    Ok(Outcome::Failed(format!("no 200 from a new pid within {} s", limit.as_secs())))
}

/// The stranger of the hold faults: `<exe> chaos helper hold --on-go`, in a process group
/// of its own (so the harness's orphan reaping leaves it to tokio), killed when dropped.
struct Stranger {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Stranger {
    /// Starts the helper and waits (up to 5 s) until it is armed.
    async fn arm(exe: &Path, port: u16, hold: Duration, kill: &[u32]) -> Result<Self, BenchError> {
        let kill: Vec<String> = kill.iter().map(u32::to_string).collect();
        let spawn_err = |source| BenchError::Spawn { what: "the port stranger".to_string(), source };
        let mut child = tokio::process::Command::new(exe)
            .args(["chaos", "helper", "hold", "--on-go", "--port", &port.to_string()])
            .args(["--secs", &hold.as_secs().to_string(), "--kill", &kill.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(spawn_err(std::io::Error::other("no pipes to the helper")));
        };
        let mut stranger = Self { child, stdin, lines: BufReader::new(stdout).lines() };
        if stranger.next_line().await.as_deref() != Some("armed") {
            let _ = stranger.child.start_kill();
            return Err(spawn_err(std::io::Error::other("the helper did not arm within 5 s")));
        }
        Ok(stranger)
    }

    /// Tells the helper to kill and take the port; true once it holds it.
    async fn go(&mut self) -> bool {
        if self.stdin.write_all(b"go\n").await.is_err() || self.stdin.flush().await.is_err() {
            return false;
        }
        self.next_line().await.as_deref() == Some("ready")
    }

    async fn next_line(&mut self) -> Option<String> {
        timeout(Duration::from_secs(5), self.lines.next_line()).await.ok()?.ok()?
    }
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
    exe: &Path,
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
        match measure_once(probe, port, fault, exe).await? {
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
        let exe = std::env::current_exe().expect("exe");
        let outcome = measure_once(&probe, port, Fault::Kill, &exe).await.expect("runs");
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    }
}
