//! The probes' latest results, published by each probe actor and read by the API.
//!
//! Shared state outside the actors, like the service table: a probe's restart loses
//! nothing here, and readers never ask an actor.

use crate::probe::Failure;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The latest state of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    pub name: String,
    pub layer: warden_core::config::Layer,
    pub target: String,
    /// `None` until the thresholds have decided either way.
    pub up: Option<bool>,
    pub last_ok: Option<bool>,
    pub last_latency_ms: Option<f64>,
    pub last_failure: Option<Failure>,
    pub consecutive_failures: u32,
    pub checks: u64,
    pub failures: u64,
    pub last_check_unix_ms: u64,
}

/// Where probes publish; read by the API and by re-probes.
#[derive(Debug, Clone, Default)]
pub struct ProbeBoard {
    inner: Arc<Mutex<BTreeMap<String, ProbeStatus>>>,
}

impl ProbeBoard {
    pub fn publish(&self, s: ProbeStatus) {
        if let Ok(mut m) = self.inner.lock() {
            m.insert(s.name.clone(), s);
        }
    }
    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        self.inner.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}
