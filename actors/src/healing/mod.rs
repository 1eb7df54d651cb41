//! The healing pillar: one detector per failure mode with a rule, and the incident
//! manager (one_for_one).

pub mod detector;
pub mod incident_manager;

use crate::addr::Addr;
use crate::tree::{self, ChildSpec};
use crate::wiring::Wiring;
use detector::Detector;
use incident_manager::IncidentManager;

pub const PATH: &str = "healing";

pub(crate) fn subtree(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    tree::subtree(w.ns.name(PATH), w.config.supervision.healing, move || {
        let mut v: Vec<ChildSpec> = warden_core::detect::IMPLEMENTED
            .iter()
            .map(|&mode| {
                let d = w.clone();
                tree::worker(Addr::<Detector>::for_mode(&w.ns, mode).name(), move || Detector {
                    mode,
                    events: d.probe_events.clone(),
                    board: d.probes.clone(),
                    services: d.services.clone(),
                    incidents: d.addrs.incidents.clone(),
                    registry: d.registry.clone(),
                })
            })
            .collect();
        let i = w.clone();
        v.push(tree::worker(w.addrs.incidents.name(), move || IncidentManager {
            catalog: i.catalog.clone(),
            healing: i.config.healing,
            store: i.store.clone(),
            executor: i.addrs.executor.clone(),
            runs_finished: i.runs_finished.clone(),
            metrics: i.metrics.clone(),
            registry: i.registry.clone(),
        }));
        v
    })
}
