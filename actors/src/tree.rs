//! Building the supervision tree with ractor-supervisor.
//!
//! Every supervisor gets its strategy and restart intensity from config; past the intensity
//! it stops abnormally and its parent counts that as a child failure — the failure moves
//! up the tree until some supervisor's intensity absorbs it or the node itself stops.

use crate::context::{Ctx, names};
use ractor::{Actor, ActorCell, SpawnErr};
use ractor_supervisor::{
    ChildSpec, Restart, SpawnFn, Supervisor, SupervisorArguments, SupervisorOptions, SupervisorStrategy,
};
use std::sync::Arc;
use std::time::Duration;
use warden_core::config::{Strategy, TreeSpec};

/// How long a respawn waits for the previous holder of its name to unregister.
const NAME_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Waits (bounded) until no actor holds `name`. ractor-supervisor respawns a melted-down
/// subtree at once, while the old subtree's children are still being killed; spawning
/// then would fail with "already registered", count as a new failure, and let one real
/// meltdown burn several of the parent's restarts. Past the bound the spawn goes ahead and
/// fails as it would have.
async fn name_released(name: &str) {
    let start = tokio::time::Instant::now();
    while ractor::registry::where_is(name).is_some() && start.elapsed() < NAME_RELEASE_WAIT {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub fn options(spec: &TreeSpec) -> SupervisorOptions {
    SupervisorOptions {
        strategy: match spec.strategy {
            Strategy::OneForOne => SupervisorStrategy::OneForOne,
            Strategy::OneForAll => SupervisorStrategy::OneForAll,
            Strategy::RestForOne => SupervisorStrategy::RestForOne,
        },
        max_restarts: spec.max_restarts,
        max_window: Duration::from_millis(spec.period_ms),
        reset_after: None,
    }
}

/// A permanent child: the actor `make()` builds, registered as `name`.
pub fn worker<A, F>(name: String, make: F) -> ChildSpec
where
    A: Actor<Arguments = ()>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let make = Arc::new(make);
    ChildSpec {
        id: name,
        restart: Restart::Permanent,
        spawn_fn: SpawnFn::new(move |sup: ActorCell, id: String| {
            let actor = make();
            async move {
                name_released(&id).await;
                let (r, _) = Supervisor::spawn_linked(id, actor, (), sup).await?;
                Ok::<ActorCell, SpawnErr>(r.get_cell())
            }
        }),
        backoff_fn: None,
        reset_after: None,
    }
}

/// A child that is itself a supervisor over `children()` (rebuilt on every restart).
pub fn subtree<F>(name: String, spec: TreeSpec, children: F) -> ChildSpec
where
    F: Fn() -> Vec<ChildSpec> + Send + Sync + 'static,
{
    let children = Arc::new(children);
    ChildSpec {
        id: name,
        restart: Restart::Permanent,
        spawn_fn: SpawnFn::new(move |sup: ActorCell, id: String| {
            let args = SupervisorArguments { child_specs: children(), options: options(&spec) };
            async move {
                name_released(&id).await;
                let (r, _) = Supervisor::spawn_linked(id, Supervisor, args, sup).await?;
                Ok::<ActorCell, SpawnErr>(r.get_cell())
            }
        }),
        backoff_fn: None,
        reset_after: None,
    }
}

/// The governance subtree: the audit writer first, the gatekeeper on it, then approvals.
pub fn governance(ctx: &Ctx) -> ChildSpec {
    let c = ctx.clone();
    subtree(ctx.name(names::GOVERNANCE), ctx.config.supervision.governance, move || {
        let (a, g, q) = (c.clone(), c.clone(), c.clone());
        vec![
            worker(c.name(names::AUDIT_WRITER), move || crate::audit_writer::AuditWriter { ctx: a.clone() }),
            worker(c.name(names::GATEKEEPER), move || crate::gatekeeper::Gatekeeper { ctx: g.clone() }),
            worker(c.name(names::APPROVAL_QUEUE), move || crate::approval_queue::ApprovalQueue { ctx: q.clone() }),
        ]
    })
}

/// The guardian subtree: services, one actor per probe, the playbook executor.
pub fn guardian(ctx: &Ctx) -> ChildSpec {
    let c = ctx.clone();
    subtree(ctx.name(names::GUARDIAN), ctx.config.supervision.guardian, move || {
        let s = c.clone();
        let mut v = vec![worker(c.name(names::SERVICE_SUPERVISOR), move || {
            crate::service_supervisor::ServiceSupervisor { ctx: s.clone() }
        })];
        for p in &c.config.probes {
            let (pc, cfg) = (c.clone(), p.clone());
            v.push(worker(c.name(&names::probe(&p.name.value)), move || crate::probe::ProbeActor {
                ctx: pc.clone(),
                cfg: cfg.clone(),
            }));
        }
        let e = c.clone();
        v.push(worker(c.name(names::EXECUTOR), move || crate::executor::PlaybookExecutor { ctx: e.clone() }));
        v
    })
}

/// The healing subtree: one detector per implemented failure mode, the incident manager.
pub fn healing(ctx: &Ctx) -> ChildSpec {
    let c = ctx.clone();
    subtree(ctx.name(names::HEALING), ctx.config.supervision.healing, move || {
        let mut v: Vec<ChildSpec> = crate::detector::IMPLEMENTED
            .iter()
            .map(|&mode| {
                let d = c.clone();
                worker(c.name(&names::detector(mode.as_str())), move || crate::detector::Detector {
                    ctx: d.clone(),
                    mode,
                })
            })
            .collect();
        let i = c.clone();
        v.push(worker(c.name(names::INCIDENT_MANAGER), move || crate::incident_manager::IncidentManager {
            ctx: i.clone(),
        }));
        v
    })
}

/// Spawns the node supervisor over governance, guardian, healing and `http`.
pub async fn spawn_node(
    ctx: &Ctx,
    http: ChildSpec,
) -> Result<(ractor::ActorRef<ractor_supervisor::SupervisorMsg>, tokio::task::JoinHandle<()>), SpawnErr> {
    let args = SupervisorArguments {
        child_specs: vec![governance(ctx), guardian(ctx), healing(ctx), http],
        options: options(&ctx.config.supervision.node),
    };
    Supervisor::spawn(ctx.name(names::NODE), args).await
}
