//! Running under systemd (`Type=notify`, `WatchdogSec=`): warden says READY once its tree
//! is up, STOPPING when it begins to stop, and pings the watchdog only while its node
//! supervisor and its service supervisor both answer, so a wedged warden is restarted by
//! systemd (and adopts its services again). Without `NOTIFY_SOCKET` all of it is silent.

use ractor::ActorRef;
use ractor::rpc::CallResult;
use sd_notify::NotifyState;
use std::time::Duration;
use warden_actors::node::Addrs;
use warden_actors::tree::SupervisorMsg;

pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("supervising")]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping services")]);
}

pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Pings the watchdog at half its interval while warden is alive inside; returns at once
/// when the service manager set no watchdog.
pub async fn watchdog(node: ActorRef<SupervisorMsg>, addrs: Addrs) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let every = interval / 2;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withheld = false;
    loop {
        tick.tick().await;
        match alive(&node, &addrs, every / 2).await {
            Ok(()) => {
                if withheld {
                    tracing::info!("watchdog: warden answers again; pinging");
                    withheld = false;
                }
                notify(&[NotifyState::Watchdog]);
            }
            Err(who) => {
                if !withheld {
                    tracing::warn!(unresponsive = who, "alert: watchdog ping withheld, warden is wedged");
                    withheld = true;
                }
            }
        }
    }
}

/// Both the node supervisor and the service supervisor answer within `limit`.
async fn alive(node: &ActorRef<SupervisorMsg>, addrs: &Addrs, limit: Duration) -> Result<(), &'static str> {
    match node.call(SupervisorMsg::InspectState, Some(limit)).await {
        Ok(CallResult::Success(_)) => {}
        _ => return Err("node supervisor"),
    }
    addrs.services.ping(limit).await.map_err(|_| "service supervisor")
}
