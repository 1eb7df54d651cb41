//! Operators in the loop: `GET /api/healing` (what blocks or holds automatic repair now),
//! pause and resume (the node's or one service's), maintenance (`unmonitor` / `monitor`),
//! and an incident acknowledged or closed. Each change is on the audit chain before it is
//! answered, with who asked and why.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Value, json};
use warden_actors::healing::incident_manager::IncidentError;
use warden_core::audit::{AuditActor, AuditRecord, DecisionKind, EntryKind, OutcomeKind};
use warden_core::auth::Caller;
use warden_core::config::ServiceName;
use warden_core::holds::{Hold, HoldKind};
use warden_core::incident::OperatorNote;
use warden_core::time::rfc3339;

/// The longest pause or maintenance a request may set with an end (30 days); a longer
/// `for_ms` is refused with 400, and leaving it out sets one that lasts until lifted.
const MAX_FOR_MS: u64 = 30 * 24 * 3_600_000;

/// Everything that blocks or holds automatic repair now.
pub async fn status(State(app): State<AppState>) -> Json<Value> {
    Json(view(&app))
}

pub fn view(app: &AppState) -> Value {
    let blocked: Vec<Value> = app
        .views
        .healing_blocked()
        .into_iter()
        .map(|b| json!({ "reason": b.reason, "service": b.service, "detail": b.detail }))
        .collect();
    let holds: Vec<Value> = app.views.holds.active().iter().map(hold_json).collect();
    let node_wide = app.views.healing_blocked().iter().any(|b| b.service.is_none());
    json!({
        "automatic_repair": if node_wide { "blocked" } else if blocked.is_empty() { "on" } else { "partly_held" },
        "blocked": blocked,
        "holds": holds,
    })
}

pub fn hold_json(h: &Hold) -> Value {
    json!({
        "kind": h.kind,
        "service": h.service,
        "since": rfc3339(h.since_unix_ms),
        "until": h.until_unix_ms.map(rfc3339),
        "by": h.by,
        "reason": h.reason,
        "detail": h.describe(),
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// One service; none: the whole node.
    #[serde(default)]
    service: Option<String>,
    /// How long; none: until lifted.
    #[serde(default)]
    for_ms: Option<u64>,
    reason: String,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("the body must be {shape}: {e}")))
}

fn reason_required(reason: &str) -> Result<String, ApiError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(ApiError::BadRequest("a reason is required (it goes into the audit trail)".into()));
    }
    Ok(r.to_string())
}

