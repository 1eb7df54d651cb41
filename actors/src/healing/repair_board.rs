//! The repairs under way, as the incident manager last published them: a shared view
//! (like the probe board) the alerter reads to hold the alerts a running repair explains.

use std::sync::Arc;
use warden_core::incident::UnderRepair;

/// The open incidents and whether their repair is still within its time, as the incident
/// manager last published them: the alerter holds the alerts they explain.
#[derive(Debug, Clone, Default)]
pub struct RepairBoard {
    inner: Arc<std::sync::Mutex<Vec<UnderRepair>>>,
}

impl RepairBoard {
    pub fn get(&self) -> Vec<UnderRepair> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set(&self, repairs: Vec<UnderRepair>) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = repairs;
    }
}
