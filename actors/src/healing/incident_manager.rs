//! IncidentManager: keeps incidents moving.
//!
//! It opens one incident per (service, failure mode) at a time, hands each run to the
//! executor, and applies the end of every run it hears about on the finished-runs port.
//! What to do after a run (retry, next playbook, resolve, escalate) is the pure
//! `Incident::finish_run` in warden-core; this actor stores, dispatches and alerts.
//!
//! Nothing that moves an incident may be lost. A finding is acknowledged only once the
//! incident is stored. A dispatch the executor did not acknowledge is retried on the next
//! tick. When the manager (re)starts, and on every tick, it checks each open incident's run
//! in the store: a run that ended is applied (its notice may have been lost), a run never
//! handed over is handed over again, a run still "running" long past its timeout is
//! recorded as interrupted. Applying a run twice changes nothing.

use super::notifier::Notifier;
use super::repair_board::RepairBoard;
use crate::addr::{AbortOnDrop, Addr, SendError};
use crate::current::Current;
use crate::governance::approval_queue::ApprovalQueue;
use crate::guardian::executor::RollbackOrder;
use crate::guardian::executor::{PlaybookExecutor, RunOrder};
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use crate::holds::HoldBoard;
use crate::incident_trace::{IncidentTrace, TARGET as TRACE, TraceBoard};
use crate::metrics::{Metrics, ModeLabel};
use crate::registry::{ActorRegistry, Registration};
use crate::store::{Counter, Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;
use warden_core::alert::Alert;
use warden_core::config::{NodeConfig, ServiceName};
use warden_core::fit;
use warden_core::incident::{
    Finding, Incident, IncidentStatus, NextStep, OperatorNote, SameCut, needs_person, under_repair,
};
use warden_core::mode::FailureMode;
use warden_core::playbook::Catalog;
use warden_core::playbook::OnRecovery;
use warden_core::run::{RunOutcome, RunRecord};
use warden_core::service::ServiceState;

pub const PATH: &str = "healing/incident_manager";
/// Overdue alerts, the check of every open incident's run, dispatch retries.
const TICK: Duration = Duration::from_secs(1);
/// A fault that went away is closed as cleared only when it stays away this long: a slow
/// or flapping service passes a check now and then, and its fault coming back a moment
/// later is the same fault, not a second incident.
const CLEAR_HOLD: Duration = Duration::from_secs(5);
/// A run still marked running this long past its limit (`verify::run_limit`) has no task
/// behind it (the grace covers putting its service back after a failed run).
const RUN_GRACE: Duration = Duration::from_secs(10);
/// How long a run's end may take to be announced before the store is believed instead.
const NOTICE_GRACE: Duration = Duration::from_secs(2);
/// A fault seen again this soon after its incident was resolved reopens that incident
/// with the next playbook: the repair did not hold.
const REOPEN_WITHIN: Duration = Duration::from_secs(30);
/// Opening an incident is two counter bumps and one synced write.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum IncidentError {
    #[error("incident manager unavailable: {0}")]
    Unavailable(#[from] SendError),
    #[error("cannot store the incident: {0}")]
    Store(#[from] StoreError),
    #[error("no incident {0}")]
    NoSuchIncident(u64),
    #[error("{0}")]
    Refused(String),
}

pub enum IncidentMsg {
    /// A detector's finding; answered once the incident is stored.
    Open(Box<Finding>, RpcReplyPort<Result<(), IncidentError>>),
    /// A playbook run ended (from the executor's finished-runs port, or the store).
    RunFinished(Box<RunRecord>),
    /// A detector no longer sees the fault of (service, mode).
    Cleared(ServiceName, FailureMode),
    /// A failure the open incident of the service explains was suppressed.
    Link(ServiceName, String),
    /// A person is on it (automatic repair of it waits); answered with the incident.
    Acknowledge(u64, OperatorNote, RpcReplyPort<Result<Incident, IncidentError>>),
    /// A person closed it; answered with the incident.
    Close(u64, OperatorNote, RpcReplyPort<Result<Incident, IncidentError>>),
    Tick,
    /// Fault injection: stall in the handler for the given time (messages queue up), then
    /// panic (they are lost with the mailbox).
    #[cfg(feature = "fault-injection")]
    Crash(std::time::Duration),
}

impl Addr<IncidentManager> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Reports a finding; `Ok` once an incident for it is stored (or one is already open).
    pub async fn report(&self, finding: Finding) -> Result<(), IncidentError> {
        self.ask(REPORT_TIMEOUT, |tx| IncidentMsg::Open(Box::new(finding), tx)).await?
    }

    /// The fault of (service, mode) is no longer seen. Best effort: a lost notice leaves an
    /// incident to its repair's verification.
    pub fn cleared(&self, service: ServiceName, mode: FailureMode) {
        if let Err(e) = self.tell(IncidentMsg::Cleared(service, mode)) {
            tracing::debug!(error = %e, "cannot say a fault cleared");
        }
    }

    /// A person acknowledges incident `id`: they are on it.
    pub async fn acknowledge(&self, id: u64, note: OperatorNote) -> Result<Incident, IncidentError> {
        self.ask(REPORT_TIMEOUT, |tx| IncidentMsg::Acknowledge(id, note, tx)).await?
    }

    /// A person closes incident `id`.
    pub async fn close(&self, id: u64, note: OperatorNote) -> Result<Incident, IncidentError> {
        self.ask(REPORT_TIMEOUT, |tx| IncidentMsg::Close(id, note, tx)).await?
    }

    /// Links a suppressed failure to the open incident of `cause` (best effort).
    pub fn link(&self, cause: ServiceName, text: String) {
        if let Err(e) = self.tell(IncidentMsg::Link(cause, text)) {
            tracing::debug!(error = %e, "cannot link a suppressed failure");
        }
    }
}

pub struct IncidentManager {
    /// Replaced by a reload; every decision takes the current one.
    pub catalog: Current<Catalog>,
    pub config: Current<NodeConfig>,
    pub store: Store,
    pub executor: Addr<PlaybookExecutor>,
    pub runs_finished: Arc<OutputPort<RunRecord>>,
    pub resolved: Arc<OutputPort<(ServiceName, FailureMode, u64)>>,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
    /// Published after every message.
    pub repairs: RepairBoard,
    /// The open incidents' traces (kept outside, so a restart here ends none early).
    pub traces: TraceBoard,
    /// What holds automatic repair (no run starts while one applies).
    pub holds: HoldBoard,
    /// For a mitigated incident: whether the lower layer it waits for is back.
    pub board: ProbeBoard,
    /// For a mitigated incident of a service with no probe that runs: its state.
    pub services: ServiceTable,
    /// To end an approval its incident no longer needs.
    pub approvals: Addr<ApprovalQueue>,
    /// Tells a person of an incident that needs one (through the alert sinks).
    pub notifier: Notifier,
}

pub struct State {
    open: BTreeMap<u64, Incident>,
    /// Runs the executor has not acknowledged yet, by incident.
    undispatched: BTreeMap<u64, RunOrder>,
    /// Incidents a person was told need them: the firing alert, resolved once they no
    /// longer do (a restart of the manager tells again; receivers deduplicate by labels).
    told: BTreeMap<u64, Alert>,
    /// Incidents resolved lately, by (service, mode): a fault back within
    /// [`REOPEN_WITHIN`] reopens its incident.
    resolved: BTreeMap<(ServiceName, FailureMode), (u64, tokio::time::Instant)>,
    /// Incidents whose fault went away, by id: when it did (Unix ms) and when they close
    /// as cleared unless it comes back first ([`CLEAR_HOLD`]).
    clearing: BTreeMap<u64, (u64, tokio::time::Instant)>,
    /// When each service's automatic repairs of the last hour started (its budget).
    /// (By run id, so a run heard of twice, from the store at start and then its notice,
    /// counts once.)
    repairs: BTreeMap<ServiceName, BTreeMap<u64, u64>>,
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for IncidentManager {
    type Msg = IncidentMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<IncidentMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        // Subscribe before reading the store: a run that ends in between is heard twice at
        // worst, never missed.
        self.runs_finished.subscribe(myself.clone(), |run| Some(IncidentMsg::RunFinished(Box::new(run))));
        let open: BTreeMap<u64, Incident> = self.store.open_incidents().await?.into_iter().map(|i| (i.id, i)).collect();
        let mut st = State {
            open,
            undispatched: BTreeMap::new(),
            told: BTreeMap::new(),
            resolved: BTreeMap::new(),
            clearing: BTreeMap::new(),
            repairs: self.recent_repairs().await,
            _tick: AbortOnDrop(myself.send_interval(TICK, || IncidentMsg::Tick)),
            _reg: self.registry.started(PATH),
        };
        if let Err(e) = self.check_runs(&mut st, true).await {
            tracing::warn!(error = %e, "cannot check the open incidents' runs yet; every tick tries again");
        }
        self.retry_dispatches(&mut st).await;
        self.metrics.incidents_open.set(st.open.len() as i64);
        self.publish(&st);
        Ok(st)
    }

    async fn handle(
        &self,
        _: ActorRef<IncidentMsg>,
        msg: IncidentMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IncidentMsg::Open(finding, reply) => {
                // The finding is safe once the incident is stored: answer before dispatching.
                let result = self.open(*finding, st).await;
                let _ = reply.send(result);
            }
            // A store that refuses writes leaves the incident as it was; the tick's check of
            // the run in the store applies it once the store takes writes again.
            IncidentMsg::RunFinished(run) => {
                if let Err(e) = self.run_finished(*run, st).await {
                    tracing::warn!(error = %e, "cannot record a run's end yet; the store check will");
                }
            }
            IncidentMsg::Cleared(service, mode) => {
                if let Err(e) = self.fault_cleared(&service, mode, st).await {
                    tracing::warn!(error = %e, "cannot record that a fault cleared");
                }
            }
            IncidentMsg::Link(service, text) => {
                if let Err(e) = self.link(&service, text, st).await {
                    tracing::debug!(error = %e, "cannot link a suppressed failure");
                }
            }
            IncidentMsg::Acknowledge(id, note, reply) => {
                let _ = reply.send(self.acknowledge(id, note, st).await);
            }
            IncidentMsg::Close(id, note, reply) => {
                let _ = reply.send(self.close_by_operator(id, note, st).await);
            }
            IncidentMsg::Tick => {
                self.tell_people(st);
                if let Err(e) = self.close_cleared(st).await {
                    tracing::debug!(error = %e, "cannot close the incidents whose fault stayed away");
                }
                if let Err(e) = self.check_mitigated(st).await {
                    tracing::debug!(error = %e, "cannot check the mitigated incidents");
                }
                if let Err(e) = self.run_due(st).await {
                    tracing::debug!(error = %e, "cannot start the repairs that are due");
                }
                if let Err(e) = self.check_runs(st, false).await {
                    tracing::debug!(error = %e, "cannot check the open incidents' runs");
                }
            }
            #[cfg(feature = "fault-injection")]
            IncidentMsg::Crash(after) => {
                tokio::time::sleep(after).await;
                panic!("fault injection: incident manager crashed on command");
            }
        }
        self.retry_dispatches(st).await;
        self.metrics.incidents_open.set(st.open.len() as i64);
        self.publish(st);
        Ok(())
    }
}

