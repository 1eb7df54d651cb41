//! Probes: the checks themselves, the probe actor that runs one on its interval with
//! failure/success thresholds, and the board where their latest results are published.

use crate::context::{Ctx, names};
use crate::detector::{DetectorMsg, ProbeEvent};
use crate::metrics::ProbeLabels;
use crate::probe_board::ProbeStatus;
use crate::registry::Registration;
use crate::rpc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use warden_core::config::{ProbeCheck, ProbeConfig, ReadyCheck};

/// Why a check failed; detectors tell failure modes apart by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Failure {
    /// No answer within the timeout (the process may be alive but hung).
    Timeout,
    /// Nothing listening, connection refused or reset.
    Connect(String),
    /// Answered with an unexpected status.
    Status(u16),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("no answer within the timeout"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Status(s) => write!(f, "answered status {s}"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// A client for probes: no connection reuse (each check is a fresh connect, like
/// Kubernetes probes) and no proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap_or_default()
}

/// Runs one check; `Ok(latency)` or the failure.
pub async fn run_check(client: &reqwest::Client, check: &ProbeCheck, timeout: Duration) -> Result<Duration, Failure> {
    let start = Instant::now();
    match check {
        ProbeCheck::Http { url, expect_status } => {
            let resp = client.get(url).timeout(timeout).send().await.map_err(|e| {
                if e.is_timeout() {
                    Failure::Timeout
                } else if e.is_connect() {
                    Failure::Connect(root_cause(&e))
                } else {
                    Failure::Other(root_cause(&e))
                }
            })?;
            let status = resp.status().as_u16();
            let ok = match expect_status {
                Some(s) => status == *s,
                None => resp.status().is_success(),
            };
            if ok { Ok(start.elapsed()) } else { Err(Failure::Status(status)) }
        }
        ProbeCheck::Tcp { addr } => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(Failure::Connect(e.to_string())),
            Err(_) => Err(Failure::Timeout),
        },
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether a service's ready check passes now.
pub async fn ready_check(client: &reqwest::Client, check: &ReadyCheck, timeout: Duration) -> bool {
    let probe = match check {
        ReadyCheck::Tcp { addr } => ProbeCheck::Tcp { addr: addr.clone() },
        ReadyCheck::Http { url } => ProbeCheck::Http { url: url.clone(), expect_status: None },
    };
    run_check(client, &probe, timeout).await.is_ok()
}

pub enum ProbeMsg {
    Tick,
}

/// Runs one configured probe forever on its interval.
pub struct ProbeActor {
    pub ctx: Ctx,
    pub cfg: ProbeConfig,
}

pub struct ProbeState {
    client: reqwest::Client,
    status: ProbeStatus,
    consecutive_ok: u32,
    /// Unix ms of the first failure of the current streak (the fault's earliest sign).
    streak_start_unix_ms: Option<u64>,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for ProbeActor {
    type Msg = ProbeMsg;
    type State = ProbeState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ProbeMsg>, _: ()) -> Result<ProbeState, ActorProcessingErr> {
        let reg = self.ctx.registry.started(&names::probe(&self.cfg.name.value));
        myself.send_message(ProbeMsg::Tick)?;
        Ok(ProbeState {
            client: http_client(),
            status: ProbeStatus {
                name: self.cfg.name.value.clone(),
                layer: self.cfg.layer,
                target: self.cfg.target.value.clone(),
                up: None,
                last_ok: None,
                last_latency_ms: None,
                last_failure: None,
                consecutive_failures: 0,
                checks: 0,
                failures: 0,
                last_check_unix_ms: 0,
            },
            consecutive_ok: 0,
            streak_start_unix_ms: None,
            _reg: reg,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        st: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        let ProbeMsg::Tick = msg;
        let started = Instant::now();
        let result = run_check(&st.client, &self.cfg.check, Duration::from_millis(self.cfg.timeout_ms)).await;
        self.record(st, result);
        let interval = Duration::from_millis(self.cfg.interval_ms);
        let next = interval.saturating_sub(started.elapsed());
        myself.send_after(next, || ProbeMsg::Tick);
        Ok(())
    }
}

impl ProbeActor {
    fn record(&self, st: &mut ProbeState, result: Result<Duration, Failure>) {
        let now = warden_core::now_unix_ms();
        let s = &mut st.status;
        s.checks += 1;
        s.last_check_unix_ms = now;
        let label = |result: &str| ProbeLabels {
            probe: self.cfg.name.value.clone(),
            layer: format!("{:?}", self.cfg.layer).to_lowercase(),
            result: result.into(),
        };
        let mut event = None;
        match result {
            Ok(latency) => {
                self.ctx.metrics.probe_checks.get_or_create(&label("ok")).inc();
                s.last_ok = Some(true);
                s.last_latency_ms = Some(latency.as_secs_f64() * 1000.0);
                s.last_failure = None;
                s.consecutive_failures = 0;
                st.streak_start_unix_ms = None;
                st.consecutive_ok += 1;
                if s.up != Some(true) && st.consecutive_ok >= self.cfg.success_threshold {
                    s.up = Some(true);
                    event =
                        Some(ProbeEvent::Up { probe: s.name.clone(), target: s.target.clone(), layer: self.cfg.layer });
                }
            }
            Err(failure) => {
                self.ctx.metrics.probe_checks.get_or_create(&label("fail")).inc();
                s.failures += 1;
                s.last_ok = Some(false);
                s.last_failure = Some(failure.clone());
                s.consecutive_failures += 1;
                st.consecutive_ok = 0;
                let onset = *st.streak_start_unix_ms.get_or_insert(now);
                if s.up != Some(false) && s.consecutive_failures >= self.cfg.failure_threshold {
                    s.up = Some(false);
                    tracing::warn!(probe = s.name, target = s.target, %failure, failures = s.consecutive_failures, "alert: probe failing");
                    event = Some(ProbeEvent::Down {
                        probe: s.name.clone(),
                        target: s.target.clone(),
                        layer: self.cfg.layer,
                        failure,
                        consecutive: s.consecutive_failures,
                        first_failure_unix_ms: onset,
                    });
                }
            }
        }
        self.ctx.probes.publish(s.clone());
        if let Some(ev) = event {
            for path in crate::detector::detector_paths() {
                let _ = rpc::tell(&self.ctx.name(&path), DetectorMsg::Probe(ev.clone()));
            }
        }
    }
}
