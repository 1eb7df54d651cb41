//! The healing pillar: one detector per failure mode with a rule, the incident manager,
//! the healing guard (holds, the breaker, saying when healing is blocked), the node watch
//! (the node's memory), the quarantine watch, the SLO tracker and the alerter (one_for_one).

pub mod alerter;
pub mod detector;
pub mod facts;
pub mod guard;
pub mod incident_manager;
pub mod node_watch;
pub mod notifier;
pub mod quarantine_watch;
pub mod repair_board;
pub mod silences;
pub mod slo_tracker;

use crate::addr::Addr;
use crate::tree::{self, ChildSpec};
use crate::wiring::Wiring;
use alerter::Alerter;
use detector::Detector;
use guard::HealingGuard;
use incident_manager::IncidentManager;
use node_watch::NodeWatch;
use quarantine_watch::QuarantineWatch;
use slo_tracker::SloTracker;

pub const PATH: &str = "healing";

pub(crate) fn subtree(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    tree::subtree(PATH, w.views.config.get().supervision.healing, move || {
        let mut v: Vec<ChildSpec> = warden_core::detect::IMPLEMENTED
            .iter()
            .map(|&mode| {
                let d = w.clone();
                tree::worker(Addr::<Detector>::for_mode(mode).name(), move || Detector {
                    mode,
                    events: d.probe_events.clone(),
                    resolved: d.incidents_resolved.clone(),
                    board: d.views.probes.clone(),
                    services: d.views.services.clone(),
                    config: d.views.config.clone(),
                    data_dir: d.views.data_dir.clone(),
                    incidents: d.addrs.incidents.clone(),
                    registry: d.views.registry.clone(),
                })
            })
            .collect();
        let i = w.clone();
        v.push(tree::worker(w.addrs.incidents.name(), move || IncidentManager {
            catalog: i.catalog.clone(),
            config: i.views.config.clone(),
            store: i.views.store.clone(),
            executor: i.addrs.executor.clone(),
            runs_finished: i.runs_finished.clone(),
            resolved: i.incidents_resolved.clone(),
            metrics: i.views.metrics.clone(),
            registry: i.views.registry.clone(),
            repairs: i.repairs.clone(),
            traces: i.traces.clone(),
            holds: i.views.holds.clone(),
            board: i.views.probes.clone(),
            services: i.views.services.clone(),
            approvals: i.addrs.approvals.clone(),
            notifier: i.notifier.clone(),
        }));
        let g = w.clone();
        v.push(tree::worker(Addr::<HealingGuard>::at().name(), move || HealingGuard {
            views: g.views.clone(),
            notifier: g.notifier.clone(),
            audit: g.addrs.audit.clone(),
            registry: g.views.registry.clone(),
        }));
        let n = w.clone();
        v.push(tree::worker(Addr::<NodeWatch>::at().name(), move || NodeWatch {
            config: n.views.config.clone(),
            services: n.views.services.clone(),
            notifier: n.notifier.clone(),
            registry: n.views.registry.clone(),
        }));
        let q = w.clone();
        v.push(tree::worker(Addr::<QuarantineWatch>::at().name(), move || QuarantineWatch {
            board: q.views.probes.clone(),
            services: q.views.services.clone(),
            config: q.views.config.clone(),
            data_dir: q.views.data_dir.clone(),
            executor: q.addrs.executor.clone(),
            registry: q.views.registry.clone(),
        }));
        let t = w.clone();
        v.push(tree::worker(Addr::<SloTracker>::at().name(), move || SloTracker {
            board: t.views.probes.clone(),
            store: t.views.store.clone(),
            config: t.views.config.clone(),
            metrics: t.views.metrics.clone(),
            notifier: t.notifier.clone(),
            slos: t.views.slos.clone(),
            registry: t.views.registry.clone(),
        }));
        let a = w.clone();
        v.push(tree::worker(Addr::<Alerter>::at().name(), move || Alerter {
            events: a.probe_events.clone(),
            board: a.views.probes.clone(),
            book: a.alert_book.clone(),
            repairs: a.repairs.clone(),
            notifier: a.notifier.clone(),
            config: a.views.config.clone(),
            data_dir: a.views.data_dir.clone(),
            registry: a.views.registry.clone(),
            holds: a.views.holds.clone(),
        }));
        v
    })
}
