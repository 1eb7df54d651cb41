//! Alert silences: `GET /api/alerts/silences` (readers), `POST /api/alerts/silences` and
//! `DELETE /api/alerts/silences/{id}` (operators). A silence mutes the alerts whose labels
//! carry all its matchers' values, for its duration: they are told to the log only.

use super::AppState;
use super::error::ApiError;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use warden_actors::healing::silences::SilenceBookError;
use warden_core::alert::Silence;
use warden_core::auth::Caller;
use warden_core::time::{now_unix_ms, rfc3339};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    /// Label name → value, e.g. `{"target": "api", "alertname": "ProbeFailing"}`.
    matchers: BTreeMap<String, String>,
    duration_ms: u64,
    comment: String,
}

fn silence_json(s: &Silence, now: u64) -> Value {
    json!({
        "id": s.id,
        "matchers": s.matchers,
        "starts_at": rfc3339(s.starts_unix_ms),
        "ends_at": rfc3339(s.ends_unix_ms),
        "starts_unix_ms": s.starts_unix_ms,
        "ends_unix_ms": s.ends_unix_ms,
        "active": s.active(now),
        "created_by": s.created_by,
        "comment": s.comment,
    })
}

pub async fn list(State(app): State<AppState>) -> Json<Value> {
    let now = now_unix_ms();
    let all: Vec<Value> = app.views.silences.list(now).iter().map(|s| silence_json(s, now)).collect();
    Json(json!({ "silences": all }))
}

pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: NewSilence = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be {{\"matchers\": {{\"label\": \"value\"}}, \"duration_ms\": N, \"comment\": \"...\"}}: {e}"
        ))
    })?;
    let now = now_unix_ms();
    let s = app.views.silences.add(req.matchers, req.duration_ms, &caller.name, &req.comment, now).map_err(
        |e| match e {
            SilenceBookError::Invalid(e) => ApiError::BadRequest(e.to_string()),
            SilenceBookError::Save(e) => ApiError::Unavailable(format!("cannot save the silence: {e}")),
        },
    )?;
    tracing::warn!(silence = s.id, by = caller.name, matchers = ?s.matchers, until = rfc3339(s.ends_unix_ms), comment = s.comment, "alerts silenced");
    Ok((StatusCode::CREATED, Json(silence_json(&s, now))))
}

pub async fn expire(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::BadRequest(format!("`{id}` is not a silence id")))?;
    let now = now_unix_ms();
    let s = app
        .views
        .silences
        .expire(id, now)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("no silence {id}")))?;
    tracing::info!(silence = id, by = caller.name, "silence ended");
    Ok(Json(silence_json(&s, now)))
}
