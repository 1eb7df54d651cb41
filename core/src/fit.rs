//! Playbooks know where they apply: what a playbook needs from a service, and whether a
//! service has it.
//!
//! A playbook's steps say much of what it needs: a `signal_service SIGHUP` step needs a
//! service that says it handles SIGHUP (many programs die of it), `${lock_file}` a lock
//! file the service declares, `set_endpoint` upstreams with fallbacks, a `restore_file`
//! of every managed file a service with `files:`. A playbook may add what its steps cannot
//! show (`requires: [data]`). Where a service lacks one, the playbook is not applicable to
//! it, with the reason: it is left out of plans, and dry runs and the catalog audit say so.

use crate::config::{NodeConfig, ServiceName, ServiceRole, ServiceSpec};
use crate::mode::FailureMode;
use crate::playbook::{Playbook, Primitive, Selector};
use crate::signal::SignalName;
use serde::{Deserialize, Serialize};

/// One thing a playbook needs from its target service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// It handles this signal (declared under `signals:`).
    Signal(SignalName),
    LockFile,
    Data,
    CredentialsFile,
    SecretFiles,
    PoolResetUrl,
    Model,
    /// It listens on ports (declared under `ports:`).
    Ports,
    /// It has upstreams with fallbacks (this one, if named).
    Upstreams(Option<String>),
    /// The config manages files of it (`files:`).
    Files,
    /// Other services depend on it.
    Dependents,
}

impl Need {
    /// What it is, as a service's config declares it.
    pub fn describe(&self) -> String {
        match self {
            Need::Signal(s) => format!("`signals:` with {}", s.as_str()),
            Need::LockFile => "`lock_file`".into(),
            Need::Data => "`data`".into(),
            Need::CredentialsFile => "`credentials_file`".into(),
            Need::SecretFiles => "`secret_files`".into(),
            Need::PoolResetUrl => "`pool_reset_url`".into(),
            Need::Model => "`model`".into(),
            Need::Ports => "`ports`".into(),
            Need::Upstreams(None) => "`upstreams` with fallbacks".into(),
            Need::Upstreams(Some(u)) => format!("upstream `{u}`"),
            Need::Files => "`files`".into(),
            Need::Dependents => "services that depend on it (`depends_on`)".into(),
        }
    }

    /// What a service lacking it lacks, in words.
    pub fn missing(&self, service: &str) -> String {
        match self {
            Need::Signal(s) => format!("`{service}` does not say it handles {} (`signals:`)", s.as_str()),
            Need::LockFile => format!("`{service}` declares no `lock_file`"),
            Need::Data => format!("`{service}` declares no `data` directory"),
            Need::CredentialsFile => format!("`{service}` declares no `credentials_file`"),
            Need::SecretFiles => format!("`{service}` declares no `secret_files`"),
            Need::PoolResetUrl => format!("`{service}` declares no `pool_reset_url`"),
            Need::Model => format!("`{service}` declares no `model`"),
            Need::Ports => format!("`{service}` declares no `ports`"),
            Need::Upstreams(None) => format!("`{service}` has no `upstreams` with fallbacks"),
            Need::Upstreams(Some(u)) => format!("`{service}` has no upstream `{u}`"),
            Need::Files => format!("the config manages no `files` of `{service}`"),
            Need::Dependents => format!("no service depends on `{service}`"),
        }
    }

    fn met_by(&self, spec: &ServiceSpec, dependents: usize) -> bool {
        let h = &spec.hooks;
        match self {
            Need::Signal(s) => h.handles(*s),
            Need::LockFile => h.lock_file.is_some(),
            Need::Data => h.data.is_some(),
            Need::CredentialsFile => h.credentials_file.is_some(),
            Need::SecretFiles => !h.secret_files.is_empty(),
            Need::PoolResetUrl => h.pool_reset_url.is_some(),
            Need::Model => h.model.is_some(),
            Need::Ports => !spec.ports.is_empty(),
            Need::Upstreams(None) => !spec.upstreams.is_empty(),
            Need::Upstreams(Some(name)) => spec.upstreams.iter().any(|u| u.name == *name),
            Need::Files => !spec.files.is_empty(),
            Need::Dependents => dependents > 0,
        }
    }
}

