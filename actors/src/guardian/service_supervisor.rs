//! ServiceSupervisor: runs the configured services as child processes.
//!
//! Starts them in dependency order (each once its dependencies are ready), awaits every
//! exit, restarts crashes at once and then with capped exponential backoff, quarantines a
//! crash loop, flags a slow boot, and carries out playbook steps on services — but only
//! steps that arrive as [`Authorized`], i.e. permitted by governance where the tier needs it.

use crate::context::{Ctx, names};
use crate::metrics::ServiceLabel;
use crate::process::{self, ExitInfo};
use crate::registry::Registration;
use crate::rpc;
use crate::service_table::ServiceState;
use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};
use warden_core::config::ReadyCheck;
use warden_core::permit::Authorized;
use warden_core::playbook::{PlannedStep, Primitive};
use warden_core::restart::RestartDecision;

pub enum ServiceMsg {
    /// Start every service in dependency order (node start).
    StartAll,
    Exited {
        service: String,
        generation: u64,
        info: ExitInfo,
    },
    Ready {
        service: String,
        generation: u64,
        after_ms: u64,
    },
    StartupDeadline {
        service: String,
        generation: u64,
    },
    /// Start again after a backoff delay, if nothing changed meanwhile.
    StartAfterBackoff {
        service: String,
        generation: u64,
    },
    /// A deliberate stop finished; `then` says what comes next.
    Stopped {
        service: String,
        then: AfterStop,
        old_pid: Option<u32>,
        reply: Option<RpcReplyPort<Result<String, String>>>,
    },
    /// Carry out a permitted playbook step on a service.
    Execute(Authorized<PlannedStep>, RpcReplyPort<Result<String, String>>),
    /// Stop every service in reverse dependency order (node shutdown).
    StopAll(RpcReplyPort<()>),
    /// Fault injection: panic inside the handler.
    Crash,
}

/// What follows a deliberate stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStop {
    /// Start a new process (a restart).
    Start,
    /// Stay stopped.
    Stay,
    /// Stay stopped, quarantined until released.
    Quarantine,
}

pub struct ServiceSupervisor {
    pub ctx: Ctx,
}

pub struct State {
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for ServiceSupervisor {
    type Msg = ServiceMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ServiceMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        let reg = self.ctx.registry.started(names::SERVICE_SUPERVISOR);
        self.ctx.services.init(self.ctx.config.start_order().into_iter().cloned().collect());
        // After a restart of this actor, adopt the running processes and pick up any restart
        // the previous instance had scheduled but not yet done.
        let t = self.ctx.services.lock();
        let fresh = t.services.values().all(|e| e.generation == 0);
        for (name, e) in &t.services {
            if e.state == ServiceState::Backoff {
                let _ = myself
                    .send_message(ServiceMsg::StartAfterBackoff { service: name.clone(), generation: e.generation });
            }
        }
        drop(t);
        if fresh {
            myself.send_message(ServiceMsg::StartAll)?;
        } else {
            info!(actor = names::SERVICE_SUPERVISOR, "restarted; adopted running services");
        }
        Ok(State { _reg: reg })
    }

