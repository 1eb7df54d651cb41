//! The probes' latest results, published by each probe actor and read by the API and by
//! the detectors.
//!
//! Shared state outside the actors, like the service table: a probe's restart loses
//! nothing here, readers never ask an actor, and a detector that missed an event (it was
//! restarting, or its report did not get through) finds every probe that is down now.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use warden_core::probe::{ProbeEvent, ProbeStatus};

/// Where probes publish.
#[derive(Debug, Clone, Default)]
pub struct ProbeBoard {
    inner: Arc<Mutex<BTreeMap<String, ProbeStatus>>>,
}

impl ProbeBoard {
    pub fn publish(&self, status: &ProbeStatus) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(status.name.clone(), status.clone());
    }

    /// Forgets probes no longer configured (after a reload).
    pub fn retain(&self, names: &[&str]) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|name, _| names.contains(&name.as_str()));
    }

    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values().cloned().collect()
    }

    /// The down event of every probe that is down now, as its status stands.
    pub fn down_now(&self) -> Vec<ProbeEvent> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values().filter_map(ProbeStatus::down_event).collect()
    }
}
