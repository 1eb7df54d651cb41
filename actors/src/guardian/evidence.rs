//! Fresh evidence about a service, gathered at the moment of a decision: its own checks
//! (its probes at L4 to L7), the checks of the path to it (L2, L3, name lookups) and its
//! dependencies' own checks, each run once now, side by side. The harm guard
//! (`warden_core::harm`) judges a disruptive step on it, and verification
//! (`warden_core::verify`) judges a repair on rounds of it: never the probe board as it
//! stood, which may be a probe interval old.

use super::checks::Prober;
use super::service_table::ServiceTable;
use tokio::task::JoinSet;
use warden_core::config::{NodeConfig, ServiceName};
use warden_core::harm::{Evidence, Health, checks_the_path};
use warden_core::probe::Outcome;
use warden_core::service::ServiceState;

/// A service's checks, ready to run again and again (a verification's rounds).
pub struct Checks {
    service: ServiceName,
    own: Vec<(String, Prober)>,
    path: Vec<(String, Prober)>,
    dependencies: Vec<(ServiceName, Vec<(String, Prober)>)>,
    table: ServiceTable,
}

impl Checks {
    /// The checks of `service` as the config names them; `dependencies`: also its
    /// dependencies' own checks.
    pub fn of(config: &NodeConfig, table: &ServiceTable, service: &ServiceName, dependencies: bool) -> Self {
        let own_of = |s: &ServiceName| -> Vec<(String, Prober)> {
            config
                .probes
                .iter()
                .filter(|p| p.target == *s && !checks_the_path(p))
                .map(|p| (p.name.clone(), Prober::new(p, table.clone())))
                .collect()
        };
        let path = config
            .probes
            .iter()
            .filter(|p| p.target == *service && checks_the_path(p))
            .map(|p| (p.name.clone(), Prober::new(p, table.clone())))
            .collect();
        let deps = match dependencies {
            true => config
                .services
                .iter()
                .find(|s| s.name == *service)
                .map(|s| s.depends_on.iter().map(|d| (d.clone(), own_of(d))).collect())
                .unwrap_or_default(),
            false => Vec::new(),
        };
        Self { service: service.clone(), own: own_of(service), path, dependencies: deps, table: table.clone() }
    }

    /// Runs every check once, all at once, and says what they found.
    pub async fn gather(&mut self) -> Evidence {
        let own = std::mem::take(&mut self.own);
        let path = std::mem::take(&mut self.path);
        let deps = std::mem::take(&mut self.dependencies);
        let mut set = JoinSet::new();
        let spawn = |set: &mut JoinSet<_>, group: Group, name: String, mut prober: Prober| {
            set.spawn(async move {
                let outcome = prober.check().await;
                (group, name, prober, outcome)
            });
        };
        for (name, p) in own {
            spawn(&mut set, Group::Own, name, p);
        }
        for (name, p) in path {
            spawn(&mut set, Group::Path, name, p);
        }
        let dep_names: Vec<ServiceName> = deps.iter().map(|(d, _)| d.clone()).collect();
        for (i, (_, checks)) in deps.into_iter().enumerate() {
            for (name, p) in checks {
                spawn(&mut set, Group::Dependency(i), name, p);
            }
        }
        let (mut passed, mut own_failed): (usize, Option<String>) = (0, None);
        let mut path_failing = Vec::new();
        let mut dep_failing: Vec<Option<String>> = vec![None; dep_names.len()];
        while let Some(done) = set.join_next().await {
            // A check task that panicked is a check that said nothing.
            let Ok((group, name, prober, outcome)) = done else { continue };
            let failed = match &outcome {
                Outcome::Fail(f) => Some(format!("{name}: {f}")),
                _ => None,
            };
            match group {
                Group::Own => {
                    match (&outcome, &failed) {
                        (Outcome::Pass { .. }, _) => passed += 1,
                        (_, Some(f)) => own_failed = own_failed.or(Some(f.clone())),
                        _ => {}
                    }
                    self.own.push((name, prober));
                }
                Group::Path => {
                    path_failing.extend(failed);
                    self.path.push((name, prober));
                }
                Group::Dependency(i) => {
                    if let Some(f) = failed {
                        dep_failing[i].get_or_insert(format!("`{}`: {f}", dep_names[i]));
                    }
                    match self.dependencies.iter_mut().find(|(d, _)| *d == dep_names[i]) {
                        Some((_, v)) => v.push((name, prober)),
                        None => self.dependencies.push((dep_names[i].clone(), vec![(name, prober)])),
                    }
                }
            }
        }
        // Sorted, so the first failure named is the same from one round to the next.
        path_failing.sort();
        let own = match own_failed {
            Some(f) => Health::Failing(f),
            None if passed > 0 => Health::Passing,
            None => Health::Unknown,
        };
        // A dependency not running fails whatever its checks could say.
        let states: Vec<Option<ServiceState>> = dep_names.iter().map(|d| self.table.state_of(d.as_str())).collect();
        let mut dependencies_failing = Vec::new();
        for (i, d) in dep_names.iter().enumerate() {
            match (&dep_failing[i], states[i]) {
                (Some(f), _) => dependencies_failing.push(f.clone()),
                (None, Some(s)) if s != ServiceState::Running => {
                    dependencies_failing.push(format!("`{d}` is {}", s.as_str()))
                }
                _ => {}
            }
        }
        Evidence { own, lower_failing: path_failing, dependencies_failing }
    }

    /// What "no check of its own" means for a verdict: its ready state (running or not).
    pub fn health_or_state(&self, evidence: &Evidence) -> Health {
        match &evidence.own {
            Health::Unknown => match self.table.state_of(self.service.as_str()) {
                Some(ServiceState::Running) => Health::Passing,
                Some(s) => Health::Failing(format!("`{}` is {}", self.service, s.as_str())),
                None => Health::Failing(format!("no service `{}`", self.service)),
            },
            h => h.clone(),
        }
    }

    /// The service's process now.
    pub fn pid(&self) -> Option<u32> {
        self.table.lock().services.get(&self.service).and_then(|e| e.pid)
    }
}

#[derive(Debug, Clone, Copy)]
enum Group {
    Own,
    Path,
    Dependency(usize),
}
