//! The governance pillar: the audit writer first, the gatekeeper on top of it, then the
//! approval queue (rest_for_one: a new audit writer restarts everything that depends on it).

pub mod approval_queue;
pub mod audit_writer;
pub mod gatekeeper;
pub mod seal;

use crate::tree::{self, ChildSpec};
use crate::wiring::Wiring;
use approval_queue::ApprovalQueue;
use audit_writer::AuditWriter;
use gatekeeper::Gatekeeper;

pub const PATH: &str = "governance";

pub(crate) fn subtree(w: &Wiring) -> ChildSpec {
    let w = w.clone();
    tree::subtree(PATH, w.views.config.get().supervision.governance, move || {
        let (a, g, q) = (w.clone(), w.clone(), w.clone());
        vec![
            tree::worker(w.addrs.audit.name(), move || AuditWriter {
                store: a.views.store.clone(),
                seal: a.audit_seal.clone(),
                trust: a.views.trust.clone(),
                metrics: a.views.metrics.clone(),
                registry: a.views.registry.clone(),
                data_dir: a.views.data_dir.root().to_path_buf(),
            }),
            tree::worker(w.addrs.gatekeeper.name(), move || Gatekeeper {
                policies: g.policies.clone(),
                store: g.views.store.clone(),
                audit: g.addrs.audit.clone(),
                approvals: g.addrs.approvals.clone(),
                trust: g.views.trust.clone(),
                metrics: g.views.metrics.clone(),
                registry: g.views.registry.clone(),
            }),
            tree::worker(w.addrs.approvals.name(), move || ApprovalQueue {
                store: q.views.store.clone(),
                metrics: q.views.metrics.clone(),
                policies: q.policies.clone(),
                audit: q.addrs.audit.clone(),
                registry: q.views.registry.clone(),
            }),
        ]
    })
}