/// The variables of a playbook's text and what each needs.
const VARIABLE_NEEDS: &[(&str, Need)] = &[
    ("${lock_file}", Need::LockFile),
    ("${data}", Need::Data),
    ("${credentials_file}", Need::CredentialsFile),
    ("${secret_files}", Need::SecretFiles),
    ("${pool_reset_url}", Need::PoolResetUrl),
    ("${model}", Need::Model),
    ("${port}", Need::Ports),
];

/// The text a step carries (paths, globs, URLs, bodies), where variables may appear.
fn texts(p: &Primitive) -> Vec<&str> {
    match p {
        Primitive::SnapshotDir { path } | Primitive::RestoreDir { path } | Primitive::MoveAside { path } => {
            vec![path]
        }
        Primitive::CompressFiles { glob, .. } | Primitive::DeleteFiles { glob, .. } => vec![glob],
        Primitive::RestoreFile { path: Some(path), .. } => vec![path],
        Primitive::RotateSecret { files } => files.iter().map(String::as_str).collect(),
        Primitive::HttpCall { url, body, .. } => std::iter::once(url.as_str()).chain(body.as_deref()).collect(),
        Primitive::KillProcess { select: Selector::LockHolder { path }, .. } => vec![path],
        _ => Vec::new(),
    }
}

/// What `pb` needs from a service: what its steps show, and what it says it requires.
/// (Steps sent to the service's dependents need from them: [`dependent_needs`].)
pub fn needs(pb: &Playbook) -> Vec<Need> {
    let mut out: Vec<Need> = pb.requires.clone();
    for step in pb.steps.iter().filter(|s| !for_dependents(s)) {
        out.extend(step_needs(step));
    }
    if pb.steps.iter().any(for_dependents) {
        out.push(Need::Dependents);
    }
    out.sort();
    out.dedup();
    out
}

/// What at least one of the service's dependents must have for `pb`'s steps sent to them.
pub fn dependent_needs(pb: &Playbook) -> Vec<Need> {
    let mut out: Vec<Need> = pb.steps.iter().filter(|s| for_dependents(s)).flat_map(step_needs).collect();
    out.sort();
    out.dedup();
    out
}

fn for_dependents(step: &Primitive) -> bool {
    matches!(step, Primitive::HttpCall { dependents: true, .. } | Primitive::SetEndpoint { dependents: true, .. })
}

/// What one step needs from the service it acts on.
pub fn step_needs(step: &Primitive) -> Vec<Need> {
    let mut out = Vec::new();
    {
        for text in texts(step) {
            out.extend(VARIABLE_NEEDS.iter().filter(|(v, _)| text.contains(v)).map(|(_, n)| n.clone()));
        }
        out.extend(match step {
            Primitive::SignalService { signal } => Some(Need::Signal(*signal)),
            Primitive::KillProcess { select: Selector::PortOwner { port: None, .. }, .. }
            | Primitive::SetPort { .. } => Some(Need::Ports),
            Primitive::SetEndpoint { upstream, .. } => Some(Need::Upstreams(upstream.clone())),
            Primitive::RestoreFile { path: None, .. } => Some(Need::Files),
            Primitive::RestartDependents => Some(Need::Dependents),
            _ => None,
        });
    }
    out
}

/// Why `pb` cannot help `spec` (empty: it applies). `dependents`: the services that
/// depend on it (the steps sent to them need one that has what they need).
pub fn unmet(pb: &Playbook, spec: &ServiceSpec, dependents: &[&ServiceSpec]) -> Vec<String> {
    let mut why: Vec<String> = triggers_never_found(pb, spec).into_iter().collect();
    let count = dependents.len();
    why.extend(needs(pb).iter().filter(|n| !n.met_by(spec, count)).map(|n| n.missing(spec.name.as_str())));
    let theirs = dependent_needs(pb);
    if count > 0 && !theirs.is_empty() && !dependents.iter().any(|d| theirs.iter().all(|n| n.met_by(d, 0))) {
        let what: Vec<String> = theirs.iter().map(Need::describe).collect();
        why.push(format!("no service that depends on `{}` declares {}", spec.name, what.join(", ")));
    }
    why
}

