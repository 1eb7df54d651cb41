//! The routes and their handlers.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use warden_actors::context::names;
use warden_actors::gatekeeper::GateMsg;
use warden_actors::incident_manager::IncidentMsg;
use warden_actors::rpc;
use warden_actors::service_supervisor::ServiceMsg;
use warden_actors::store::Store;
use warden_core::incident::summarize;

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/status", get(status))
        .route("/api/guardian/healer/stats", get(healer_stats))
        .route("/api/audit/verify", get(audit_verify))
        .route("/metrics", get(metrics))
        .route("/api/debug/crash/{*path}", post(crash))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(app)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(app): State<AppState>) -> Response {
    if app.ready() {
        Json(json!({ "ready": true })).into_response()
    } else {
        let waiting: Vec<String> = app
            .ctx
            .services
            .snapshot()
            .into_iter()
            .filter(|s| s.state != warden_actors::service_table::ServiceState::Running)
            .map(|s| s.name)
            .collect();
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "not_running": waiting }))).into_response()
    }
}

async fn status(State(app): State<AppState>) -> Json<Value> {
    let ctx = &app.ctx;
    Json(json!({
        "node": {
            "name": ctx.config.node.name,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_ms": app.started.elapsed().as_millis() as u64,
            "data_dir": ctx.data_dir.display().to_string(),
            "ready": app.ready(),
        },
        "services": ctx.services.snapshot(),
        "actors": ctx.registry.snapshot(),
        "probes": ctx.probes.snapshot(),
    }))
}

/// Runs a store read off the async threads.
async fn read_store<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(&Store) -> Result<T, warden_actors::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = app.ctx.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The last 5 healing runs, MTTR and success rate — from the store, so they survive a
/// restart of warden.
async fn healer_stats(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let window = app.ctx.config.healing.mttr_window;
    let (runs, incidents) = read_store(&app, |s| Ok((s.recent_runs(5)?, s.recent_incidents(10_000)?))).await?;
    let summary = summarize(&incidents, window);
    let last_runs: Vec<Value> = runs
        .iter()
        .rev()
        .map(|r| {
            let incident = r.incident_id.and_then(|id| incidents.iter().find(|i| i.id == id));
            json!({
                "run_id": r.run_id,
                "playbook": r.playbook,
                "target": r.target,
                "outcome": r.outcome,
                "started_unix_ms": r.started_unix_ms,
                "duration_ms": r.duration_ms(),
                "incident_id": r.incident_id,
                "failure_mode": incident.map(|i| i.mode),
                "mttr_ms": incident.and_then(|i| i.mttr_ms()),
                "steps": r.steps,
                "detail": r.detail,
            })
        })
        .collect();
    Ok(Json(json!({
        "last_runs": last_runs,
        "mttr": {
            "rolling_avg_ms": summary.rolling_mttr_ms,
            "window": summary.window,
            "limit_ms": app.ctx.config.healing.mttr_alert_ms,
        },
        "success_rate_pct": summary.success_rate_pct,
        "incidents": { "resolved": summary.resolved, "failed": summary.failed, "open": summary.open },
    })))
}

async fn audit_verify(State(app): State<AppState>) -> Result<Response, ApiError> {
    let result = read_store(&app, |s| {
        let mut entries = Vec::new();
        for e in s.audit_entries() {
            entries.push(e?);
        }
        Ok(warden_core::audit::verify(entries))
    })
    .await?;
    Ok(match result {
        Ok(n) => Json(json!({ "ok": true, "verified": n })).into_response(),
        Err(b) => (
            StatusCode::CONFLICT,
            Json(json!({ "ok": false, "position": b.position, "seq": b.seq, "reason": b.reason })),
        )
            .into_response(),
    })
}

/// Prometheus text format by default; OpenMetrics when the scraper asks for it.
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let m = &app.ctx.metrics;
    let (ctype, text) = if wants_openmetrics {
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", m.encode_openmetrics())
    } else {
        ("text/plain; version=0.0.4; charset=utf-8", m.encode_prometheus())
    };
    let text = text.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, ctype)], text).into_response())
}

/// Fault injection: make a pillar actor panic (only with `--enable-fault-injection`).
async fn crash(State(app): State<AppState>, Path(path): Path<String>) -> Result<Json<Value>, ApiError> {
    if !app.fault_injection {
        return Err(ApiError::Forbidden("fault injection is disabled (start with --enable-fault-injection)".into()));
    }
    let name = app.ctx.name(&path);
    let sent = match path.as_str() {
        names::SERVICE_SUPERVISOR => rpc::tell(&name, ServiceMsg::Crash),
        names::GATEKEEPER => rpc::tell(&name, GateMsg::Crash),
        names::INCIDENT_MANAGER => rpc::tell(&name, IncidentMsg::Crash),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "cannot crash `{path}`: one of {}, {}, {}",
                names::SERVICE_SUPERVISOR,
                names::GATEKEEPER,
                names::INCIDENT_MANAGER
            )));
        }
    };
    sent.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({ "crashed": path })))
}
