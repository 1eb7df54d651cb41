//! The node: where every actor gets exactly the handles it uses.
//!
//! [`Node::new`] makes the shared state (store handle, service table, probe board,
//! registry, metrics), the two event ports (probe events → detectors, finished runs →
//! incident manager) and the typed address of every singleton actor. The pillar modules
//! build their subtrees from this wiring, handing each actor its few fields; no actor
//! sees the wiring itself. The binary reads the node through [`Views`] and stops it
//! through [`Node::shutdown`].

use crate::current::Current;
use crate::data_dir::DataDir;
use crate::governance::seal::{AuditSeal, ChainTrust, SealError};
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use crate::healing::alerter::AlertBook;
use crate::healing::notifier::Notifier;
use crate::healing::repair_board::RepairBoard;
use crate::healing::silences::SilenceBook;
use crate::healing::slo_tracker::SloBoard;
use crate::incident_trace::TraceBoard;
use crate::metrics::Metrics;
use crate::process;
use crate::process::cgroup::Containment;
use crate::registry::ActorRegistry;
use crate::store::Store;
use crate::tree::{self, ChildSpec};
use crate::wiring::Wiring;
pub use crate::wiring::{Addrs, Views};
pub use crate::wiring::{ReloadError, Reloaded};
use ractor::{ActorRef, OutputPort, SpawnErr};
use ractor_supervisor::SupervisorMsg;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use warden_core::config::NodeConfig;
use warden_core::playbook::Catalog;
use warden_core::policy::Policies;

pub const PATH: &str = "node";

/// What a node is made from: validated files, the binary, the data dir and its store.
pub struct NodeParts {
    /// Where services' cgroups go (or why there are none).
    pub containment: Containment,
    pub config: NodeConfig,
    pub policies: Policies,
    pub catalog: Catalog,
    /// This binary, for `@warden` services.
    pub self_exe: PathBuf,
    pub data_dir: DataDir,
    pub store: Store,
    /// The audit key and checkpoint file (see [`AuditSeal::open`]), or why not.
    pub audit_seal: Result<AuditSeal, SealError>,
}

pub struct Node {
    wiring: Wiring,
}

/// How long shutdown waits for a takeover under way (its stops take grace periods).
const TAKEOVER_AT_SHUTDOWN: Duration = Duration::from_secs(120);

/// The running supervision tree.
pub struct Running {
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Ends when the node supervisor stops (a meltdown past its restart intensity).
    pub join: JoinHandle<()>,
}

impl Node {
    /// Must run inside the tokio runtime (the event ports start their fan-out tasks).
    pub fn new(parts: NodeParts) -> Self {
        // The files' config, and what runs: the same with the data dir's runtime overrides
        // (ports moved, upstreams switched by playbooks) over it.
        let running = crate::reconfigure::effective(&parts.data_dir, &parts.config);
        let services = ServiceTable::new(&running.services);
        services.lock().staggered_boot = running.staggered_boot;
        let addrs = Addrs::new();
        let base = Current::new(parts.config);
        let config = Current::new(running);
        let metrics = Metrics::new();
        let policies = Current::new(parts.policies);
        let catalog = Current::new(parts.catalog);
        let silences = SilenceBook::load(parts.data_dir.silences_file());
        let holds = crate::holds::HoldBoard::open(&parts.data_dir);
        Self {
            wiring: Wiring {
                views: Views {
                    config: config.clone(),
                    data_dir: parts.data_dir,
                    store: parts.store,
                    metrics: metrics.clone(),
                    registry: ActorRegistry::default(),
                    services,
                    probes: ProbeBoard::default(),
                    trust: ChainTrust::default(),
                    policies: policies.clone(),
                    catalog: catalog.clone(),
                    slos: SloBoard::default(),
                    silences: silences.clone(),
                    holds,
                },
                policies,
                catalog,
                base,
                overrides_lock: Arc::default(),
                self_exe: parts.self_exe,
                containment: parts.containment,
                probe_events: Arc::new(OutputPort::default()),
                runs_finished: Arc::new(OutputPort::default()),
                incidents_resolved: Arc::new(OutputPort::default()),
                alert_book: AlertBook::default(),
                repairs: RepairBoard::default(),
                traces: TraceBoard::default(),
                notifier: Notifier::new(config, metrics, silences),
                audit_seal: parts.audit_seal,
                addrs,
            },
        }
    }

