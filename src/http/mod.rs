//! warden's own HTTP API: health, status, healer stats, audit verification, metrics.
//!
//! Handlers read the node's [`Views`] (snapshots and the store); they never wait on a
//! pillar actor, so the API answers while a pillar restarts.

pub mod error;
pub mod routes;
pub mod server;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;
use warden_actors::node::{Addrs, Views};

/// The http subtree's path.
pub const PATH: &str = "http";

/// What every handler can see.
#[derive(Clone)]
pub struct AppState {
    pub views: Views,
    /// Only for fault injection (crash an actor on command).
    pub addrs: Addrs,
    pub started: Instant,
    /// Bound once at start; each (re)start of the server actor serves a clone of it.
    pub listener: Arc<TcpListener>,
    pub fault_injection: bool,
    ready_latch: Arc<AtomicBool>,
    shutting_down: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(views: Views, addrs: Addrs, listener: Arc<TcpListener>, fault_injection: bool) -> Self {
        Self {
            views,
            addrs,
            started: Instant::now(),
            listener,
            fault_injection,
            ready_latch: Arc::default(),
            shutting_down: Arc::default(),
        }
    }

    /// Ready once every service has been ready once (a latch: later faults are the
    /// healer's business, not a reason to pull warden out of rotation); not ready while
    /// shutting down.
    pub fn ready(&self) -> bool {
        if self.shutting_down.load(Ordering::Relaxed) {
            return false;
        }
        if !self.ready_latch.load(Ordering::Relaxed) && self.views.services.all_ready_once() {
            self.ready_latch.store(true, Ordering::Relaxed);
        }
        self.ready_latch.load(Ordering::Relaxed)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}
