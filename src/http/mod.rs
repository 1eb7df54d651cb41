//! warden's own HTTP API: health, status, healer stats, audit verification, metrics.
//!
//! Handlers read the node's [`Views`] (snapshots and the store); they never wait on a
//! pillar actor, so the API answers while a pillar restarts.

pub mod alerts;
pub mod auth;
pub mod error;
pub mod governance;
pub mod healing;
pub mod incidents;
pub mod playbooks;
pub mod probes;
pub mod routes;
pub mod serve;
pub mod server;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;
use warden_actors::node::{Addrs, Views};
use warden_actors::registry::ActorState;
use warden_core::config::HttpLimits;
use warden_core::service::ServiceState;

/// The http subtree's path.
pub const PATH: &str = "http";

/// What every handler can see.
#[derive(Clone)]
pub struct AppState {
    pub views: Views,
    /// Only for fault injection (crash an actor on command).
    pub addrs: Addrs,
    pub started: Instant,
    /// Bound once at start; each (re)start of the server actor serves a clone of it.
    pub listener: Arc<TcpListener>,
    pub fault_injection: bool,
    /// The server's limits, capped to the descriptors warden has.
    pub limits: HttpLimits,
    /// Who may call it.
    pub auth: auth::Auth,
    ready_latch: Arc<AtomicBool>,
    shutting_down: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(
        views: Views,
        addrs: Addrs,
        listener: Arc<TcpListener>,
        fault_injection: bool,
        limits: HttpLimits,
        auth: auth::Auth,
    ) -> Self {
        Self {
            limits,
            auth,
            views,
            addrs,
            started: Instant::now(),
            listener,
            fault_injection,
            ready_latch: Arc::default(),
            shutting_down: Arc::default(),
        }
    }

    /// Why warden is not ready, if it is not: shutting down; still starting (not every
    /// service has been ready once); a required service quarantined (a person must act);
    /// the store degraded (nothing durable can happen); a pillar actor restarting. Ready is the empty list. Later faults of a running
    /// service are the healer's business, not a reason to pull warden out of rotation.
    pub fn not_ready(&self) -> Vec<String> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return vec!["shutting down".into()];
        }
        let services = self.views.services.snapshot();
        let mut reasons = Vec::new();
        if !self.ready_latch.load(Ordering::Relaxed) {
            if self.views.services.all_ready_once() {
                self.ready_latch.store(true, Ordering::Relaxed);
            } else {
                let waiting: Vec<&str> =
                    services.iter().filter(|s| s.state != ServiceState::Running).map(|s| s.name.as_str()).collect();
                reasons.push(format!("starting: waiting for {}", waiting.join(", ")));
            }
        }
        reasons.extend(
            services
                .iter()
                .filter(|s| s.state == ServiceState::Quarantined)
                .map(|s| format!("service `{}` is quarantined", s.name)),
        );
        // Whatever keeps the healer from acting on the whole node: the store, the audit
        // chain, a pause, the breaker, repair turned off.
        reasons.extend(
            self.views
                .healing_blocked()
                .into_iter()
                // Repair turned off in the config is a choice, not a fault: status and
                // metrics say it, readiness does not.
                .filter(|b| b.service.is_none() && b.reason != "disabled")
                .map(|b| match b.reason {
                    "audit_chain" | "store_degraded" => b.detail,
                    _ => format!("automatic repair blocked: {}", b.detail),
                }),
        );
        reasons.extend(
            self.views
                .registry
                .snapshot()
                .into_iter()
                .filter(|a| a.state == ActorState::Stopped)
                .map(|a| format!("`{}` is restarting", a.path)),
        );
        reasons
    }

    /// Whether the API listens on loopback only (reads may then be open: see `api_reads`).
    pub fn listener_is_loopback(&self) -> bool {
        self.listener.local_addr().is_ok_and(|a| a.ip().is_loopback())
    }

    pub fn ready(&self) -> bool {
        self.not_ready().is_empty()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}

/// An operator acts on `service`: automatic repair of it waits `healing.operator_hold_ms`,
/// so the healer does not undo or repeat what a person is doing there.
pub fn hold_for_operator(app: &AppState, service: &warden_core::config::ServiceName, by: &str) {
    let hold = app.views.config.get().healing.operator_hold;
    if hold.is_zero() {
        return;
    }
    let now = warden_core::time::now_unix_ms();
    let ((), unkept) = app.views.holds.update_kept(|h| {
        h.set(warden_core::holds::Hold {
            kind: warden_core::holds::HoldKind::Operator,
            service: Some(service.clone()),
            since_unix_ms: now,
            until_unix_ms: Some(now + hold.as_millis() as u64),
            by: by.to_string(),
            reason: "an operator acted on it".into(),
        })
    });
    if let Some(e) = unkept {
        tracing::warn!(service = service.as_str(), error = e, "the operator's hold is not kept across a restart");
    }
}
