//! Probes: the checks themselves, and the probe actor that runs one on its interval.
//!
//! The actor measures; the threshold rule is `warden_core::probe::ProbeTracker`. State
//! changes are published on the node's probe-event port (every detector subscribes) and on
//! the probe board (the API, and detectors catching up after a restart).

use super::probe_board::ProbeBoard;
use crate::addr::Addr;
use crate::metrics::{Metrics, ProbeLabels};
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warden_core::config::{ProbeCheck, ProbeSpec};
use warden_core::probe::{CheckResult, Failure, ProbeEvent, ProbeTracker};

/// The tree path of probe `name`.
pub fn path(name: &str) -> String {
    format!("guardian/probe/{name}")
}

/// A client for probes: no connection reuse (each check is a fresh connect, like
/// Kubernetes probes) and no proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap_or_default()
}

/// Runs one check; its latency or why it failed.
pub async fn run_check(client: &reqwest::Client, check: &ProbeCheck, timeout: Duration) -> CheckResult {
    let start = Instant::now();
    match check {
        ProbeCheck::Http { url, expect_status } => {
            let resp = client.get(url.clone()).timeout(timeout).send().await.map_err(|e| {
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

pub enum ProbeMsg {
    Tick,
}

impl Addr<ProbeActor> {
    pub fn for_probe(name: &str) -> Self {
        Addr::new(path(name))
    }
}

/// Runs one configured probe forever on its interval.
pub struct ProbeActor {
    pub spec: ProbeSpec,
    pub events: Arc<OutputPort<ProbeEvent>>,
    pub board: ProbeBoard,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
}

pub struct ProbeState {
    client: reqwest::Client,
    tracker: ProbeTracker,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for ProbeActor {
    type Msg = ProbeMsg;
    type State = ProbeState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ProbeMsg>, _: ()) -> Result<ProbeState, ActorProcessingErr> {
        let reg = self.registry.started(&path(&self.spec.name));
        myself.send_message(ProbeMsg::Tick)?;
        Ok(ProbeState { client: http_client(), tracker: ProbeTracker::new(&self.spec), _reg: reg })
    }

    async fn handle(
        &self,
        myself: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        st: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        let ProbeMsg::Tick = msg;
        let started = Instant::now();
        let result = run_check(&st.client, &self.spec.check, self.spec.timeout).await;
        self.record(st, result);
        myself.send_after(self.spec.interval.saturating_sub(started.elapsed()), || ProbeMsg::Tick);
        Ok(())
    }
}

impl ProbeActor {
    fn record(&self, st: &mut ProbeState, result: CheckResult) {
        let labels = ProbeLabels {
            probe: self.spec.name.clone(),
            layer: self.spec.layer.as_str().into(),
            result: if result.is_ok() { "ok" } else { "fail" }.into(),
        };
        self.metrics.probe_checks.get_or_create(&labels).inc();
        let event = st.tracker.record(result, warden_core::time::now_unix_ms());
        let status = st.tracker.status();
        match &event {
            Some(ProbeEvent::Down { failure, consecutive, .. }) => tracing::warn!(
                probe = status.name,
                target = status.target.as_str(),
                %failure,
                failures = consecutive,
                "alert: probe failing"
            ),
            Some(ProbeEvent::Up { .. }) if status.checks > 1 => {
                tracing::info!(probe = status.name, target = status.target.as_str(), "probe recovered")
            }
            _ => {}
        }
        self.board.publish(status);
        if let Some(ev) = event {
            self.events.send(ev);
        }
    }
}
