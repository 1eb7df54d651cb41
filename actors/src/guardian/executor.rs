//! PlaybookExecutor: runs playbooks step by step under governance.
//!
//! Each step is planned against its target; tier 1 steps run as they are, every other step
//! first gets a permit from the Gatekeeper (which audits the decision before answering),
//! and its outcome is audited after. Steps reach the services only as `Authorized` values,
//! so an unpermitted tier ≥ 2 step cannot be expressed. Runs execute concurrently, each in
//! its own task; the record of every run is stored.

use crate::context::{Ctx, names};
use crate::gatekeeper::{GateAnswer, GateMsg, OutcomeReport};
use crate::incident_manager::IncidentMsg;
use crate::metrics::PlaybookLabels;
use crate::registry::Registration;
use crate::rpc;
use crate::service_supervisor::ServiceMsg;
use crate::store::blocking;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;
use tokio::time::Instant;
use warden_core::audit::{AuditActor, OutcomeKind};
use warden_core::config::ProbeCheck;
use warden_core::permit::Authorized;
use warden_core::playbook::{PlannedStep, Primitive, RunOutcome, RunRecord, StepRecord, plan};
use warden_core::policy::{ActionRequest, Tier};

const GATE_TIMEOUT: Duration = Duration::from_secs(15);
const SERVICE_OP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RunOrder {
    pub run_id: u64,
    pub incident_id: Option<u64>,
    pub playbook: String,
    pub target: String,
    pub rationale: String,
}

pub enum ExecutorMsg {
    Run(Box<RunOrder>),
}

pub struct PlaybookExecutor {
    pub ctx: Ctx,
}

pub struct State {
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for PlaybookExecutor {
    type Msg = ExecutorMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<ExecutorMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State { _reg: self.ctx.registry.started(names::EXECUTOR) })
    }

    async fn handle(
        &self,
        _: ActorRef<ExecutorMsg>,
        msg: ExecutorMsg,
        _: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let ExecutorMsg::Run(order) = msg;
        let ctx = self.ctx.clone();
        // A run outlives a restart of this actor: it only needs the context and names.
        tokio::spawn(async move {
            let record = run_playbook(&ctx, &order).await;
            if let Some(incident_id) = order.incident_id {
                let _ = rpc::tell(
                    &ctx.name(names::INCIDENT_MANAGER),
                    IncidentMsg::RunFinished { incident_id, run: Box::new(record) },
                );
            }
        });
        Ok(())
    }
}

/// Runs one playbook to its end and stores the record.
pub async fn run_playbook(ctx: &Ctx, order: &RunOrder) -> RunRecord {
    let mut record = RunRecord {
        run_id: order.run_id,
        incident_id: order.incident_id,
        playbook: order.playbook.clone(),
        target: order.target.clone(),
        started_unix_ms: warden_core::now_unix_ms(),
        finished_unix_ms: None,
        outcome: RunOutcome::Running,
        steps: vec![],
        detail: String::new(),
    };
    let Some(pb) = ctx.catalog.get(&order.playbook).cloned() else {
        record.outcome = RunOutcome::Failed;
        record.detail = format!("no playbook `{}`", order.playbook);
        return finish(ctx, record).await;
    };
    save(ctx, &record).await;
    tracing::info!(run = order.run_id, playbook = pb.id, target = order.target, "playbook run started");
    let steps = plan(&pb, &order.target, |a, t| ctx.policies.tier_of(a, t));
    let run = async {
        for step in steps {
            let started = Instant::now();
            let (result, permit_seq) = run_step(ctx, order, step.clone()).await;
            let ok = result.is_ok();
            let detail = match &result {
                Ok(d) => d.clone(),
                Err((_, d)) => d.clone(),
            };
            record.steps.push(StepRecord {
                index: step.index,
                action: step.primitive.action().into(),
                tier: step.tier.get(),
                permit_audit_seq: permit_seq,
                ok,
                detail,
                duration_ms: started.elapsed().as_millis() as u64,
            });
            if let Err((outcome, d)) = result {
                record.outcome = outcome;
                record.detail = format!("step {} `{}`: {d}", step.index, step.primitive.action());
                return;
            }
        }
        record.outcome = RunOutcome::Succeeded;
    };
    if tokio::time::timeout(Duration::from_millis(pb.timeout_ms), run).await.is_err() {
        record.outcome = RunOutcome::Failed;
        record.detail = format!("playbook timed out after {} ms", pb.timeout_ms);
    }
    finish(ctx, record).await
}

