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

/// How long the service supervisor may take to answer for the first time.
const STARTUP_GRACE: Duration = Duration::from_secs(60);

/// Pings the watchdog at half its interval while warden is alive inside; returns at once
/// when the service manager set no watchdog.
pub async fn watchdog(node: ActorRef<SupervisorMsg>, addrs: Addrs) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let every = interval / 2;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withheld = false;
    // Until the service supervisor has answered once, it may simply not be spawned yet:
    // the node supervisor's answer is enough then, for a bounded start-up time.
    let started = tokio::time::Instant::now();
    let mut seen = false;
    loop {
        tick.tick().await;
        let answer = match alive(&node, &addrs, every / 2).await {
            Err("service supervisor") if !seen && started.elapsed() < STARTUP_GRACE => Ok(()),
            Ok(()) => {
                seen = true;
                Ok(())
            }
            other => other,
        };
        match answer {
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
