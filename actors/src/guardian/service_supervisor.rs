//! ServiceSupervisor: runs the configured services as child processes.
//!
//! Starts them in dependency order (each once its dependencies are ready), awaits every
//! exit, restarts crashes at once and then with capped exponential backoff, quarantines a
//! crash loop, flags a slow boot, and carries out playbook steps on services — but only
//! steps that arrive as [`Authorized`], i.e. permitted by governance where the tier needs it.
//!
//! No state change hangs on a message alone. The tasks that learn a fact (a process exited,
//! passed its ready check, finished stopping) write it into the [`ServiceTable`] first and
//! then notify this actor; when the actor (re)starts it reconciles the table — exits it
//! missed, restarts that were due, stops that finished — so a notice lost while it was down
//! costs nothing. A stop task keeps trying to deliver its result while the actor restarts.

use super::leftovers;
use super::service_table::{AfterStop, ServiceEntry, ServiceTable};
use crate::addr::{AbortOnDrop, Addr, SendError};
use crate::data_dir::DataDir;
use crate::governance::audit_writer::AuditWriter;
use crate::metrics::{Metrics, ServiceLabel};
use crate::process::cgroup::{Containment, ServiceCgroup};
use crate::process::{self, LastGroup, record};
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};
use warden_core::audit::{AuditActor, AuditRecord, DecisionKind, EntryKind, OutcomeKind};
use warden_core::config::{LogPolicy, ReadyCheck, ServiceName, ServiceSpec};
use warden_core::permit::Authorized;
use warden_core::playbook::{PlannedStep, Primitive};
use warden_core::probe::Failure;
use warden_core::restart::RestartDecision;
use warden_core::restart::RestartTracker;
use warden_core::service::ServiceState;
use warden_core::tier::Tier;

/// How often a service waiting for a held port looks again.
const PORT_WAIT_POLL: Duration = Duration::from_millis(250);
pub const PATH: &str = "guardian/service_supervisor";
/// How long a finished stop keeps trying to reach a restarting supervisor.
const STOP_DELIVERY_BUDGET: Duration = Duration::from_secs(10);
/// How often a starting service's ready check is tried: a restart's downtime is bounded by
/// how soon we notice it is back.
const READY_POLL: Duration = Duration::from_millis(10);
const READY_CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// Ready checks in a row that find the process stopped (or, past its startup deadline,
/// connect without an answer) before a starting service counts as hung.
const HUNG_CHECKS: u32 = 3;

pub type OpResult = Result<String, ServiceOpError>;

