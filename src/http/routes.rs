//! The routes and their handlers.

use super::AppState;
use super::error::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::time::Duration;
use warden_actors::fault::{self, FaultError};
use warden_actors::store::StoreError;
use warden_core::time::rfc3339;

/// Every route, grouped by who may call it (see [`super::auth`]).
pub fn router(app: AppState) -> Router {
    use axum::middleware::from_fn_with_state;
    use warden_core::auth::Role;
    let open = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz));
    let reads = Router::new()
        .route("/api/status", get(status))
        .route("/api/guardian/healer/stats", get(healer_stats))
        .route("/api/slo", get(slo))
        .route("/api/healing", get(super::healing::status))
        .route("/api/alerts/silences", get(super::alerts::list))
        .route("/api/incidents", get(super::incidents::list))
        .route("/api/incidents/{id}", get(super::incidents::detail))
        .route("/api/guardian/probes", get(super::probes::list))
        .route("/api/guardian/probes/{id}", get(super::probes::detail))
        .route("/api/guardian/playbooks", get(super::playbooks::list))
        .route("/api/guardian/playbooks/{id}", get(super::playbooks::detail))
        .route("/api/guardian/runs/{id}", get(super::playbooks::run_record))
        .route("/api/guardian/overrides", get(super::playbooks::overrides))
        .route("/api/audit/verify", get(super::governance::audit_verify))
        .route("/api/governance/audit", get(super::governance::audit_query))
        .route("/api/governance/audit/export", get(super::governance::audit_export))
        .route("/metrics", get(metrics))
        .route("/api/governance/approvals", get(super::governance::approvals))
        .route("/api/governance/approvals/{id}", get(super::governance::approval))
        .route_layer(from_fn_with_state(app.clone(), super::auth::reads));
    let operate = Router::new()
        .route("/api/services/{name}/{op}", post(super::governance::service_action))
        .route("/api/guardian/playbooks/{id}/run", post(super::playbooks::run))
        .route("/api/guardian/runs/{id}/rollback", post(super::playbooks::rollback))
        .route("/api/alerts/silences", post(super::alerts::create))
        .route("/api/alerts/silences/{id}", axum::routing::delete(super::alerts::expire))
        .route("/api/healing/pause", post(super::healing::pause))
        .route("/api/healing/resume", post(super::healing::resume))
        .route("/api/incidents/{id}/{verb}", post(super::healing::incident_action))
        .route_layer(from_fn_with_state((app.clone(), Role::Operator), super::auth::needs));
    let approve = Router::new()
        .route("/api/governance/approvals/{id}/{verb}", post(super::governance::decide))
        .route_layer(from_fn_with_state((app.clone(), Role::Approver), super::auth::needs));
    let admin = Router::new()
        .route("/api/debug/crash/{*path}", post(crash))
        .route("/api/audit/retire", post(super::governance::audit_retire))
        .route_layer(from_fn_with_state((app.clone(), Role::Admin), super::auth::needs));
    Router::new()
        .merge(open)
        .merge(reads)
        .merge(operate)
        .merge(approve)
        .merge(admin)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(app)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when warden is ready to be relied on, 503 with every reason when not.
async fn readyz(State(app): State<AppState>) -> Response {
    let reasons = app.not_ready();
    if reasons.is_empty() {
        Json(json!({ "ready": true })).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "reasons": reasons }))).into_response()
    }
}

async fn status(State(app): State<AppState>) -> Json<Value> {
    let v = &app.views;
    Json(json!({
        "node": {
            "name": v.config.get().name,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_ms": app.started.elapsed().as_millis() as u64,
            "data_dir": v.data_dir.root().display().to_string(),
            "ready": app.ready(),
        },
        "services": v.services.snapshot(),
        "actors": v.registry.snapshot(),
        "probes": v.probes.snapshot(),
        "healing": super::healing::view(&app),
    }))
}

