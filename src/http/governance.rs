//! The governance API: the audit trail (verify, query with filters and cursor paging,
//! JSONL export). Read from the store; the audit key and checkpoints from their files.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warden_actors::governance::seal::AuditSeal;
use warden_core::audit::{AuditFilter, DecisionKind, EntryKind, OutcomeKind};

/// Entries per page at most.
const MAX_PAGE: usize = 1000;
/// Entries one export answers at most (page with `from`).
const MAX_EXPORT: usize = 100_000;

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::BadRequest(e.body_text())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    from: Option<u64>,
    to: Option<u64>,
}

/// The chain checked with the node's audit key and checkpoints: 200 with what was checked,
/// 409 naming the first bad entry or the missing tail.
pub async fn audit_verify(
    State(app): State<AppState>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    if let (Some(f), Some(t)) = (q.from, q.to)
        && f > t
    {
        return Err(ApiError::BadRequest(format!("from {f} is after to {t}")));
    }
    let files = app.views.config.get().audit.clone();
    let (key, checkpoints, unsealed) = match AuditSeal::read(&files) {
        Ok(seal) => match seal.checkpoints() {
            Ok(c) => (Some(seal.key().clone()), c, None),
            Err(e) => (Some(seal.key().clone()), Vec::new(), Some(e.to_string())),
        },
        Err(e) => (None, Vec::new(), Some(e.to_string())),
    };
    Ok(match app.views.store.verify_chain(key, checkpoints, q.from, q.to).await? {
        Ok(v) => Json(json!({
            "ok": true,
            "first": v.first,
            "last": v.last,
            "verified": v.count(),
            "sealed": v.sealed,
            "checkpoints": v.checkpoints,
            "unsealed": unsealed,
        }))
        .into_response(),
        Err(b) => (
            StatusCode::CONFLICT,
            Json(json!({ "ok": false, "position": b.position, "seq": b.seq, "reason": b.reason })),
        )
            .into_response(),
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    /// RFC 3339, or `since_unix_ms`.
    since: Option<String>,
    until: Option<String>,
    since_unix_ms: Option<u64>,
    until_unix_ms: Option<u64>,
    tier: Option<u8>,
    action: Option<String>,
    kind: Option<EntryKind>,
    decision: Option<DecisionKind>,
    outcome: Option<OutcomeKind>,
    actor: Option<String>,
    target: Option<String>,
    /// The `next_cursor` of the page before.
    cursor: Option<u64>,
    limit: Option<usize>,
}

fn unix_ms(text: &str, name: &str) -> Result<u64, ApiError> {
    let t: jiff::Timestamp =
        text.parse().map_err(|e| ApiError::BadRequest(format!("{name} `{text}` is not an RFC 3339 time: {e}")))?;
    u64::try_from(t.as_millisecond()).map_err(|_| ApiError::BadRequest(format!("{name} is before 1970")))
}

/// Entries newest first, filtered, a page at a time: `next_cursor` (when present) asks
/// for the next page.
pub async fn audit_query(
    State(app): State<AppState>,
    q: Result<Query<QueryParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}")));
    }
    if q.tier.is_some_and(|t| !(1..=4).contains(&t)) {
        return Err(ApiError::BadRequest("tier must be 1 to 4".into()));
    }
    let since = match (&q.since, q.since_unix_ms) {
        (Some(t), _) => Some(unix_ms(t, "since")?),
        (None, ms) => ms,
    };
    let until = match (&q.until, q.until_unix_ms) {
        (Some(t), _) => Some(unix_ms(t, "until")?),
        (None, ms) => ms,
    };
    let filter = AuditFilter {
        since_unix_ms: since,
        until_unix_ms: until,
        tier: q.tier,
        action: q.action,
        kind: q.kind,
        decision: q.decision,
        outcome: q.outcome,
        actor: q.actor,
        target: q.target,
    };
    let (entries, next) = app.views.store.audit_query(filter, q.cursor, limit).await?;
    let entries: Vec<Value> = entries.iter().map(|e| e.to_json()).collect();
    Ok(Json(json!({ "entries": entries, "next_cursor": next })))
}

/// The entries `from..=to` as JSON lines, oldest first (at most 100 000 per answer).
pub async fn audit_export(
    State(app): State<AppState>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let mut from = q.from.unwrap_or(1).max(1);
    let mut body = String::new();
    let mut n = 0;
    'pages: while n < MAX_EXPORT {
        let page = app.views.store.audit_range(from, 1000).await?;
        let Some(last) = page.last().map(|e| e.entry.seq) else { break };
        for s in &page {
            if q.to.is_some_and(|t| s.entry.seq > t) {
                break 'pages;
            }
            body.push_str(&s.to_json().to_string());
            body.push('\n');
            n += 1;
        }
        from = last + 1;
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
