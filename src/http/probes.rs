//! `GET /api/guardian/probes` and `GET /api/guardian/probes/{id}`: every probe's state,
//! last result, last failure while it persists, latency percentiles (HDR), and one probe's
//! recent checks. Read from the probe board and the config; no actor is asked.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use warden_actors::guardian::probe_board::ProbeSummary;
use warden_core::config::{Layer, ProbeSpec};
use warden_core::probe::ProbeState;
use warden_core::probe_history::CheckRecord;
use warden_core::time::rfc3339;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFilter {
    layer: Option<Layer>,
    target: Option<String>,
    state: Option<ProbeState>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailParams {
    /// Recent checks to return, newest first (default and most: all kept, 100).
    limit: Option<usize>,
}

pub async fn list(
    State(app): State<AppState>,
    filter: Result<Query<ListFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(f) = filter.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let config = app.views.config.get();
    let probes: Vec<Value> = app
        .views
        .probes
        .summaries()
        .iter()
        .filter(|p| f.layer.is_none_or(|l| p.status.layer == l))
        .filter(|p| f.target.as_deref().is_none_or(|t| p.status.target.as_str() == t))
        .filter(|p| f.state.is_none_or(|s| p.status.state == s))
        .map(|p| probe_json(p, config.probes.iter().find(|s| s.name == p.status.name)))
        .collect();
    Ok(Json(json!({ "probes": probes })))
}

pub async fn detail(
    State(app): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<DetailParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (summary, recent) =
        app.views.probes.detail(&id).ok_or_else(|| ApiError::NotFound(format!("no probe `{id}`")))?;
    let config = app.views.config.get();
    let mut v = probe_json(&summary, config.probes.iter().find(|s| s.name == id));
    let recent: Vec<Value> = recent.iter().take(params.limit.unwrap_or(usize::MAX)).map(record_json).collect();
    v["recent"] = Value::Array(recent);
    Ok(Json(v))
}

fn probe_json(p: &ProbeSummary, spec: Option<&ProbeSpec>) -> Value {
    let s = &p.status;
    json!({
        "id": s.name,
        "layer": s.layer,
        "target": s.target,
        "kind": s.kind,
        "method": s.method,
        "interval_ms": spec.map(|s| s.interval.as_millis() as u64),
        "timeout_ms": spec.map(|s| s.timeout.as_millis() as u64),
        "failure_threshold": spec.map(|s| s.failure_threshold),
        "success_threshold": spec.map(|s| s.success_threshold),
        "state": s.state,
        "warning": s.warning,
        "unsupported": s.unsupported,
        "last_result": p.last.as_ref().map(record_json),
        "last_failure": s.last_failure,
        "consecutive_failures": s.consecutive_failures,
        "failing_since_unix_ms": s.failing_since_unix_ms,
        "failing_since": s.failing_since_unix_ms.map(rfc3339),
        "last_success_unix_ms": s.last_success_unix_ms,
        "last_success": s.last_success_unix_ms.map(rfc3339),
        "checks": s.checks,
        "failures": s.failures,
        "latency_ms": {
            "count": p.latency.count,
            "p50": p.latency.p50_ms,
            "p99": p.latency.p99_ms,
            "max": p.latency.max_ms,
        },
    })
}

fn record_json(r: &CheckRecord) -> Value {
    json!({
        "at_unix_ms": r.at_unix_ms,
        "at": rfc3339(r.at_unix_ms),
        "result": r.result,
        "latency_ms": r.latency_ms,
        "failure": r.failure,
        "warning": r.warning,
        "unsupported": r.unsupported,
    })
}
