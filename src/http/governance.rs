//! The governance API: the audit trail (verify, query with filters and cursor paging,
//! JSONL export), read from the store with the audit key and checkpoints from their files;
//! the approval queue (list, approve, reject); and operator actions on services, which go
//! through the same gatekeeper as the node's own.

use super::AppState;
use super::error::ApiError;
use axum::Extension;
use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warden_actors::guardian::executor::{OperatorOutcome, OperatorRequest};
use warden_core::approval::{Approval, ApprovalStatus, Origin};
use warden_core::audit::{AuditActor, AuditFilter, DecisionKind, EntryKind, OutcomeKind};
use warden_core::auth::Caller;
use warden_core::config::ServiceName;
use warden_core::playbook::Primitive;

/// Entries per page at most.
const MAX_PAGE: usize = 1000;
/// Entries one export answers at most (page with `from`).
const MAX_EXPORT: usize = 100_000;
/// The header of a cut export that names where the next page starts.
pub const NEXT_FROM: &str = "x-warden-next-from";

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
    let root = app.views.data_dir.root().to_path_buf();
    let (result, unsealed) =
        warden_actors::governance::seal::check(&app.views.store, &root, &files, q.from, q.to).await?;
    Ok(match result {
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
struct RetireBody {
    chain: String,
    reason: String,
}

/// `POST /api/audit/retire` (admin): an earlier chain of this data dir is gone on purpose;
/// answers whether the node's chain is trusted then.
pub async fn audit_retire(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: RetireBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body must be {{\"chain\": ID, \"reason\": \"...\"}}: {e}")))?;
    if b.reason.trim().is_empty() || b.chain.trim().is_empty() {
        return Err(ApiError::BadRequest("chain and reason must not be empty".into()));
    }
    let still = app.addrs.audit.retire(b.chain.clone(), caller.name.clone(), b.reason).await.map_err(|e| match e {
        warden_actors::governance::audit_writer::AppendError::Refused(_) => ApiError::Conflict(e.to_string()),
        _ => ApiError::Unavailable(e.to_string()),
    })?;
    Ok(Json(json!({ "retired": b.chain, "trusted": still.is_none(), "reason": still })))
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

/// The entries `from..=to` as JSON lines, oldest first: about 100 000 per answer at most,
/// with `x-warden-next-from` naming the next `from` when there are more.
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
    // Cut at the cap: the header says where the next answer starts (the CLI follows it).
    let more = n >= MAX_EXPORT && q.to.is_none_or(|t| from <= t);
    let mut resp = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    if more && let Ok(v) = header::HeaderValue::from_str(&from.to_string()) {
        resp.headers_mut().insert(NEXT_FROM, v);
    }
    Ok(resp)
}

// --- approvals and operator actions -------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// The optional `{"reason": "..."}` body.
pub fn reason_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let b: ReasonBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body must be {{\"reason\": \"...\"}}: {e}")))?;
    Ok(b.reason.filter(|r| !r.trim().is_empty()))
}