/// Each service level objective: value, target, alert threshold, error budget left, burn
/// rates per window and the burn-rate rules firing, as the SLO tracker last judged them.
async fn slo(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some((at, statuses)) = app.views.slos.get() else {
        return Err(ApiError::Unavailable("the objectives are not judged yet; try again in a few seconds".into()));
    };
    Ok(Json(json!({
        "judged_at": rfc3339(at),
        "window": warden_core::slo::BurnRule::window_name(warden_core::slo::SLO_WINDOW_MS),
        "slos": statuses,
    })))
}

/// The last 5 healing runs, MTTR and success rate — from the store, so they survive a
/// restart of warden.
async fn healer_stats(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let healing = app.views.config.get().healing;
    let stats = app.views.store.healer_stats(5, healing.mttr_window).await?;
    let last_runs: Vec<Value> = stats
        .last_runs
        .iter()
        .map(|(r, incident)| {
            json!({
                "run_id": r.run_id,
                "playbook": r.playbook,
                "target": r.target,
                "outcome": r.outcome,
                "started_unix_ms": r.started_unix_ms,
                "started_at": rfc3339(r.started_unix_ms),
                "duration_ms": r.duration_ms(),
                "incident_id": r.incident_id,
                "failure_mode": incident.as_ref().map(|i| i.mode),
                "mttr_ms": incident.as_ref().and_then(|i| i.mttr()).map(|(ms, _)| ms),
                "mttr_from": incident.as_ref().and_then(|i| i.mttr()).map(|(_, from)| from),
                "steps": r.steps,
                "detail": r.detail,
                "retry_at_unix_ms": r.retry_at_unix_ms,
                "retry_at": r.retry_at_unix_ms.map(rfc3339),
                "incident_status": incident.as_ref().map(|i| i.status),
                "findings": incident.as_ref().map(|i| i.findings),
                "last_finding_unix_ms": incident.as_ref().and_then(|i| i.last_finding_unix_ms),
            })
        })
        .collect();
    let s = stats.summary;
    Ok(Json(json!({
        "last_runs": last_runs,
        "mttr": {
            "rolling_avg_ms": s.rolling_mttr_ms,
            "window": s.window,
            "limit_ms": healing.mttr_alert.as_millis() as u64,
        },
        "success_rate_pct": s.success_rate_pct,
        "incidents": { "resolved": s.resolved, "failed": s.failed, "open": s.open, "cleared": s.cleared },
        "per_mode": stats.per_mode,
    })))
}

/// Prometheus text format by default; OpenMetrics when the scraper asks for it.
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let v = &app.views;
    let blocked: Vec<&str> = v.healing_blocked().iter().map(|b| b.reason).collect();
    v.metrics.healing_blocked_now(&blocked);
    let text = v.metrics.scrape(&v.services, &v.probes, wants_openmetrics);
    let ctype = if wants_openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    let text = text.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, ctype)], text).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CrashParams {
    /// Stall this long in the handler before the panic.
    #[serde(default)]
    after_ms: u64,
}

/// Fault injection: make a pillar actor panic (builds with the `fault-injection` feature,
/// started with `--enable-fault-injection`; otherwise 403).
async fn crash(
    State(app): State<AppState>,
    Path(path): Path<String>,
    params: Result<Query<CrashParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if !app.fault_injection {
        return Err(ApiError::Forbidden("fault injection is disabled (start with --enable-fault-injection)".into()));
    }
    if params.after_ms > 60_000 {
        return Err(ApiError::BadRequest("after_ms must be at most 60000".into()));
    }
    fault::crash(&app.addrs, &path, Duration::from_millis(params.after_ms)).map_err(|e| match e {
        FaultError::NotBuilt => ApiError::Forbidden(e.to_string()),
        FaultError::UnknownTarget(..) => ApiError::BadRequest(e.to_string()),
        FaultError::NotRunning(_) => ApiError::Unavailable(e.to_string()),
    })?;
    Ok(Json(json!({ "crashed": path })))
}