async fn finish(ctx: &Ctx, mut record: RunRecord) -> RunRecord {
    record.finished_unix_ms = Some(warden_core::now_unix_ms());
    let outcome = format!("{:?}", record.outcome).to_lowercase();
    ctx.metrics
        .playbook_executions
        .get_or_create(&PlaybookLabels { playbook: record.playbook.clone(), outcome: outcome.clone() })
        .inc();
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

async fn save(ctx: &Ctx, record: &RunRecord) {
    let r = record.clone();
    if let Err(e) = blocking(&ctx.store, move |s| s.put_run(&r)).await {
        tracing::error!(run = record.run_id, error = %e, "cannot store playbook run");
    }
}

type StepResult = Result<String, (RunOutcome, String)>;

/// Gets the step authorised (asking governance when its tier needs it), runs it, and
/// audits the outcome of a permitted step.
async fn run_step(ctx: &Ctx, order: &RunOrder, step: PlannedStep) -> (StepResult, Option<u64>) {
    if step.tier == Tier::OBSERVE {
        return match Authorized::autonomous(step) {
            Ok(a) => (perform(ctx, a).await.map_err(|e| (RunOutcome::Failed, e)), None),
            Err(e) => (Err((RunOutcome::Denied, e.to_string())), None),
        };
    }
    let request = ActionRequest {
        action: step.primitive.action().into(),
        tier: step.tier,
        target: step.target.clone(),
        rationale: format!("playbook `{}` (run {}): {}", order.playbook, order.run_id, order.rationale),
        actor: AuditActor::System,
        incident_id: order.incident_id,
        run_id: Some(order.run_id),
    };
    let answer = rpc::ask(&ctx.name(names::GATEKEEPER), GATE_TIMEOUT, |tx| GateMsg::Request(request.clone(), tx)).await;
    let permit = match answer {
        Ok(GateAnswer::Granted(p)) => p,
        Ok(GateAnswer::Denied { reason, audit_seq }) => {
            return (Err((RunOutcome::Denied, format!("denied: {reason}"))), audit_seq);
        }
        Ok(GateAnswer::Pending { reason, audit_seq }) => {
            return (Err((RunOutcome::PendingApproval, reason)), Some(audit_seq));
        }
        Err(e) => return (Err((RunOutcome::Denied, format!("gatekeeper unavailable: {e}"))), None),
    };
    let seq = permit.audit_seq();
    let authorized = match Authorized::with_permit(step, &permit) {
        Ok(a) => a,
        Err(e) => return (Err((RunOutcome::Denied, e.to_string())), Some(seq)),
    };
    let result = perform(ctx, authorized).await;
    let report = OutcomeReport {
        request,
        outcome: if result.is_ok() { OutcomeKind::Succeeded } else { OutcomeKind::Failed },
        detail: match &result {
            Ok(d) | Err(d) => d.clone(),
        },
    };
    if let Err(e) =
        rpc::ask(&ctx.name(names::GATEKEEPER), GATE_TIMEOUT, |tx| GateMsg::Outcome(Box::new(report), tx)).await
    {
        tracing::error!(run = order.run_id, error = %e, "cannot audit step outcome");
    }
    (result.map_err(|e| (RunOutcome::Failed, e)), Some(seq))
}

/// Carries out an authorised step.
async fn perform(ctx: &Ctx, step: Authorized<PlannedStep>) -> Result<String, String> {
    let target = step.step().target.clone();
    match step.step().primitive.clone() {
        Primitive::CollectDiagnostics => Ok(diagnostics(ctx, &target)),
        Primitive::WaitHealthy { timeout_ms } => reprobe(ctx, &target, Duration::from_millis(timeout_ms)).await,
        _ => rpc::ask(&ctx.name(names::SERVICE_SUPERVISOR), SERVICE_OP_TIMEOUT, |tx| ServiceMsg::Execute(step, tx))
            .await
            .map_err(|e| e.to_string())?,
    }
}

fn diagnostics(ctx: &Ctx, service: &str) -> String {
    let snap = ctx.services.snapshot().into_iter().find(|s| s.name == service);
    let tail = ctx.services.tail_of(service);
    let last: Vec<&String> = tail.iter().rev().take(3).collect();
    match snap {
        Some(s) => format!("state {:?}, pid {:?}, restarts {}, last log lines: {:?}", s.state, s.pid, s.restarts, last),
        None => format!("no service `{service}`"),
    }
}

/// Re-probes the target with its own probes' checks until all pass (verification).
async fn reprobe(ctx: &Ctx, service: &str, timeout: Duration) -> Result<String, String> {
    let checks: Vec<(ProbeCheck, Duration)> = ctx
        .config
        .probes
        .iter()
        .filter(|p| p.target.value == service)
        .map(|p| (p.check.clone(), Duration::from_millis(p.timeout_ms)))
        .collect();
    let client = crate::probe::http_client();
    let start = Instant::now();
    let mut last_err = String::from("not checked");
    while start.elapsed() < timeout {
        let mut all_ok = true;
        for (check, t) in &checks {
            if let Err(f) = crate::probe::run_check(&client, check, *t).await {
                all_ok = false;
                last_err = f.to_string();
                break;
            }
        }
        // Without probes of its own, the service's ready check (its `running` state) verifies.
        let healthy = if checks.is_empty() {
            ctx.services.state_of(service) == Some(crate::service_table::ServiceState::Running)
        } else {
            all_ok
        };
        if healthy {
            return Ok(format!("verified healthy after {} ms", start.elapsed().as_millis()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("still unhealthy after {} ms: {last_err}", timeout.as_millis()))
}
