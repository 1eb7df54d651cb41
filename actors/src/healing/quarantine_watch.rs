//! QuarantineWatch: tries a quarantined service again once what kept it down from outside
//! has cleared.
//!
//! Every [`TICK`] it reads the facts of the quarantined services: who holds their ports,
//! missing files, a full disk, dependencies not serving. The rules are
//! `warden_core::quarantine`: the outside causes seen when a quarantine began are
//! remembered, and once none holds the service is released through governance as the
//! healer (`release_service`: policy, rate limit and the audit trail, like any action).
//! A quarantine with no outside cause (the service's own crash loop) stays for a person,
//! said once. Nothing is released while healing is disabled.

use super::facts;
use crate::addr::{AbortOnDrop, Addr};
use crate::current::Current;
use crate::data_dir::DataDir;
use crate::guardian::executor::{OperatorOutcome, OperatorRequest, PlaybookExecutor};
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeMap;
use std::time::Duration;
use warden_core::audit::AuditActor;
use warden_core::config::{NodeConfig, ServiceName};
use warden_core::detect::Thresholds;
use warden_core::playbook::Primitive;
use warden_core::quarantine::{self, Blocker, Verdict, Watch};
use warden_core::service::ServiceState;

pub const PATH: &str = "healing/quarantine_watch";
/// How often the quarantined services are looked at.
const TICK: Duration = Duration::from_secs(1);
/// After a release that failed (the executor did not answer), or one held by a rate limit.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// After a release that waits for an approver or was denied: asked again this much later.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(600);

pub enum QuarantineMsg {
    Tick,
}

impl Addr<QuarantineWatch> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }
}

pub struct QuarantineWatch {
    pub board: ProbeBoard,
    pub services: ServiceTable,
    pub config: Current<NodeConfig>,
    pub data_dir: DataDir,
    pub executor: Addr<PlaybookExecutor>,
    pub registry: ActorRegistry,
}

pub struct State {
    watches: BTreeMap<ServiceName, Watch>,
    /// The last verdict said of each quarantine, so each is said once.
    said: BTreeMap<ServiceName, String>,
    /// When each service was last released by this actor.
    released: BTreeMap<ServiceName, Vec<u64>>,
    /// A release that was refused or failed is tried again from then on.
    retry_at: BTreeMap<ServiceName, u64>,
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for QuarantineWatch {
    type Msg = QuarantineMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<QuarantineMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State {
            watches: BTreeMap::new(),
            said: BTreeMap::new(),
            released: BTreeMap::new(),
            retry_at: BTreeMap::new(),
            _tick: AbortOnDrop(myself.send_interval(TICK, || QuarantineMsg::Tick)),
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<QuarantineMsg>,
        msg: QuarantineMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let QuarantineMsg::Tick = msg;
        let quarantined: Vec<ServiceName> = {
            let t = self.services.lock();
            t.services.iter().filter(|(_, e)| e.state == ServiceState::Quarantined).map(|(n, _)| n.clone()).collect()
        };
        st.watches.retain(|s, _| quarantined.contains(s));
        st.said.retain(|s, _| quarantined.contains(s));
        st.retry_at.retain(|s, _| quarantined.contains(s));
        if quarantined.is_empty() {
            return Ok(());
        }
        let now = warden_core::time::now_unix_ms();
        let blockers = self.blockers_of(&quarantined);
        for (service, now_blockers) in blockers {
            let watch = st
                .watches
                .entry(service.clone())
                .or_insert_with(|| Watch { blockers: now_blockers.clone(), since_unix_ms: now });
            quarantine::remember(watch, &now_blockers);
            let released = st.released.entry(service.clone()).or_default();
            released.retain(|at| now.saturating_sub(*at) < quarantine::RELEASE_MEMORY_MS);
            let verdict = quarantine::judge(watch, &now_blockers, released, now);
            let text = match &verdict {
                Verdict::Wait(why) => format!("waiting: {why}"),
                Verdict::Release(why) => why.clone(),
                Verdict::ForAPerson(why) => why.clone(),
            };
            let first = st.said.get(&service) != Some(&text);
            match verdict {
                Verdict::Wait(why) if first => {
                    tracing::info!(service = service.as_str(), why, "quarantined; released once its cause clears");
                }
                Verdict::ForAPerson(why) if first => {
                    tracing::warn!(
                        service = service.as_str(),
                        why,
                        "alert: quarantined, a person must look (`warden services release` once fixed)"
                    );
                }
                Verdict::Release(why)
                    if self.config.get().healing.enabled && st.retry_at.get(&service).is_none_or(|at| now >= *at) =>
                {
                    match self.release(&service, &why).await {
                        Ok(()) => {
                            released.push(now);
                            st.watches.remove(&service);
                            st.said.remove(&service);
                            st.retry_at.remove(&service);
                            continue;
                        }
                        Err(retry_at) => {
                            st.retry_at.insert(service.clone(), retry_at);
                        }
                    }
                }
                _ => {}
            }
            st.said.insert(service, text);
        }
        Ok(())
    }
}

impl QuarantineWatch {
    /// The outside causes holding now for each of `quarantined`.
    fn blockers_of(&self, quarantined: &[ServiceName]) -> Vec<(ServiceName, Vec<Blocker>)> {
        let t = Thresholds::of(&self.config.get().healing);
        let all = facts::gather(&self.services, &self.data_dir, t, facts::Needs { memory: false, disk: true });
        let down = self.board.failing_targets();
        let table = self.services.lock();
        all.into_iter()
            .filter(|f| quarantined.contains(&f.service))
            .filter_map(|f| {
                let e = table.services.get(&f.service)?;
                // Nothing of a quarantined service runs: anyone on its ports is someone else.
                let holder = e.spec.ports.iter().find_map(|port| {
                    let (pid, _) = *warden_core::procnet::listeners_of_port(*port).ok()?.first()?;
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    Some(format!("pid {pid} ({}) on port {port}", comm.trim()))
                });
                let deps_down: Vec<ServiceName> = e
                    .spec
                    .depends_on
                    .iter()
                    .filter(|d| facts::failing(table.services.get(*d).map(|x| x.state), down.contains(*d)))
                    .cloned()
                    .collect();
                Some((f.service.clone(), quarantine::blockers(&f, holder, &deps_down, t)))
            })
            .collect()
    }