impl IncidentManager {
    /// Brings every open incident up to date with its run as the store knows it: a run
    /// that ended is applied (its notice may have been lost), a run the store never saw is
    /// handed over again, and a run still marked running long past its playbook's timeout
    /// (its task died without a word) is recorded as interrupted. Runs at start and on every
    /// tick, so a lost notice costs at most a tick.
    async fn check_runs(&self, st: &mut State, on_start: bool) -> Result<(), StoreError> {
        let now = warden_core::time::now_unix_ms();
        let waiting: Vec<(u64, u64, String)> = st
            .open
            .values()
            .filter(|i| !st.undispatched.contains_key(&i.id))
            .filter_map(|i| i.current_run().map(|a| (i.id, a.run_id, a.playbook.clone())))
            .collect();
        for (id, run_id, playbook) in waiting {
            match self.store.run_record(run_id).await? {
                // Its notice is likely still in the mailbox, behind this tick.
                Some(run)
                    if run.outcome.is_final()
                        && !on_start
                        && now.saturating_sub(run.finished_unix_ms.unwrap_or(0)) < NOTICE_GRACE.as_millis() as u64 => {}
                Some(run) if run.outcome.is_final() => {
                    if on_start {
                        tracing::info!(incident = id, run = run_id, "a run ended while the incident manager was down");
                    } else {
                        tracing::warn!(
                            incident = id,
                            run = run_id,
                            "a run's end was not announced; applying it from the store"
                        );
                    }
                    self.run_finished(run, st).await?;
                }
                Some(mut run) => {
                    let timeout = self.catalog.get().get(&playbook).map_or(Duration::ZERO, |p| p.timeout);
                    let window = st.open.get(&id).map_or(Duration::ZERO, |i| {
                        crate::guardian::executor::stability_window(&self.config.get(), &i.service)
                    });
                    let limit = (warden_core::verify::run_limit(timeout, window) + RUN_GRACE).as_millis() as u64;
                    if now.saturating_sub(run.started_unix_ms) > limit {
                        tracing::warn!(
                            incident = id,
                            run = run_id,
                            "run still marked running past its timeout; recording it as interrupted"
                        );
                        run.outcome = RunOutcome::Interrupted;
                        run.finished_unix_ms = Some(now);
                        run.detail = "interrupted: no end was heard within the playbook's timeout".into();
                        self.store.put_run(run.clone()).await?;
                        self.run_finished(run, st).await?;
                    }
                }
                None => {
                    tracing::info!(incident = id, run = run_id, "run was never handed over; handing it over now");
                    let order = self.order(&st.open[&id], run_id, playbook);
                    st.undispatched.insert(id, order);
                }
            }
        }
        Ok(())
    }