/// What a reload did to the services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Restarted (if running) with a new definition.
    pub changed: Vec<ServiceName>,
    pub added: Vec<ServiceName>,
    pub removed: Vec<ServiceName>,
    pub unchanged: Vec<ServiceName>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceOpError {
    #[error("service supervisor unavailable: {0}")]
    Unavailable(#[from] SendError),
    #[error("no service `{0}`")]
    NoSuchService(String),
    #[error("`{0}` is not an operation on a service")]
    NotAServiceOp(&'static str),
    #[error("`{0}` has no process to signal")]
    NoProcess(ServiceName),
    #[error("cannot signal `{service}`: {errno}")]
    Signal { service: ServiceName, errno: nix::errno::Errno },
    #[error("`{service}` did not start: {source}")]
    DidNotStart { service: ServiceName, source: Arc<process::SpawnError> },
    #[error("warden is shutting down")]
    ShuttingDown,
    #[error("warden is still taking over what an earlier warden left running; try again shortly")]
    TakingOver,
    #[error("`{0}` is quarantined: release it to start it again")]
    Quarantined(ServiceName),
    #[error("`{0}` is not quarantined (it is {1})")]
    NotQuarantined(ServiceName, &'static str),
}

pub enum ServiceMsg {
    /// Node start: adopt or stop what an earlier warden on this data dir left running, then
    /// start every service in dependency order.
    StartAll,
    /// The process of `generation` exited (the exit itself is in the table).
    Exited { service: ServiceName, generation: u64 },
    /// A service passed its ready check: start whatever waited for it.
    ReadyChanged,
    /// The start-up takeover of an earlier warden's leftovers is over: carry out the steps
    /// that waited for it, start what is due.
    TakeoverDone,
    /// Start again after a backoff delay, if nothing changed meanwhile; `cleared`: what
    /// the exited process left has been killed.
    StartAfterBackoff { service: ServiceName, generation: u64, cleared: bool },
    /// A deliberate stop of `generation` is over; apply what was meant to follow it.
    StopFinished { service: ServiceName, generation: u64, reply: Option<RpcReplyPort<OpResult>> },
    /// Carry out a permitted playbook step on a service.
    Execute(Authorized<PlannedStep>, RpcReplyPort<OpResult>),
    /// Stop every service in reverse dependency order (node shutdown).
    StopAll(RpcReplyPort<()>),
    /// Apply a reloaded config's services (refused while an earlier warden's leftovers
    /// are being taken over).
    Reload(Vec<ServiceSpec>, RpcReplyPort<Result<ReloadReport, ServiceOpError>>),
    /// Answers at once: the actor is not wedged (the service manager's watchdog).
    Ping(RpcReplyPort<()>),
    /// Fault injection: stall in the handler for the given time (messages queue up), then
    /// panic (they are lost with the mailbox).
    #[cfg(feature = "fault-injection")]
    Crash(std::time::Duration),
}

impl Addr<ServiceSupervisor> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Carries out a permitted step; answers when it is done (a restart: when the new
    /// process is spawned).
    pub async fn execute(&self, step: Authorized<PlannedStep>, timeout: Duration) -> OpResult {
        self.ask(timeout, |tx| ServiceMsg::Execute(step, tx)).await?
    }

    /// Applies a reloaded config's services; answers with what changed.
    pub async fn reload(&self, specs: Vec<ServiceSpec>) -> Result<Result<ReloadReport, ServiceOpError>, SendError> {
        self.ask(Duration::from_secs(10), |tx| ServiceMsg::Reload(specs, tx)).await
    }

    /// Whether the actor answers within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), SendError> {
        self.ask(timeout, ServiceMsg::Ping).await
    }

    /// Stops every service, dependents first; answers when all are down.
    pub async fn stop_all(&self, timeout: Duration) -> Result<(), SendError> {
        self.ask(timeout, ServiceMsg::StopAll).await
    }
}

pub struct ServiceSupervisor {
    pub table: ServiceTable,
    pub me: Addr<ServiceSupervisor>,
    /// Where what supervision does by its own rules (crash restarts, quarantines) is
    /// recorded, so an outage leaves a trace in the trail.
    pub audit: Addr<AuditWriter>,
    /// This binary: the launcher, and `@warden` services.
    pub self_exe: PathBuf,
    pub data_dir: DataDir,
    pub containment: Containment,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
}

pub struct State {
    /// Playbook steps that arrived during the takeover (which process is a service's was
    /// not settled yet); carried out when it is over.
    deferred: Vec<(Authorized<PlannedStep>, RpcReplyPort<OpResult>)>,
    _rotate_logs: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for ServiceSupervisor {
    type Msg = ServiceMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ServiceMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        let reg = self.registry.started(PATH);
        let fresh = self.reconcile(&myself)?;
        if fresh {
            myself.send_message(ServiceMsg::StartAll)?;
        } else {
            info!(actor = PATH, "restarted; adopted running services and reconciled what changed meanwhile");
        }
        let rotate = tokio::spawn(rotate_logs(self.table.clone(), self.data_dir.clone()));
        Ok(State { deferred: Vec::new(), _rotate_logs: AbortOnDrop(rotate), _reg: reg })
    }

    async fn handle(
        &self,
        myself: ActorRef<ServiceMsg>,
        msg: ServiceMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServiceMsg::StartAll => {
                // The takeover runs as a task (its stops take grace periods); it sends
                // `TakeoverDone` when it is over, and nothing starts before that.
                if let Some(done) = leftovers::begin(&self.table) {
                    let takeover = leftovers::Takeover {
                        table: self.table.clone(),
                        run_dir: self.data_dir.run_dir(),
                        containment: self.containment.clone(),
                    };
                    let me = self.me.clone();
                    tokio::spawn(async move {
                        // Its own task: should it panic, the takeover still ends here.
                        let adopted = tokio::spawn(leftovers::take_over(takeover)).await.unwrap_or_else(|e| {
                            warn!(error = %e, "alert: the takeover of an earlier warden's processes failed");
                            Vec::new()
                        });
                        // Over before the exits are watched: a restart they cause may start.
                        let _ = done.send(true);
                        for a in adopted {
                            notify_exit(me.clone(), a.service, a.generation, a.exit);
                        }
                        // Delivered even if the supervisor is restarting right now (bounded).
                        for _ in 0..500 {
                            if me.tell(ServiceMsg::TakeoverDone).is_ok() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    });
                }
            }
            ServiceMsg::ReadyChanged => self.start_ready_ones(&myself),
            ServiceMsg::TakeoverDone => {
                for (step, reply) in std::mem::take(&mut state.deferred) {
                    // A caller that gave up meanwhile does not get its step run late.
                    if !reply.is_closed() {
                        self.execute(&myself, step, reply);
                    }
                }
                // A restart refused during the takeover is due now.
                let backoff: Vec<(ServiceName, u64)> = {
                    let t = self.table.lock();
                    t.services
                        .iter()
                        .filter(|(_, e)| e.state == ServiceState::Backoff)
                        .map(|(n, e)| (n.clone(), e.generation))
                        .collect()
                };
                for (service, generation) in backoff {
                    let _ = myself.send_message(ServiceMsg::StartAfterBackoff { service, generation, cleared: false });
                }
                self.start_ready_ones(&myself);
            }
            ServiceMsg::Exited { service, generation } => self.on_exit(&myself, &service, generation),
            ServiceMsg::StartAfterBackoff { service, generation, cleared } => {
                let due = {
                    let t = self.table.lock();
                    (!t.shutting_down)
                        .then(|| t.services.get(&service))
                        .flatten()
                        .filter(|e| e.generation == generation && e.state == ServiceState::Backoff)
                        .map(|e| (e.cgroup.clone(), e.last_group))
                };
                if let Some((cgroup, last_group)) = due {
                    // What the last process left behind (children it forked) goes before the
                    // next one starts, as systemd does; in a task, as it may take seconds.
                    if !cleared && leftovers::present(cgroup.as_ref(), last_group) {
                        let me = self.me.clone();
                        tokio::spawn(async move {
                            leftovers::clear(service.as_str(), cgroup.as_ref(), last_group).await;
                            let _ = me.tell(ServiceMsg::StartAfterBackoff { service, generation, cleared: true });
                        });
                    } else if !self.waits_for_outside_cause(&myself, &service, generation) {
                        let _ = self.spawn(&myself, &service);
                    }
                }
            }
            ServiceMsg::StopFinished { service, generation, reply } => {
                let result = self.stop_finished(&myself, &service, generation);
                if let Some(r) = reply {
                    let _ = r.send(result);
                }
            }
            ServiceMsg::Execute(step, reply) => {
                if self.table.lock().adopting() {
                    state.deferred.push((step, reply));
                } else {
                    self.execute(&myself, step, reply);
                }
            }
            ServiceMsg::StopAll(reply) => self.stop_all(reply),
            ServiceMsg::Reload(specs, reply) => {
                let answer = if self.table.lock().adopting() {
                    Err(ServiceOpError::TakingOver)
                } else {
                    Ok(self.reload(&myself, specs))
                };
                let _ = reply.send(answer);
            }
            ServiceMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            #[cfg(feature = "fault-injection")]
            ServiceMsg::Crash(after) => {
                tokio::time::sleep(after).await;
                panic!("fault injection: service supervisor crashed on command");
            }
        }
        Ok(())
    }
}

impl ServiceSupervisor {
    /// Brings this instance up to date with the table; true on a fresh node (nothing ever
    /// started). Every notice that a previous instance may have missed is sent again;
    /// the handlers ignore the ones that were not missed.
    fn reconcile(&self, myself: &ActorRef<ServiceMsg>) -> Result<bool, ActorProcessingErr> {
        let t = self.table.lock();
        let fresh = t.services.values().all(|e| e.generation == 0);
        for (name, e) in &t.services {
            let (service, generation) = (name.clone(), e.generation);
            match e.state {
                ServiceState::Backoff => {
                    // The timer died with the previous instance; the due time did not.
                    let left =
                        e.restart_due.map_or(Duration::ZERO, |due| due.saturating_duration_since(Instant::now()));
                    myself.send_after(left, move || ServiceMsg::StartAfterBackoff {
                        service,
                        generation,
                        cleared: false,
                    });
                }
                ServiceState::Starting | ServiceState::Running if e.process_exited().is_some() => {
                    warn!(service = name.as_str(), "exit happened while the supervisor was down; handling it now");
                    myself.send_message(ServiceMsg::Exited { service, generation })?;
                }
                ServiceState::Stopping if e.process_exited().is_some() || e.pid.is_none() => {
                    myself.send_message(ServiceMsg::StopFinished { service, generation, reply: None })?;
                }
                _ => {}
            }
        }
        if !fresh {
            myself.send_message(ServiceMsg::ReadyChanged)?;
        }
        Ok(fresh)
    }

    /// Starts every pending service whose dependencies have all been ready.
    fn start_ready_ones(&self, myself: &ActorRef<ServiceMsg>) {
        let due: Vec<ServiceName> = {
            let t = self.table.lock();
            if t.shutting_down || t.adopting() {
                return;
            }
            // A staggered boot starts the next one only once no other is still starting.
            if t.staggered_boot && t.services.values().any(|e| e.state == ServiceState::Starting) {
                return;
            }
            let due = t.order.iter().filter(|n| {
                t.services.get(*n).is_some_and(|e| {
                    e.state == ServiceState::Pending
                        && e.spec.depends_on.iter().all(|d| t.services.get(d).is_some_and(|x| x.ready_once))
                })
            });
            if t.staggered_boot { due.take(1).cloned().collect() } else { due.cloned().collect() }
        };
        for name in due {
            let _ = self.spawn(myself, &name);
        }
    }

    /// Starts a new process for `service`; returns its pid. A failed spawn counts as an
    /// exit of a process that never became ready: it backs off and can be quarantined.
    fn spawn(&self, myself: &ActorRef<ServiceMsg>, service: &ServiceName) -> Result<u32, ServiceOpError> {
        let mut t = self.table.lock();
        if t.shutting_down {
            return Err(ServiceOpError::ShuttingDown);
        }
        if t.adopting() {
            return Err(ServiceOpError::TakingOver);
        }
        let e = t.services.get_mut(service).ok_or_else(|| ServiceOpError::NoSuchService(service.to_string()))?;
        e.generation += 1;
        let generation = e.generation;
        // Managed files (config, credentials) are brought to what the config declares.
        e.edited_files = settle_files(&self.data_dir.vault(), service, &e.spec.files);
        match super::managed_files::make_data_dir(&e.spec) {
            Ok(true) => info!(service = service.as_str(), "made its data dir (it did not exist)"),
            Ok(false) => {}
            Err(err) => warn!(service = service.as_str(), %err, "cannot make its data dir"),
        }
        let me = self.me.clone();
        let svc = service.clone();
        let on_exit = move |_| {
            let _ = me.tell(ServiceMsg::Exited { service: svc, generation });
        };
        if e.cgroup.is_none() {
            e.cgroup = self.containment.service(service.as_str());
        }
        let log = self.data_dir.log_file(service.as_str());
        let req =
            process::SpawnRequest { spec: &e.spec, self_exe: &self.self_exe, log: &log, cgroup: e.cgroup.as_ref() };
        match process::spawn_service(req, on_exit) {
            Ok(sp) => {
                if e.started_at.is_some() {
                    e.restarts += 1;
                    self.metrics.service_restarts.get_or_create(&ServiceLabel { service: service.to_string() }).inc();
                }
                e.pid = Some(sp.pid);
                e.state = ServiceState::Starting;
                e.ready_at = None;
                e.started_at = Some(Instant::now());
                e.started_unix_ms = Some(warden_core::time::now_unix_ms());
                e.slow_boot = false;
                e.hung_before_ready = false;
                // Whoever held its port is gone (a playbook freed it, or the wait ended).
                if let Some(was) = e.waiting_for_port.take() {
                    info!(service = service.as_str(), "port free again ({was}): started");
                }
                e.waiting_for_dependencies = None;
                e.exit = Some(sp.exit.clone());
                e.oom_kills_at_start = sp.oom_kills_at_start;
                e.start_ticks = None;
                // For the next warden, should this one die: which process is this service's.
                match record::ProcessRecord::of(service.as_str(), sp.pid, record::spec_hash(&e.spec)) {
                    Some(rec) => {
                        e.start_ticks = Some(rec.start_ticks);
                        if let Err(err) = record::write(&self.data_dir.run_dir(), &rec) {
                            warn!(service = service.as_str(), %err, "cannot write the process record");
                        }
                    }
                    None => warn!(service = service.as_str(), pid = sp.pid, "process gone before it could be recorded"),
                }
                info!(service = service.as_str(), pid = sp.pid, generation, "service started");
                tokio::spawn(watch_readiness(Readiness {
                    table: self.table.clone(),
                    me: self.me.clone(),
                    service: service.clone(),
                    generation,
                    ready: e.spec.ready.clone(),
                    deadline: e.spec.startup_deadline,
                    pid: sp.pid,
                    cgroup: e.cgroup.clone(),
                    exit: sp.exit,
                }));
                Ok(sp.pid)
            }
            Err(err) => {
                warn!(service = service.as_str(), %err, "service failed to start");
                e.last_exit = Some(err.to_string());
                e.pid = None;
                e.exit = None;
                // The previous process's readiness says nothing about this attempt.
                e.ready_at = None;
                let err = Arc::new(err);
                drop(t);
                self.decide_after_exit(myself, service, generation);
                Err(ServiceOpError::DidNotStart { service: service.clone(), source: err })
            }
        }
    }

    fn on_exit(&self, myself: &ActorRef<ServiceMsg>, service: &ServiceName, generation: u64) {
        let mut t = self.table.lock();
        let shutting_down = t.shutting_down;
        let Some(e) = t.services.get_mut(service) else { return };
        if e.generation != generation || !matches!(e.state, ServiceState::Starting | ServiceState::Running) {
            return; // an older process, one we stopped on purpose, or already handled
        }
        let Some(info) = e.process_exited() else { return };
        e.exited = Some((warden_core::time::now_unix_ms(), info.clone()));
        e.last_group = e.pid.zip(e.start_ticks).map(|(pgid, leader_ticks)| LastGroup { pgid, leader_ticks });
        e.pid = None;
        e.exit = None;
        e.last_exit = Some(if e.hung_before_ready {
            format!("hung before its first ready check; killed ({info})")
        } else {
            info.to_string()
        });
        record::remove(&self.data_dir.run_dir(), service.as_str());
        if shutting_down {
            e.state = ServiceState::Stopped;
            return;
        }
        warn!(service = service.as_str(), %info, "service exited unexpectedly");
        drop(t);
        self.decide_after_exit(myself, service, generation);
    }

    /// Applies the restart policy to an exit (or failed spawn) of `generation`.
    fn decide_after_exit(&self, myself: &ActorRef<ServiceMsg>, service: &ServiceName, generation: u64) {
        // A port of it held by another process is a cause outside the service: a restart
        // now would only die on EADDRINUSE and spend its budget towards quarantine. It
        // waits for the port instead (as Monit does), its budget untouched.
        if self.waits_for_outside_cause(myself, service, generation) {
            return;
        }
        let mut t = self.table.lock();
        let Some(e) = t.services.get_mut(service) else { return };
        let now = Instant::now();
        match e.tracker.on_exit(now, e.ready_at.map(|r| now.duration_since(r))) {
            RestartDecision::Restart { delay, attempt } => {
                e.state = ServiceState::Backoff;
                e.restart_due = Some(now + delay);
                info!(service = service.as_str(), attempt, delay_ms = delay.as_millis() as u64, "restarting");
                self.audit_supervision(
                    "restart_service",
                    service,
                    format!(
                        "its process ended unexpectedly: {}",
                        e.last_exit.as_deref().unwrap_or("exit status unknown")
                    ),
                    format!("restart attempt {attempt} after {} ms of backoff", delay.as_millis()),
                );
                let svc = service.clone();
                // Through the mailbox even without delay: a spawn that fails again must not
                // recurse, and exits queued meanwhile are handled in order.
                if delay.is_zero() {
                    let _ =
                        myself.send_message(ServiceMsg::StartAfterBackoff { service: svc, generation, cleared: false });
                } else {
                    myself.send_after(delay, move || ServiceMsg::StartAfterBackoff {
                        service: svc,
                        generation,
                        cleared: false,
                    });
                }
            }
            RestartDecision::Quarantine { restarts_in_window } => {
                e.state = ServiceState::Quarantined;
                self.metrics.service_quarantines.get_or_create(&ServiceLabel { service: service.to_string() }).inc();
                warn!(
                    service = service.as_str(),
                    restarts_in_window,
                    window_ms = e.spec.restart.window.as_millis() as u64,
                    "alert: service quarantined, crash loop past its restart budget"
                );
                self.audit_supervision(
                    "quarantine_service",
                    service,
                    format!(
                        "crash loop: {restarts_in_window} restarts within {} ms",
                        e.spec.restart.window.as_millis()
                    ),
                    e.last_exit.clone().unwrap_or_default(),
                );
                // Nothing of it runs while it is quarantined.
                let (service, cgroup, group) = (service.to_string(), e.cgroup.clone(), e.last_group);
                tokio::spawn(async move { leftovers::clear(&service, cgroup.as_ref(), group).await });
            }
        }
        drop(t);
        // A staggered boot waits for no one that is not starting any more. Through the
        // mailbox: this may run inside `start_ready_ones` (a failed spawn), whose list of
        // due services must not be started twice.
        let _ = myself.send_message(ServiceMsg::ReadyChanged);
    }

    /// Whether another process holds one of `service`'s ports now; if so the service is
    /// put in backoff, waiting, and asked again after [`PORT_WAIT_POLL`]. Said once per
    /// wait in the log and the trail, and once more when the port is free.
    fn wait_for_held_port(&self, myself: &ActorRef<ServiceMsg>, service: &ServiceName, generation: u64) -> bool {
        let (ports, last_group) = {
            let t = self.table.lock();
            let Some(e) = t.services.get(service) else { return false };
            (e.spec.ports.clone(), e.last_group)
        };
        if ports.is_empty() {
            return false;
        }
        // Its own processes (as the L4 owner check sees them, and what its last process
        // group left) are not others: what they left is cleared before the next start.
        let mut own = super::checks::ServiceView { table: self.table.clone(), service: service.clone() }.processes();
        own.extend(last_group.map(|g| g.members()).unwrap_or_default());
        let holder = ports.iter().find_map(|port| {
            let listeners = warden_core::procnet::listeners_of_port(*port).ok()?;
            let pid = listeners.into_iter().map(|(pid, _)| pid).find(|pid| !own.contains(pid))?;
            Some((*port, pid))
        });
        let mut t = self.table.lock();
        let Some(e) = t.services.get_mut(service) else { return false };
        let Some((port, pid)) = holder else {
            if let Some(was) = e.waiting_for_port.take() {
                info!(service = service.as_str(), "port free again ({was}): starting");
            }
            return false;
        };
        let who = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.replace('\0', " ").trim().to_string())
            .unwrap_or_default();
        let what = format!("port {port} held by pid {pid} `{who}`");
        if e.waiting_for_port.as_deref() != Some(what.as_str()) {
            warn!(
                service = service.as_str(),
                port,
                holder = pid,
                command = who,
                "alert: another process holds the service's port; waiting for it instead of restarting into EADDRINUSE"
            );
            self.audit_supervision(
                "restart_service",
                service,
                format!("{what}: a start now would fail on EADDRINUSE"),
                "held: waiting for the port to be free, restart budget untouched".into(),
            );
            e.waiting_for_port = Some(what);
        }
        hold_in_backoff(myself, e, service, generation);
        true
    }

    /// Whether `service` must wait for a cause outside it before it starts: a port of it
    /// held by another process, or a dependency not running (see each).
    fn waits_for_outside_cause(&self, myself: &ActorRef<ServiceMsg>, service: &ServiceName, generation: u64) -> bool {
        self.wait_for_held_port(myself, service, generation) || self.wait_for_dependencies(myself, service, generation)
    }

    /// Whether a dependency of `service` is not running now (stopped, restarting,
    /// quarantined); if so it waits in backoff, asked again after [`PORT_WAIT_POLL`], its
    /// restart budget untouched: a restart now would fail the same way and spend the budget
    /// towards a quarantine for a cause outside the service (like a held port). Said once
    /// per wait, and once more when its dependencies run again.
    fn wait_for_dependencies(&self, myself: &ActorRef<ServiceMsg>, service: &ServiceName, generation: u64) -> bool {
        let mut t = self.table.lock();
        let Some(deps) = t.services.get(service).map(|e| e.spec.depends_on.clone()) else { return false };
        let down: Vec<String> = deps
            .iter()
            .filter_map(|d| {
                let state = t.services.get(d)?.state;
                (state != ServiceState::Running).then(|| format!("`{d}` is {}", state.as_str()))
            })
            .collect();
        let Some(e) = t.services.get_mut(service) else { return false };
        if down.is_empty() {
            if let Some(was) = e.waiting_for_dependencies.take() {
                info!(service = service.as_str(), "dependencies running again ({was}): starting");
            }
            return false;
        }
        let what = down.join(", ");
        if e.waiting_for_dependencies.as_deref() != Some(what.as_str()) {
            warn!(
                service = service.as_str(),
                dependencies = what,
                "alert: a dependency is not running; waiting for it instead of restarting into the same failure"
            );
            self.audit_supervision(
                "restart_service",
                service,
                format!("{what}: a restart now would likely fail the same way"),
                "held: waiting for its dependencies to run, restart budget untouched".into(),
            );
            e.waiting_for_dependencies = Some(what);
        }
        hold_in_backoff(myself, e, service, generation);
        true
    }

    /// Records an action supervision took by its own rules, as the system; never waits
    /// for it (a trail that cannot be written must not stop a restart).
    fn audit_supervision(&self, action: &str, service: &ServiceName, rationale: String, detail: String) {
        let record = AuditRecord {
            kind: EntryKind::Supervision,
            actor: AuditActor::System,
            action: action.into(),
            tier: Tier::OBSERVE.get(),
            target: service.to_string(),
            rationale,
            decision: DecisionKind::Allow,
            outcome: Some(OutcomeKind::Succeeded),
            detail,
            incident_id: None,
            run_id: None,
        };
        let audit = self.audit.clone();
        tokio::spawn(async move {
            if let Err(e) = audit.append(record).await {
                warn!(error = %e, "cannot audit a supervision action");
            }
        });
    }

    /// Carries out a permitted step. Stops run in a task so exits keep being handled.
    fn execute(&self, myself: &ActorRef<ServiceMsg>, step: Authorized<PlannedStep>, reply: RpcReplyPort<OpResult>) {
        let s = step.step();
        let service = s.target.clone();
        let mut t = self.table.lock();
        let Some(e) = t.services.get_mut(&service) else {
            let _ = reply.send(Err(ServiceOpError::NoSuchService(service.to_string())));
            return;
        };
        match &s.primitive {
            // Only a release lifts a quarantine (it is governed and audited as such): a start
            // or restart would quietly hand the service a fresh restart budget.
            Primitive::StartService | Primitive::RestartService { .. } if e.state == ServiceState::Quarantined => {
                let _ = reply.send(Err(ServiceOpError::Quarantined(service.clone())));
            }
            Primitive::RestartService { .. } | Primitive::StopService | Primitive::QuarantineService => {
                let then = match s.primitive {
                    Primitive::RestartService { .. } => AfterStop::Start,
                    Primitive::QuarantineService => AfterStop::Quarantine,
                    _ => AfterStop::Stay,
                };
                // A hung process never acts on TERM: `force` goes straight to KILL.
                let force = matches!(s.primitive, Primitive::RestartService { force: true });
                drop(t);
                self.begin_stop(&service, then, force, Some(reply));
            }
            Primitive::StartService => {
                if matches!(e.state, ServiceState::Stopped | ServiceState::Backoff) {
                    e.tracker.reset();
                    drop(t);
                    let _ = reply.send(self.spawn(myself, &service).map(|p| format!("started pid {p}")));
                } else {
                    let _ = reply.send(Ok(format!("`{service}` already {}", e.state.as_str())));
                }
            }
            Primitive::ReleaseService => {
                if e.state == ServiceState::Quarantined {
                    e.tracker.reset();
                    drop(t);
                    info!(service = service.as_str(), "quarantine lifted; starting it with a fresh restart budget");
                    let _ = reply.send(self.spawn(myself, &service).map(|p| format!("released; started pid {p}")));
                } else {
                    let _ = reply.send(Err(ServiceOpError::NotQuarantined(service.clone(), e.state.as_str())));
                }
            }
            Primitive::SignalService { signal } => {
                let sig = process::signal_of(*signal);
                let r = match e.pid {
                    None => Err(ServiceOpError::NoProcess(service.clone())),
                    Some(pid) => process::signal_group(pid, sig)
                        .map(|_| format!("sent {sig} to group {pid}"))
                        .map_err(|errno| ServiceOpError::Signal { service: service.clone(), errno }),
                };
                let _ = reply.send(r);
            }
            other => {
                let _ = reply.send(Err(ServiceOpError::NotAServiceOp(other.action())));
            }
        }
    }

    /// Sends `service` the signal it declares for `reload` (its config files changed).
    fn signal_reload(&self, service: &ServiceName) {
        let t = self.table.lock();
        let Some(e) = t.services.get(service) else { return };
        let (Some(pid), Some(sig)) = (e.pid, e.spec.hooks.signals.get("reload")) else { return };
        let sig = process::signal_of(*sig);
        match process::signal_group(pid, sig) {
            Ok(()) => info!(service = service.as_str(), "files changed: wrote them and sent {sig} (its reload signal)"),
            Err(errno) => {
                warn!(service = service.as_str(), %errno, "files changed: cannot send its reload signal {sig}")
            }
        }
    }

    /// Starts a deliberate stop of `service` (a task stops it; its end comes back as
    /// `StopFinished`, which applies `then`). `reply`, if any, gets the result of the whole.
    fn begin_stop(&self, service: &ServiceName, then: AfterStop, force: bool, reply: Option<RpcReplyPort<OpResult>>) {
        let mut t = self.table.lock();
        let Some(e) = t.services.get_mut(service) else {
            if let Some(r) = reply {
                let _ = r.send(Err(ServiceOpError::NoSuchService(service.to_string())));
            }
            return;
        };
        let main_group = e.pid.zip(e.start_ticks).map(|(pgid, leader_ticks)| LastGroup { pgid, leader_ticks });
        let (old_pid, exit, last_group) = (e.pid, e.exit.clone(), main_group.or(e.last_group));
        let (grace, signal, cgroup) = (e.spec.stop_grace, process::signal_of(e.spec.stop_signal), e.cgroup.clone());
        e.state = ServiceState::Stopping;
        e.after_stop = Some(then);
        // A deliberate stop is no crash: later exit notices of this process are ignored.
        e.generation += 1;
        let generation = e.generation;
        drop(t);
        let me = self.me.clone();
        let service = service.clone();
        tokio::spawn(async move {
            if let (Some(pid), Some(mut exit)) = (old_pid, exit)
                && process::stop(process::Stop {
                    pid,
                    exit: exit.clone(),
                    grace,
                    force,
                    signal,
                    cgroup: cgroup.as_ref(),
                })
                .await
                .is_none()
            {
                // Not reaped within seconds of SIGKILL (uninterruptible sleep): the stop is
                // not over until it is gone, however long that takes.
                warn!(service = service.as_str(), pid, "alert: process did not die after SIGKILL; still waiting");
                let _ = exit.wait_for(Option::is_some).await;
            }
            // Whatever the main process forked goes too, also what ignored the stop signal
            // (without cgroups the group got only that signal), and with no main process
            // (in backoff, or it just exited) what the last one left.
            leftovers::clear(service.as_str(), cgroup.as_ref(), last_group).await;
            let result = me
                .ask_until(STOP_DELIVERY_BUDGET, |tx| ServiceMsg::StopFinished {
                    service: service.clone(),
                    generation,
                    reply: Some(tx),
                })
                .await
                .unwrap_or_else(|e| Err(e.into()));
            if let Some(r) = reply {
                let _ = r.send(result);
            }
        });
    }

    /// A reloaded config's services: a service whose definition changed restarts with the
    /// new one (one whose only change is its files, and that declares a reload signal, gets
    /// the new files and that signal instead), a removed one stops and leaves, a new one starts when its dependencies are
    /// ready; the others are not touched.
    fn reload(&self, myself: &ActorRef<ServiceMsg>, specs: Vec<ServiceSpec>) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut restart = Vec::new();
        let mut reload = Vec::new();
        let mut t = self.table.lock();
        let wanted: BTreeSet<ServiceName> = specs.iter().map(|s| s.name.clone()).collect();
        for (name, e) in t.services.iter_mut() {
            if !wanted.contains(name) && !e.removed {
                e.removed = true;
                report.removed.push(name.clone());
            }
        }
        for spec in &specs {
            match t.services.get_mut(&spec.name) {
                Some(e) if e.removed => {
                    // Removed by an earlier reload and back before it was gone: it stays,
                    // and its pending removal becomes a start with this definition.
                    e.removed = false;
                    e.spec = spec.clone();
                    e.tracker = RestartTracker::new(spec.restart);
                    if e.after_stop == Some(AfterStop::Remove) {
                        e.after_stop = Some(AfterStop::Start);
                    }
                    report.added.push(spec.name.clone());
                }
                Some(e) if e.spec == *spec => report.unchanged.push(spec.name.clone()),
                // A new startup deadline applies from the next start: the process that
                // runs now is not restarted for it (a slow boot would only start over).
                Some(e) if ServiceSpec { startup_deadline: spec.startup_deadline, ..e.spec.clone() } == *spec => {
                    e.spec = spec.clone();
                    report.unchanged.push(spec.name.clone());
                }
                Some(e)
                    if ServiceSpec { files: spec.files.clone(), ..e.spec.clone() } == *spec
                        && e.state == ServiceState::Running
                        && e.spec.hooks.signals.contains_key("reload") =>
                {
                    e.spec = spec.clone();
                    e.edited_files = settle_files(&self.data_dir.vault(), &spec.name, &spec.files);
                    report.changed.push(spec.name.clone());
                    reload.push(spec.name.clone());
                }
                Some(e) => {
                    e.spec = spec.clone();
                    e.tracker = RestartTracker::new(spec.restart);
                    report.changed.push(spec.name.clone());
                    if e.pid.is_some() && matches!(e.state, ServiceState::Starting | ServiceState::Running) {
                        restart.push(spec.name.clone());
                    }
                }
                None => {
                    t.services.insert(spec.name.clone(), ServiceEntry::new(spec.clone()));
                    report.added.push(spec.name.clone());
                }
            }
        }
        // Start order follows the new config; removed services stay listed until gone.
        let mut order: Vec<ServiceName> = specs.iter().map(|s| s.name.clone()).collect();
        order.extend(t.services.iter().filter(|(_, e)| e.removed).map(|(n, _)| n.clone()));
        t.order = order;
        let removing: Vec<(ServiceName, bool)> =
            report.removed.iter().map(|n| (n.clone(), t.services.get(n).is_some_and(|e| e.pid.is_some()))).collect();
        drop(t);
        for name in &restart {
            info!(service = name.as_str(), "definition changed: restarting with the new one");
            self.begin_stop(name, AfterStop::Start, false, None);
        }
        for name in &reload {
            self.signal_reload(name);
        }
        for (name, running) in removing {
            info!(service = name.as_str(), "removed from the config: stopping it");
            if running {
                self.begin_stop(&name, AfterStop::Remove, false, None);
            } else {
                self.forget(&name);
            }
        }
        self.start_ready_ones(myself);
        report
    }

    /// Drops a removed, stopped service from the table, with its record and cgroup.
    fn forget(&self, name: &ServiceName) {
        let mut t = self.table.lock();
        let gone = t.services.remove(name);
        t.order.retain(|n| n != name);
        drop(t);
        record::remove(&self.data_dir.run_dir(), name.as_str());
        if let Some(e) = gone {
            let service = name.to_string();
            tokio::spawn(async move {
                leftovers::clear(&service, e.cgroup.as_ref(), e.last_group).await;
                if let Some(cg) = &e.cgroup {
                    cg.remove();
                }
            });
        }
    }

    /// Applies what follows the deliberate stop of `generation`, once.
    fn stop_finished(&self, myself: &ActorRef<ServiceMsg>, service: &ServiceName, generation: u64) -> OpResult {
        let mut t = self.table.lock();
        let e = t.services.get_mut(service).ok_or_else(|| ServiceOpError::NoSuchService(service.to_string()))?;
        let old = e.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        if e.generation != generation || e.state != ServiceState::Stopping {
            // Reconciliation got here first.
            return Ok(format!("`{service}` was stopped; it is now {} (pid {old})", e.state.as_str()));
        }
        if e.pid.is_some() && e.process_exited().is_none() {
            // Only a process seen gone is forgotten: this one is still being waited for.
            return Ok(format!("`{service}` is still stopping (pid {old})"));
        }
        let then = e.after_stop.take().unwrap_or(AfterStop::Stay);
        if let Some(info) = e.process_exited() {
            e.last_exit = Some(info.to_string());
        }
        e.pid = None;
        e.exit = None;
        match then {
            AfterStop::Start => {
                drop(t);
                self.spawn(myself, service).map(|p| format!("replaced pid {old} with pid {p}"))
            }
            AfterStop::Stay | AfterStop::Quarantine => {
                e.state = if then == AfterStop::Quarantine { ServiceState::Quarantined } else { ServiceState::Stopped };
                record::remove(&self.data_dir.run_dir(), service.as_str());
                drop(t);
                let _ = myself.send_message(ServiceMsg::ReadyChanged);
                Ok(format!("stopped pid {old}"))
            }
            AfterStop::Remove => {
                drop(t);
                self.forget(service);
                Ok(format!("stopped pid {old} and removed the service"))
            }
        }
    }

    fn stop_all(&self, reply: RpcReplyPort<()>) {
        let mut t = self.table.lock();
        t.shutting_down = true;
        let adoption = t.adoption.clone();
        let mut stops = Vec::new();
        for name in t.order.clone().iter().rev() {
            if let Some(e) = t.services.get_mut(name) {
                e.generation += 1;
                e.after_stop = None;
                let main = e.pid.zip(e.exit.clone());
                let main_group = e.pid.zip(e.start_ticks).map(|(pgid, leader_ticks)| LastGroup { pgid, leader_ticks });
                e.state = if main.is_some() { ServiceState::Stopping } else { ServiceState::Stopped };
                stops.push(FinalStop {
                    name: name.clone(),
                    main,
                    grace: e.spec.stop_grace,
                    signal: process::signal_of(e.spec.stop_signal),
                    cgroup: e.cgroup.clone(),
                    last_group: main_group.or(e.last_group),
                });
            }
        }
        drop(t);
        let table = self.table.clone();
        let run_dir = self.data_dir.run_dir();
        tokio::spawn(async move {
            // A takeover under way adopts nothing more (shutdown is set) but may still be
            // stopping leftovers: those must be gone too before warden is.
            if let Some(mut rx) = adoption {
                let _ = rx.wait_for(|done| *done).await;
            }
            // Reverse dependency order, one at a time: dependents go before what they use.
            for stop in stops {
                let name = stop.name.as_str();
                if let Some((pid, exit)) = stop.main {
                    let info = process::stop(process::Stop {
                        pid,
                        exit,
                        grace: stop.grace,
                        force: false,
                        signal: stop.signal,
                        cgroup: stop.cgroup.as_ref(),
                    })
                    .await;
                    info!(
                        service = name,
                        pid,
                        exit = info.map(|i| i.to_string()).unwrap_or_default(),
                        "service stopped"
                    );
                }
                // Whatever an earlier process forked goes as well, also without a main process.
                leftovers::clear(name, stop.cgroup.as_ref(), stop.last_group).await;
                record::remove(&run_dir, name);
                if let Some(cg) = &stop.cgroup {
                    cg.remove();
                }
                let mut t = table.lock();
                if let Some(e) = t.services.get_mut(&stop.name) {
                    e.state = ServiceState::Stopped;
                    e.pid = None;
                }
            }
            let _ = reply.send(());
        });
    }
}

