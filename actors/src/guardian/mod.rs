//! The guardian pillar: the service supervisor, one probe actor per configured probe, and
//! the playbook executor (one_for_one: each restarts alone).

pub mod executor;
pub mod probe;
pub mod probe_board;
pub mod service_supervisor;
pub mod service_table;

use crate::tree::{self, ChildSpec};
use crate::wiring::Wiring;
use executor::{PlaybookExecutor, RunContext};
use probe::ProbeActor;
use service_supervisor::ServiceSupervisor;
use std::sync::Arc;

pub const PATH: &str = "guardian";

pub(crate) fn subtree(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    tree::subtree(PATH, w.views.config.supervision.guardian, move || {
        let s = w.clone();
        let mut v = vec![tree::worker(w.addrs.services.name(), move || ServiceSupervisor {
            table: s.views.services.clone(),
            me: s.addrs.services.clone(),
            self_exe: s.self_exe.clone(),
            data_dir: s.views.data_dir.clone(),
            containment: s.containment.clone(),
            metrics: s.views.metrics.clone(),
            registry: s.views.registry.clone(),
        })];
        for spec in &w.views.config.probes {
            let (p, spec) = (w.clone(), spec.clone());
            let name = crate::addr::Addr::<ProbeActor>::for_probe(&spec.name).name().to_string();
            v.push(tree::worker(name, move || ProbeActor {
                spec: spec.clone(),
                events: p.probe_events.clone(),
                board: p.views.probes.clone(),
                metrics: p.views.metrics.clone(),
                registry: p.views.registry.clone(),
            }));
        }
        let run_ctx = Arc::new(RunContext {
            catalog: w.catalog.clone(),
            policies: w.policies.clone(),
            gate: w.addrs.gatekeeper.clone(),
            services: w.addrs.services.clone(),
            table: w.views.services.clone(),
            data_dir: w.views.data_dir.clone(),
            probes: Arc::new(w.views.config.probes.clone()),
            store: w.views.store.clone(),
            metrics: w.views.metrics.clone(),
            finished: w.runs_finished.clone(),
        });
        let registry = w.views.registry.clone();
        v.push(tree::worker(w.addrs.executor.name(), move || PlaybookExecutor {
            ctx: run_ctx.clone(),
            registry: registry.clone(),
        }));
        v
    })
}