    async fn open(&self, f: Finding, st: &mut State) -> Result<(), IncidentError> {
        // An open incident of a cause on the same service explains this one (a hang while
        // memory runs out, while its repair restarts it), as does a cut to it seen from a
        // dependent: linked to it, not opened.
        if let Some(cause) = st.open.values().find(|i| i.explains(&f.service, f.mode)).map(|i| i.id) {
            let mut incident = st.open[&cause].clone();
            let text = format!("{} on `{}`: {} (while this incident is open)", f.mode.as_str(), f.service, f.evidence);
            if incident.link(text) {
                tracing::info!(
                    incident = cause,
                    mode = f.mode.as_str(),
                    "failure suppressed: the open incident explains it"
                );
                self.store.put_incident(incident.clone()).await?;
                st.open.insert(cause, incident);
            }
            return Ok(());
        }
        // The same fault seen again: one incident, which counts the sightings.
        if let Some(open) = st.open.values().find(|i| i.service == f.service && i.mode == f.mode) {
            let mut incident = open.clone();
            // Back before its clearing was final: the same fault, still open.
            st.clearing.remove(&incident.id);
            incident.note_finding(warden_core::time::now_unix_ms());
            tracing::debug!(incident = incident.id, findings = incident.findings, "the open incident was seen again");
            self.store.put_incident(incident.clone()).await?;
            st.open.insert(incident.id, incident);
            return Ok(());
        }
        st.resolved.retain(|_, (_, at)| at.elapsed() < REOPEN_WITHIN);
        // A cut path is seen from both ends: one incident for it (`incident::same_cut`).
        let config = self.config.get();
        let cut = warden_core::incident::same_cut(&f, st.open.values(), |a, b| config.depends_directly(a, b));
        drop(config);
        let mut other_end: Vec<Incident> = Vec::new();
        match cut {
            Some(SameCut::LinkTo(id)) => {
                if let Some(mut incident) = st.open.get(&id).cloned()
                    && incident.same_cut_seen_from(&f.service, &f.evidence)
                {
                    tracing::info!(
                        incident = id,
                        service = f.service.as_str(),
                        "the same cut seen from the other end: linked, not opened"
                    );
                    // The far end's upper layers seen failing first (its SQL check across
                    // the cut) are this cut too.
                    self.absorb_explained(&mut incident, st).await?;
                    self.store.put_incident(incident.clone()).await?;
                    st.open.insert(id, incident);
                }
                return Ok(());
            }
            Some(SameCut::TakeIn(ids)) => other_end = ids.iter().filter_map(|id| st.open.get(id).cloned()).collect(),
            None => {}
        }
        // Still there after its repair: that repair did not hold.
        let key = (f.service.clone(), f.mode);
        if f.persists
            && let Some((id, _)) = st.resolved.remove(&key)
            && let Some(mut incident) = self.store.incident(id).await?
            && incident.status == IncidentStatus::Resolved
        {
            tracing::warn!(incident = id, evidence = f.evidence, "the fault came back after its repair; reopening");
            let step = incident.reopen(&f.evidence, &self.catalog.get());
            self.apply(step, incident, st).await?;
            return Ok(());
        }
        let id = self.store.next_id(Counter::Incident).await?;
        let mut incident = Incident::open(id, &f, warden_core::time::now_unix_ms());
        for mut other in other_end {
            let why = format!("the same cut, seen first from `{}`: {}", other.service, other.evidence);
            if other.absorb(id, &why, warden_core::time::now_unix_ms()) {
                incident.same_cut_seen_from(&other.service, &other.evidence);
                self.store.put_incident(other.clone()).await?;
                tracing::warn!(
                    incident = other.id,
                    by = id,
                    "the same cut seen first from the other end: taken into this incident"
                );
                self.close(other.id, st, "absorbed", None);
            }
        }
        // Open incidents this one explains (an upper layer of the same service, or a
        // dependent, seen first): their plans stop, this one's repair is the one that counts.
        self.absorb_explained(&mut incident, st).await?;
        let trace = IncidentTrace::begin(&incident, &f);
        incident.trace = trace.traceparent();
        self.traces.insert(id, trace.clone());
        self.metrics.incidents_opened.get_or_create(&ModeLabel { mode: f.mode.as_str().into() }).inc();
        tracing::warn!(
            incident = id,
            service = f.service.as_str(),
            mode = f.mode.as_str(),
            evidence = f.evidence,
            "incident opened"
        );
        if !self.config.get().healing.enabled {
            incident.detail = "automatic repair is off (healing.enabled: false); a person must look".into();
            tracing::error!(
                incident = id,
                service = f.service.as_str(),
                "alert: automatic repair is off; a person must look"
            );
            if let Err(e) = self.store.put_incident(incident.clone()).await {
                self.traces.discard(id);
                return Err(e.into());
            }
            st.open.insert(id, incident);
            return Ok(());
        }
        let diagnose = tracing::info_span!(
            target: TRACE,
            "diagnose",
            warden.incident.id = id,
            warden.failure_mode = f.mode.as_str(),
            warden.cause = f.cause.as_str(),
            warden.plan = tracing::field::Empty,
        );
        trace.adopt(&diagnose);
        let config = self.config.get();
        let step = diagnose.in_scope(|| {
            incident.first_step(&self.catalog.get(), |pb| fit::unmet_for_incident(pb, &config, &f.service))
        });
        for why in &incident.not_applicable {
            tracing::info!(
                incident = id,
                service = f.service.as_str(),
                why,
                "playbook not applicable; left out of the plan"
            );
        }
        diagnose.record("warden.plan", incident.plan.join(" > "));
        drop(diagnose);
        if let Err(e) = self.apply(step, incident, st).await {
            // Not stored: the finding is reported again, and opens an incident of its own.
            self.traces.discard(id);
            return Err(e.into());
        }
        Ok(())
    }