    async fn handle(
        &self,
        myself: ActorRef<ServiceMsg>,
        msg: ServiceMsg,
        _state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServiceMsg::StartAll => self.start_ready_ones(),
            ServiceMsg::Exited { service, generation, info } => self.on_exit(&myself, &service, generation, info),
            ServiceMsg::Ready { service, generation, after_ms } => {
                let mut t = self.ctx.services.lock();
                if let Some(e) = t.services.get_mut(&service)
                    && e.generation == generation
                    && e.state == ServiceState::Starting
                {
                    e.state = ServiceState::Running;
                    e.ready_once = true;
                    e.ready_at = Some(Instant::now());
                    info!(service, after_ms, pid = e.pid, "service ready");
                }
                drop(t);
                self.start_ready_ones();
            }
            ServiceMsg::StartupDeadline { service, generation } => {
                let mut t = self.ctx.services.lock();
                if let Some(e) = t.services.get_mut(&service)
                    && e.generation == generation
                    && e.state == ServiceState::Starting
                {
                    e.slow_boot = true;
                    warn!(
                        service,
                        deadline_ms = e.config.startup_deadline_ms,
                        "alert: slow boot, service not ready by its startup deadline"
                    );
                }
            }
            ServiceMsg::StartAfterBackoff { service, generation } => {
                let due = {
                    let t = self.ctx.services.lock();
                    !t.shutting_down
                        && t.services
                            .get(&service)
                            .is_some_and(|e| e.generation == generation && e.state == ServiceState::Backoff)
                };
                if due {
                    self.spawn(&service);
                }
            }
            ServiceMsg::Stopped { service, then, old_pid, reply } => {
                let old = old_pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                let result = match then {
                    AfterStop::Start => match self.spawn(&service) {
                        Some(p) => Ok(format!("replaced pid {old} with pid {p}")),
                        None => Err(format!("service `{service}` did not start again")),
                    },
                    AfterStop::Stay | AfterStop::Quarantine => {
                        let mut t = self.ctx.services.lock();
                        if let Some(e) = t.services.get_mut(&service) {
                            e.pid = None;
                            e.state = if then == AfterStop::Quarantine {
                                ServiceState::Quarantined
                            } else {
                                ServiceState::Stopped
                            };
                        }
                        Ok(format!("stopped pid {old}"))
                    }
                };
                if let Some(r) = reply {
                    let _ = r.send(result);
                }
            }
            ServiceMsg::Execute(step, reply) => self.execute(step, reply),
            ServiceMsg::StopAll(reply) => self.stop_all(reply),
            ServiceMsg::Crash => panic!("fault injection: service supervisor crashed on command"),
        }
        Ok(())
    }
}

impl ServiceSupervisor {
    fn name(&self) -> String {
        self.ctx.name(names::SERVICE_SUPERVISOR)
    }

    /// Starts every pending service whose dependencies have all been ready.
    fn start_ready_ones(&self) {
        let due: Vec<String> = {
            let t = self.ctx.services.lock();
            if t.shutting_down {
                return;
            }
            t.order
                .iter()
                .filter(|n| {
                    t.services.get(*n).is_some_and(|e| {
                        e.state == ServiceState::Pending
                            && e.config
                                .depends_on
                                .iter()
                                .all(|d| t.services.get(&d.value).is_some_and(|x| x.ready_once))
                    })
                })
                .cloned()
                .collect()
        };
        for name in due {
            self.spawn(&name);
        }
    }

    /// Starts a new process for `service`; returns its pid.
    fn spawn(&self, service: &str) -> Option<u32> {
        let mut t = self.ctx.services.lock();
        if t.shutting_down {
            return None;
        }
        let e = t.services.get_mut(service)?;
        e.generation += 1;
        let generation = e.generation;
        let me = self.name();
        let svc = service.to_string();
        let on_exit = move |info| {
            let _ = rpc::tell(&me, ServiceMsg::Exited { service: svc, generation, info });
        };
        // Managed files (config, credentials) are written when missing before the start.
        for f in &e.config.files {
            let path = std::path::PathBuf::from(warden_core::config::expand(
                &f.path,
                &self.ctx.data_dir.display().to_string(),
            ));
            if !path.exists() {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Err(err) = std::fs::write(&path, &f.content) {
                    warn!(service, path = %path.display(), %err, "cannot write managed file");
                }
            }
        }
        match process::spawn_service(&e.config, &self.ctx.self_exe, &self.ctx.data_dir, e.tail.clone(), on_exit) {
            Ok(sp) => {
                if e.started_at.is_some() {
                    e.restarts += 1;
                    self.ctx
                        .metrics
                        .service_restarts
                        .get_or_create(&ServiceLabel { service: service.to_string() })
                        .inc();
                }
                e.pid = Some(sp.pid);
                e.state = ServiceState::Starting;
                e.ready_at = None;
                e.started_at = Some(Instant::now());
                e.started_unix_ms = Some(warden_core::now_unix_ms());
                e.slow_boot = false;
                e.exit = Some(sp.exit.clone());
                info!(service, pid = sp.pid, generation, "service started");
                let ready = e.config.ready.clone();
                let deadline = Duration::from_millis(e.config.startup_deadline_ms);
                tokio::spawn(watch_readiness(self.name(), service.to_string(), generation, ready, deadline, sp.exit));
                Some(sp.pid)
            }
            Err(err) => {
                warn!(service, %err, "service failed to start");
                e.last_exit = Some(err.to_string());
                e.pid = None;
                drop(t);
                // Treat it as an exit so backoff and quarantine apply.
                let _ = rpc::tell(
                    &self.name(),
                    ServiceMsg::Exited {
                        service: service.to_string(),
                        generation,
                        info: ExitInfo { code: Some(127), signal: None },
                    },
                );
                None
            }
        }
    }

