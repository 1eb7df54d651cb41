//! NodeWatch: the node as a whole, beside its services: its memory.
//!
//! Every [`TICK`] it reads the kernel's `MemAvailable` (`/proc/meminfo`) and judges it by
//! `warden_core::detect::node_memory_low`. Memory low on the node is told to a person, once
//! when it begins and once when it ends (a log line and a `NodeMemoryLow` alert naming the
//! processes that hold the most, and whether warden runs them). It repairs nothing: what
//! holds the memory may be a process warden does not run, which it never signals, and a
//! service of warden's past its own limit is already its own fault (mode 4, per service).
//! Two looks in a row must agree, so a passing spike is not a page.

use super::notifier::Notifier;
use crate::addr::{AbortOnDrop, Addr};
use crate::current::Current;
use crate::guardian::service_table::ServiceTable;
use crate::registry::{ActorRegistry, Registration};
use procfs::Current as _;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;
use warden_core::alert::Alert;
use warden_core::config::NodeConfig;
use warden_core::detect::{Debounced, NodeMemory, node_memory_low, owner_of};

pub const PATH: &str = "healing/node_watch";
const TICK: Duration = Duration::from_secs(1);
/// Looks in a row that must agree before the state told changes.
const AGREE: u32 = 2;
/// Processes named in the alert.
const TOP: usize = 3;

pub enum NodeWatchMsg {
    Tick,
}

impl Addr<NodeWatch> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }
}

pub struct NodeWatch {
    pub config: Current<NodeConfig>,
    pub services: ServiceTable,
    pub notifier: Notifier,
    pub registry: ActorRegistry,
}

pub struct State {
    /// The firing alert, while memory is low.
    told: Option<Alert>,
    low: Debounced,
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for NodeWatch {
    type Msg = NodeWatchMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<NodeWatchMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State {
            told: None,
            low: Debounced::new(AGREE),
            _tick: AbortOnDrop(myself.send_interval(TICK, || NodeWatchMsg::Tick)),
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<NodeWatchMsg>,
        msg: NodeWatchMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let NodeWatchMsg::Tick = msg;
        let Some(m) = node_memory() else { return Ok(()) };
        let h = self.config.get().healing;
        let low = node_memory_low(m, h.node_memory_min_available_pct, h.node_memory_min_available_mb << 20);
        if st.low.look(low).is_none() {
            return Ok(());
        }
        let now = warden_core::time::now_unix_ms();
        let mib = |b: u64| b >> 20;
        match st.told.take() {
            None => {
                let holders = self.largest_holders();
                tracing::error!(
                    available_mib = mib(m.available_bytes),
                    total_mib = mib(m.total_bytes),
                    holders,
                    "alert: the node's memory is low; warden kills nothing it does not run"
                );
                let floor = (h.node_memory_min_available_pct, h.node_memory_min_available_mb);
                let alert = Alert::node_memory_low(mib(m.available_bytes), mib(m.total_bytes), floor, &holders, now);
                self.notifier.send(&alert);
                st.told = Some(alert);
            }
            Some(alert) => {
                tracing::warn!(available_mib = mib(m.available_bytes), "the node's memory is no longer low");
                self.notifier.send(&alert.resolved_at(now));
            }
        }
        Ok(())
    }
}

impl NodeWatch {
    /// The processes that hold the most memory, largest first, each with whether warden
    /// runs it (a service's process, or one of its process group: each service starts as
    /// a group leader).
    fn largest_holders(&self) -> String {
        let services: Vec<(String, Option<u32>)> =
            self.services.snapshot().into_iter().map(|s| (s.name.to_string(), s.pid)).collect();
        let Ok(all) = procfs::process::all_processes() else { return "(processes unreadable)".into() };
        let page = procfs::page_size();
        let mut held: Vec<(u64, i32, String, i32)> = all
            .flatten()
            .filter_map(|p| {
                let stat = p.stat().ok()?;
                Some((stat.rss.saturating_mul(page), stat.pid, stat.comm, stat.pgrp))
            })
            .collect();
        held.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
        held.iter()
            .take(TOP)
            .map(|(bytes, pid, comm, pgrp)| {
                let whose = owner_of(*pid, *pgrp, &services)
                    .map_or("not run by warden".to_string(), |name| format!("service `{name}`"));
                format!("pid {pid} ({comm}, {} MiB, {whose})", bytes >> 20)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The node's memory now, if `/proc/meminfo` says it.
fn node_memory() -> Option<NodeMemory> {
    let m = procfs::Meminfo::current().ok()?;
    Some(NodeMemory { total_bytes: m.mem_total, available_bytes: m.mem_available? })
}