    /// The fault is gone: an open incident with no repair under way closes as cleared.
    async fn fault_cleared(&self, service: &ServiceName, mode: FailureMode, st: &mut State) -> Result<(), StoreError> {
        let Some(id) = st.open.values().find(|i| i.service == *service && i.mode == mode).map(|i| i.id) else {
            return Ok(());
        };
        // Closed on a later tick if it stays away; a finding before then keeps it open.
        st.clearing.entry(id).or_insert((warden_core::time::now_unix_ms(), tokio::time::Instant::now() + CLEAR_HOLD));
        Ok(())
    }

    /// Incidents whose fault went away and stayed away for [`CLEAR_HOLD`] close as cleared.
    async fn close_cleared(&self, st: &mut State) -> Result<(), StoreError> {
        let due: Vec<(u64, u64)> = st
            .clearing
            .iter()
            .filter(|(_, (_, at))| tokio::time::Instant::now() >= *at)
            .map(|(id, (since, _))| (*id, *since))
            .collect();
        for (id, since) in due {
            st.clearing.remove(&id);
            let Some(mut incident) = st.open.get(&id).cloned() else { continue };
            // A mitigated incident is not cleared by one finding going away: it resolves when
            // every probe of its service passes again (`check_mitigated`).
            if st.undispatched.contains_key(&id) || !incident.fault_cleared(since) {
                continue;
            }
            self.store.put_incident(incident.clone()).await?;
            tracing::info!(
                incident = id,
                service = incident.service.as_str(),
                mode = incident.mode.as_str(),
                "incident cleared: the fault went away by itself"
            );
            self.close(id, st, "cleared", None);
        }
        Ok(())
    }