/// One service's part of the node's shutdown.
struct FinalStop {
    name: ServiceName,
    /// The main process and its exit watch, if one runs.
    main: Option<(u32, watch::Receiver<Option<process::ExitInfo>>)>,
    grace: Duration,
    signal: nix::sys::signal::Signal,
    cgroup: Option<ServiceCgroup>,
    last_group: Option<LastGroup>,
}

/// Rotates every service's log file that has reached its size, once a second.
async fn rotate_logs(table: ServiceTable, data_dir: DataDir) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let logs: Vec<(PathBuf, LogPolicy)> = {
            let t = table.lock();
            t.services.values().map(|e| (data_dir.log_file(e.spec.name.as_str()), e.spec.logs)).collect()
        };
        let _ = tokio::task::spawn_blocking(move || {
            for (path, policy) in logs {
                if let Err(err) = process::logs::rotate_if_full(&path, policy) {
                    warn!(log = %path.display(), %err, "cannot rotate log file");
                }
            }
        })
        .await;
    }
}

/// What a readiness watcher watches.
struct Readiness {
    table: ServiceTable,
    me: Addr<ServiceSupervisor>,
    service: ServiceName,
    generation: u64,
    ready: Option<ReadyCheck>,
    deadline: Duration,
    pid: u32,
    cgroup: Option<ServiceCgroup>,
    exit: tokio::sync::watch::Receiver<Option<process::ExitInfo>>,
}

