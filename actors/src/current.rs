//! Settings that a reload (SIGHUP) replaces while everything runs: readers take the
//! current value for each use, a reload swaps in the next one atomically.

use arc_swap::ArcSwap;
use std::sync::Arc;

/// The current value of a reloadable setting.
#[derive(Debug)]
pub struct Current<T>(Arc<ArcSwap<T>>);

impl<T> Clone for Current<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Current<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(value)))
    }

    /// The value now (a later reload does not change what this returns).
    pub fn get(&self) -> Arc<T> {
        self.0.load_full()
    }

    pub fn set(&self, value: T) {
        self.0.store(Arc::new(value));
    }
}