    /// Records a suppressed failure on the open incident of `service` it is explained by.
    async fn link(&self, service: &ServiceName, text: String, st: &mut State) -> Result<(), StoreError> {
        let Some(mut incident) = st.open.values().find(|i| i.service == *service).cloned() else { return Ok(()) };
        if incident.link(text) {
            self.store.put_incident(incident.clone()).await?;
            st.open.insert(incident.id, incident);
        }
        Ok(())
    }

    async fn run_finished(&self, run: RunRecord, st: &mut State) -> Result<(), StoreError> {
        let Some(id) = run.incident_id else { return Ok(()) };
        if acted(&run) && st.open.get(&id).is_some_and(|i| i.current_run().is_some_and(|a| a.run_id == run.run_id)) {
            st.repairs.entry(run.target.clone()).or_default().insert(run.run_id, run.started_unix_ms);
        }
        let Some(mut incident) = st.open.get(&id).cloned() else { return Ok(()) };
        let Some(step) = incident.finish_run(&run, &self.catalog.get()) else { return Ok(()) };
        if let NextStep::Run { playbook } = &step {
            tracing::warn!(
                incident = id,
                ended = run.playbook,
                outcome = run.outcome.as_str(),
                next = playbook,
                detail = run.detail,
                "playbook did not heal; running the next step"
            );
        }
        self.apply(step, incident, st).await
    }

    /// Stores the incident after `step` and carries the step out, in a `decide` span of
    /// the incident's trace.
    async fn apply(&self, step: NextStep, incident: Incident, st: &mut State) -> Result<(), StoreError> {
        let (next, playbook, reason) = match &step {
            NextStep::Run { playbook } => ("run", playbook.as_str(), ""),
            NextStep::Resolved { .. } => ("resolved", "", ""),
            NextStep::Wait { playbook, reason, .. } => ("wait", playbook.as_str(), reason.as_str()),
            NextStep::AwaitApproval { playbook, reason, .. } => ("await_approval", playbook.as_str(), reason.as_str()),
            NextStep::Escalate { reason } => ("escalate", "", reason.as_str()),
            NextStep::Mitigated { .. } => ("mitigated", "", ""),
        };
        let decide = tracing::info_span!(
            target: TRACE,
            "decide",
            warden.incident.id = incident.id,
            warden.failure_mode = incident.mode.as_str(),
            warden.next = next,
            warden.playbook = playbook,
            warden.reason = reason,
            warden.attempt = incident.attempts.len() + usize::from(next == "run"),
        );
        self.traces.of(&incident).adopt(&decide);
        self.carry_out(step, incident, st).instrument(decide).await
    }

    async fn carry_out(&self, step: NextStep, mut incident: Incident, st: &mut State) -> Result<(), StoreError> {
        let id = incident.id;
        match step {
            NextStep::Run { playbook } => {
                if let Some(why) = self.budget_spent(&incident, st) {
                    let step = incident.escalate_now(why);
                    return Box::pin(self.carry_out(step, incident, st)).await;
                }
                if let Some(why) = self.held(&incident) {
                    if incident.hold(&playbook, &why) {
                        tracing::warn!(
                            incident = id,
                            service = incident.service.as_str(),
                            playbook,
                            why,
                            "repair held"
                        );
                    }
                    self.store.put_incident(incident.clone()).await?;
                    st.open.insert(id, incident);
                    return Ok(());
                }
                let run_id = self.store.next_id(Counter::Run).await?;
                incident.begin(run_id, &playbook);
                self.store.put_incident(incident.clone()).await?;
                st.undispatched.insert(id, self.order(&incident, run_id, playbook));
                st.open.insert(id, incident);
            }
            NextStep::Resolved { mttr_ms } => {
                self.store.put_incident(incident.clone()).await?;
                self.metrics.mttr_seconds.observe(mttr_ms as f64 / 1000.0);
                tracing::info!(incident = id, service = incident.service.as_str(), mttr_ms, "incident resolved");
                st.resolved.insert((incident.service.clone(), incident.mode), (id, tokio::time::Instant::now()));
                // Its detector judges again from scratch: a fault still there comes back.
                let verified = incident.restored_unix_ms.or(incident.resolved_unix_ms).unwrap_or(0);
                self.resolved.send((incident.service.clone(), incident.mode, verified));
                self.close(id, st, "resolved", None);
            }
            NextStep::Wait { playbook, retry_at_unix_ms, reason } => {
                self.store.put_incident(incident.clone()).await?;
                let retry_at = warden_core::time::rfc3339(retry_at_unix_ms);
                let service = incident.service.as_str();
                // Held by the harm guard (a lower layer or a dependency fails): said, not
                // paged; held by governance (a rate limit, an hour window): an alert.
                if reason.contains("held: ") {
                    tracing::info!(
                        incident = id,
                        service,
                        playbook,
                        retry_at,
                        reason,
                        "repair held; tried again later"
                    );
                } else {
                    tracing::warn!(
                        incident = id,
                        service,
                        playbook,
                        retry_at,
                        reason,
                        "alert: governance holds the repair; it runs again when allowed"
                    );
                }
                st.open.insert(id, incident);
            }
            NextStep::AwaitApproval { playbook, approval_id, reason } => {
                self.store.put_incident(incident.clone()).await?;
                tracing::warn!(
                    incident = id,
                    service = incident.service.as_str(),
                    playbook,
                    approval = approval_id,
                    reason,
                    "alert: the repair waits for an approver"
                );
                st.open.insert(id, incident);
            }
            NextStep::Escalate { reason } => {
                self.store.put_incident(incident.clone()).await?;
                tracing::error!(
                    incident = id,
                    service = incident.service.as_str(),
                    reason,
                    "alert: incident not healed, a person must look"
                );
                // Its firing alert stays: the failure notice carries on from it.
                st.told.remove(&id);
                self.tell_failed(&incident, &reason);
                self.close(id, st, "failed", Some(&reason));
            }
            NextStep::Mitigated { still_failing } => {
                self.store.put_incident(incident.clone()).await?;
                tracing::warn!(
                    incident = id,
                    service = incident.service.as_str(),
                    still_failing = still_failing.join("; "),
                    "incident mitigated: the service serves again, a lower layer still fails; no further step runs against it"
                );
                st.open.insert(id, incident);
            }
        }
        Ok(())
    }