    pub fn addrs(&self) -> &Addrs {
        &self.wiring.addrs
    }

    pub fn views(&self) -> Views {
        self.wiring.views.clone()
    }

    /// Spawns the node supervisor over governance, guardian, healing and `http`.
    pub async fn spawn(&self, http: ChildSpec) -> Result<Running, SpawnErr> {
        let w = &self.wiring;
        let children =
            vec![crate::governance::subtree(w), crate::guardian::subtree(w), crate::healing::subtree(w), http];
        let (supervisor, join) = tree::spawn_root(PATH, w.views.config.get().supervision.node, children).await?;
        Ok(Running { supervisor, join })
    }

    /// Applies a reloaded, validated set of files (SIGHUP). Policies and the catalog are
    /// swapped in for the next decision and run; services whose definition changed restart,
    /// removed ones stop, new ones start; a probe removed or changed stops, one added or
    /// changed starts, the others keep running. What only a restart of warden can change
    /// (its name, API address, data dir, supervision trees, HTTP limits) is refused, and so
    /// is a reload the service supervisor refuses or cannot take: then nothing changes.
    pub async fn reload(
        &self,
        config: NodeConfig,
        policies: Policies,
        catalog: Catalog,
    ) -> Result<Reloaded, ReloadError> {
        let w = &self.wiring;
        let current = w.views.config.get();
        let mut fixed = Vec::new();
        if config.name != current.name {
            fixed.push("node.name");
        }
        if config.http_listen != current.http_listen {
            fixed.push("node.http_listen");
        }
        if config.data_dir != current.data_dir {
            fixed.push("node.data_dir");
        }
        if config.supervision != current.supervision {
            fixed.push("supervision");
        }
        if config.http != current.http {
            fixed.push("http");
        }
        if !fixed.is_empty() {
            return Err(ReloadError::NeedsRestart(fixed.join(", ")));
        }
        // Overrides are applied under their lock: a playbook's change cannot interleave.
        let _one_at_a_time = w.overrides_lock.lock().await;
        let running = crate::reconfigure::effective(&w.views.data_dir, &config);
        let reloaded = w.apply_config(running).await?;
        w.base.set(config);
        w.policies.set(policies);
        w.catalog.set(catalog);
        Ok(reloaded)
    }

    /// Orderly stop: playbook runs cancelled (and recorded as interrupted), then every
    /// service in reverse dependency order. If an actor cannot answer, the process groups
    /// are stopped directly, so nothing is left behind.
    pub async fn shutdown(&self) {
        let w = &self.wiring;
        if let Err(e) = w.addrs.executor.shutdown(Duration::from_secs(10)).await {
            tracing::warn!(error = %e, "playbook executor did not cancel its runs");
        }
        // A takeover under way adopts nothing more and finishes its stops first (bounded):
        // what it is still stopping must be gone before warden is.
        let adoption = {
            let mut t = w.views.services.lock();
            t.shutting_down = true;
            t.adoption.clone()
        };
        if let Some(mut rx) = adoption
            && tokio::time::timeout(TAKEOVER_AT_SHUTDOWN, rx.wait_for(|done| *done)).await.is_err()
        {
            tracing::warn!("the takeover of an earlier warden's processes did not end in time; stopping anyway");
        }
        let grace: Duration = w.views.config.get().services.iter().map(|s| s.stop_grace).sum();
        if let Err(e) = w.addrs.services.stop_all(grace + Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "service supervisor did not stop the services; stopping them directly");
        }
        let left: Vec<_> = {
            let mut t = w.views.services.lock();
            t.shutting_down = true;
            t.services
                .iter()
                .filter_map(|(n, e)| Some((n.clone(), e.pid?, e.exit.clone()?, e.spec.stop_signal, e.cgroup.clone())))
                .collect()
        };
        for (name, pid, exit, signal, cgroup) in left {
            if exit.borrow().is_none() {
                tracing::warn!(service = name.as_str(), pid, "stopping leftover service");
                let signal = process::signal_of(signal);
                let grace = Duration::from_secs(2);
                process::stop(process::Stop { pid, exit, grace, force: false, signal, cgroup: cgroup.as_ref() }).await;
            }
        }
    }
}
