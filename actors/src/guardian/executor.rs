//! PlaybookExecutor: runs playbooks step by step under governance.
//!
//! Each step is planned against its target; tier 1 steps run as they are, every other step
//! first gets a permit from the Gatekeeper (which audits the decision before answering),
//! and its outcome is audited after. Steps reach the services only as `Authorized` values,
//! so an unpermitted tier ≥ 2 step cannot be expressed.
//!
//! Runs execute concurrently, each a task in this actor's task set: a run is stored as
//! running before the order is acknowledged, saved after every step, and published on the
//! finished-runs port when it ends. If the executor dies its runs die with it; the next
//! instance finds them still marked running in the store, records them as interrupted and
//! publishes that, so whoever waits for them (the incident manager) always hears the end.
//! At shutdown the runs are cancelled and recorded as interrupted.

use super::effects::{self, EffectError, Env};
use super::evidence::Checks;
use super::service_supervisor::{ServiceOpError, ServiceSupervisor};
use super::service_table::ServiceTable;
use super::settings;
use crate::addr::{Addr, SendError};
use crate::current::Current;
use crate::data_dir::DataDir;
use crate::governance::gatekeeper::{GateAnswer, Gatekeeper, OutcomeReport};
use crate::holds::HoldBoard;
use crate::incident_trace::{TARGET as TRACE, adopt};
use crate::metrics::Metrics;
use crate::registry::{ActorRegistry, Registration};
use crate::store::{Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use warden_core::audit::{AuditActor, OutcomeKind};
use warden_core::config::{NodeConfig, ServiceName};
use warden_core::diagnose::Cause;
use warden_core::harm::{self, Verdict};
use warden_core::permit::{Authorized, Permit};
use warden_core::playbook::{Catalog, PlannedStep, Primitive, plan};
use warden_core::policy::{ActionRequest, Policies};
use warden_core::run::{RunOutcome, RunRecord, StepRecord, Undo};
use warden_core::service::ServiceState;
use warden_core::tier::Tier;
use warden_core::verify::{Progress, Round, Stability};

pub const PATH: &str = "guardian/playbook_executor";
/// A service operation is a stop (the service's grace period, then KILL) and a spawn: it
/// may take the grace period plus this.
const SERVICE_OP_SLACK: Duration = Duration::from_secs(30);
/// How long a playbook's closing verification waits for the target's probes (the
/// playbook's own timeout bounds it too).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Starting a run is a store read and one synced write; an order not acknowledged in time
/// is retried by the incident manager on its next tick.
const ORDER_TIMEOUT: Duration = Duration::from_secs(2);
/// An operator's action: a decision, a service operation (a stop's grace and a start).
const OPERATE_TIMEOUT: Duration = Duration::from_secs(90);
/// A rollback's steps, each a decision and an undo.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct RunOrder {
    pub run_id: u64,
    pub incident_id: Option<u64>,
    pub playbook: String,
    pub target: ServiceName,
    pub rationale: String,
    /// Change nothing: say what each step would do and what governance would decide.
    pub dry_run: bool,
    /// Who asked: the healer (system) or a person through the API or the shell.
    pub actor: AuditActor,
    /// The incident's trace, which the run's spans join (empty: the run starts its own).
    pub trace: opentelemetry::Context,
    /// What the incident diagnosed: the harm guard judges disruptive steps against it.
    pub cause: Cause,
}