    /// Releases `service` through governance: `Ok` when it was started again, else when to
    /// try again. A release waiting for an approver, or denied, is not asked again soon
    /// (each ask would file a new request or a new refusal): the approval, or a person,
    /// decides.
    async fn release(&self, service: &ServiceName, why: &str) -> Result<(), u64> {
        let now = warden_core::time::now_unix_ms();
        let op = OperatorRequest {
            actor: AuditActor::System,
            primitive: Primitive::ReleaseService,
            target: service.clone(),
            reason: format!("quarantined service retried: {why}"),
        };
        match self.executor.operate(op).await {
            Ok(OperatorOutcome::Done { result: Ok(detail), .. }) => {
                tracing::info!(service = service.as_str(), why, detail, "quarantine lifted: its cause cleared");
                Ok(())
            }
            Ok(OperatorOutcome::Held { reason, retry_at_unix_ms, .. }) => {
                tracing::info!(
                    service = service.as_str(),
                    reason,
                    "quarantine release held by governance; trying again then"
                );
                Err(retry_at_unix_ms.max(now + RETRY_AFTER.as_millis() as u64))
            }
            Ok(OperatorOutcome::PendingApproval { approval_id, .. }) => {
                tracing::warn!(
                    service = service.as_str(),
                    approval = approval_id,
                    "alert: quarantine release waits for an approver"
                );
                Err(now + ASK_AGAIN_AFTER.as_millis() as u64)
            }
            Ok(other) => {
                let why = match &other {
                    OperatorOutcome::Denied { reason, .. } => format!("denied: {reason}"),
                    OperatorOutcome::Done { result: Err(e), .. } => format!("failed: {e}"),
                    _ => "no release".to_string(),
                };
                tracing::warn!(
                    service = service.as_str(),
                    why,
                    "alert: quarantine not lifted; a person must look (`warden services release`)"
                );
                Err(now + ASK_AGAIN_AFTER.as_millis() as u64)
            }
            Err(e) => {
                tracing::warn!(service = service.as_str(), error = %e, "quarantine not lifted: executor unavailable");
                Err(now + RETRY_AFTER.as_millis() as u64)
            }
        }
    }
}
