//! The playbook API: the catalog with each playbook's figures, runs (real or dry) asked
//! for by an operator, a run as stored, and rollbacks. Runs go to the executor, which
//! takes every step through the gatekeeper under the caller's name.

use super::AppState;
use super::error::ApiError;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::Duration;
use warden_actors::guardian::executor::{RollbackOrder, RunError, RunOrder};
use warden_actors::metrics::PlaybookStat;
use warden_actors::store::Counter;
use warden_core::audit::AuditActor;
use warden_core::auth::Caller;
use warden_core::config::ServiceName;
use warden_core::playbook::Playbook;
use warden_core::run::RunRecord;
use warden_core::time::rfc3339;

/// How much of the request timeout an answer leaves for itself.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// A playbook as the API and the CLI show it: metadata, each step with its tier, what it
/// changes and how it is rolled back, and its figures since warden started.
pub fn playbook_json(p: &Playbook, stat: Option<&PlaybookStat>) -> Value {
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|s| {
            let mut step = serde_json::to_value(s).unwrap_or(Value::Null);
            step["min_tier"] = json!(s.min_tier().get());
            step["changes"] = json!(s.changes());
            let r = s.rollback();
            step["rollback"] = json!({ "kind": r.kind(), "how": r.how() });
            step
        })
        .collect();
    let stat = stat.cloned().unwrap_or_default();
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "category": p.category,
        "tier": p.tier.get(),
        "triggers": p.triggers,
        "max_retries": p.max_retries,
        "timeout_ms": p.timeout.as_millis() as u64,
        "verify": p.verify,
        "steps": steps,
        "stats": {
            "executions": stat.executions,
            "succeeded": stat.succeeded,
            "failed": stat.failed,
            "success_ratio": (stat.executions > 0).then(|| stat.succeeded as f64 / stat.executions as f64),
            "avg_duration_ms": stat.avg_ms(),
            "last_run_unix_ms": stat.last_unix_ms,
            "last_run_at": stat.last_unix_ms.map(rfc3339),
            "last_outcome": stat.last_outcome,
        },
    })
}

pub fn run_json(r: &RunRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["started_at"] = json!(rfc3339(r.started_unix_ms));
    v["duration_ms"] = json!(r.duration_ms());
    v
}

pub async fn list(State(app): State<AppState>) -> Json<Value> {
    let stats = app.views.metrics.playbook_stats();
    let catalog = app.views.catalog.get();
    let all: Vec<Value> = catalog.all().iter().map(|p| playbook_json(p, stats.get(&p.id))).collect();
    Json(json!({ "playbooks": all }))
}

/// The runtime overrides in force: what `set_port`, `set_endpoint`, `set_startup_deadline`
/// and `stagger_boot` steps changed in the running config.
pub async fn overrides(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let o = app.views.data_dir.overrides().map_err(ApiError::Internal)?;
    Ok(Json(json!({ "overrides": o })))
}

pub async fn detail(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let catalog = app.views.catalog.get();
    let p = catalog.get(&id).ok_or_else(|| ApiError::NotFound(format!("no playbook `{id}`")))?;
    Ok(Json(playbook_json(p, app.views.metrics.playbook_stats().get(&id))))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    target: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// Runs a playbook (or dry-runs it) on a service for the caller; answers 200 with the run
/// once it has ended, or 202 with its id while it still runs when the request's time is
/// nearly up (then `GET /api/guardian/runs/{id}` follows it).
pub async fn run(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: RunBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be {{\"target\": SERVICE, \"dry_run\": BOOL, \"reason\": \"...\"}}: {e}"
        ))
    })?;
    let Some(playbook) = app.views.catalog.get().get(&id).cloned() else {
        return Err(ApiError::NotFound(format!("no playbook `{id}`")));
    };
    let target = ServiceName::parse(&b.target).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let config = app.views.config.get();
    if !config.services.iter().any(|s| s.name == target) {
        return Err(ApiError::NotFound(format!("no service `{}`", b.target)));
    }
    // A dry run says so in its outcome; a real run of it is refused before it starts.
    let unmet = warden_core::fit::unmet_on(&playbook, &config, &target);
    if !b.dry_run && !unmet.is_empty() {
        return Err(ApiError::Conflict(format!("`{id}` is not applicable to `{target}`: {}", unmet.join("; "))));
    }
    if !b.dry_run {
        super::hold_for_operator(&app, &target, &caller.name);
    }
    let run_id = app.views.store.next_id(Counter::Run).await?;
    let order = RunOrder {
        run_id,
        incident_id: None,
        playbook: id,
        target,
        rationale: format!("operator `{}`: {}", caller.name, b.reason.as_deref().unwrap_or("no reason given")),
        dry_run: b.dry_run,
        actor: AuditActor::User(caller.name),
        trace: Default::default(),
        cause: Default::default(),
    };
    app.addrs.executor.run(order).await.map_err(run_error)?;
    answer_when_done(&app, run_id).await
}

pub async fn run_record(State(app): State<AppState>, Path(id): Path<u64>) -> Result<Json<Value>, ApiError> {
    let r = app.views.store.run_record(id).await?.ok_or_else(|| ApiError::NotFound(format!("no run {id}")))?;
    Ok(Json(run_json(&r)))
}

/// Rolls back a finished run for the caller; answers with the rollback's run once it ended.
pub async fn rollback(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let reason = super::governance::reason_of(&body)?.unwrap_or_else(|| "no reason given".into());
    if let Some(run) = app.views.store.run_record(id).await? {
        super::hold_for_operator(&app, &run.target, &caller.name);
    }
    let order = RollbackOrder { of: id, actor: AuditActor::User(caller.name), reason };
    let run_id = app.addrs.executor.rollback(order).await.map_err(run_error)?;
    answer_when_done(&app, run_id).await
}

fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::NoSuchRun(_) => ApiError::NotFound(e.to_string()),
        RunError::NotUndoable(..) | RunError::Busy(..) => ApiError::Conflict(e.to_string()),
        RunError::Unavailable(_) | RunError::Store(_) | RunError::ShuttingDown => ApiError::Unavailable(e.to_string()),
    }
}

/// The run once it has ended (polled from the store, where every step is saved), or 202
/// with where to follow it when the request's time runs short.
async fn answer_when_done(app: &AppState, run_id: u64) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + app.limits.request_timeout.saturating_sub(ANSWER_MARGIN);
    // Most runs (dry runs above all) end within milliseconds: look often at first.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(r) = app.views.store.run_record(run_id).await?
            && r.outcome.is_final()
        {
            return Ok(Json(run_json(&r)).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            let body =
                json!({ "run_id": run_id, "outcome": "running", "poll": format!("/api/guardian/runs/{run_id}") });
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}