/// Undo a finished run: its steps' undo data, last step first, each through governance.
#[derive(Debug, Clone)]
pub struct RollbackOrder {
    /// The run to undo.
    pub of: u64,
    pub actor: AuditActor,
    pub reason: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    #[error("executor unavailable: {0}")]
    Unavailable(#[from] SendError),
    #[error("cannot store the run: {0}")]
    Store(#[from] StoreError),
    #[error("warden is shutting down")]
    ShuttingDown,
    #[error("no run {0}")]
    NoSuchRun(u64),
    #[error("run {0} cannot be rolled back: {1}")]
    NotUndoable(u64, String),
    #[error("run {1} is changing `{0}` now; try again when it has ended")]
    Busy(ServiceName, u64),
}

pub enum ExecutorMsg {
    /// Start a run; answered once it is stored as running and tracked.
    Run(Box<RunOrder>, RpcReplyPort<Result<(), RunError>>),
    /// An operator's action, under the same governance as a playbook's step; answered
    /// when it is done (or refused, held, or waiting for approvers).
    Operate(Box<OperatorRequest>, RpcReplyPort<OperatorOutcome>),
    /// Start a rollback of a finished run; answered with the rollback's run id once it is
    /// stored (it ends like any run: stored, published).
    Rollback(Box<RollbackOrder>, RpcReplyPort<Result<u64, RunError>>),
    /// Cancel every run (node shutdown); answered once each is recorded as interrupted.
    Shutdown(RpcReplyPort<()>),
}

impl Addr<PlaybookExecutor> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Hands a run over; `Ok` means it is stored and will be reported when it ends.
    pub async fn run(&self, order: RunOrder) -> Result<(), RunError> {
        self.ask(ORDER_TIMEOUT, |tx| ExecutorMsg::Run(Box::new(order), tx)).await?
    }

    /// Starts a rollback; the id of its run.
    pub async fn rollback(&self, order: RollbackOrder) -> Result<u64, RunError> {
        self.ask(ORDER_TIMEOUT, |tx| ExecutorMsg::Rollback(Box::new(order), tx)).await?
    }

    /// Carries out an operator's request through governance; waits for its end.
    pub async fn operate(&self, op: OperatorRequest) -> Result<OperatorOutcome, SendError> {
        self.ask(OPERATE_TIMEOUT, |tx| ExecutorMsg::Operate(Box::new(op), tx)).await
    }

    pub async fn shutdown(&self, timeout: Duration) -> Result<(), SendError> {
        self.ask(timeout, ExecutorMsg::Shutdown).await
    }
}

/// What a run needs, shared by every run task.
pub struct RunContext {
    /// Replaced by a reload; a run takes the current ones when it starts.
    pub catalog: Current<Catalog>,
    pub policies: Current<Policies>,
    pub gate: Addr<Gatekeeper>,
    pub services: Addr<ServiceSupervisor>,
    pub table: ServiceTable,
    /// For the services' logs, which diagnostics quote.
    pub data_dir: DataDir,
    /// The node config: a run verifies its target with the target's own probes.
    pub config: Current<NodeConfig>,
    /// This binary (services run as `@warden` are it).
    pub self_exe: std::path::PathBuf,
    pub store: Store,
    pub metrics: Metrics,
    /// Every run that ends is published here.
    pub finished: Arc<OutputPort<RunRecord>>,
    /// For steps that change the running config (runtime overrides, applied like a reload).
    pub(crate) wiring: crate::wiring::Wiring,
    /// What holds automatic repair: the healer's tier 2+ steps wait while one applies.
    pub holds: HoldBoard,
    /// The probes' latest results: whether many services fail at once (the breaker).
    pub board: crate::guardian::probe_board::ProbeBoard,
    /// Where the breaker's opening is recorded.
    pub audit: Addr<crate::governance::audit_writer::AuditWriter>,
}

pub struct PlaybookExecutor {
    pub ctx: Arc<RunContext>,
    pub registry: ActorRegistry,
}

pub struct State {
    runs: JoinSet<()>,
    /// Operators' actions in progress (cancelled at shutdown like runs).
    operations: JoinSet<()>,
    /// The run each task of `runs` carries.
    tracked: BTreeMap<tokio::task::Id, u64>,
    /// The target of each run in progress that may change something (not a dry run).
    changing: BTreeMap<u64, ServiceName>,
    shutting_down: bool,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for PlaybookExecutor {
    type Msg = ExecutorMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<ExecutorMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        let catalog = self.ctx.catalog.get();
        self.ctx.metrics.playbooks_known(catalog.all().iter().map(|p| p.id.as_str()));
        // Runs still marked running belong to a dead executor (or a dead warden): no task
        // of ours runs them. Record how they ended and say so.
        // A store that refuses writes now: the incident manager's check of each open
        // incident's run records these later.
        match self.ctx.store.active_runs().await {
            Ok(runs) => {
                for run in runs {
                    let why = "the executor or warden stopped while it ran";
                    if let Err(e) = self.end_untracked(run, RunOutcome::Interrupted, why).await {
                        tracing::warn!(error = %e, "cannot record an interrupted run");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the runs left running"),
        }
        Ok(State {
            runs: JoinSet::new(),
            operations: JoinSet::new(),
            tracked: BTreeMap::new(),
            changing: BTreeMap::new(),
            shutting_down: false,
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<ExecutorMsg>,
        msg: ExecutorMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        self.reap(st).await;
        while st.operations.try_join_next().is_some() {}
        match msg {
            ExecutorMsg::Run(order, reply) => {
                let _ = reply.send(self.start(st, *order).await);
            }
            ExecutorMsg::Rollback(order, reply) => {
                let _ = reply.send(self.start_rollback(st, *order).await);
            }
            ExecutorMsg::Operate(op, reply) => {
                // Its own task: the executor keeps taking orders while a stop takes its grace.
                if st.shutting_down {
                    drop(reply);
                } else {
                    let ctx = self.ctx.clone();
                    st.operations.spawn(async move {
                        let _ = reply.send(operate(&ctx, *op).await);
                    });
                }
            }
            ExecutorMsg::Shutdown(reply) => {
                st.shutting_down = true;
                st.operations.abort_all();
                st.runs.abort_all();
                while st.runs.join_next().await.is_some() {}
                st.tracked.clear();
                st.changing.clear();
                for mut run in self.ctx.store.active_runs().await.unwrap_or_default() {
                    tracing::warn!(
                        run = run.run_id,
                        playbook = run.playbook,
                        "playbook run cancelled: warden is shutting down"
                    );
                    run.outcome = RunOutcome::Interrupted;
                    run.finished_unix_ms = Some(warden_core::time::now_unix_ms());
                    run.detail = "interrupted: warden shut down while it ran".into();
                    if let Err(e) = self.ctx.store.put_run(run).await {
                        tracing::error!(error = %e, "cannot record an interrupted run");
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

impl PlaybookExecutor {
    async fn start(&self, st: &mut State, order: RunOrder) -> Result<(), RunError> {
        if st.shutting_down {
            return Err(RunError::ShuttingDown);
        }
        // Orders are retried when an acknowledgement is lost: a run id is started once. A
        // record still "running" that no task of ours carries was left by a task that died
        // (an earlier instance's write landing late): it ended, and says so.
        if let Some(run) = self.ctx.store.run_record(order.run_id).await? {
            if run.outcome == RunOutcome::Running && !st.tracked.values().any(|&id| id == run.run_id) {
                self.end_untracked(run, RunOutcome::Interrupted, "no task was running it").await?;
            }
            return Ok(());
        }
        // A person's run waits for nobody's: it is refused while another run changes the
        // same service (the healer's are not refused: healing does not wait for a queue).
        if !order.dry_run && matches!(order.actor, AuditActor::User(_)) {
            busy(st, &order.target)?;
        }
        let now = warden_core::time::now_unix_ms();
        let record = RunRecord {
            dry_run: order.dry_run,
            ..RunRecord::started(order.run_id, order.incident_id, &order.playbook, &order.target, now)
        };
        self.ctx.store.put_run(record.clone()).await?;
        let ctx = self.ctx.clone();
        let run_id = order.run_id;
        let (order_dry_run, target) = (order.dry_run, order.target.clone());
        let task = st.runs.spawn(async move {
            let record = run_playbook(&ctx, &order, record).await;
            ctx.finished.send(record);
        });
        st.tracked.insert(task.id(), run_id);
        if !order_dry_run {
            st.changing.insert(run_id, target);
        }
        Ok(())
    }

    async fn start_rollback(&self, st: &mut State, order: RollbackOrder) -> Result<u64, RunError> {
        if st.shutting_down {
            return Err(RunError::ShuttingDown);
        }
        let mut of = self.ctx.store.run_record(order.of).await?.ok_or(RunError::NoSuchRun(order.of))?;
        // Once undone, a run stays undone: a second rollback would put back a snapshot over
        // everything written since. A failed rollback may be tried again.
        let earlier = match of.rolled_back_by {
            Some(id) => self.ctx.store.run_record(id).await?.filter(|r| r.outcome != RunOutcome::Failed),
            None => None,
        };
        let why_not = if let Some(r) = earlier {
            Some(format!(
                "run {} {} it",
                r.run_id,
                if r.outcome.is_final() { "already rolled back" } else { "is rolling back" }
            ))
        } else if !of.outcome.is_final() {
            Some("it is still running".to_string())
        } else if of.dry_run {
            Some("it was a dry run: it changed nothing".to_string())
        } else if of.rollback_of.is_some() {
            Some("it is a rollback itself".to_string())
        } else if of.steps.iter().all(|s| s.undo.is_empty()) {
            Some("none of its steps recorded anything to undo".to_string())
        } else {
            None
        };
        if let Some(why) = why_not {
            return Err(RunError::NotUndoable(order.of, why));
        }
        busy(st, &of.target)?;
        let run_id = self.ctx.store.next_id(crate::store::Counter::Run).await?;
        let now = warden_core::time::now_unix_ms();
        let record = RunRecord {
            rollback_of: Some(of.run_id),
            ..RunRecord::started(run_id, of.incident_id, &of.playbook, &of.target, now)
        };
        self.ctx.store.put_run(record.clone()).await?;
        of.rolled_back_by = Some(run_id);
        self.ctx.store.put_run(of.clone()).await?;
        let ctx = self.ctx.clone();
        let target = of.target.clone();
        let task = st.runs.spawn(async move {
            let record = run_rollback(&ctx, &of, &order, record).await;
            ctx.finished.send(record);
        });
        st.tracked.insert(task.id(), run_id);
        st.changing.insert(run_id, target);
        Ok(run_id)
    }

    /// Collects finished run tasks; a run whose task panicked is recorded as failed.
    async fn reap(&self, st: &mut State) {
        while let Some(done) = st.runs.try_join_next_with_id() {
            let (id, panic) = match done {
                Ok((id, ())) => (id, None),
                Err(e) => (e.id(), e.is_panic().then(|| e.to_string())),
            };
            let Some(run_id) = st.tracked.remove(&id) else { continue };
            st.changing.remove(&run_id);
            if let Some(why) = panic {
                tracing::error!(run = run_id, error = why, "playbook run task panicked");
                match self.ctx.store.run_record(run_id).await {
                    Ok(Some(run)) => {
                        let detail = format!("the run's task panicked: {why}");
                        if let Err(e) = self.end_untracked(run, RunOutcome::Failed, &detail).await {
                            tracing::error!(run = run_id, error = %e, "cannot record the failed run");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(run = run_id, error = %e, "cannot read the failed run"),
                }
            }
        }
    }

    /// Ends a stored run no task of this instance carries, and announces it.
    async fn end_untracked(&self, mut run: RunRecord, outcome: RunOutcome, why: &str) -> Result<(), StoreError> {
        run.outcome = outcome;
        run.finished_unix_ms = Some(warden_core::time::now_unix_ms());
        run.detail = format!("{}: {why}", outcome.as_str());
        tracing::warn!(
            run = run.run_id,
            playbook = run.playbook,
            outcome = outcome.as_str(),
            why,
            "playbook run ended without its task"
        );
        self.ctx.store.put_run(run.clone()).await?;
        self.ctx.finished.send(run);
        Ok(())
    }
}

/// Refuses when a run that may change `target` is in progress.
fn busy(st: &State, target: &ServiceName) -> Result<(), RunError> {
    match st.changing.iter().find(|(_, t)| *t == target) {
        Some((run, _)) => Err(RunError::Busy(target.clone(), *run)),
        None => Ok(()),
    }
}

/// Runs one playbook to its end, saving the record after every step.
async fn run_playbook(ctx: &RunContext, order: &RunOrder, mut record: RunRecord) -> RunRecord {
    let Some(pb) = ctx.catalog.get().get(&order.playbook).cloned() else {
        record.outcome = RunOutcome::Failed;
        record.detail = format!("no playbook `{}`", order.playbook);
        return finish(ctx, record).await;
    };
    if let Some(why) = not_applicable(ctx, &pb, &order.target) {
        // Plans leave such a playbook out; a person's run of it is said so, not tried.
        record.outcome = if order.dry_run { RunOutcome::NotApplicable } else { RunOutcome::Denied };
        record.detail = format!("not applicable to `{}`: {why}", order.target);
        return finish(ctx, record).await;
    }
    tracing::info!(run = order.run_id, playbook = pb.id, target = order.target.as_str(), "playbook run started");
    let policies = ctx.policies.get();
    let dependents = ctx.config.get().dependents_of(&order.target);
    let copies_while_running =
        ctx.config.get().services.iter().any(|s| s.name == order.target && s.hooks.snapshot.copies_while_running());
    let steps = warden_core::playbook::keep_running_for_snapshot(
        plan(&pb, &order.target, &dependents, |a, t| policies.tier_of(a, t)),
        copies_while_running,
    );
    // The closing check is the trace's `verify`: the verification below, or the playbook's
    // own last step when that waits for the target's probes.
    let last_verifies = pb.verify && matches!(pb.steps.last(), Some(Primitive::WaitHealthy { .. }));
    let mut remediate = tracing::info_span!(
        target: TRACE,
        "remediate",
        warden.incident.id = order.incident_id,
        warden.run.id = order.run_id,
        warden.playbook = pb.id,
        warden.target = order.target.as_str(),
        warden.dry_run = order.dry_run,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    adopt(&remediate, &order.trace);
    // Without an incident, the run is the trace: `verify` goes under `remediate`.
    let trace = if order.incident_id.is_some() { order.trace.clone() } else { remediate.context() };
    // The span of the step (or the verification) under way: a timeout marks it failed.
    let mut current: Option<tracing::Span> = None;
    let run = async {
        let count = steps.len();
        // The target served again before a disruptive step: the steps stop there and the
        // closing verification decides.
        let mut restored_early = false;
        // Dependents a step pointed elsewhere (a failover round their broken dependency):
        // verification is theirs, and the target still failing makes the run a mitigation.
        let mut switched: Vec<ServiceName> = Vec::new();
        // Planned steps, not the playbook's: one `restart_dependents` may be several.
        for (i, step) in steps.into_iter().enumerate() {
            let verifying = last_verifies && !order.dry_run && i + 1 == count;
            let span = if verifying {
                // The steps before it went well: `remediate` ends, `verify` begins.
                traced(&remediate, None);
                drop(std::mem::replace(&mut remediate, tracing::Span::none()));
                verify_span(order, &trace)
            } else {
                tracing::info_span!(
                    target: TRACE,
                    parent: &remediate,
                    "step",
                    warden.step = step.index,
                    warden.action = step.primitive.action(),
                    warden.tier = step.tier.get(),
                    otel.status_code = Empty,
                    otel.status_description = Empty,
                )
            };
            current = Some(span.clone());
            let started = Instant::now();
            // First, do no harm: the healer's disruptive steps are judged on checks run now.
            let rule = match first_do_no_harm(ctx, order, &step).instrument(span.clone()).await {
                Guard::Go(rule) => rule,
                Guard::Skip { restored, why } => {
                    traced(&span, None);
                    let said = if order.dry_run { format!("would skip: {why}") } else { format!("skipped: {why}") };
                    record.steps.push(StepRecord {
                        skipped: true,
                        ..step_record(order, &step, true, said, started, None, Vec::new())
                    });
                    save(ctx, &record).await;
                    if restored {
                        restored_early = true;
                        break;
                    }
                    continue;
                }
                Guard::Stop { outcome, why } => {
                    traced(&span, Some(&why));
                    record.steps.push(step_record(order, &step, false, why.clone(), started, None, Vec::new()));
                    save(ctx, &record).await;
                    record.outcome = outcome;
                    record.detail = format!("step {} `{}`: {why}", step.index, step.primitive.action());
                    traced(&remediate, Some(&record.detail).filter(|_| fails(outcome)).map(String::as_str));
                    return;
                }
            };
            let (result, permit_seq) = if order.dry_run {
                (dry_step(ctx, order, &step).await.map(|d| (d, Vec::new())), None)
            } else if let (Primitive::WaitHealthy { timeout }, Tier::OBSERVE) = (&step.primitive, step.tier) {
                // Waiting is observing: the verification's verdict, kept for the record.
                let v = verify_run(ctx, &step.target, &switched, *timeout).instrument(span.clone()).await;
                (
                    v.map(|v| (v.note(&mut record), Vec::new())).map_err(|e| failed(RunOutcome::Failed, e.to_string())),
                    None,
                )
            } else {
                run_step(ctx, order, step.clone(), rule).instrument(span.clone()).await
            };
            let (detail, undo) = match &result {
                Ok((d, u)) => (d.clone(), u.clone()),
                Err(f) => (f.detail.clone(), f.undo.clone()),
            };
            // Held by governance (a rate limit, an approver) is not a failure.
            traced(&span, result.as_ref().err().filter(|f| fails(f.outcome)).map(|_| detail.as_str()));
            record.steps.push(step_record(order, &step, result.is_ok(), detail, started, permit_seq, undo));
            save(ctx, &record).await;
            if result.is_ok() && step.target != order.target && matches!(step.primitive, Primitive::SetEndpoint { .. })
            {
                switched.push(step.target.clone());
            }
            if let Err(f) = result {
                record.outcome = f.outcome;
                record.retry_at_unix_ms = f.retry_at_unix_ms;
                record.approval_id = f.approval_id;
                record.detail = format!("step {} `{}`: {}", step.index, step.primitive.action(), f.detail);
                traced(&remediate, Some(&record.detail).filter(|_| fails(f.outcome)).map(String::as_str));
                return;
            }
        }
        traced(&remediate, None);
        drop(std::mem::replace(&mut remediate, tracing::Span::none()));
        if order.dry_run {
            record.outcome = RunOutcome::Succeeded;
            record.detail = "dry run: nothing was changed".into();
            return;
        }
        // `verify`: the run succeeds only once the target's own checks pass, and keep
        // passing for its stability window, unless the playbook ends by waiting for
        // exactly that. A run stopped early (the target served again) is verified too.
        if (pb.verify && !last_verifies) || restored_early {
            let started = Instant::now();
            let span = verify_span(order, &trace);
            current = Some(span.clone());
            let result = verify_run(ctx, &order.target, &switched, VERIFY_TIMEOUT)
                .instrument(span.clone())
                .await
                .map_err(|e| e.to_string());
            traced(&span, result.as_ref().err().map(String::as_str));
            let detail = match result {
                Ok(v) => Ok(v.note(&mut record)),
                Err(e) => Err(e),
            };
            record.steps.push(StepRecord {
                index: pb.steps.len(),
                action: "verify".into(),
                tier: Tier::OBSERVE.get(),
                permit_audit_seq: None,
                ok: detail.is_ok(),
                detail: match &detail {
                    Ok(d) | Err(d) => d.clone(),
                },
                duration_ms: started.elapsed().as_millis() as u64,
                undo: Vec::new(),
                skipped: false,
                on: None,
            });
            if let Err(d) = detail {
                record.outcome = RunOutcome::Failed;
                record.detail = format!("verify: {d}");
                return;
            }
        }
        record.outcome = RunOutcome::Succeeded;
        if restored_early {
            record.detail = format!("`{}` served again before a disruptive step was needed", order.target);
        }
    };
    let limit = warden_core::verify::run_limit(pb.timeout, stability_window(&ctx.config.get(), &order.target));
    if tokio::time::timeout(limit, run).await.is_err() {
        record.outcome = RunOutcome::Failed;
        record.detail = format!(
            "playbook timed out after {} ms (its {} ms and its target's stability window)",
            limit.as_millis(),
            pb.timeout.as_millis()
        );
        traced(&remediate, Some(&record.detail));
        if let Some(span) = &current {
            traced(span, Some(&record.detail));
        }
    }
    // The spans end with the run, not after its record is saved.
    drop((remediate, current));
    if !order.dry_run && record.outcome != RunOutcome::Succeeded {
        put_back(ctx, order, &mut record).await;
    }
    finish(ctx, record).await
}

/// The record of a planned step as it ran (`on`: its service, when not the run's target).
fn step_record(
    order: &RunOrder,
    step: &PlannedStep,
    ok: bool,
    detail: String,
    started: Instant,
    permit_audit_seq: Option<u64>,
    undo: Vec<Undo>,
) -> StepRecord {
    StepRecord {
        index: step.index,
        action: step.primitive.action().into(),
        tier: step.tier.get(),
        permit_audit_seq,
        ok,
        detail,
        duration_ms: started.elapsed().as_millis() as u64,
        undo,
        skipped: false,
        on: (step.target != order.target).then(|| step.target.clone()),
    }
}

/// What the service lacks for `pb` now, if anything (see `warden_core::fit`).
fn not_applicable(ctx: &RunContext, pb: &warden_core::playbook::Playbook, target: &ServiceName) -> Option<String> {
    let why = warden_core::fit::unmet_on(pb, &ctx.config.get(), target);
    (!why.is_empty()).then(|| why.join("; "))
}

/// The harm guard's answer for one step of a run.
enum Guard {
    /// Run it; with the rule that allowed a disruptive step (for the decision's rationale).
    Go(Option<String>),
    /// Do not run it: its target serves already. `restored`: the run's own target, so the
    /// steps end here; otherwise (a dependent) the next step goes on.
    Skip { restored: bool, why: String },
    /// End the run so.
    Stop { outcome: RunOutcome, why: String },
}

/// Whether the healer may take this step now. A person's steps and dry runs are not
/// judged here (governance still decides them); the healer's tier 2+ steps wait while a
/// hold applies, a signal goes only to a service that says it handles it, and a
/// disruptive step needs fresh evidence that acting on the service can help.
async fn first_do_no_harm(ctx: &RunContext, order: &RunOrder, step: &PlannedStep) -> Guard {
    let guard = judge_step(ctx, order, step).await;
    // Judging takes time (fresh checks, a wait for a backoff): a hold set meanwhile (a
    // pause, the breaker) stops the step all the same.
    if matches!(guard, Guard::Go(_))
        && step.tier > Tier::OBSERVE
        && !order.dry_run
        && matches!(order.actor, AuditActor::System)
        && let Some(hold) = ctx.holds.blocking(&step.target)
    {
        return Guard::Stop { outcome: RunOutcome::Held, why: format!("held: {}", hold.describe()) };
    }
    guard
}

async fn judge_step(ctx: &RunContext, order: &RunOrder, step: &PlannedStep) -> Guard {
    // A step sent to a dependent that lacks what it needs (its pool reset URL) is not its.
    if step.target != order.target
        && let Some(spec) = ctx.config.get().services.iter().find(|s| s.name == step.target)
        && let Some(why) = warden_core::fit::step_unmet(&step.primitive, spec)
    {
        return Guard::Skip { restored: false, why: format!("not for `{}`: {why}", step.target) };
    }
    if order.dry_run || !matches!(order.actor, AuditActor::System) {
        return Guard::Go(None);
    }
    if step.tier > Tier::OBSERVE {
        // Many services failing at once: the breaker opens now, before this repair acts.
        crate::holds::trip_breaker(&ctx.config.get(), &ctx.table, &ctx.board, &ctx.holds, &ctx.audit).await;
        if let Some(hold) = ctx.holds.blocking(&step.target) {
            return Guard::Stop { outcome: RunOutcome::Held, why: format!("held: {}", hold.describe()) };
        }
    }
    if let Primitive::SignalService { signal } = &step.primitive {
        let spec = ctx.table.lock().services.get(&step.target).map(|e| e.spec.clone());
        if let Some(Err(why)) = spec.map(|s| warden_core::fit::may_signal(&s, *signal)) {
            return Guard::Stop { outcome: RunOutcome::Denied, why: format!("refused: {why}") };
        }
    }
    if matches!(step.primitive, Primitive::StartService | Primitive::RestartService { .. })
        && let Some(why) = keep_the_backoff(ctx, &step.target).await
    {
        // The supervisor starts it when its backoff ends; the playbook's wait sees to it.
        return Guard::Skip { restored: false, why };
    }
    if !harm::disrupts(&step.primitive) {
        return Guard::Go(None);
    }
    // The finding is about the run's target: a step on another service (a dependent) gets
    // no exception from it.
    let cause = if step.target == order.target { order.cause } else { warden_core::diagnose::Cause::Unknown };
    // A kill reaches processes that are not the service's own only when the finding names
    // them (a stranger on its port, a holder of its lock).
    if let Primitive::KillProcess { select, .. } = &step.primitive {
        let Ok(env) = env_of(ctx, &step.target) else {
            return Guard::Stop { outcome: RunOutcome::Denied, why: format!("refused: no service `{}`", step.target) };
        };
        let select2 = select.clone();
        let all_own = tokio::task::spawn_blocking(move || {
            effects::select_processes(&env, &select2).map(|found| found.iter().all(|c| effects::owned(&env, c.pid)))
        })
        .await;
        // A selection that cannot be made cannot be judged: nothing is killed on faith.
        let verdict = match all_own {
            Ok(Ok(all_own)) => harm::kill_allowed(select, cause, all_own),
            Ok(Err(e)) => Err(format!("cannot tell whose processes {} are: {e}", select.describe())),
            Err(e) => Err(format!("cannot tell whose processes {} are: {e}", select.describe())),
        };
        if let Err(why) = verdict {
            return Guard::Stop { outcome: RunOutcome::Denied, why: format!("refused: {why}") };
        }
    }
    let config = ctx.config.get();
    let mut checks = Checks::of(&config, &ctx.table, &step.target, true);
    let mut verdict = harm::judge(&step.primitive, cause, &checks.gather().await);
    // "Nothing to repair" only when its checks pass round after round: a slow or flapping
    // service passes one now and then.
    for _ in 1..harm::HEALTHY_ROUNDS {
        if verdict != Verdict::Healthy {
            break;
        }
        tokio::time::sleep(harm::HEALTHY_SPACING).await;
        verdict = harm::judge(&step.primitive, cause, &checks.gather().await);
    }
    let label = match verdict {
        Verdict::Act { .. } => "act",
        Verdict::Healthy => "healthy",
        Verdict::Hold { .. } => "hold",
    };
    ctx.metrics.harm_guard.get_or_create(&crate::metrics::VerdictLabel { verdict: label.into() }).inc();
    match verdict {
        Verdict::Act { rule } => {
            tracing::info!(
                run = order.run_id,
                target = step.target.as_str(),
                action = step.primitive.action(),
                rule,
                "do no harm: the step may run"
            );
            Guard::Go(Some(rule))
        }
        Verdict::Healthy => {
            let restored = step.target == order.target;
            let why = format!(
                "`{}`'s own checks pass now ({} rounds in a row): nothing to repair on it",
                step.target,
                harm::HEALTHY_ROUNDS
            );
            tracing::info!(
                run = order.run_id,
                target = step.target.as_str(),
                action = step.primitive.action(),
                "do no harm: {why}"
            );
            Guard::Skip { restored, why }
        }
        Verdict::Hold { reason } => {
            tracing::warn!(
                run = order.run_id,
                target = step.target.as_str(),
                action = step.primitive.action(),
                reason,
                "do no harm: step held"
            );
            Guard::Stop { outcome: RunOutcome::Held, why: format!("held: {reason}") }
        }
    }
}

/// A repair never starts a crash-looping service past its supervisor's backoff: one that
/// backs off is left to its supervisor (why, in words); one that runs since its last
/// restart is restarted no sooner than the supervisor would have (this waits till then).
async fn keep_the_backoff(ctx: &RunContext, target: &ServiceName) -> Option<String> {
    let wait = {
        let t = ctx.table.lock();
        let e = t.services.get(target)?;
        let outside = e.waiting_for_port.is_some() || e.waiting_for_dependencies.is_some();
        match (e.state, e.restart_due) {
            // Waiting for a port or a dependency is no backoff: the cause may be gone now.
            (ServiceState::Backoff, Some(due)) if !outside => {
                let ms = due.saturating_duration_since(Instant::now()).as_millis();
                return Some(format!("`{target}` is in its restart backoff; its supervisor starts it in {ms} ms"));
            }
            (ServiceState::Running | ServiceState::Starting, _) => {
                e.started_at.and_then(|s| e.tracker.repair_restart_at(Instant::now(), s))
            }
            _ => None,
        }
    };
    if let Some(at) = wait {
        tracing::info!(
            service = target.as_str(),
            wait_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
            "repair restart waits for the service's backoff"
        );
        tokio::time::sleep_until(at).await;
        // It may have exited meanwhile: then its supervisor has it.
        if ctx.table.state_of(target.as_str()) == Some(ServiceState::Backoff) {
            return Some(format!(
                "`{target}` exited while the repair waited for its backoff; its supervisor restarts it"
            ));
        }
    }
    None
}

/// A run that ends without success must not leave its service down: a stop it made that
/// nothing undid is undone (the service started again), and the record says so.
async fn put_back(ctx: &RunContext, order: &RunOrder, record: &mut RunRecord) {
    if !warden_core::run::left_down(&record.steps) {
        return;
    }
    let step = PlannedStep {
        index: record.steps.len(),
        tier: Tier::OBSERVE,
        primitive: Primitive::StartService,
        target: order.target.clone(),
    };
    let request = ActionRequest {
        action: "start_service".into(),
        tier: Tier::OBSERVE,
        target: order.target.to_string(),
        rationale: format!(
            "run {} ended {} after stopping `{}`: put it back",
            record.run_id,
            record.outcome.as_str(),
            order.target
        ),
        actor: AuditActor::System,
        incident_id: order.incident_id,
        run_id: Some(order.run_id),
        plan: plan_of(ctx, &step),
        touches: Vec::new(),
    };
    let (result, seq) = govern(ctx, request, step).await;
    let (ok, detail) = match &result {
        Ok((d, _)) => (true, format!("put back after the run ended {}: {d}", record.outcome.as_str())),
        Err(f) => (false, format!("could not put `{}` back: {}", order.target, f.detail)),
    };
    tracing::warn!(
        run = record.run_id,
        target = order.target.as_str(),
        ok,
        detail,
        "a run that stopped its service ended without success"
    );
    record.steps.push(StepRecord {
        index: record.steps.len(),
        action: "start_service".into(),
        tier: Tier::OBSERVE.get(),
        permit_audit_seq: seq,
        ok,
        detail: detail.clone(),
        duration_ms: 0,
        undo: Vec::new(),
        skipped: false,
        on: None,
    });
    record.detail = format!("{}; {detail}", record.detail);
}

/// The `verify` span of a run: a child of the incident's root (`trace`).
fn verify_span(order: &RunOrder, trace: &opentelemetry::Context) -> tracing::Span {
    let span = tracing::info_span!(
        target: TRACE,
        parent: None,
        "verify",
        warden.incident.id = order.incident_id,
        warden.run.id = order.run_id,
        warden.target = order.target.as_str(),
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    adopt(&span, trace);
    span
}

/// Whether a run that ended so failed (rather than being held by governance).
fn fails(outcome: RunOutcome) -> bool {
    matches!(outcome, RunOutcome::Failed | RunOutcome::Denied | RunOutcome::Interrupted)
}

/// Marks a trace span ended well, or failed with `error`.
fn traced(span: &tracing::Span, error: Option<&str>) {
    match error {
        None => span.record("otel.status_code", "OK"),
        Some(e) => span.record("otel.status_code", "ERROR").record("otel.status_description", e),
    };
}

async fn finish(ctx: &RunContext, mut record: RunRecord) -> RunRecord {
    record.finished_unix_ms = Some(warden_core::time::now_unix_ms());
    let outcome = record.outcome.as_str();
    // Dry runs and rollbacks are not executions of the playbook.
    if !record.dry_run && record.rollback_of.is_none() {
        ctx.metrics.playbook_finished(&record.playbook, outcome, record.duration_ms().unwrap_or(0));
    }
    tracing::info!(
        run = record.run_id,
        playbook = record.playbook,
        outcome,
        duration_ms = record.duration_ms().unwrap_or(0),
        detail = record.detail,
        "playbook run finished"
    );
    save(ctx, &record).await;
    record
}

async fn save(ctx: &RunContext, record: &RunRecord) {
    if let Err(e) = ctx.store.put_run(record.clone()).await {
        tracing::error!(run = record.run_id, error = %e, "cannot store playbook run");
    }
}

/// Why a step ended its run.
struct StepFailure {
    outcome: RunOutcome,
    detail: String,
    /// For a throttled step: when governance would allow it.
    retry_at_unix_ms: Option<u64>,
    /// For a step held for an approver: the approval request.
    approval_id: Option<u64>,
    /// What the step changed before it failed, to undo in a rollback.
    undo: Vec<Undo>,
}

fn failed(outcome: RunOutcome, detail: String) -> StepFailure {
    StepFailure { outcome, detail, retry_at_unix_ms: None, approval_id: None, undo: Vec::new() }
}

type StepResult = Result<(String, Vec<Undo>), StepFailure>;

/// Gets the step authorised (asking governance when its tier needs it), runs it, and
/// audits the outcome of a permitted step.
/// `rule`: why the harm guard let a disruptive step run, for the decision's rationale.
async fn run_step(
    ctx: &RunContext,
    order: &RunOrder,
    step: PlannedStep,
    rule: Option<String>,
) -> (StepResult, Option<u64>) {
    let guard = rule.map_or(String::new(), |r| format!("; do no harm: {r}"));
    let (plan, touches) = describe(ctx, &step).await;
    let request = ActionRequest {
        action: step.primitive.action().into(),
        tier: step.tier,
        target: step.target.to_string(),
        rationale: format!("playbook `{}` (run {}): {}{guard}", order.playbook, order.run_id, order.rationale),
        actor: order.actor.clone(),
        incident_id: order.incident_id,
        run_id: Some(order.run_id),
        plan,
        touches,
    };
    govern(ctx, request, step).await
}

/// A permit for `request`, or why there is none (held until a time, denied, waiting for
/// an approver) with the audit entry of the decision.
async fn ask_permit(ctx: &RunContext, request: ActionRequest) -> Result<Permit, (StepFailure, Option<u64>)> {
    let span = tracing::info_span!(
        target: TRACE,
        "permit",
        warden.action = request.action,
        warden.tier = request.tier.get(),
        warden.decision = Empty,
        warden.audit.seq = Empty,
    );
    let answer = ctx.gate.request(request).instrument(span.clone()).await;
    let (decision, seq) = match &answer {
        Ok(GateAnswer::Granted(p)) => ("granted", Some(p.audit_seq())),
        Ok(GateAnswer::Denied { audit_seq, retry_at_unix_ms: Some(_), .. }) => ("held", *audit_seq),
        Ok(GateAnswer::Denied { audit_seq, .. }) => ("denied", *audit_seq),
        Ok(GateAnswer::Pending { audit_seq, .. }) => ("pending_approval", Some(*audit_seq)),
        Err(_) => ("no_decision", None),
    };
    span.record("warden.decision", decision);
    if let Some(seq) = seq {
        span.record("warden.audit.seq", seq);
    }
    match answer {
        Ok(GateAnswer::Granted(p)) => Ok(p),
        Ok(GateAnswer::Denied { reason, audit_seq, retry_at_unix_ms: Some(at) }) => {
            let detail = format!("held by governance until {}: {reason}", warden_core::time::rfc3339(at));
            Err((StepFailure { retry_at_unix_ms: Some(at), ..failed(RunOutcome::Throttled, detail) }, audit_seq))
        }
        Ok(GateAnswer::Denied { reason, audit_seq, retry_at_unix_ms: None }) => {
            Err((failed(RunOutcome::Denied, format!("denied: {reason}")), audit_seq))
        }
        Ok(GateAnswer::Pending { reason, audit_seq, approval_id }) => {
            let detail = format!("{reason} (approval {approval_id})");
            Err((
                StepFailure { approval_id: Some(approval_id), ..failed(RunOutcome::PendingApproval, detail) },
                Some(audit_seq),
            ))
        }
        Err(e) => Err((failed(RunOutcome::Denied, format!("no decision: {e}")), None)),
    }
}

/// The one way a step runs, for playbooks and operators alike: the system's tier 1 steps on
/// their own, every other step with a permit from the gatekeeper (its decision audited first), its outcome
/// audited after.
async fn govern(ctx: &RunContext, request: ActionRequest, step: PlannedStep) -> (StepResult, Option<u64>) {
    // A person's action is audited under their name whatever its tier; the system's tier 1
    // steps (observe, collect) run without an entry, or the trail would drown in them.
    let by_person = matches!(request.actor, AuditActor::User(_));
    if step.tier == Tier::OBSERVE && !by_person {
        return match Authorized::autonomous(step) {
            Ok(a) => (perform(ctx, a).await.map_err(|e| failed(RunOutcome::Failed, e.to_string())), None),
            Err(e) => (Err(failed(RunOutcome::Denied, e.to_string())), None),
        };
    }
    let permit = match ask_permit(ctx, request.clone()).await {
        Ok(p) => p,
        Err((failure, seq)) => return (Err(failure), seq),
    };
    let seq = permit.audit_seq();
    let authorized = match Authorized::with_permit(step, &permit) {
        Ok(a) => a,
        Err(e) => return (Err(failed(RunOutcome::Denied, e.to_string())), Some(seq)),
    };
    let result = perform(ctx, authorized).await.map_err(|e| {
        let undo = match &e {
            StepError::Effect(p) => p.undo.clone(),
            _ => Vec::new(),
        };
        (e.to_string(), undo)
    });
    let report = OutcomeReport {
        request,
        outcome: if result.is_ok() { OutcomeKind::Succeeded } else { OutcomeKind::Failed },
        detail: match &result {
            Ok((d, _)) | Err((d, _)) => d.clone(),
        },
    };
    if let Err(e) = ctx.gate.outcome(report).await {
        tracing::error!(action = permit.action(), target = permit.target(), error = %e, "cannot audit an outcome");
    }
    (result.map_err(|(e, undo)| StepFailure { undo, ..failed(RunOutcome::Failed, e) }), Some(seq))
}

/// An operator's request to act on a service (API or shell).
#[derive(Debug, Clone)]
pub struct OperatorRequest {
    /// A person (by token name), or the healer acting on its own (a quarantine released
    /// once its cause cleared).
    pub actor: AuditActor,
    pub primitive: Primitive,
    pub target: ServiceName,
    pub reason: String,
}

/// What came of it.
#[derive(Debug, Clone)]
pub enum OperatorOutcome {
    /// Permitted and carried out (or carried out and failed: `result`).
    Done {
        result: Result<String, String>,
        audit_seq: Option<u64>,
    },
    Denied {
        reason: String,
        audit_seq: Option<u64>,
    },
    /// Allowed later (a rate limit, a time window).
    Held {
        reason: String,
        retry_at_unix_ms: u64,
        audit_seq: Option<u64>,
    },
    /// Waits for approvers; approved, it runs for the operator.
    PendingApproval {
        reason: String,
        approval_id: u64,
        audit_seq: Option<u64>,
    },
}

async fn operate(ctx: &RunContext, op: OperatorRequest) -> OperatorOutcome {
    let policies = ctx.policies.get();
    let step = PlannedStep {
        index: 0,
        tier: policies.tier_of(op.primitive.action(), op.primitive.min_tier()),
        primitive: op.primitive,
        target: op.target,
    };
    let (plan, touches) = describe(ctx, &step).await;
    let request = ActionRequest {
        action: step.primitive.action().into(),
        tier: step.tier,
        target: step.target.to_string(),
        rationale: match &op.actor {
            AuditActor::User(name) => format!("operator `{name}`: {}", op.reason),
            AuditActor::System => op.reason.clone(),
        },
        actor: op.actor.clone(),
        incident_id: None,
        run_id: None,
        plan,
        touches,
    };
    tracing::info!(by = %op.actor, action = request.action, target = request.target, "single action requested");
    match govern(ctx, request, step).await {
        (Ok((detail, _)), seq) => OperatorOutcome::Done { result: Ok(detail), audit_seq: seq },
        (Err(f), seq) => match f.outcome {
            RunOutcome::Throttled => OperatorOutcome::Held {
                reason: f.detail,
                retry_at_unix_ms: f.retry_at_unix_ms.unwrap_or_default(),
                audit_seq: seq,
            },
            RunOutcome::PendingApproval => OperatorOutcome::PendingApproval {
                reason: f.detail,
                approval_id: f.approval_id.unwrap_or_default(),
                audit_seq: seq,
            },
            RunOutcome::Denied => OperatorOutcome::Denied { reason: f.detail, audit_seq: seq },
            _ => OperatorOutcome::Done { result: Err(f.detail), audit_seq: seq },
        },
    }
}

/// What a step would do, for approvers, and exactly what it would act on (the identities an
/// approval then binds: a process by pid, start time and command line; a file by path):
/// the service's process for a service step, what a selector finds now for a kill, the
/// files and bytes of a file step.
async fn describe(ctx: &RunContext, step: &PlannedStep) -> (String, Vec<String>) {
    if step.primitive.is_service_op() || matches!(step.primitive, Primitive::RestartDependents) {
        let touches = ctx
            .table
            .lock()
            .services
            .get(&step.target)
            // A process is its pid and start time; not its command line, which an exec
            // changes (a service's launcher becomes the service) while it stays the same
            // process. The plan says the command line.
            .and_then(|e| Some(format!("pid {} started at tick {}", e.pid?, e.start_ticks.unwrap_or(0))))
            .into_iter()
            .collect();
        return (plan_of(ctx, step), touches);
    }
    if settings::is_setting(&step.primitive) {
        let what = settings::preview(&ctx.wiring, &step.target, &step.primitive).await.unwrap_or_else(|e| e);
        return (format!("`{}`: {what}", step.target), Vec::new());
    }
    let Ok(env) = env_of(ctx, &step.target) else { return (plan_of(ctx, step), Vec::new()) };
    let p = step.primitive.clone();
    let found = tokio::task::spawn_blocking(move || {
        let words = effects::preview(&env, &p).unwrap_or_else(|e| format!("cannot tell now: {e}"));
        (words, effects::touches(&env, &p))
    })
    .await;
    match found {
        Ok((words, touches)) => (format!("`{}`: {words}", step.target), touches),
        Err(_) => (plan_of(ctx, step), Vec::new()),
    }
}

/// The command line of process `pid` now (empty when it is gone).
fn cmdline_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|c| c.replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

/// What a service step would do, in words, for approvers: the service's process now and
/// what the step does to it.
pub fn plan_of(ctx: &RunContext, step: &PlannedStep) -> String {
    let t = ctx.table.lock();
    let Some(e) = t.services.get(&step.target) else {
        return format!("{} on `{}` (no such service now)", step.primitive.action(), step.target);
    };
    let process = match e.pid {
        Some(pid) => format!("pid {pid} `{}`, {}", cmdline_of(pid), e.state.as_str()),
        None => e.state.as_str().to_string(),
    };
    let stop = format!(
        "{} to its process group, {} ms grace, then SIGKILL",
        e.spec.stop_signal.as_str(),
        e.spec.stop_grace.as_millis()
    );
    let program = match &e.spec.program {
        warden_core::config::Program::SelfExe => "warden".to_string(),
        warden_core::config::Program::Path(p) => p.display().to_string(),
    };
    let what = match &step.primitive {
        Primitive::RestartService { force: true } => format!("kill it (SIGKILL at once), then start `{program}` again"),
        Primitive::RestartService { force: false } => format!("stop it ({stop}), then start `{program}` again"),
        Primitive::StopService => format!("stop it ({stop}); it stays stopped"),
        Primitive::StartService => format!("start `{program}`"),
        Primitive::SignalService { signal } => format!("send {} to its process group", signal.as_str()),
        Primitive::QuarantineService => format!("stop it ({stop}) and keep it stopped until released"),
        other => other.action().to_string(),
    };
    let ports: Vec<String> = e.spec.ports.iter().map(u16::to_string).collect();
    let ports = if ports.is_empty() { String::new() } else { format!(", ports {}", ports.join(", ")) };
    format!("service `{}` ({process}{ports}): {what}", step.target)
}

/// Why a step did not do its job.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Service(#[from] ServiceOpError),
    #[error(transparent)]
    Effect(#[from] effects::Partial),
    #[error("still unhealthy after {} ms: {last}", .after.as_millis())]
    Unhealthy { after: Duration, last: String },
    #[error("{0}")]
    Setting(String),
}

/// What a step acts on, as the service is now.
fn env_of(ctx: &RunContext, target: &ServiceName) -> Result<Env, StepError> {
    let own = super::checks::ServiceView { table: ctx.table.clone(), service: target.clone() }.processes();
    let t = ctx.table.lock();
    let e = t.services.get(target).ok_or_else(|| ServiceOpError::NoSuchService(target.to_string()))?;
    Ok(Env {
        own: own.into_iter().collect(),
        data_dir: ctx.data_dir.root().to_path_buf(),
        target: target.clone(),
        spec: e.spec.clone(),
        pid: e.pid,
        supervised: t.services.values().filter_map(|s| s.pid).collect(),
        self_exe: ctx.self_exe.clone(),
        vault: ctx.data_dir.vault(),
        commands: ctx.config.get().commands.clone(),
    })
}

/// Carries out an authorised step: what it did, and how to undo it.
async fn perform(ctx: &RunContext, step: Authorized<PlannedStep>) -> Result<(String, Vec<Undo>), StepError> {
    let target = step.step().target.clone();
    let primitive = step.step().primitive.clone();
    match primitive {
        Primitive::CollectDiagnostics => Ok((diagnostics(ctx, &target), Vec::new())),
        Primitive::WaitHealthy { timeout } => {
            let v = verify(ctx, &target, timeout).await?;
            let mut scratch = RunRecord::started(0, None, "", &target, 0);
            Ok((v.note(&mut scratch), Vec::new()))
        }
        p if p.is_service_op() => {
            let before = ctx.table.state_of(target.as_str());
            let grace = ctx.table.lock().services.get(&target).map_or(Duration::ZERO, |e| e.spec.stop_grace);
            let detail = ctx.services.execute(step, grace + SERVICE_OP_SLACK).await?;
            Ok((detail, service_undo(&p, before)))
        }
        p if settings::is_setting(&p) => settings::apply(&ctx.wiring, &target, &p).await.map_err(StepError::Setting),
        p => Ok(effects::apply(&env_of(ctx, &target)?, &p).await?),
    }
}

/// What puts a service step back, given the state before it (a start of a running
/// service changed nothing, so it has nothing to undo).
fn service_undo(p: &Primitive, before: Option<ServiceState>) -> Vec<Undo> {
    let running = matches!(before, Some(ServiceState::Running | ServiceState::Starting));
    match p {
        Primitive::StopService if running => vec![Undo::StartService],
        // A release starts the service: only the undo of a quarantine that stopped it.
        Primitive::QuarantineService if running || before == Some(ServiceState::Backoff) => {
            vec![Undo::ReleaseService]
        }
        // Only a start of a service that was stopped changed anything: one pending,
        // backing off or being restarted (a reload's restart under way) comes back anyway,
        // and stopping it in a rollback would leave it down.
        Primitive::StartService if before == Some(ServiceState::Stopped) => vec![Undo::StopService],
        Primitive::ReleaseService if before == Some(ServiceState::Quarantined) => vec![Undo::QuarantineService],
        _ => Vec::new(),
    }
}

/// A dry run's step: what it would touch and what governance would say; nothing changes.
async fn dry_step(ctx: &RunContext, order: &RunOrder, step: &PlannedStep) -> Result<String, StepFailure> {
    let would = match &step.primitive {
        p if p.is_service_op() => Ok(format!("would act on {}", plan_of(ctx, step))),
        Primitive::CollectDiagnostics => Ok(format!("would record: {}", diagnostics(ctx, &step.target))),
        Primitive::WaitHealthy { timeout } => {
            Ok(format!("would wait up to {} ms for `{}`'s probes to pass", timeout.as_millis(), step.target))
        }
        // Resolvable but not applicable now (no free port, no fallback answers): the dry
        // run's answer, like a file step with nothing to act on.
        p if settings::is_setting(p) => Ok(settings::preview(&ctx.wiring, &step.target, p)
            .await
            .unwrap_or_else(|why| format!("would fail now: {why}"))),
        p => match env_of(ctx, &step.target) {
            Ok(env) => {
                let p = p.clone();
                match tokio::task::spawn_blocking(move || effects::preview(&env, &p)).await {
                    Ok(Ok(would)) => Ok(would),
                    // The step fits this service but has nothing to act on now: saying so
                    // is the dry run's answer, not its failure.
                    Ok(Err(EffectError::Failed(why))) => Ok(format!("would fail now: {why}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        },
    };
    let would = would.map_err(|e| failed(RunOutcome::Failed, format!("cannot run here: {e}")))?;
    let by_person = matches!(order.actor, AuditActor::User(_));
    if step.tier == Tier::OBSERVE && !by_person {
        return Ok(format!("{would}; governance: tier 1, runs on its own"));
    }
    let request = ActionRequest {
        action: step.primitive.action().into(),
        tier: step.tier,
        target: step.target.to_string(),
        rationale: format!("dry run of `{}`", order.playbook),
        actor: order.actor.clone(),
        incident_id: order.incident_id,
        run_id: Some(order.run_id),
        plan: String::new(),
        touches: Vec::new(),
    };
    let verdict = ctx.gate.preview(request).await.unwrap_or_else(|e| format!("unknown ({e})"));
    Ok(format!("{would}; governance would {verdict}"))
}

/// Undoes `of`'s steps, newest first, each through governance like any step.
async fn run_rollback(ctx: &RunContext, of: &RunRecord, order: &RollbackOrder, mut record: RunRecord) -> RunRecord {
    tracing::info!(run = record.run_id, of = of.run_id, playbook = of.playbook, "rollback started");
    let policies = ctx.policies.get();
    let undos: Vec<(usize, Undo)> =
        of.steps.iter().rev().flat_map(|s| s.undo.iter().rev().map(move |u| (s.index, u.clone()))).collect();
    let run = async {
        for (index, undo) in undos {
            let started = Instant::now();
            let action = undo.action();
            let tier = policies.tier_of(action, Primitive::action_tier(action).unwrap_or(Tier::HUMAN_ONLY));
            let request = ActionRequest {
                action: action.into(),
                tier,
                target: of.target.to_string(),
                rationale: format!("rollback of run {} step {index}: {}", of.run_id, order.reason),
                actor: order.actor.clone(),
                incident_id: of.incident_id,
                run_id: Some(record.run_id),
                plan: undo.describe(),
                touches: Vec::new(),
            };
            let (result, seq) = govern_undo(ctx, request, &of.target, &undo).await;
            let ok = result.is_ok();
            record.steps.push(StepRecord {
                index: record.steps.len(),
                action: action.into(),
                tier: tier.get(),
                permit_audit_seq: seq,
                ok,
                detail: match &result {
                    Ok(d) => format!("step {index}: {d}"),
                    Err(f) => format!("step {index}: {}", f.detail),
                },
                duration_ms: started.elapsed().as_millis() as u64,
                undo: Vec::new(),
                skipped: false,
                on: None,
            });
            save(ctx, &record).await;
            if let Err(f) = result {
                record.outcome = f.outcome;
                record.detail = format!("undoing step {index} `{action}`: {}", f.detail);
                return;
            }
        }
        record.outcome = RunOutcome::Succeeded;
        record.detail = format!("rolled back run {}", of.run_id);
    };
    if tokio::time::timeout(ROLLBACK_TIMEOUT, run).await.is_err() {
        record.outcome = RunOutcome::Failed;
        record.detail = format!("rollback timed out after {} s", ROLLBACK_TIMEOUT.as_secs());
    }
    finish(ctx, record).await
}

/// One undo through the gatekeeper: service undos as service steps, file undos here.
async fn govern_undo(
    ctx: &RunContext,
    request: ActionRequest,
    target: &ServiceName,
    undo: &Undo,
) -> (Result<String, StepFailure>, Option<u64>) {
    let service_step = match undo {
        Undo::StartService => Some(Primitive::StartService),
        Undo::StopService => Some(Primitive::StopService),
        Undo::QuarantineService => Some(Primitive::QuarantineService),
        Undo::ReleaseService => Some(Primitive::ReleaseService),
        _ => None,
    };
    if let Some(primitive) = service_step {
        let step = PlannedStep { index: 0, tier: request.tier, primitive, target: target.clone() };
        let (r, seq) = govern(ctx, request, step).await;
        return (r.map(|(d, _)| d), seq);
    }
    let permit = match ask_permit(ctx, request.clone()).await {
        Ok(p) => p,
        Err((failure, seq)) => return (Err(failure), seq),
    };
    let result = match (undo, env_of(ctx, target)) {
        (Undo::Override { setting, set }, _) => settings::undo(&ctx.wiring, setting, set.as_ref()).await,
        (_, Ok(env)) => effects::undo(&env, undo).await.map_err(|e| e.to_string()),
        (_, Err(e)) => Err(e.to_string()),
    };
    let report = OutcomeReport {
        request,
        outcome: if result.is_ok() { OutcomeKind::RolledBack } else { OutcomeKind::Failed },
        detail: match &result {
            Ok(d) | Err(d) => d.clone(),
        },
    };
    if let Err(e) = ctx.gate.outcome(report).await {
        tracing::error!(action = permit.action(), error = %e, "cannot audit a rollback's outcome");
    }
    (result.map_err(|e| failed(RunOutcome::Failed, e)), Some(permit.audit_seq()))
}

fn diagnostics(ctx: &RunContext, service: &ServiceName) -> String {
    let snap = ctx.table.snapshot().into_iter().find(|s| s.name == *service);
    let last = crate::process::logs::tail(&ctx.data_dir.log_file(service.as_str()), 3);
    match snap {
        Some(s) => {
            let pid = s.pid.map_or_else(|| "none".to_string(), |p| p.to_string());
            format!("state {}, pid {pid}, restarts {}, last log lines: {:?}", s.state.as_str(), s.restarts, last)
        }
        None => format!("no service `{service}`"),
    }
}

/// What a verification found: since when the service served, and what of the path to it
/// still failed then (a mitigation, not a cure).
struct Verified {
    restored_unix_ms: u64,
    still_failing: Vec<String>,
    after: Duration,
}

impl Verified {
    /// Notes it in the run's record; says it in words.
    fn note(self, record: &mut RunRecord) -> String {
        record.restored_unix_ms = Some(self.restored_unix_ms);
        record.still_failing.clone_from(&self.still_failing);
        let stable = warden_core::time::now_unix_ms().saturating_sub(self.restored_unix_ms);
        match self.still_failing.is_empty() {
            true => format!("verified healthy after {} ms (stable for {stable} ms)", self.after.as_millis()),
            false => format!(
                "serves again (its own checks stable for {stable} ms) but its path still fails: {}",
                self.still_failing.join("; ")
            ),
        }
    }
}

/// A run's verification: of its target, or, where the run pointed `switched` dependents
/// elsewhere, of them; the target's own checks still failing then make it a mitigation.
async fn verify_run(
    ctx: &RunContext,
    target: &ServiceName,
    switched: &[ServiceName],
    timeout: Duration,
) -> Result<Verified, StepError> {
    if switched.is_empty() {
        return verify(ctx, target, timeout).await;
    }
    let start = Instant::now();
    let mut restored = 0;
    for d in switched {
        let v = verify(ctx, d, timeout.saturating_sub(start.elapsed())).await?;
        restored = restored.max(v.restored_unix_ms);
    }
    let config = ctx.config.get();
    let mut checks = Checks::of(&config, &ctx.table, target, false);
    let evidence = checks.gather().await;
    let still_failing = match checks.health_or_state(&evidence) {
        warden_core::harm::Health::Failing(what) => vec![format!("`{target}` itself: {what}")],
        _ => Vec::new(),
    };
    Ok(Verified { restored_unix_ms: restored, still_failing, after: start.elapsed() })
}

/// How long a repaired service must stay healthy before it counts as restored.
pub fn stability_window(config: &NodeConfig, service: &ServiceName) -> Duration {
    config.services.iter().find(|s| s.name == *service).map_or(Duration::ZERO, |s| s.restart.stable_after)
}

/// A verification's pause between rounds of checks.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Verification on fresh evidence: rounds of the target's own checks, run now, until they
/// have passed for its stability window (its `stable_after`, and at least two rounds) with
/// the same process (`warden_core::verify`). A check that cannot run here neither holds the
/// verdict nor makes it; a service with no check of its own that can run is judged by its
/// ready state. Bounded by `timeout`.
async fn verify(ctx: &RunContext, service: &ServiceName, timeout: Duration) -> Result<Verified, StepError> {
    let config = ctx.config.get();
    let window = stability_window(&config, service);
    // However short the wait a playbook gives, the window fits in it.
    let timeout = timeout.max(window + warden_core::verify::WINDOW_SLACK);
    let mut checks = Checks::of(&config, &ctx.table, service, false);
    let mut stability = Stability::new(window.as_millis() as u64);
    let start = Instant::now();
    let mut last = String::from("not checked");
    while start.elapsed() < timeout {
        let left = timeout.saturating_sub(start.elapsed());
        let Ok(evidence) = tokio::time::timeout(left, checks.gather()).await else { break };
        let round = Round {
            at_unix_ms: warden_core::time::now_unix_ms(),
            own: checks.health_or_state(&evidence),
            pid: checks.pid(),
            lower_failing: evidence.lower_failing,
        };
        match stability.observe(&round) {
            Progress::Restored { since_unix_ms, lower_failing } => {
                return Ok(Verified {
                    restored_unix_ms: since_unix_ms,
                    still_failing: lower_failing,
                    after: start.elapsed(),
                });
            }
            Progress::Pending { last: why } => last = why,
        }
        tokio::time::sleep(ROUND_PAUSE.min(timeout.saturating_sub(start.elapsed()))).await;
    }
    Err(StepError::Unhealthy { after: timeout, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_only_a_start_of_a_stopped_service_is_undone_by_a_stop() {
        let start = Primitive::StartService;
        assert_eq!(service_undo(&start, Some(ServiceState::Stopped)), vec![Undo::StopService]);
        // Being restarted by a reload, pending or backing off: it comes back anyway, and a
        // rollback that stopped it would leave it down.
        for s in [ServiceState::Stopping, ServiceState::Pending, ServiceState::Backoff, ServiceState::Running] {
            assert!(service_undo(&start, Some(s)).is_empty(), "{s:?}");
        }
        assert_eq!(service_undo(&Primitive::StopService, Some(ServiceState::Running)), vec![Undo::StartService]);
        assert!(service_undo(&Primitive::StopService, Some(ServiceState::Stopped)).is_empty());
    }
}