/// Polls the ready check until it passes or the process exits; writes readiness, a missed
/// startup deadline and a hang into the table before telling anyone. A process that hangs
/// before it is ever ready (stopped, or past its startup deadline its ready check connects
/// but never answers, a few times in a row) is killed: a failed start, retried with
/// backoff. Within its deadline a silent service is only slow: some answer late at boot.
async fn watch_readiness(mut r: Readiness) {
    let start = Instant::now();
    let mut deadline_reported = false;
    let mut hung_checks = 0u32;
    let client = super::checks::http_client();
    let check = r.ready.clone();
    loop {
        if r.exit.borrow_and_update().is_some() {
            return;
        }
        let result = match &check {
            None => Ok(Duration::ZERO),
            Some(check) => super::checks::ready(&client, check, READY_CHECK_TIMEOUT).await,
        };
        if result.is_ok() {
            if r.table.mark_ready(r.service.as_str(), r.generation) {
                info!(service = r.service.as_str(), after_ms = start.elapsed().as_millis() as u64, "service ready");
                let _ = r.me.tell(ServiceMsg::ReadyChanged);
            }
            return;
        }
        // The deadline as it stands now: an extension (a runtime override) applies to the
        // boot under way too.
        if let Some(d) = r.table.lock().services.get(&r.service).map(|e| e.spec.startup_deadline) {
            r.deadline = d;
        }
        let stopped = process::state(r.pid).is_some_and(|s| s == 'T' || s == 't');
        let silent = matches!(result, Err(Failure::Timeout)) && start.elapsed() >= r.deadline;
        hung_checks = if stopped || silent { hung_checks + 1 } else { 0 };
        if hung_checks >= HUNG_CHECKS
            && let Some(pid) = r.table.mark_hung(r.service.as_str(), r.generation)
        {
            warn!(
                service = r.service.as_str(),
                pid,
                checks = hung_checks,
                "alert: service hung before its first ready check; killing it (a failed start)"
            );
            let _ = process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            if let Some(cg) = &r.cgroup {
                cg.kill_all().await;
            }
        }
        if !deadline_reported && start.elapsed() >= r.deadline {
            deadline_reported = true;
            if r.table.mark_slow_boot(r.service.as_str(), r.generation) {
                warn!(
                    service = r.service.as_str(),
                    deadline_ms = r.deadline.as_millis() as u64,
                    "alert: slow boot, service not ready by its startup deadline"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(READY_POLL) => {}
            _ = r.exit.changed() => {}
        }
    }
}

/// Tells the supervisor when an adopted process exits (for a child, `spawn_service`'s
/// exit watcher does it).
fn notify_exit(
    me: Addr<ServiceSupervisor>,
    service: ServiceName,
    generation: u64,
    mut exit: watch::Receiver<Option<process::ExitInfo>>,
) {
    tokio::spawn(async move {
        let _ = exit.wait_for(Option::is_some).await;
        let _ = me.tell(ServiceMsg::Exited { service, generation });
    });
}

/// Puts a service whose start waits for a cause outside it in `backoff`, and asks again
/// after [`PORT_WAIT_POLL`].
fn hold_in_backoff(
    myself: &ActorRef<ServiceMsg>,
    e: &mut super::service_table::ServiceEntry,
    service: &ServiceName,
    generation: u64,
) {
    e.state = ServiceState::Backoff;
    e.restart_due = Some(Instant::now() + PORT_WAIT_POLL);
    let svc = service.clone();
    myself.send_after(PORT_WAIT_POLL, move || ServiceMsg::StartAfterBackoff {
        service: svc,
        generation,
        cleared: false,
    });
}

/// Brings a service's managed files to what its config declares
/// ([`super::managed_files::settle`]); the ones left alone because someone edited them.
fn settle_files(
    vault: &super::vault::Vault,
    service: &ServiceName,
    files: &[warden_core::config::ManagedFile],
) -> Vec<String> {
    use super::managed_files::{Settled, settle};
    let mut edited = Vec::new();
    for f in files {
        match settle(vault, f) {
            Ok(Settled::Edited) => {
                warn!(
                    service = service.as_str(),
                    path = %f.path.display(),
                    "managed file holds content the config does not declare (an edit, or a rotated secret): left as it is"
                );
                edited.push(f.path.display().to_string());
            }
            Ok(_) => {}
            Err(err) => warn!(service = service.as_str(), path = %f.path.display(), %err, "cannot write managed file"),
        }
    }
    edited
}
