//! The wiring: every shared handle of a node in one place, for the subtree builders only.
//! [`crate::node::Node`] makes it; each pillar's `subtree` hands its actors the few fields
//! they use.

use crate::addr::Addr;
use crate::current::Current;
use crate::data_dir::DataDir;
use crate::governance::approval_queue::ApprovalQueue;
use crate::governance::audit_writer::AuditWriter;
use crate::governance::gatekeeper::Gatekeeper;
use crate::governance::seal::{AuditSeal, ChainTrust, SealError};
use crate::guardian::executor::PlaybookExecutor;
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_supervisor::ServiceSupervisor;
use crate::guardian::service_table::ServiceTable;
use crate::healing::alerter::AlertBook;
use crate::healing::incident_manager::IncidentManager;
use crate::healing::notifier::Notifier;
use crate::healing::repair_board::RepairBoard;
use crate::healing::silences::SilenceBook;
use crate::healing::slo_tracker::SloBoard;
use crate::incident_trace::TraceBoard;
use crate::metrics::Metrics;
use crate::process::cgroup::Containment;
use crate::registry::ActorRegistry;
use crate::store::Store;
use ractor::OutputPort;
use std::path::PathBuf;
use std::sync::Arc;
use warden_core::config::{NodeConfig, ServiceName};
use warden_core::mode::FailureMode;
use warden_core::playbook::Catalog;
use warden_core::policy::Policies;
use warden_core::probe::ProbeEvent;
use warden_core::run::RunRecord;

/// The typed addresses of the singleton actors.
#[derive(Debug, Clone)]
pub struct Addrs {
    pub audit: Addr<AuditWriter>,
    pub gatekeeper: Addr<Gatekeeper>,
    pub approvals: Addr<ApprovalQueue>,
    pub services: Addr<ServiceSupervisor>,
    pub executor: Addr<PlaybookExecutor>,
    pub incidents: Addr<IncidentManager>,
}

impl Addrs {
    pub(crate) fn new() -> Self {
        Self {
            audit: Addr::<AuditWriter>::at(),
            gatekeeper: Addr::<Gatekeeper>::at(),
            approvals: Addr::<ApprovalQueue>::at(),
            services: Addr::<ServiceSupervisor>::at(),
            executor: Addr::<PlaybookExecutor>::at(),
            incidents: Addr::<IncidentManager>::at(),
        }
    }
}

/// Everything the subtree builders hand out. Crate-private: actors get fields, not this.
#[derive(Clone)]
pub(crate) struct Wiring {
    /// The shared state the API reads too (config, store, table, board, registry, metrics).
    pub views: Views,
    pub policies: Current<Policies>,
    pub catalog: Current<Catalog>,
    /// The config as the files say; `views.config` is it with the runtime overrides.
    pub base: Current<NodeConfig>,
    /// Held while the overrides document changes and is applied (see `reconfigure`).
    pub overrides_lock: Arc<tokio::sync::Mutex<()>>,
    pub self_exe: PathBuf,
    pub containment: Containment,
    pub probe_events: Arc<OutputPort<ProbeEvent>>,
    pub runs_finished: Arc<OutputPort<RunRecord>>,
    /// (service, mode, when it was verified restored) of every incident resolved: its
    /// detector judges it afresh, on checks made after that time.
    pub incidents_resolved: Arc<OutputPort<(ServiceName, FailureMode, u64)>>,
    /// What people were told of each probe (kept across restarts of the alerter).
    pub alert_book: AlertBook,
    /// The open incidents' repairs, published by the incident manager for the alerter.
    pub repairs: RepairBoard,
    /// The open incidents' traces, kept across restarts of the incident manager.
    pub traces: TraceBoard,
    pub notifier: Notifier,
    /// The audit key and checkpoint file, or why they cannot be had.
    pub audit_seal: Result<AuditSeal, SealError>,
    pub addrs: Addrs,
}

/// What the HTTP API and the CLI read: snapshots and the store, never an actor.
#[derive(Clone)]
pub struct Views {
    pub config: Current<NodeConfig>,
    pub data_dir: DataDir,
    pub store: Store,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
    pub services: ServiceTable,
    pub probes: ProbeBoard,
    /// Whether the audit chain verified at start.
    pub trust: ChainTrust,
    /// The governance policy now (who may read the API, approvals).
    pub policies: Current<Policies>,
    /// The playbook catalog now.
    pub catalog: Current<Catalog>,
    /// The service level objectives as last judged.
    pub slos: SloBoard,
    /// The alert silences people made.
    pub silences: SilenceBook,
    /// What holds automatic repair: pauses, maintenance, operators at work, the breaker.
    pub holds: crate::holds::HoldBoard,
}

/// Why automatic repair is off or held, node-wide or for some service: the label
/// (`warden_healing_blocked{reason}`, one of `metrics::BLOCKED_REASONS`) and the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub reason: &'static str,
    /// `None`: the whole node.
    pub service: Option<ServiceName>,
    pub detail: String,
}

impl Views {
    /// Every reason the healer's tier 2+ actions are refused now: repair turned off, an
    /// audit chain that does not verify, a store that takes no writes, the holds.
    pub fn healing_blocked(&self) -> Vec<Blocked> {
        use warden_core::holds::HoldKind;
        let node = |reason, detail: String| Blocked { reason, service: None, detail };
        let mut out = Vec::new();
        if !self.config.get().healing.enabled {
            out.push(node("disabled", "automatic repair is off (healing.enabled: false)".into()));
        }
        if let Some(why) = self.trust.broken() {
            out.push(node("audit_chain", why));
        }
        if let crate::store::Health::Degraded { reason, .. } = &*self.store.health().borrow() {
            out.push(node("store_degraded", format!("store degraded: {reason}")));
        }
        for h in self.holds.active() {
            let reason = match (h.kind, &h.service) {
                (HoldKind::Pause, None) => "paused",
                (HoldKind::Pause, Some(_)) => "service_paused",
                (HoldKind::Maintenance, _) => "maintenance",
                (HoldKind::Operator, _) => "operator",
                (HoldKind::Breaker, _) => "breaker",
            };
            out.push(Blocked { reason, service: h.service.clone(), detail: h.describe() });
        }
        out
    }
}

/// What a reload changed.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub services: crate::guardian::service_supervisor::ReloadReport,
    pub probes_changed: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("only a restart of warden can change: {0}")]
    NeedsRestart(String),
    #[error("cannot reach the service supervisor: {0}")]
    Services(#[from] crate::addr::SendError),
    #[error("the service supervisor refused: {0}")]
    Refused(#[from] crate::guardian::service_supervisor::ServiceOpError),
}

impl Wiring {
    /// Runs `config` (the files' config with its overrides): the services first, and if
    /// the supervisor refuses or cannot be reached nothing else changes; then the config
    /// view and the probes. Callers hold `overrides_lock`.
    pub(crate) async fn apply_config(&self, config: NodeConfig) -> Result<Reloaded, ReloadError> {
        let report = self.addrs.services.reload(config.services.clone()).await??;
        self.views.services.lock().staggered_boot = config.staggered_boot;
        let old_probes = self.views.config.get().probes.clone();
        let new_probes = config.probes.clone();
        self.views.config.set(config);
        let probes_changed = crate::guardian::reload_probes(self, &old_probes, &new_probes).await;
        Ok(Reloaded { services: report, probes_changed })
    }
}