    fn on_exit(&self, myself: &ActorRef<ServiceMsg>, service: &str, generation: u64, info: ExitInfo) {
        let mut t = self.ctx.services.lock();
        let shutting_down = t.shutting_down;
        let Some(e) = t.services.get_mut(service) else { return };
        if e.generation != generation
            || matches!(e.state, ServiceState::Stopping | ServiceState::Stopped | ServiceState::Quarantined)
        {
            return; // an older process, or one we stopped on purpose
        }
        e.pid = None;
        e.exit = None;
        e.last_exit = Some(info.to_string());
        if shutting_down {
            e.state = ServiceState::Stopped;
            return;
        }
        warn!(service, %info, "service exited unexpectedly");
        let now = Instant::now();
        match e.tracker.on_exit(now, e.ready_at.map(|r| now.duration_since(r))) {
            RestartDecision::Restart { delay, attempt } if delay.is_zero() => {
                info!(service, attempt, "restarting at once");
                drop(t);
                self.spawn(service);
            }
            RestartDecision::Restart { delay, attempt } => {
                e.state = ServiceState::Backoff;
                info!(service, attempt, delay_ms = delay.as_millis() as u64, "restarting after backoff");
                let svc = service.to_string();
                myself.send_after(delay, move || ServiceMsg::StartAfterBackoff { service: svc, generation });
            }
            RestartDecision::Quarantine { restarts_in_window } => {
                e.state = ServiceState::Quarantined;
                self.ctx
                    .metrics
                    .service_quarantines
                    .get_or_create(&ServiceLabel { service: service.to_string() })
                    .inc();
                warn!(
                    service,
                    restarts_in_window,
                    window_ms = e.config.restart.window_ms,
                    "alert: service quarantined, crash loop past its restart budget"
                );
            }
        }
    }