/// Why `pb` repairs nothing on `spec` when an incident calls for it, if so: for a database
/// whose snapshots are made while it runs, a snapshot playbook keeps it running, so all
/// that is left of it is a backup, not a repair. (A person may still run it for the backup.)
pub fn repairs_nothing(pb: &Playbook, spec: &ServiceSpec) -> Option<String> {
    let live = spec.hooks.snapshot.copies_while_running();
    let planned = crate::playbook::plan(pb, &spec.name, &[], |_, t| t);
    let disrupting = |steps: &[crate::playbook::PlannedStep]| steps.iter().any(|s| crate::harm::disrupts(&s.primitive));
    let kept = crate::playbook::keep_running_for_snapshot(planned.clone(), live);
    (live && disrupting(&planned) && !disrupting(&kept))
        .then(|| format!("`{}`'s snapshots are made while it runs: here this playbook only takes a backup", spec.name))
}

/// [`unmet`] for service `service` of `config` (nothing for a service it does not have).
pub fn unmet_on(pb: &Playbook, config: &NodeConfig, service: &ServiceName) -> Vec<String> {
    let Some(spec) = config.services.iter().find(|s| s.name == *service) else { return Vec::new() };
    let dependents = config.dependents_of(service);
    let dependents: Vec<&ServiceSpec> = config.services.iter().filter(|s| dependents.contains(&s.name)).collect();
    unmet(pb, spec, &dependents)
}

/// [`unmet_on`] for an incident's plan: also what [`repairs_nothing`] there.
pub fn unmet_for_incident(pb: &Playbook, config: &NodeConfig, service: &ServiceName) -> Vec<String> {
    let mut why = unmet_on(pb, config, service);
    if let Some(spec) = config.services.iter().find(|s| s.name == *service) {
        why.extend(repairs_nothing(pb, spec));
    }
    why
}

