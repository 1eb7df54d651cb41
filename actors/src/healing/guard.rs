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
        self.breaker().await;
        self.say_blocks(st, now);
        Ok(())
    }
}

impl HealingGuard {
    /// Opens the breaker when more services fail at once, independently, than allowed.
    async fn breaker(&self) {
        let v = &self.views;
        let config = v.config.get();
        crate::holds::trip_breaker(&config, &v.services, &v.probes, &v.holds, &self.audit).await;
    }

    /// Says each node-wide block once when it begins and once when it ends.
    fn say_blocks(&self, st: &mut State, now: u64) {
        let blocked: Vec<_> = self.views.healing_blocked().into_iter().filter(|b| b.service.is_none()).collect();
        for b in &blocked {
            if st.said.contains_key(b.reason) {
                continue;
            }
            // The chain is still being checked at start: a wait, not a fault; it pages
            // only if the check finds it broken.
            if b.reason == "audit_chain" && self.views.trust.verifying() {
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
