//! Building the supervision tree with ractor-supervisor.
//!
//! Every supervisor gets its strategy and restart intensity from config; past the intensity
//! it stops abnormally and its parent counts that as a child failure — the failure moves
//! up the tree until some supervisor's intensity absorbs it or the node itself stops.

use ractor::{Actor, ActorCell, SpawnErr};
pub use ractor_supervisor::{ChildSpec, SupervisorMsg};
use ractor_supervisor::{Restart, SpawnFn, Supervisor, SupervisorArguments, SupervisorOptions, SupervisorStrategy};
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
pub(crate) async fn name_released(name: &str) {
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
        max_window: spec.period,
        reset_after: None,
    }
}

/// A permanent child: the actor `make()` builds, registered as `name`.
pub fn worker<A, F>(name: impl Into<String>, make: F) -> ChildSpec
where
    A: Actor<Arguments = ()>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let make = Arc::new(make);
    ChildSpec {
        id: name.into(),
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
pub fn subtree<F>(name: impl Into<String>, spec: TreeSpec, children: F) -> ChildSpec
where
    F: Fn() -> Vec<ChildSpec> + Send + Sync + 'static,
{
    let children = Arc::new(children);
    ChildSpec {
        id: name.into(),
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

/// Spawns a root supervisor named `name` over `children`.
pub async fn spawn_root(
    name: impl Into<String>,
    spec: TreeSpec,
    children: Vec<ChildSpec>,
) -> Result<(ractor::ActorRef<ractor_supervisor::SupervisorMsg>, tokio::task::JoinHandle<()>), SpawnErr> {
    Supervisor::spawn(name.into(), SupervisorArguments { child_specs: children, options: options(&spec) }).await
}
