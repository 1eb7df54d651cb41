//! IncidentManager: the incident lifecycle.
//!
//! Opens one incident per (service, failure mode) at a time, picks the first playbook the
//! catalog lists for the mode, hands it to the executor, and on the run's verified success
//! resolves the incident with its MTTR stored; on failure it tries the mode's next playbook,
//! and when none is left marks the incident failed and alerts. Incidents open longer than
//! the MTTR limit raise an alert.

use crate::context::{Ctx, names};
use crate::executor::{ExecutorMsg, RunOrder};
use crate::metrics::ModeLabel;
use crate::registry::Registration;
use crate::rpc::{self, AbortOnDrop};
use crate::store::blocking;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeMap;
use std::time::Duration;
use warden_core::incident::{Finding, Incident, IncidentStatus, overdue};
use warden_core::playbook::{RunOutcome, RunRecord};

pub enum IncidentMsg {
    Open(Finding),
    RunFinished {
        incident_id: u64,
        run: Box<RunRecord>,
    },
    CheckOverdue,
    /// Fault injection: panic inside the handler.
    Crash,
}

pub struct IncidentManager {
    pub ctx: Ctx,
}

pub struct State {
    open: BTreeMap<u64, Incident>,
    alerted: std::collections::BTreeSet<u64>,
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for IncidentManager {
    type Msg = IncidentMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<IncidentMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        // Incidents left open by a previous instance (or a previous run of warden) continue.
        let recent = blocking(&self.ctx.store, |s| s.recent_incidents(1000)).await?;
        let open: BTreeMap<u64, Incident> =
            recent.into_iter().filter(|i| i.status == IncidentStatus::Open).map(|i| (i.id, i)).collect();
        self.ctx.metrics.incidents_open.set(open.len() as i64);
        let tick = myself.send_interval(Duration::from_secs(5), || IncidentMsg::CheckOverdue);
        Ok(State {
            open,
            alerted: Default::default(),
            _tick: AbortOnDrop(tick),
            _reg: self.ctx.registry.started(names::INCIDENT_MANAGER),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<IncidentMsg>,
        msg: IncidentMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IncidentMsg::Open(f) => self.open(f, st).await?,
            IncidentMsg::RunFinished { incident_id, run } => self.run_finished(incident_id, *run, st).await?,
            IncidentMsg::CheckOverdue => {
                let list: Vec<Incident> = st.open.values().cloned().collect();
                for id in overdue(&list, warden_core::now_unix_ms(), self.ctx.config.healing.mttr_alert_ms) {
                    if st.alerted.insert(id) {
                        tracing::warn!(
                            incident = id,
                            limit_ms = self.ctx.config.healing.mttr_alert_ms,
                            "alert: incident open longer than the MTTR limit"
                        );
                    }
                }
            }
            IncidentMsg::Crash => panic!("fault injection: incident manager crashed on command"),
        }
        Ok(())
    }
}

impl IncidentManager {
    async fn open(&self, f: Finding, st: &mut State) -> Result<(), ActorProcessingErr> {
        if st.open.values().any(|i| i.service == f.service && i.mode == f.mode) {
            tracing::debug!(service = f.service, mode = f.mode.as_str(), "incident already open");
            return Ok(());
        }
        let (id, run_id) = blocking(&self.ctx.store, |s| Ok((s.next_id("incident")?, s.next_id("run")?))).await?;
        let playbook = self.ctx.catalog.for_mode(f.mode).first().map(|p| p.id.clone());
        let mut incident = Incident {
            id,
            mode: f.mode,
            service: f.service.clone(),
            evidence: f.evidence.clone(),
            detected_unix_ms: warden_core::now_unix_ms(),
            fault_onset_unix_ms: Some(f.first_sign_unix_ms),
            resolved_unix_ms: None,
            status: IncidentStatus::Open,
            playbooks: playbook.iter().cloned().collect(),
            run_ids: vec![],
            detail: String::new(),
        };
        self.ctx.metrics.incidents_opened.get_or_create(&ModeLabel { mode: f.mode.as_str().into() }).inc();
        tracing::warn!(
            incident = id,
            service = f.service,
            mode = f.mode.as_str(),
            playbook = playbook.as_deref().unwrap_or("-"),
            "incident opened"
        );
        match playbook {
            Some(pb) => {
                incident.run_ids.push(run_id);
                self.save(&incident).await?;
                st.open.insert(id, incident);
                self.ctx.metrics.incidents_open.set(st.open.len() as i64);
                self.dispatch(id, run_id, pb, &f.service, &f.evidence)?;
            }
            None => {
                incident.status = IncidentStatus::Failed;
                incident.detail = "no playbook for this failure mode".into();
                tracing::error!(incident = id, "alert: no playbook for failure mode {}", f.mode.as_str());
                self.save(&incident).await?;
            }
        }
        Ok(())
    }

    fn dispatch(
        &self,
        incident_id: u64,
        run_id: u64,
        playbook: String,
        target: &str,
        rationale: &str,
    ) -> Result<(), ActorProcessingErr> {
        let order = RunOrder {
            run_id,
            incident_id: Some(incident_id),
            playbook,
            target: target.into(),
            rationale: rationale.into(),
        };
        rpc::tell(&self.ctx.name(names::EXECUTOR), ExecutorMsg::Run(Box::new(order)))?;
        Ok(())
    }

    async fn save(&self, i: &Incident) -> Result<(), ActorProcessingErr> {
        let i = i.clone();
        blocking(&self.ctx.store, move |s| s.put_incident(&i)).await
    }

    async fn run_finished(&self, incident_id: u64, run: RunRecord, st: &mut State) -> Result<(), ActorProcessingErr> {
        let Some(mut incident) = st.open.remove(&incident_id) else {
            return Ok(());
        };
        if run.outcome == RunOutcome::Succeeded {
            incident.status = IncidentStatus::Resolved;
            incident.resolved_unix_ms = Some(run.finished_unix_ms.unwrap_or_else(warden_core::now_unix_ms));
            let mttr = incident.mttr_ms().unwrap_or(0);
            self.ctx.metrics.mttr_seconds.observe(mttr as f64 / 1000.0);
            tracing::info!(
                incident = incident_id,
                service = incident.service,
                mttr_ms = mttr,
                playbook = run.playbook,
                "incident resolved"
            );
        } else {
            let tried: Vec<String> = incident.playbooks.clone();
            let next =
                self.ctx.catalog.for_mode(incident.mode).into_iter().map(|p| p.id.clone()).find(|p| !tried.contains(p));
            match next {
                Some(pb) => {
                    let run_id = blocking(&self.ctx.store, |s| s.next_id("run")).await?;
                    tracing::warn!(
                        incident = incident_id,
                        failed = run.playbook,
                        next = pb,
                        detail = run.detail,
                        "playbook failed; trying the next one"
                    );
                    incident.playbooks.push(pb.clone());
                    incident.run_ids.push(run_id);
                    self.save(&incident).await?;
                    let (service, evidence) = (incident.service.clone(), incident.evidence.clone());
                    st.open.insert(incident_id, incident);
                    return self.dispatch(incident_id, run_id, pb, &service, &evidence);
                }
                None => {
                    incident.status = IncidentStatus::Failed;
                    incident.detail = format!("{:?}: {}", run.outcome, run.detail);
                    tracing::error!(
                        incident = incident_id,
                        service = incident.service,
                        detail = incident.detail,
                        "alert: incident not healed, every playbook failed"
                    );
                }
            }
        }
        self.save(&incident).await?;
        self.ctx.metrics.incidents_open.set(st.open.len() as i64);
        Ok(())
    }
}