fn service_of(app: &AppState, name: &str) -> Result<ServiceName, ApiError> {
    let s = ServiceName::parse(name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if app.views.services.state_of(s.as_str()).is_none() {
        return Err(ApiError::NotFound(format!("no service `{name}`")));
    }
    Ok(s)
}

fn until(for_ms: Option<u64>, now: u64) -> Result<Option<u64>, ApiError> {
    match for_ms {
        Some(0) => Err(ApiError::BadRequest("for_ms must be positive (leave it out for no end)".into())),
        Some(ms) if ms > MAX_FOR_MS => {
            Err(ApiError::BadRequest(format!("for_ms must be at most {MAX_FOR_MS} (30 days); leave it out for no end")))
        }
        Some(ms) => Ok(Some(now + ms)),
        None => Ok(None),
    }
}

/// An operator's word on healing, on the chain before it takes effect.
async fn audit(app: &AppState, by: &str, action: &str, target: &str, rationale: &str) -> Result<u64, ApiError> {
    let sealed = app
        .addrs
        .audit
        .append(record(by, action, target, rationale))
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot audit it, so it was not done: {e}")))?;
    Ok(sealed.entry.seq)
}

/// Puts on the trail that a request audited as asked was not carried out, and why.
async fn undone(app: &AppState, mut record: AuditRecord, why: &str) {
    (record.decision, record.outcome, record.detail) =
        (DecisionKind::Deny, Some(OutcomeKind::Failed), format!("not done: {why}"));
    if let Err(e) = app.addrs.audit.append(record).await {
        tracing::warn!(error = %e, "cannot audit that a request was not carried out");
    }
}

fn record(by: &str, action: &str, target: &str, rationale: &str) -> AuditRecord {
    AuditRecord {
        kind: EntryKind::Control,
        actor: AuditActor::User(by.to_string()),
        action: action.into(),
        tier: 1,
        target: target.into(),
        rationale: rationale.into(),
        decision: DecisionKind::Allow,
        outcome: Some(OutcomeKind::Succeeded),
        detail: String::new(),
        incident_id: None,
        run_id: None,
    }
}

/// `POST /api/healing/pause`: `{"service": NAME?, "for_ms": N?, "reason": "..."}`.
pub async fn pause(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: HoldBody = body(&bytes, r#"{"service": NAME?, "for_ms": N?, "reason": "..."}"#)?;
    set_hold(&app, &caller, HoldKind::Pause, b.service.as_deref(), b.for_ms, &b.reason).await
}

/// `POST /api/services/{name}/unmonitor`: maintenance, `{"for_ms": N?, "reason": "..."}`.
pub async fn unmonitor(app: &AppState, caller: &Caller, service: &str, bytes: &[u8]) -> Result<Json<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        #[serde(default)]
        for_ms: Option<u64>,
        reason: String,
    }
    let b: B = body(bytes, r#"{"for_ms": N?, "reason": "..."}"#)?;
    set_hold(app, caller, HoldKind::Maintenance, Some(service), b.for_ms, &b.reason).await
}

async fn set_hold(
    app: &AppState,
    caller: &Caller,
    kind: HoldKind,
    service: Option<&str>,
    for_ms: Option<u64>,
    reason: &str,
) -> Result<Json<Value>, ApiError> {
    let reason = reason_required(reason)?;
    let service = service.map(|s| service_of(app, s)).transpose()?;
    let now = warden_core::time::now_unix_ms();
    let hold = Hold {
        kind,
        service: service.clone(),
        since_unix_ms: now,
        until_unix_ms: until(for_ms, now)?,
        by: caller.name.clone(),
        reason: reason.clone(),
    };
    let action = match kind {
        HoldKind::Maintenance => "unmonitor",
        _ => "pause_healing",
    };
    let target = service.as_ref().map_or("node".to_string(), ToString::to_string);
    let seq = audit(app, &caller.name, action, &target, &format!("{}; {reason}", hold.describe())).await?;
    // It holds from now, even if the data dir cannot keep it across a restart (then said).
    let ((), unkept) = app.views.holds.update_kept(|h| h.set(hold.clone()));
    tracing::warn!(by = caller.name, kind = kind.as_str(), target, reason, "alert: {}", hold.describe());
    Ok(Json(json!({
        "hold": hold_json(&hold),
        "audit_seq": seq,
        "healing": view(app),
        "warning": unkept.map(|e| format!("in force, but not kept across a restart of warden: {e}")),
    })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    #[serde(default)]
    service: Option<String>,
    reason: String,
}

/// `POST /api/healing/resume`: `{"service": NAME?, "reason": "..."}`. The node's resume
/// also closes the circuit breaker; a service's lifts its pause and the operator's hold.
pub async fn resume(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: ResumeBody = body(&bytes, r#"{"service": NAME?, "reason": "..."}"#)?;
    let kinds: &[HoldKind] = match b.service {
        None => &[HoldKind::Pause, HoldKind::Breaker],
        Some(_) => &[HoldKind::Pause, HoldKind::Operator],
    };
    lift(&app, &caller, b.service.as_deref(), kinds, "resume_healing", &b.reason).await
}

/// `POST /api/services/{name}/monitor`: out of maintenance, `{"reason": "..."}` (optional).
pub async fn monitor(app: &AppState, caller: &Caller, service: &str, bytes: &[u8]) -> Result<Json<Value>, ApiError> {
    let reason = super::governance::reason_of(bytes)?.unwrap_or_else(|| "back in service".into());
    lift(app, caller, Some(service), &[HoldKind::Maintenance], "monitor", &reason).await
}

async fn lift(
    app: &AppState,
    caller: &Caller,
    service: Option<&str>,
    kinds: &[HoldKind],
    action: &str,
    reason: &str,
) -> Result<Json<Value>, ApiError> {
    let reason = reason_required(reason)?;
    let service = service.map(|s| service_of(app, s)).transpose()?;
    let target = service.as_ref().map_or("node".to_string(), ToString::to_string);
    let lifting: Vec<Hold> =
        app.views.holds.active().into_iter().filter(|h| h.service == service && kinds.contains(&h.kind)).collect();
    if lifting.is_empty() {
        return Err(ApiError::Conflict(format!("nothing to lift: no {} on {target}", names(kinds))));
    }
    let what: Vec<String> = lifting.iter().map(Hold::describe).collect();
    let seq = audit(app, &caller.name, action, &target, &format!("lifts {}; {reason}", what.join("; "))).await?;
    // Past the breaker, the operator asks for the services failing now to be repaired:
    // their failures do not open it again (a new one does).
    let v = &app.views;
    let resumed_over = match (&service, kinds.contains(&HoldKind::Breaker)) {
        (None, true) => warden_actors::holds::failing_roots(&v.config.get(), &v.services, &v.probes, &v.holds),
        _ => Vec::new(),
    };
    let lifted = app.views.holds.update(|h| {
        if !resumed_over.is_empty() {
            h.resumed_over.clone_from(&resumed_over);
            h.calm_since_unix_ms = None;
        }
        h.lift(service.as_ref(), kinds)
    });
    // A lift that cannot be written is not done (the hold stays, here and after a
    // restart); the trail, which said it was asked, says so too.
    let lifted = match lifted {
        Ok(lifted) => lifted,
        Err(e) => {
            undone(app, record(&caller.name, action, &target, &format!("lifts {}; {reason}", what.join("; "))), &e)
                .await;
            return Err(ApiError::Unavailable(format!("the holds could not be written, so nothing was lifted: {e}")));
        }
    };
    tracing::warn!(by = caller.name, target, reason, lifted = what.join("; "), "automatic repair resumed");
    Ok(Json(json!({
        "lifted": lifted.iter().map(hold_json).collect::<Vec<_>>(),
        "audit_seq": seq,
        "healing": view(app),
    })))
}

fn names(kinds: &[HoldKind]) -> String {
    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" or ")
}

/// `POST /api/incidents/{id}/{ack|close}`: `{"reason": "..."}`.
pub async fn incident_action(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, verb)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::BadRequest(format!("incident id `{id}` is not a number")))?;
    if !matches!(verb.as_str(), "ack" | "close") {
        return Err(ApiError::NotFound(format!("no incident action `{verb}` (ack, close)")));
    }
    let reason = super::governance::reason_of(&bytes)?
        .ok_or_else(|| ApiError::BadRequest("a reason is required: {\"reason\": \"...\"}".into()))?;
    let Some(incident) = app.views.store.incident(id).await? else {
        return Err(ApiError::NotFound(format!("no incident {id}")));
    };
    let action = if verb == "ack" { "acknowledge_incident" } else { "close_incident" };
    let rationale = format!("incident {id} ({} on `{}`): {reason}", incident.mode.as_str(), incident.service);
    let note = OperatorNote { by: caller.name.clone(), at_unix_ms: warden_core::time::now_unix_ms(), reason };
    // Checked on the stored incident first, so a request plainly refused leaves no entry;
    // then on the trail, then done by the incident manager (which judges its own, newer
    // copy). A refusal there (a repair began meanwhile) is put on the trail as well.
    let mut check = incident.clone();
    let verdict = if verb == "ack" { check.acknowledge(note.clone()) } else { check.close(note.clone()) };
    verdict.map_err(ApiError::Conflict)?;
    let seq = audit(&app, &caller.name, action, incident.service.as_str(), &rationale).await?;
    let incidents = &app.addrs.incidents;
    let done = if verb == "ack" { incidents.acknowledge(id, note).await } else { incidents.close(id, note).await };
    let incident = match done {
        Ok(incident) => incident,
        // Not answered in time: the request may still be carried out; the trail says
        // nothing it does not know, and the caller reads the incident again.
        Err(e @ IncidentError::Unavailable(_)) => {
            return Err(ApiError::Unavailable(format!(
                "{e}; whether it was done is not known: read incident {id} again"
            )));
        }
        Err(e) => {
            undone(&app, record(&caller.name, action, incident.service.as_str(), &rationale), &e.to_string()).await;
            return Err(match e {
                IncidentError::NoSuchIncident(_) => ApiError::NotFound(e.to_string()),
                IncidentError::Refused(_) => ApiError::Conflict(e.to_string()),
                _ => ApiError::Unavailable(e.to_string()),
            });
        }
    };
    Ok(Json(json!({ "incident": super::incidents::view(&incident), "audit_seq": seq })))
}