pub fn approval_json(a: &Approval) -> Value {
    let r = &a.request;
    json!({
        "id": a.id,
        "status": a.status,
        "action": r.action,
        "tier": r.tier.get(),
        "target": r.target,
        "plan": a.plan,
        // Exactly what an approval allows: processes by pid, start time and command line,
        // files and dirs by path. A different set when it runs is asked again.
        "touches": r.touches,
        "rationale": r.rationale,
        "origin": a.origin,
        "requested_by": match &a.origin {
            Origin::Operator { name } => name.clone(),
            Origin::Incident { incident_id, .. } => format!("incident {incident_id}"),
        },
        "incident_id": r.incident_id,
        "run_id": r.run_id,
        "required": a.required,
        "approvals": a.approvals(),
        "votes": a.votes.iter().map(|v| json!({
            "by": v.by,
            "approve": v.approve,
            "reason": v.reason,
            "at_unix_ms": v.at_unix_ms,
            "at": warden_core::time::rfc3339(v.at_unix_ms),
        })).collect::<Vec<_>>(),
        "requested_unix_ms": a.requested_unix_ms,
        "requested_at": warden_core::time::rfc3339(a.requested_unix_ms),
        "expires_unix_ms": a.expires_unix_ms,
        "expires_at": warden_core::time::rfc3339(a.expires_unix_ms),
        "closed_unix_ms": a.closed_unix_ms,
        "audit_seq": a.audit_seq,
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsParams {
    /// `pending` (default) or `all` (the newest 200).
    status: Option<String>,
}

pub async fn approvals(
    State(app): State<AppState>,
    q: Result<Query<ApprovalsParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let list = match q.status.as_deref().unwrap_or("pending") {
        "pending" => app.views.store.pending_approvals().await?,
        "all" => app.views.store.recent_approvals(200).await?,
        other => return Err(ApiError::BadRequest(format!("status `{other}`: pending or all"))),
    };
    Ok(Json(json!({ "approvals": list.iter().rev().map(approval_json).collect::<Vec<_>>() })))
}

pub async fn approval(State(app): State<AppState>, Path(id): Path<u64>) -> Result<Json<Value>, ApiError> {
    let a = app.views.store.approval(id).await?.ok_or_else(|| ApiError::NotFound(format!("no approval {id}")))?;
    Ok(Json(approval_json(&a)))
}

/// `approve` or `reject`; an approved operator's request then runs for that operator.
pub async fn decide(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, verb)): Path<(u64, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let approve = match verb.as_str() {
        "approve" => true,
        "reject" => false,
        other => return Err(ApiError::NotFound(format!("no approval action `{other}` (approve or reject)"))),
    };
    let reason = reason_of(&body)?.unwrap_or_default();
    use warden_actors::governance::approval_queue::ApprovalOpError as E;
    let a = app.addrs.approvals.decide(id, caller, approve, reason).await.map_err(|e| match e {
        E::NotFound(_) => ApiError::NotFound(e.to_string()),
        E::Rule(warden_core::approval::ApprovalError::NoReason) => ApiError::BadRequest(e.to_string()),
        E::Rule(_) => ApiError::Conflict(e.to_string()),
        E::NotAnApprover(_) => ApiError::Forbidden(e.to_string()),
        E::Unavailable(_) | E::Store(_) | E::Audit(_) => ApiError::Unavailable(e.to_string()),
    })?;
    let mut body = approval_json(&a);
    if let (ApprovalStatus::Approved, Origin::Operator { name }) = (a.status, &a.origin) {
        let op = operator_primitive(&a.request.action).zip(ServiceName::parse(&a.request.target).ok()).map(
            |(primitive, target)| OperatorRequest {
                actor: AuditActor::User(name.clone()),
                primitive,
                target,
                reason: format!("approved (approval {id})"),
            },
        );
        if let Some(op) = op {
            let outcome = app.addrs.executor.operate(op).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
            body["ran"] = outcome_json(&outcome).1;
        }
    }
    Ok(Json(body).into_response())
}

/// The primitive an operator route or an approved operator request names.
fn operator_primitive(action: &str) -> Option<Primitive> {
    match action {
        "restart_service" | "restart" => Some(Primitive::RestartService { force: false }),
        "stop_service" | "stop" => Some(Primitive::StopService),
        "start_service" | "start" => Some(Primitive::StartService),
        "release_service" | "release" => Some(Primitive::ReleaseService),
        _ => None,
    }
}

/// An operator outcome as an HTTP status and body.
fn outcome_json(o: &OperatorOutcome) -> (StatusCode, Value) {
    match o {
        OperatorOutcome::Done { result: Ok(detail), audit_seq } => {
            (StatusCode::OK, json!({ "status": "done", "detail": detail, "audit_seq": audit_seq }))
        }
        OperatorOutcome::Done { result: Err(detail), audit_seq } => (
            StatusCode::CONFLICT,
            json!({ "error": { "code": "failed", "message": detail }, "status": "failed", "audit_seq": audit_seq }),
        ),
        OperatorOutcome::Denied { reason, audit_seq } => (
            StatusCode::FORBIDDEN,
            json!({ "error": { "code": "denied", "message": reason }, "status": "denied", "audit_seq": audit_seq }),
        ),
        OperatorOutcome::Held { reason, retry_at_unix_ms, audit_seq } => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "error": { "code": "held", "message": reason },
                "status": "held",
                "retry_at_unix_ms": retry_at_unix_ms,
                "retry_at": warden_core::time::rfc3339(*retry_at_unix_ms),
                "audit_seq": audit_seq,
            }),
        ),
        OperatorOutcome::PendingApproval { reason, approval_id, audit_seq } => (
            StatusCode::ACCEPTED,
            json!({ "status": "pending_approval", "approval_id": approval_id, "reason": reason, "audit_seq": audit_seq }),
        ),
    }
}

/// `POST /api/services/{name}/{op}`: restart, stop, start or release a service, as the
/// calling operator, through the gatekeeper like any autonomous action.
pub async fn service_action(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, op)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    match op.as_str() {
        "unmonitor" => {
            return super::healing::unmonitor(&app, &caller, &name, &body).await.map(IntoResponse::into_response);
        }
        "monitor" => {
            return super::healing::monitor(&app, &caller, &name, &body).await.map(IntoResponse::into_response);
        }
        _ => {}
    }
    let primitive = match op.as_str() {
        "restart" | "stop" | "start" | "release" => operator_primitive(&op),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::NotFound(format!("no service action `{op}` (restart, stop, start, release, unmonitor, monitor)"))
    })?;
    let target = ServiceName::parse(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if app.views.services.state_of(target.as_str()).is_none() {
        return Err(ApiError::NotFound(format!("no service `{name}`")));
    }
    let reason = reason_of(&body)?.unwrap_or_else(|| "no reason given".into());
    super::hold_for_operator(&app, &target, &caller.name);
    let op = OperatorRequest { actor: AuditActor::User(caller.name), primitive, target, reason };
    let outcome = app.addrs.executor.operate(op).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let (status, body) = outcome_json(&outcome);
    let mut resp = (status, Json(body)).into_response();
    if let OperatorOutcome::Held { retry_at_unix_ms, .. } = outcome {
        let secs = retry_at_unix_ms.saturating_sub(warden_core::time::now_unix_ms()).div_ceil(1000);
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    Ok(resp)
}
