//! Serving the API without letting clients starve supervision.
//!
//! - At most `max_connections` connections are open. A new one past the cap closes the
//!   oldest connection that has no request in flight (an idle keep-alive or a client that
//!   never sent anything), so a flood of idle sockets cannot lock out a real request, and
//!   warden's descriptors stay bounded; if every connection is busy, the new one is
//!   closed at once.
//! - A connection must send a request's headers within `header_read_timeout` (slowloris).
//! - A request is answered within `request_timeout` (408 after it) and its body may not
//!   exceed `max_body_bytes` (413).
//! - `accept` failing for lack of descriptors backs off instead of spinning.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;
use warden_core::config::HttpLimits;

/// One open connection as the table sees it.
struct Conn {
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// The open connections, oldest first (ids grow with time).
#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Conn>,
}

/// A connection's place in the table; leaving it (the connection ended) frees the place.
struct Slot {
    id: u64,
    table: Arc<Mutex<Table>>,
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).open.remove(&self.id);
    }
}

/// A place for a new connection, closing the oldest idle one if the table is full; `None`
/// when every open connection has a request in flight.
fn admit(table: &Arc<Mutex<Table>>, max: usize) -> Option<Slot> {
    let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
    if t.open.len() >= max {
        let idle = t.open.iter().find(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0).map(|(id, _)| *id)?;
        if let Some(c) = t.open.remove(&idle) {
            c.close.notify_one();
        }
    }
    let id = t.next;
    t.next += 1;
    let (in_flight, close) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    t.open.insert(id, Conn { in_flight: in_flight.clone(), close: close.clone() });
    Some(Slot { id, table: table.clone(), in_flight, close })
}

/// Counts a request in flight on its connection while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` under `limits` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: HttpLimits) {
    let router = router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(axum::middleware::map_response(super::error::json_errors));
    let table: Arc<Mutex<Table>> = Arc::default();
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE: no descriptor for the connection. Back off rather than spin,
                // and say so at most once a minute.
                if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(error = %e, "alert: cannot accept API connections");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&table, limits.max_connections) else {
            // Every connection is busy with a request: this one waits for no one.
            drop(stream);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let in_flight = slot.in_flight.clone();
            let service = tower::service_fn(move |req| {
                let guard = InFlight::enter(&in_flight);
                let router = router.clone();
                async move {
                    let response = router.oneshot(req).await;
                    drop(guard);
                    response
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
            let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::select! {
                _ = conn => {}
                _ = slot.close.notified() => {}
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_full_table_closes_the_oldest_idle_connection_and_never_a_busy_one() {
        let table: Arc<Mutex<Table>> = Arc::default();
        let a = admit(&table, 2).expect("room");
        let b = admit(&table, 2).expect("room");
        let _busy = InFlight::enter(&a.in_flight);
        let c = admit(&table, 2).expect("b is idle: it makes room");
        assert!(table.lock().expect("lock").open.contains_key(&a.id), "the busy one stays");
        assert!(!table.lock().expect("lock").open.contains_key(&b.id), "the oldest idle one goes");
        let _busy_c = InFlight::enter(&c.in_flight);
        assert!(admit(&table, 2).is_none(), "all busy: no room");
        drop(b);
        assert_eq!(table.lock().expect("lock").open.len(), 2);
    }
}