/// Why a step sent to `spec` cannot run there (a dependent lacking what it needs), if so.
pub fn step_unmet(step: &Primitive, spec: &ServiceSpec) -> Option<String> {
    let missing: Vec<String> =
        step_needs(step).iter().filter(|n| !n.met_by(spec, 1)).map(|n| n.missing(spec.name.as_str())).collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// Whether a failure of `mode` can be found on a service of `role`: a database's and a
/// model server's own modes need that role, a hung application (`api_timeout`) needs none
/// (a hung database is `database_unavailable`); every other mode fits any service.
pub fn mode_fits(mode: FailureMode, role: Option<ServiceRole>) -> bool {
    match mode {
        FailureMode::DatabaseUnavailable => role == Some(ServiceRole::Database),
        FailureMode::ModelServerDown => role == Some(ServiceRole::ModelServer),
        FailureMode::ApiTimeout => role.is_none(),
        _ => true,
    }
}

/// Why none of `pb`'s triggers is ever found on `spec`, if so: it would never run there.
fn triggers_never_found(pb: &Playbook, spec: &ServiceSpec) -> Option<String> {
    if pb.triggers.iter().any(|m| mode_fits(*m, spec.role)) {
        return None;
    }
    let modes: Vec<&str> = pb.triggers.iter().map(|m| m.as_str()).collect();
    let role = spec.role.map_or("an application service", |r| match r {
        ServiceRole::Database => "a database",
        ServiceRole::ModelServer => "a model server",
    });
    Some(format!("its triggers ({}) are never found on `{}`, {role}", modes.join(", "), spec.name))
}

/// Whether an automatic step may send `signal` to the service: only one it says it handles.
pub fn may_signal(spec: &ServiceSpec, signal: SignalName) -> Result<(), String> {
    if spec.hooks.handles(signal) { Ok(()) } else { Err(Need::Signal(signal).missing(spec.name.as_str())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, NodeConfig};
    use crate::playbook::Catalog;
    use crate::source::Source;
    use std::path::Path;

    /// A node of two plain services: `web` declares nothing, `db` declares its lock file,
    /// data and SIGHUP, and `web` depends on it.
    fn node() -> NodeConfig {
        let text = r#"
node: { name: t, http_listen: "127.0.0.1:7999", data_dir: /tmp/warden-fit-test }
services:
  - name: db
    command: /bin/sh
    role: database
    ports: [5999]
    signals: { reload: SIGHUP }
    lock_file: "${data_dir}/services/db/LOCK"
    data: "${data_dir}/services/db/data"
  - name: web
    command: /bin/sh
    depends_on: [db]
"#;
        NodeConfig::load(&Source { name: "n.yaml", dir: Path::new("/"), text }, &LoadOptions::default())
            .expect("config")
    }

    #[test]
    fn test_a_snapshot_playbook_repairs_nothing_on_a_database_copied_while_it_runs() {
        let c = Catalog::embedded_default().expect("catalog");
        let pb = c.get("snapshot_database").expect("playbook");
        let stopped = node();
        let db = ServiceName::parse("db").expect("name");
        assert!(unmet_for_incident(pb, &stopped, &db).is_empty(), "stop, copy, start: a repair too");
        let mut live = stopped.clone();
        if let Some(spec) = live.services.iter_mut().find(|s| s.name == db) {
            spec.hooks.snapshot.method = crate::config::SnapshotMethod::Live;
        }
        let why = unmet_for_incident(pb, &live, &db);
        assert!(why.iter().any(|w| w.contains("only takes a backup")), "{why:?}");
        assert!(unmet_on(pb, &live, &db).is_empty(), "a person may still take the backup");
        let restart = c.get("restart_database").expect("playbook");
        assert!(unmet_for_incident(restart, &live, &db).is_empty());
    }

    #[test]
    fn test_a_playbook_needing_what_a_service_lacks_does_not_apply_to_it() {
        let c = Catalog::embedded_default().expect("catalog");
        let n = node();
        let (db, web) = (&n.services[0], &n.services[1]);
        let reload = c.get("reload_service").expect("reload_service");
        assert_eq!(needs(reload), vec![Need::Signal(SignalName::Hup)]);
        assert!(unmet(reload, db, &[web]).is_empty());
        let why = unmet(reload, web, &[]);
        assert!(why.iter().any(|w| w.contains("does not say it handles SIGHUP")), "{why:?}");
        let lock = c.get("clear_stale_db_lock").expect("lock playbook");
        assert!(unmet(lock, db, &[web]).is_empty());
        assert!(unmet(lock, web, &[]).iter().any(|w| w.contains("lock_file")));
        let chain = c.get("restart_dependency_chain").expect("chain");
        assert!(unmet(chain, db, &[web]).is_empty() && !unmet(chain, web, &[]).is_empty(), "nobody depends on web");
        assert!(may_signal(web, SignalName::Hup).is_err() && may_signal(db, SignalName::Hup).is_ok());
        let pool = c.get("reset_connection_pool").expect("pool");
        assert!(
            unmet(pool, db, &[web])
                .iter()
                .any(|w| w.contains("no service that depends on `db` declares `pool_reset_url`")),
            "{:?}",
            unmet(pool, db, &[web])
        );
    }

    #[test]
    fn test_a_playbook_whose_triggers_never_fire_on_a_service_does_not_apply() {
        let c = Catalog::embedded_default().expect("catalog");
        let n = node();
        let (db, web) = (&n.services[0], &n.services[1]);
        let restart_db = c.get("restart_database").expect("restart_database");
        assert!(unmet(restart_db, db, &[web]).is_empty());
        assert!(unmet(restart_db, web, &[]).iter().any(|w| w.contains("never found on `web`")), "a database's own");
        let hung = c.get("restart_hung_service").expect("restart_hung_service");
        assert!(!unmet(hung, db, &[web]).is_empty(), "a hung database is database_unavailable");
        assert!(unmet(hung, web, &[]).is_empty());
        assert!(unmet(c.get("restart_service").expect("restart_service"), db, &[web]).is_empty(), "one trigger fits");
    }

    #[test]
    fn test_every_embedded_playbook_states_its_needs_from_its_steps() {
        let c = Catalog::embedded_default().expect("catalog");
        let failover = c.get("failover_upstream").expect("failover");
        assert!(needs(failover).contains(&Need::Upstreams(None)));
        let pool = c.get("reset_connection_pool").expect("pool");
        assert_eq!(dependent_needs(pool), vec![Need::PoolResetUrl], "the dependents' pools");
        assert!(needs(pool).contains(&Need::Dependents), "{:?}", needs(pool));
        // A restart needs nothing a service must declare: it applies everywhere.
        assert!(needs(c.get("restart_hung_service").expect("restart")).is_empty());
    }
}