    /// What keeps automatic repair of this incident from starting now: a hold on its
    /// service or the node, or a person who said they are on it.
    fn held(&self, incident: &Incident) -> Option<String> {
        if let Some(ack) = &incident.acknowledged {
            return Some(format!("acknowledged by {}: {}", ack.by, ack.reason));
        }
        self.holds.blocking(&incident.service).map(|h| h.describe())
    }

    /// Why another automatic repair of the incident's service would pass its hourly
    /// budget, if it would.
    fn budget_spent(&self, incident: &Incident, st: &mut State) -> Option<String> {
        let budget = self.config.get().healing.repair_budget;
        let now = warden_core::time::now_unix_ms();
        let runs = st.repairs.entry(incident.service.clone()).or_default();
        runs.retain(|_, t| now.saturating_sub(*t) < warden_core::holds::BUDGET_WINDOW_MS);
        let starts: Vec<u64> = runs.values().copied().collect();
        budget.spent(&starts, now).map(|w| format!("{w} on `{}`: a person must look", incident.service))
    }

    /// The automatic repairs of the last hour that acted (the budget's count), from the
    /// store, so a restart of this actor keeps counting.
    async fn recent_repairs(&self) -> BTreeMap<ServiceName, BTreeMap<u64, u64>> {
        let mut out: BTreeMap<ServiceName, BTreeMap<u64, u64>> = BTreeMap::new();
        let since = warden_core::time::now_unix_ms().saturating_sub(warden_core::holds::BUDGET_WINDOW_MS);
        match self.store.incidents_and_runs().await {
            Ok((_, runs)) => {
                for r in runs.iter().filter(|r| r.started_unix_ms >= since && acted(r)) {
                    out.entry(r.target.clone()).or_default().insert(r.run_id, r.started_unix_ms);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the last hour's repairs; the budget counts from now"),
        }
        out
    }

    /// Open incidents that `incident` explains: the same service at a higher layer, or a
    /// service that depends on its service failing in a way a dependency explains. Each
    /// stops (absorbed) and is linked to it.
    async fn absorb_explained(&self, incident: &mut Incident, st: &mut State) -> Result<(), StoreError> {
        let config = self.config.get();
        let now = warden_core::time::now_unix_ms();
        let explained: Vec<Incident> = st
            .open
            .values()
            .filter(|other| {
                let same = incident.explains(&other.service, other.mode);
                let dependent = config.dependents_of(&incident.service).contains(&other.service)
                    && warden_core::detect::explained_by_dependency(other.mode);
                (same || dependent) && other.status != IncidentStatus::Mitigated
            })
            .cloned()
            .collect();
        for mut other in explained {
            let why = format!("{} on `{}`: {}", incident.mode.as_str(), incident.service, incident.evidence);
            if !other.absorb(incident.id, &why, now) {
                continue;
            }
            self.store.put_incident(other.clone()).await?;
            incident.link(format!(
                "incident {} ({} on `{}`), seen first: {}",
                other.id,
                other.mode.as_str(),
                other.service,
                other.evidence
            ));
            tracing::warn!(
                incident = other.id,
                by = incident.id,
                mode = other.mode.as_str(),
                "incident absorbed: a lower layer or a dependency explains it; its plan stops"
            );
            self.close(other.id, st, "absorbed", None);
        }
        Ok(())
    }

    /// Mitigated incidents whose service is whole again (every probe of it passes: the path
    /// a failover went round, or the service its dependents were pointed away from) are
    /// resolved; a playbook that says so is rolled back then.
    async fn check_mitigated(&self, st: &mut State) -> Result<(), StoreError> {
        let mitigated: Vec<Incident> =
            st.open.values().filter(|i| i.status == IncidentStatus::Mitigated).cloned().collect();
        if mitigated.is_empty() {
            return Ok(());
        }
        let statuses = self.board.snapshot();
        for mut incident in mitigated {
            // Every probe of the service: the path a failover went round, or the service
            // itself when its dependents were pointed elsewhere; its state when it has none.
            // And those of a dependency whose own end of the cut was seen.
            let probes: Vec<&warden_core::probe::ProbeStatus> = statuses
                .iter()
                .filter(|s| s.target == incident.service || incident.waits_on.contains(&s.target))
                .collect();
            let running = self.services.state_of(incident.service.as_str()) == Some(ServiceState::Running);
            if !warden_core::probe::whole_again(&probes, running) {
                continue;
            }
            // A roll-back is a repair like any other: while a hold applies (a person paused
            // the service or works on it, the breaker), the mitigation stays, and so does
            // the incident, until it lifts.
            if self.rolls_back(&incident)
                && let Some(why) = self.held(&incident)
            {
                tracing::debug!(
                    incident = incident.id,
                    why,
                    "the lower layer is back; the roll-back waits for the hold"
                );
                continue;
            }
            if incident.lower_recovered(warden_core::time::now_unix_ms()) {
                tracing::info!(
                    incident = incident.id,
                    service = incident.service.as_str(),
                    "the lower layer is back: the mitigation ends"
                );
                self.after_recovery(&incident).await;
                let mttr_ms = incident.mttr_ms().unwrap_or(0);
                self.carry_out(NextStep::Resolved { mttr_ms }, incident, st).await?;
            }
        }
        Ok(())
    }

    /// Whether the playbook that mitigated the incident says to roll it back once the
    /// lower layer is back.
    fn rolls_back(&self, incident: &Incident) -> bool {
        incident.attempts.last().is_some_and(|last| {
            self.catalog.get().get(&last.playbook).is_some_and(|p| p.on_recovery == OnRecovery::Rollback)
        })
    }

    /// What a mitigated incident's playbook says to do once the lower layer is back.
    async fn after_recovery(&self, incident: &Incident) {
        let Some(last) = incident.attempts.last() else { return };
        if !self.rolls_back(incident) {
            return;
        }
        let order = RollbackOrder {
            of: last.run_id,
            actor: warden_core::audit::AuditActor::System,
            reason: format!("incident {}: the lower layer recovered; `{}` says roll back", incident.id, last.playbook),
        };
        match self.executor.rollback(order).await {
            Ok(run) => tracing::info!(incident = incident.id, run, "mitigation rolled back"),
            Err(e) => tracing::warn!(incident = incident.id, error = %e, "cannot roll the mitigation back"),
        }
    }

    async fn acknowledge(&self, id: u64, note: OperatorNote, st: &mut State) -> Result<Incident, IncidentError> {
        let mut incident = match st.open.get(&id) {
            Some(i) => i.clone(),
            None => self.store.incident(id).await?.ok_or(IncidentError::NoSuchIncident(id))?,
        };
        incident.acknowledge(note.clone()).map_err(IncidentError::Refused)?;
        self.store.put_incident(incident.clone()).await?;
        tracing::info!(
            incident = id,
            by = note.by,
            reason = note.reason,
            "incident acknowledged: automatic repair of it waits"
        );
        st.open.insert(id, incident.clone());
        Ok(incident)
    }

    async fn close_by_operator(&self, id: u64, note: OperatorNote, st: &mut State) -> Result<Incident, IncidentError> {
        let mut incident = match st.open.get(&id) {
            Some(i) => i.clone(),
            None => self.store.incident(id).await?.ok_or(IncidentError::NoSuchIncident(id))?,
        };
        if st.undispatched.contains_key(&id) {
            return Err(IncidentError::Refused(format!(
                "incident {id} is handing a repair over; try again in a second"
            )));
        }
        incident.close(note.clone()).map_err(IncidentError::Refused)?;
        self.store.put_incident(incident.clone()).await?;
        tracing::info!(incident = id, by = note.by, reason = note.reason, "incident closed by an operator");
        if st.open.contains_key(&id) {
            self.close(id, st, "closed", None);
        }
        Ok(incident)
    }

    /// Starts the held repairs whose time has come (a rate limit's window moved on), and
    /// follows the approvals incidents wait for: approved, the repair runs again;
    /// rejected or expired, the incident moves on.
    async fn run_due(&self, st: &mut State) -> Result<(), StoreError> {
        let now = warden_core::time::now_unix_ms();
        let mut due: Vec<(Incident, NextStep)> =
            st.open.values().filter_map(|i| Some((i.clone(), i.due(now)?))).collect();
        // A repair held for a pause, maintenance, an operator or the breaker: due once the
        // hold lifts (`carry_out` holds it again while it has not).
        // One step per incident and tick: an incident both due and released runs once.
        let mut seen: BTreeSet<u64> = due.iter().map(|(i, _)| i.id).collect();
        due.extend(st.open.values().filter(|i| i.current_run().is_none() && self.held(i).is_none()).filter_map(|i| {
            let playbook = i.on_hold.clone()?;
            seen.insert(i.id).then(|| (i.clone(), NextStep::Run { playbook }))
        }));
        for (incident, step) in due {
            // An earlier step this tick may have closed or started it (an absorption).
            if st.open.get(&incident.id).is_none_or(|i| i.current_run().is_some()) {
                continue;
            }
            tracing::info!(incident = incident.id, "the held repair is due again; running it");
            self.apply(step, incident, st).await?;
        }
        let awaiting: Vec<(Incident, u64)> =
            st.open.values().filter_map(|i| Some((i.clone(), i.awaited_approval()?))).collect();
        for (mut incident, approval_id) in awaiting {
            let Some(approval) = self.store.approval(approval_id).await? else { continue };
            if let Some(step) = incident.approval_settled(&approval, &self.catalog.get()) {
                tracing::info!(
                    incident = incident.id,
                    approval = approval_id,
                    status = approval.status.as_str(),
                    "the approval the repair waited for is decided"
                );
                self.apply(step, incident, st).await?;
            }
        }
        Ok(())
    }

    /// Forgets a closed incident and ends its trace with `outcome` (`error`: it failed).
    fn close(&self, id: u64, st: &mut State, outcome: &str, error: Option<&str>) {
        if st.open.get(&id).is_some_and(|i| i.attempts.iter().any(|a| a.approval_id.is_some())) {
            self.approvals.withdraw(id, format!("incident {id} ended ({outcome})"));
        }
        st.open.remove(&id);
        st.undispatched.remove(&id);
        self.traces.close(id, outcome, error);
    }

    fn order(&self, incident: &Incident, run_id: u64, playbook: String) -> RunOrder {
        RunOrder {
            trace: self.traces.of(incident).context(),
            run_id,
            incident_id: Some(incident.id),
            playbook,
            target: incident.service.clone(),
            rationale: incident.evidence.clone(),
            dry_run: false,
            actor: warden_core::audit::AuditActor::System,
            cause: incident.cause,
        }
    }

    /// Hands every waiting run to the executor; what it does not acknowledge waits for
    /// the next tick.
    async fn retry_dispatches(&self, st: &mut State) {
        let waiting: Vec<(u64, RunOrder)> = st.undispatched.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (id, order) in waiting {
            match self.executor.run(order).await {
                Ok(()) => {
                    st.undispatched.remove(&id);
                }
                Err(e) => tracing::warn!(incident = id, error = %e, "run not handed over yet; retrying"),
            }
        }
    }

    /// Why each unfinished incident needs a person, for those that do.
    fn needing_people(&self, st: &State) -> BTreeMap<u64, String> {
        let healing = self.config.get().healing;
        let now = warden_core::time::now_unix_ms();
        let limit_ms = healing.mttr_alert.as_millis() as u64;
        st.open
            .values()
            .filter_map(|i| {
                let holds = self.holds.kinds_on(&i.service);
                needs_person(i, &holds, healing.enabled, now, limit_ms).map(|why| (i.id, why))
            })
            .collect()
    }

    /// The repairs under way, for the alerter: none while healing is off. An incident that
    /// needs a person (paused, waiting for an approver, past its time) holds no alert
    /// back: it is no longer being repaired by warden.
    fn publish(&self, st: &State) {
        let healing = self.config.get().healing;
        if !healing.enabled {
            self.repairs.set(Vec::new());
            return;
        }
        let waiting = self.needing_people(st);
        let limit_ms = healing.mttr_alert.as_millis() as u64;
        let repaired = st.open.values().filter(|i| !waiting.contains_key(&i.id));
        self.repairs.set(under_repair(repaired, warden_core::time::now_unix_ms(), limit_ms));
    }

    /// Tells a person (the log and the alert sinks) of each incident that has come to need
    /// one, once, and that it no longer does when it ends or its repair goes on.
    fn tell_people(&self, st: &mut State) {
        let waiting = self.needing_people(st);
        let over: Vec<u64> = st.told.keys().filter(|id| !waiting.contains_key(id)).copied().collect();
        let now = warden_core::time::now_unix_ms();
        for id in over {
            if let Some(alert) = st.told.remove(&id) {
                tracing::info!(incident = id, "alert resolved: the incident no longer needs a person");
                self.notifier.send(&alert.resolved_at(now));
            }
        }
        for (id, why) in waiting {
            let Some(i) = st.open.get(&id) else { continue };
            if st.told.contains_key(&id) {
                continue;
            }
            tracing::warn!(
                incident = id,
                service = i.service.as_str(),
                reason = why,
                "alert: the incident needs a person"
            );
            let alert = Alert::incident_needs_person(id, i.service.as_str(), i.mode.as_str(), &why, now);
            self.notifier.send(&alert);
            st.told.insert(id, alert);
        }
    }

    /// An incident that ended unhealed: one notification (it has nothing left to resolve:
    /// its service's probe alerts say whether the fault is still there).
    fn tell_failed(&self, incident: &Incident, reason: &str) {
        let now = warden_core::time::now_unix_ms();
        let why = format!("not healed: {reason}");
        let alert =
            Alert::incident_needs_person(incident.id, incident.service.as_str(), incident.mode.as_str(), &why, now);
        self.notifier.send(&alert);
    }
}

/// Whether a run changed something on its service (a step of tier 2 or more went through):
/// what the repair budget counts.
fn acted(run: &RunRecord) -> bool {
    !run.dry_run && run.rollback_of.is_none() && run.steps.iter().any(|s| s.done() && s.tier >= 2)
}
