//! Snapshots of the actor tree for `/api/status`.
//!
//! Each actor registers itself in `pre_start` and keeps a [`Registration`] in its state;
//! dropping the state (a clean stop or a panic) marks it stopped, and the next start of
//! the same path counts as a restart. The HTTP side reads snapshots and never asks an
//! actor, so it stays responsive while a pillar restarts.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorState {
    Running,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActorInfo {
    /// Position in the tree, e.g. `guardian/service_supervisor`.
    pub path: String,
    pub state: ActorState,
    /// Starts after the first one.
    pub restarts: u32,
    pub since_unix_ms: u64,
    pub since: String,
}

#[derive(Debug, Clone, Default)]
pub struct ActorRegistry {
    inner: Arc<Mutex<BTreeMap<String, ActorInfo>>>,
}

impl ActorRegistry {
    /// Records that the actor at `path` started; keep the returned guard in its state.
    pub fn started(&self, path: &str) -> Registration {
        let now = warden_core::time::now_unix_ms();
        if let Ok(mut map) = self.inner.lock() {
            map.entry(path.to_string())
                .and_modify(|i| {
                    i.restarts += 1;
                    i.state = ActorState::Running;
                    i.since_unix_ms = now;
                    i.since = warden_core::time::rfc3339(now);
                })
                .or_insert_with(|| ActorInfo {
                    path: path.to_string(),
                    state: ActorState::Running,
                    restarts: 0,
                    since_unix_ms: now,
                    since: warden_core::time::rfc3339(now),
                });
        }
        let instance = self.inner.lock().ok().and_then(|m| m.get(path).map(|i| i.restarts)).unwrap_or(0);
        Registration { registry: self.clone(), path: path.to_string(), instance }
    }

    /// The instance that started as `instance` has stopped. A crashed instance's state may
    /// be dropped after its successor registered: that says nothing of the successor.
    fn stopped(&self, path: &str, instance: u32) {
        if let Ok(mut map) = self.inner.lock()
            && let Some(i) = map.get_mut(path)
            && i.restarts == instance
        {
            i.state = ActorState::Stopped;
            i.since_unix_ms = warden_core::time::now_unix_ms();
            i.since = warden_core::time::rfc3339(i.since_unix_ms);
        }
    }

    /// Drops `path` from the list: an actor that is gone for good (a probe a reload
    /// removed), not one that is restarting.
    pub fn forget(&self, path: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(path);
        }
    }

    pub fn snapshot(&self) -> Vec<ActorInfo> {
        self.inner.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}

/// Marks its actor stopped when dropped.
#[derive(Debug)]
pub struct Registration {
    registry: ActorRegistry,
    path: String,
    /// Which start of the path this is (its restart count then).
    instance: u32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.stopped(&self.path, self.instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_late_drop_of_a_crashed_instance_does_not_stop_its_successor() {
        let r = ActorRegistry::default();
        let first = r.started("a");
        let second = r.started("a");
        drop(first);
        let a = r.snapshot().into_iter().find(|i| i.path == "a").expect("listed");
        assert_eq!((a.state, a.restarts), (ActorState::Running, 1));
        drop(second);
        assert_eq!(r.snapshot()[0].state, ActorState::Stopped);
    }
}
