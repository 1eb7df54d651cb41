//! What every actor of a node shares, and the names actors are registered under.
//!
//! Actors address each other by name (see [`crate::rpc`]) so a restarted actor is found
//! again; the `prefix` keeps two nodes in one test process apart.

use crate::metrics::Metrics;
use crate::probe_board::ProbeBoard;
use crate::registry::ActorRegistry;
use crate::service_table::ServiceTable;
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use warden_core::config::NodeConfig;
use warden_core::playbook::Catalog;
use warden_core::policy::Policies;

/// Tree paths of the node's actors (also their registered names, after the prefix).
pub mod names {
    pub const NODE: &str = "node";
    pub const GOVERNANCE: &str = "governance";
    pub const AUDIT_WRITER: &str = "governance/audit_writer";
    pub const GATEKEEPER: &str = "governance/gatekeeper";
    pub const APPROVAL_QUEUE: &str = "governance/approval_queue";
    pub const GUARDIAN: &str = "guardian";
    pub const SERVICE_SUPERVISOR: &str = "guardian/service_supervisor";
    pub const EXECUTOR: &str = "guardian/playbook_executor";
    pub const HEALING: &str = "healing";
    pub const INCIDENT_MANAGER: &str = "healing/incident_manager";
    pub const HTTP: &str = "http";
    pub const HTTP_SERVER: &str = "http/server";

    pub fn probe(name: &str) -> String {
        format!("guardian/probe/{name}")
    }
    pub fn detector(mode: &str) -> String {
        format!("healing/detector/{mode}")
    }
}

#[derive(Debug)]
pub struct NodeContext {
    /// Prepended to every registered actor name.
    pub prefix: String,
    pub config: NodeConfig,
    pub data_dir: PathBuf,
    /// This binary, for `@warden` service commands.
    pub self_exe: PathBuf,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub services: ServiceTable,
    pub registry: ActorRegistry,
    pub probes: ProbeBoard,
    pub policies: Policies,
    pub catalog: Catalog,
}

impl NodeContext {
    /// The registered name of the actor at tree path `path`.
    pub fn name(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }
}

pub type Ctx = Arc<NodeContext>;
