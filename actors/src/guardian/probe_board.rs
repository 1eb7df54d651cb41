//! The probes' latest results, published by each probe actor and read by the API and by
//! detectors when they (re)start.
//!
//! Shared state outside the actors, like the service table: a probe's restart loses
//! nothing here, readers never ask an actor, and a detector that missed an event while it
//! was restarting finds every probe that is down now and judges it again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use warden_core::probe::{ProbeEvent, ProbeStatus};

#[derive(Debug, Clone)]
struct Entry {
    status: ProbeStatus,
    /// The last threshold crossing: what a late subscriber needs to catch up.
    last_event: Option<ProbeEvent>,
}

/// Where probes publish.
#[derive(Debug, Clone, Default)]
pub struct ProbeBoard {
    inner: Arc<Mutex<BTreeMap<String, Entry>>>,
}

impl ProbeBoard {
    pub fn publish(&self, status: &ProbeStatus, event: Option<&ProbeEvent>) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = m.entry(status.name.clone()).or_insert_with(|| Entry { status: status.clone(), last_event: None });
        entry.status = status.clone();
        if let Some(ev) = event {
            entry.last_event = Some(ev.clone());
        }
    }

    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values().map(|e| e.status.clone()).collect()
    }

    /// The down events of every probe that is down now.
    pub fn down_now(&self) -> Vec<ProbeEvent> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.values()
            .filter(|e| e.status.up == Some(false))
            .filter_map(|e| e.last_event.clone())
            .filter(|ev| matches!(ev, ProbeEvent::Down { .. }))
            .collect()
    }
}
