//! `GET /api/incidents` (filtered, newest first) and `GET /api/incidents/{id}` (with its
//! runs): what warden found, why it thinks so, what it tried, and how long it took.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use warden_core::incident::{Incident, IncidentStatus};
use warden_core::mode::FailureMode;
use warden_core::time::rfc3339;

/// Incidents one answer lists at most.
const MAX_LIMIT: usize = 1000;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    status: Option<IncidentStatus>,
    mode: Option<FailureMode>,
    service: Option<String>,
    /// Detected at or after (Unix ms).
    since: Option<u64>,
    limit: Option<usize>,
}

/// One incident as the API shows it: the stored record, with its times in RFC 3339 and its
/// MTTR said both ways (from the fault's onset where known, from detection) and which the
/// headline figure is.
pub fn view(i: &Incident) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("detected_at".into(), json!(rfc3339(i.detected_unix_ms)));
        m.insert("resolved_at".into(), json!(i.resolved_unix_ms.map(rfc3339)));
        m.insert("fault_onset_at".into(), json!(i.fault_onset_unix_ms.map(rfc3339)));
        m.insert("playbooks_tried".into(), json!(i.playbooks()));
        // What a trace backend finds the incident's trace by.
        if let Some(trace_id) = i.trace.as_deref().and_then(|t| t.split('-').nth(1)) {
            m.insert("trace_id".into(), json!(trace_id));
        }
        let (mttr, from) = i.mttr().map_or((None, None), |(ms, from)| (Some(ms), Some(from)));
        m.insert(
            "mttr".into(),
            json!({
                "ms": mttr,
                "from": from,
                "from_detection_ms": i.mttr_ms(),
                "from_onset_ms": i.mttr_from_onset_ms(),
            }),
        );
    }
    v
}

pub async fn list(
    State(app): State<AppState>,
    q: Result<Query<Filter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(f) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = f.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let Filter { status, mode, service, since, .. } = f;
    let keep = move |i: &Incident| {
        status.is_none_or(|s| i.status == s)
            && mode.is_none_or(|m| i.mode == m)
            && service.as_deref().is_none_or(|s| i.service.as_str() == s)
            && since.is_none_or(|t| i.detected_unix_ms >= t)
    };
    let picked: Vec<Value> =
        app.views.store.newest_incidents_where(limit, since, keep).await?.iter().map(view).collect();
    Ok(Json(json!({ "incidents": picked })))
}

pub async fn detail(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::BadRequest(format!("incident id `{id}` is not a number")))?;
    let incident =
        app.views.store.incident(id).await?.ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))?;
    let mut runs = Vec::new();
    for a in &incident.attempts {
        if let Some(r) = app.views.store.run_record(a.run_id).await? {
            runs.push(serde_json::to_value(&r).unwrap_or(Value::Null));
        }
    }
    let mut v = view(&incident);
    if let Value::Object(m) = &mut v {
        m.insert("runs".into(), Value::Array(runs));
    }
    Ok(Json(v))
}
