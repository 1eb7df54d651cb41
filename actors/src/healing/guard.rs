//! HealingGuard: the node's watch over its own healing.
//!
//! Every [`TICK`] it lifts the holds whose time is over, opens the circuit breaker when
//! more services fail at once than `healing.max_unhealthy` allows (failures a failing
//! dependency explains are not counted: they are that dependency's), and says, once, when
//! automatic repair becomes blocked for the whole node and when it is no longer: a log
//! line and an alert (`WardenHealingBlocked`) per reason. The rules are
//! `warden_core::holds`; the blocks are [`Views::healing_blocked`].

use super::notifier::Notifier;
use crate::addr::{AbortOnDrop, Addr};
use crate::governance::audit_writer::AuditWriter;
use crate::registry::{ActorRegistry, Registration};
use crate::wiring::Views;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeMap;
use std::time::Duration;
use warden_core::alert::{Alert, AlertStatus, Severity};
use warden_core::audit::{AuditActor, AuditRecord, DecisionKind, EntryKind, OutcomeKind};
use warden_core::config::ServiceName;
use warden_core::holds::{Hold, HoldKind, independent_failures};
use warden_core::probe::ProbeState;
use warden_core::service::ServiceState;

pub const PATH: &str = "healing/guard";
const TICK: Duration = Duration::from_secs(1);

pub enum GuardMsg {
    Tick,
}

impl Addr<HealingGuard> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }
}

pub struct HealingGuard {
    pub views: Views,
    pub notifier: Notifier,
    pub audit: Addr<AuditWriter>,
    pub registry: ActorRegistry,
}

pub struct State {
    /// The node-wide blocks said so far, by reason, with the alert that fires for each.
    said: BTreeMap<&'static str, Alert>,
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for HealingGuard {
    type Msg = GuardMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<GuardMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State {
            said: BTreeMap::new(),
            _tick: AbortOnDrop(myself.send_interval(TICK, || GuardMsg::Tick)),
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(&self, _: ActorRef<GuardMsg>, msg: GuardMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        let GuardMsg::Tick = msg;
        let now = warden_core::time::now_unix_ms();
        match self.views.holds.update(|h| h.expire(now)) {
            Ok(lifted) => {
                for h in lifted {
                    tracing::info!(hold = h.describe(), "hold on automatic repair over");
                }
            }
            Err(e) => tracing::warn!(error = e, "cannot lift the holds whose time is over"),
        }
        self.breaker(now).await;
        self.say_blocks(st, now);
        Ok(())
    }
}

impl HealingGuard {
    /// Services failing now: backing off, quarantined, or with a probe of their own down
    /// (not those in maintenance, nor those stopped on purpose).
    fn failing(&self) -> Vec<ServiceName> {
        let down: Vec<ServiceName> = self
            .views
            .probes
            .snapshot()
            .into_iter()
            .filter(|p| p.state == ProbeState::Down)
            .map(|p| p.target)
            .collect();
        let t = self.views.services.lock();
        t.services
            .iter()
            .filter(|(name, e)| {
                matches!(e.state, ServiceState::Backoff | ServiceState::Quarantined)
                    || (e.state == ServiceState::Running && down.contains(name))
            })
            .map(|(name, _)| name.clone())
            .filter(|name| !self.views.holds.in_maintenance(name))
            .collect()
    }

    /// Opens the breaker when more services fail at once, independently, than allowed.
    async fn breaker(&self, now: u64) {
        let config = self.views.config.get();
        if !config.healing.enabled || self.views.holds.breaker_open() {
            return;
        }
        let failing = self.failing();
        let deps = |s: &ServiceName| {
            config.services.iter().find(|x| x.name == *s).map(|x| x.depends_on.clone()).unwrap_or_default()
        };
        let roots = independent_failures(&failing, deps);
        let total = config.services.len();
        let limit = config.healing.max_unhealthy;
        if !limit.trips(total, roots.len()) {
            return;
        }
        let names: Vec<String> = roots.iter().map(|s| format!("`{s}`")).collect();
        let reason = format!(
            "{} of {total} services fail at once ({}), more than healing.max_unhealthy {}: a common cause is likely",
            roots.len(),
            names.join(", "),
            limit.describe()
        );
        let record = AuditRecord {
            kind: EntryKind::Control,
            actor: AuditActor::System,
            action: "open_breaker".into(),
            tier: 1,
            target: "node".into(),
            rationale: reason.clone(),
            decision: DecisionKind::Deny,
            outcome: Some(OutcomeKind::Succeeded),
            detail: "automatic tier 2+ repairs stop until an operator resumes healing".into(),
            incident_id: None,
            run_id: None,
        };
        // On the trail first; if the trail cannot be written, tier 2+ is refused anyway.
        if let Err(e) = self.audit.append(record).await {
            tracing::warn!(error = %e, "cannot audit the breaker opening");
        }
        let hold = Hold {
            kind: HoldKind::Breaker,
            service: None,
            since_unix_ms: now,
            until_unix_ms: None,
            by: "system".into(),
            reason,
        };
        if let Err(e) = self.views.holds.update(|h| h.set(hold)) {
            tracing::error!(error = e, "cannot keep the breaker open across a restart; it is open now");
        }
    }

    /// Says each node-wide block once when it begins and once when it ends.
    fn say_blocks(&self, st: &mut State, now: u64) {
        let blocked: Vec<_> = self.views.healing_blocked().into_iter().filter(|b| b.service.is_none()).collect();
        for b in &blocked {
            if st.said.contains_key(b.reason) {
                continue;
            }
            // Repair turned off in the config is the operator's own choice: said in the
            // log, not paged.
            if b.reason == "disabled" {
                tracing::warn!(detail = b.detail, "automatic repair is off for the whole node");
                st.said.insert(b.reason, Alert::new("WardenHealingBlocked", Severity::Info, AlertStatus::Firing, now));
                continue;
            }
            tracing::error!(
                reason = b.reason,
                detail = b.detail,
                "alert: automatic repair is blocked for the whole node"
            );
            let alert = Alert::new("WardenHealingBlocked", Severity::Critical, AlertStatus::Firing, now)
                .label("reason", b.reason)
                .annotate("summary", format!("automatic repair is blocked: {}", b.detail));
            self.notifier.send(&alert);
            st.said.insert(b.reason, alert);
        }
        let ended: Vec<&'static str> =
            st.said.keys().filter(|r| !blocked.iter().any(|b| b.reason == **r)).copied().collect();
        for reason in ended {
            if let Some(alert) = st.said.remove(reason) {
                tracing::warn!(reason, "automatic repair is no longer blocked for this reason");
                if reason != "disabled" {
                    self.notifier.send(&alert.resolved_at(now));
                }
            }
        }
    }
}
