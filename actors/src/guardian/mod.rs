//! The guardian pillar: the service supervisor, the probes (a dynamic supervisor of their
//! own, one actor per configured probe, started from the current config whenever it
//! restarts; a reload stops and starts single probes in it), and the playbook executor
//! (one_for_one: each restarts alone).

pub mod checks;
pub mod effects;
pub mod evidence;
pub mod executor;
pub mod leftovers;
pub mod managed_files;
pub mod probe;
pub mod probe_board;
pub mod service_supervisor;
pub mod service_table;
mod settings;
pub mod snapshots;
pub mod vault;

use crate::addr::Addr;
use crate::tree::{self, ChildSpec};
use crate::wiring::Wiring;
use executor::{PlaybookExecutor, RunContext};
use probe::ProbeActor;
use ractor_supervisor::{DynamicSupervisor, DynamicSupervisorMsg, DynamicSupervisorOptions};
use service_supervisor::ServiceSupervisor;
use std::sync::Arc;
use warden_core::config::ProbeSpec;

pub const PATH: &str = "guardian";
/// The probes' own supervisor.
pub const PROBES: &str = "guardian/probes";

pub(crate) fn subtree(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    tree::subtree(PATH, w.views.config.get().supervision.guardian, move || {
        let s = w.clone();
        let self_exe = w.self_exe.clone();
        let services = tree::worker(w.addrs.services.name(), move || ServiceSupervisor {
            table: s.views.services.clone(),
            me: s.addrs.services.clone(),
            audit: s.addrs.audit.clone(),
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
            self_exe: self_exe.clone(),
            store: w.views.store.clone(),
            metrics: w.views.metrics.clone(),
            finished: w.runs_finished.clone(),
            wiring: w.clone(),
            holds: w.views.holds.clone(),
            board: w.views.probes.clone(),
            audit: w.addrs.audit.clone(),
        });
        let registry = w.views.registry.clone();
        let executor = tree::worker(w.addrs.executor.name(), move || PlaybookExecutor {
            ctx: run_ctx.clone(),
            registry: registry.clone(),
        });
        vec![services, probes(&w), executor]
    })
}

/// The probes' subtree: a dynamic supervisor that starts with the probes the config lists
/// when it (re)starts; a reload then stops and starts single probes in it
/// ([`reload_probes`]), which neither disturbs the unchanged ones nor counts as a restart
/// against the guardian's intensity.
fn probes(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    let tree = w.views.config.get().supervision.guardian;
    ChildSpec {
        id: PROBES.to_string(),
        restart: ractor_supervisor::Restart::Permanent,
        spawn_fn: ractor_supervisor::SpawnFn::new(move |sup: ractor::ActorCell, id: String| {
            let w = w.clone();
            async move {
                let options = DynamicSupervisorOptions {
                    max_children: None,
                    max_restarts: tree.max_restarts,
                    max_window: tree.period,
                    reset_after: None,
                };
                tree::name_released(&id).await;
                let (probes, _) = DynamicSupervisor::spawn_linked(id, DynamicSupervisor, options, sup).await?;
                for spec in &w.views.config.get().probes {
                    if let Err(e) = DynamicSupervisor::spawn_child(probes.clone(), probe_child(&w, spec)).await {
                        // Not left holding the name: the guardian's retry must be able to take it.
                        probes.stop(Some("a probe could not start".into()));
                        return Err(ractor::SpawnErr::StartupFailed(e));
                    }
                }
                Ok(probes.get_cell())
            }
        }),
        backoff_fn: None,
        reset_after: None,
    }
}

/// One probe actor, as a child of the probes' supervisor.
fn probe_child(w: &Wiring, spec: &ProbeSpec) -> ChildSpec {
    let (p, spec) = (w.clone(), spec.clone());
    tree::worker(Addr::<ProbeActor>::for_probe(&spec.name).name(), move || ProbeActor {
        spec: spec.clone(),
        events: p.probe_events.clone(),
        board: p.views.probes.clone(),
        metrics: p.views.metrics.clone(),
        registry: p.views.registry.clone(),
        table: p.views.services.clone(),
    })
}

/// A reload's probes: those removed or changed stop (and leave the actor list), those
/// added or changed start with their new definition. Returns whether anything changed.
/// Without a running probes' supervisor (it is being restarted) there is nothing to do:
/// it starts from the new config.
pub(crate) async fn reload_probes(w: &Wiring, old: &[ProbeSpec], new: &[ProbeSpec]) -> bool {
    let same = |a: &ProbeSpec| new.iter().any(|b| b == a);
    let stop: Vec<&ProbeSpec> = old.iter().filter(|a| !same(a)).collect();
    let start: Vec<&ProbeSpec> = new.iter().filter(|b| !old.contains(b)).collect();
    if stop.is_empty() && start.is_empty() {
        return false;
    }
    let Some(cell) = ractor::registry::where_is(PROBES) else {
        w.views.probes.retain(&new.iter().map(|p| p.name.as_str()).collect::<Vec<_>>());
        return true;
    };
    let sup: ractor::ActorRef<DynamicSupervisorMsg> = cell.into();
    for spec in stop {
        let name = Addr::<ProbeActor>::for_probe(&spec.name).name().to_string();
        if let Err(e) = DynamicSupervisor::terminate_child(sup.clone(), name.clone()).await {
            tracing::warn!(probe = spec.name, error = %e, "could not stop the probe");
        }
        if !new.iter().any(|b| b.name == spec.name) {
            w.views.registry.forget(&name);
        }
        w.views.metrics.forget_probe(spec);
    }
    // After the stops: a removed probe in the middle of a check publishes nothing later.
    w.views.probes.retain(&new.iter().map(|p| p.name.as_str()).collect::<Vec<_>>());
    for spec in start {
        if let Err(e) = DynamicSupervisor::spawn_child(sup.clone(), probe_child(w, spec)).await {
            tracing::warn!(probe = spec.name, error = %e, "could not start the probe");
        }
    }
    true
}
