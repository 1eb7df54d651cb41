//! The guardian pillar: the service supervisor, the probes (a subtree of their own, one
//! actor per configured probe, rebuilt from the current config whenever it restarts, so a
//! reload with other probes respawns just it), and the playbook executor (one_for_one:
//! each restarts alone).

pub mod executor;
pub mod probe;
pub mod probe_board;
pub mod service_supervisor;
pub mod service_table;

use crate::addr::Addr;
use crate::tree::{self, ChildSpec};
use crate::wiring::Wiring;
use executor::{PlaybookExecutor, RunContext};
use probe::ProbeActor;
use service_supervisor::ServiceSupervisor;
use std::sync::Arc;

pub const PATH: &str = "guardian";
/// The probes' own supervisor.
pub const PROBES: &str = "guardian/probes";

pub(crate) fn subtree(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    tree::subtree(PATH, w.views.config.get().supervision.guardian, move || {
        let s = w.clone();
        let services = tree::worker(w.addrs.services.name(), move || ServiceSupervisor {
            table: s.views.services.clone(),
            me: s.addrs.services.clone(),
            self_exe: s.self_exe.clone(),
            data_dir: s.views.data_dir.clone(),
            containment: s.containment.clone(),
            metrics: s.views.metrics.clone(),
            registry: s.views.registry.clone(),
        });
        let run_ctx = Arc::new(RunContext {
            catalog: w.catalog.clone(),
            policies: w.policies.clone(),
            gate: w.addrs.gatekeeper.clone(),
            services: w.addrs.services.clone(),
            table: w.views.services.clone(),
            data_dir: w.views.data_dir.clone(),
            config: w.views.config.clone(),
            store: w.views.store.clone(),
            metrics: w.views.metrics.clone(),
            finished: w.runs_finished.clone(),
        });
        let registry = w.views.registry.clone();
        let executor = tree::worker(w.addrs.executor.name(), move || PlaybookExecutor {
            ctx: run_ctx.clone(),
            registry: registry.clone(),
        });
        vec![services, probes(&w), executor]
    })
}

/// The probes' subtree: its children are the probes the config lists when it (re)starts.
fn probes(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    tree::subtree(PROBES, w.views.config.get().supervision.guardian, move || {
        w.views
            .config
            .get()
            .probes
            .iter()
            .map(|spec| {
                let (p, spec) = (w.clone(), spec.clone());
                tree::worker(Addr::<ProbeActor>::for_probe(&spec.name).name(), move || ProbeActor {
                    spec: spec.clone(),
                    events: p.probe_events.clone(),
                    board: p.views.probes.clone(),
                    metrics: p.views.metrics.clone(),
                    registry: p.views.registry.clone(),
                })
            })
            .collect()
    })
}