    /// Carries out a permitted step. Stops run in a task so exits keep being handled.
    fn execute(&self, step: Authorized<PlannedStep>, reply: RpcReplyPort<Result<String, String>>) {
        let s = step.step();
        let service = s.target.clone();
        let mut t = self.ctx.services.lock();
        let Some(e) = t.services.get_mut(&service) else {
            let _ = reply.send(Err(format!("no service `{service}`")));
            return;
        };
        match &s.primitive {
            Primitive::RestartService { .. } | Primitive::StopService | Primitive::QuarantineService => {
                let then = match s.primitive {
                    Primitive::RestartService { .. } => AfterStop::Start,
                    Primitive::QuarantineService => AfterStop::Quarantine,
                    _ => AfterStop::Stay,
                };
                // A hung process never acts on TERM: `force` goes straight to KILL.
                let force = matches!(s.primitive, Primitive::RestartService { force: true });
                let (old_pid, exit) = (e.pid, e.exit.clone());
                let grace = Duration::from_millis(e.config.stop_grace_ms);
                e.state = ServiceState::Stopping;
                // A deliberate stop is no crash: later exit notices of this process are ignored.
                e.generation += 1;
                drop(t);
                let me = self.name();
                tokio::spawn(async move {
                    if let (Some(pid), Some(exit)) = (old_pid, exit) {
                        process::stop_group(pid, exit, grace, force).await;
                    }
                    let _ = rpc::tell(&me, ServiceMsg::Stopped { service, then, old_pid, reply: Some(reply) });
                });
            }
            Primitive::StartService => {
                if matches!(e.state, ServiceState::Stopped | ServiceState::Quarantined | ServiceState::Backoff) {
                    e.tracker.reset();
                    drop(t);
                    let r = self
                        .spawn(&service)
                        .map(|p| format!("started pid {p}"))
                        .ok_or_else(|| format!("`{service}` did not start"));
                    let _ = reply.send(r);
                } else {
                    let _ = reply.send(Ok(format!("`{service}` already {:?}", e.state)));
                }
            }
            Primitive::SignalService { signal } => {
                let r = match (signal.parse::<Signal>(), e.pid) {
                    (Ok(sig), Some(pid)) => process::signal_group(pid, sig)
                        .map(|_| format!("sent {sig} to group {pid}"))
                        .map_err(|err| err.to_string()),
                    (Err(_), _) => Err(format!("unknown signal `{signal}`")),
                    (_, None) => Err(format!("`{service}` has no process")),
                };
                let _ = reply.send(r);
            }
            other => {
                let _ = reply.send(Err(format!("`{}` is not a service operation", other.action())));
            }
        }
    }

    fn stop_all(&self, reply: RpcReplyPort<()>) {
        let mut t = self.ctx.services.lock();
        t.shutting_down = true;
        let mut procs = Vec::new();
        for name in t.order.clone().iter().rev() {
            if let Some(e) = t.services.get_mut(name) {
                e.generation += 1;
                if let (Some(pid), Some(exit)) = (e.pid, e.exit.clone()) {
                    e.state = ServiceState::Stopping;
                    procs.push((name.clone(), pid, exit, Duration::from_millis(e.config.stop_grace_ms)));
                } else {
                    e.state = ServiceState::Stopped;
                }
            }
        }
        drop(t);
        let table = self.ctx.services.clone();
        tokio::spawn(async move {
            // Reverse dependency order, one at a time: dependents go before what they use.
            for (name, pid, exit, grace) in procs {
                let info = process::stop_group(pid, exit, grace, false).await;
                info!(service = name, pid, exit = info.map(|i| i.to_string()).unwrap_or_default(), "service stopped");
                let mut t = table.lock();
                if let Some(e) = t.services.get_mut(&name) {
                    e.state = ServiceState::Stopped;
                    e.pid = None;
                }
            }
            let _ = reply.send(());
        });
    }
}

/// Polls the ready check until it passes or the process exits; reports the startup
/// deadline once if it passes first.
async fn watch_readiness(
    me: String,
    service: String,
    generation: u64,
    ready: Option<ReadyCheck>,
    deadline: Duration,
    mut exit: tokio::sync::watch::Receiver<Option<ExitInfo>>,
) {
    let start = Instant::now();
    let mut deadline_reported = false;
    let client = crate::probe::http_client();
    loop {
        if exit.borrow_and_update().is_some() {
            return;
        }
        let ok = match &ready {
            None => true,
            Some(check) => crate::probe::ready_check(&client, check, Duration::from_millis(500)).await,
        };
        if ok {
            let _ =
                rpc::tell(&me, ServiceMsg::Ready { service, generation, after_ms: start.elapsed().as_millis() as u64 });
            return;
        }
        if !deadline_reported && start.elapsed() >= deadline {
            deadline_reported = true;
            let _ = rpc::tell(&me, ServiceMsg::StartupDeadline { service: service.clone(), generation });
        }
        // Ready checks poll briskly: a restart's downtime is bounded by how soon we notice.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = exit.changed() => {}
        }
    }
}
