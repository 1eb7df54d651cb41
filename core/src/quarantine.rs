//! When a quarantined service is tried again by itself.
//!
//! A quarantine stops a service that nothing healed. When what kept it down came from
//! outside the service (another process on its port, a file it needs gone, a full disk, a
//! dependency not serving), fixing that outside cause should bring it back without a
//! person, as Kubernetes retries a crash-looping pod once its volume or its dependency is
//! back. A service quarantined with no outside cause (its own crash loop, a hang) stays for
//! a person: retrying it would only loop again.
//!
//! The outside causes seen when the quarantine began are remembered ([`Watch`]); once none
//! of them holds any more (and no new one appeared) the service is released. Released
//! services that are quarantined again are retried at most [`MAX_AUTO_RELEASES`] times
//! within [`RELEASE_MEMORY_MS`]; after that a person must look.

use crate::config::ServiceName;
use crate::detect::{ServiceFacts, Thresholds, disk_low};

/// Automatic releases of one service within [`RELEASE_MEMORY_MS`] before it is left to a
/// person.
pub const MAX_AUTO_RELEASES: usize = 3;
/// How long an automatic release is remembered.
pub const RELEASE_MEMORY_MS: u64 = 30 * 60 * 1000;

/// A cause outside a service that keeps it from running.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blocker {
    /// Another process listens on a port of the service.
    PortHeld(String),
    /// Files the service needs (its `files:`) are not there.
    FilesMissing(Vec<String>),
    /// The filesystem of its data is full.
    DiskFull(String),
    /// A dependency is not serving.
    DependencyDown(ServiceName),
}

impl Blocker {
    /// The same kind of cause (a missing file that is another file now is still a missing
    /// file).
    fn same_kind(&self, other: &Blocker) -> bool {
        match (self, other) {
            (Blocker::DependencyDown(a), Blocker::DependencyDown(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Blocker::PortHeld(who) => format!("its port is held: {who}"),
            Blocker::FilesMissing(files) => format!("missing: {}", files.join(", ")),
            Blocker::DiskFull(path) => format!("{path} is full"),
            Blocker::DependencyDown(dep) => format!("dependency `{dep}` is not serving"),
        }
    }
}

/// The outside causes that hold for a service now: `port_holder` is who listens on one of
/// its ports (nothing of a quarantined service runs, so anyone there is someone else),
/// `dependencies_down` its dependencies that are not serving.
pub fn blockers(
    f: &ServiceFacts,
    port_holder: Option<String>,
    dependencies_down: &[ServiceName],
    t: Thresholds,
) -> Vec<Blocker> {
    let mut out = Vec::new();
    if let Some(who) = port_holder.or_else(|| f.waiting_for_port.clone()) {
        out.push(Blocker::PortHeld(who));
    }
    if !f.missing_files.is_empty() {
        out.push(Blocker::FilesMissing(f.missing_files.clone()));
    }
    if let Some(d) = f.disk.as_ref().filter(|d| disk_low(d, t)) {
        out.push(Blocker::DiskFull(d.path.clone()));
    }
    out.extend(dependencies_down.iter().cloned().map(Blocker::DependencyDown));
    out
}

/// What is known of one quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The outside causes seen when it began.
    pub blockers: Vec<Blocker>,
    pub since_unix_ms: u64,
}

/// What to do with a quarantined service now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An outside cause still holds; wait.
    Wait(String),
    /// Every outside cause cleared: release it, for this reason.
    Release(String),
    /// Nothing outside explains it, or it was released too often: a person must look.
    ForAPerson(String),
}

/// Judges a quarantine: `now` are the outside causes that hold now, `released_unix_ms` when
/// the service was released automatically lately.
pub fn judge(watch: &Watch, now: &[Blocker], released_unix_ms: &[u64], now_unix_ms: u64) -> Verdict {
    if watch.blockers.is_empty() {
        return Verdict::ForAPerson("quarantined with no cause outside the service".into());
    }
    let recent = released_unix_ms.iter().filter(|&&at| now_unix_ms.saturating_sub(at) < RELEASE_MEMORY_MS).count();
    if recent >= MAX_AUTO_RELEASES {
        return Verdict::ForAPerson(format!(
            "released automatically {recent} times in {} min and quarantined again",
            RELEASE_MEMORY_MS / 60_000
        ));
    }
    // Whatever holds now keeps it down, whether it was there at the start or came since.
    if let Some(b) = now.first() {
        return Verdict::Wait(b.describe());
    }
    let was: Vec<String> = watch.blockers.iter().map(Blocker::describe).collect();
    Verdict::Release(format!("its cause cleared (was: {})", was.join("; ")))
}

/// Adds to a watch the outside causes first seen later in the quarantine (a dependency that
/// went down after the service stopped is still worth waiting for).
pub fn remember(watch: &mut Watch, now: &[Blocker]) {
    // A quarantine that began with no outside cause is the service's own: a cause that
    // shows up later does not make it one to release by itself.
    if watch.blockers.is_empty() {
        return;
    }
    for b in now {
        if !watch.blockers.iter().any(|w| w.same_kind(b)) {
            watch.blockers.push(b.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DiskFacts;
    use crate::service::ServiceState;

    fn name(s: &str) -> ServiceName {
        ServiceName::parse(s).expect("name")
    }

    fn facts() -> ServiceFacts {
        ServiceFacts {
            service: name("api"),
            role: None,
            state: ServiceState::Quarantined,
            now_unix_ms: 1_000,
            started_unix_ms: None,
            slow_boot: false,
            startup_deadline_ms: 30_000,
            last_exit: None,
            recent_exits: 5,
            waiting_for_port: None,
            memory: None,
            oom_kills: 0,
            missing_files: Vec::new(),
            disk: None,
            log_says: None,
        }
    }

    const T: Thresholds = Thresholds { memory_pressure_pct: 90, disk_min_free_pct: 5, disk_min_free_bytes: 512 << 20 };

    #[test]
    fn test_blockers_are_the_outside_causes_only() {
        let mut f = facts();
        assert!(blockers(&f, None, &[], T).is_empty(), "a crash loop of its own is no outside cause");
        f.missing_files = vec!["/etc/app.conf".into()];
        f.disk = Some(DiskFacts {
            path: "/data".into(),
            free_bytes: 1 << 20,
            total_bytes: 1 << 30,
            usage: Default::default(),
        });
        let b = blockers(&f, Some("pid 9 (nc)".into()), &[name("db")], T);
        assert_eq!(
            b,
            vec![
                Blocker::PortHeld("pid 9 (nc)".into()),
                Blocker::FilesMissing(vec!["/etc/app.conf".into()]),
                Blocker::DiskFull("/data".into()),
                Blocker::DependencyDown(name("db")),
            ]
        );
    }

    #[test]
    fn test_released_once_every_outside_cause_cleared() {
        let dep = Blocker::DependencyDown(name("db"));
        let watch = Watch { blockers: vec![dep.clone()], since_unix_ms: 0 };
        assert_eq!(
            judge(&watch, std::slice::from_ref(&dep), &[], 10),
            Verdict::Wait("dependency `db` is not serving".into())
        );
        // A new cause since the start keeps it down too.
        let port = Blocker::PortHeld("pid 7".into());
        assert!(matches!(judge(&watch, std::slice::from_ref(&port), &[], 10), Verdict::Wait(_)));
        match judge(&watch, &[], &[], 10) {
            Verdict::Release(why) => assert!(why.contains("dependency `db`"), "{why}"),
            other => panic!("expected a release, got {other:?}"),
        }
    }

    #[test]
    fn test_own_crash_loop_and_repeated_quarantines_are_for_a_person() {
        let none = Watch { blockers: Vec::new(), since_unix_ms: 0 };
        assert!(matches!(judge(&none, &[], &[], 10), Verdict::ForAPerson(_)));
        let watch = Watch { blockers: vec![Blocker::DiskFull("/d".into())], since_unix_ms: 0 };
        let now = 10 * RELEASE_MEMORY_MS;
        let lately = vec![now - 1_000; MAX_AUTO_RELEASES];
        assert!(matches!(judge(&watch, &[], &lately, now), Verdict::ForAPerson(_)));
        // Releases long ago are forgotten.
        let long_ago = vec![now - RELEASE_MEMORY_MS - 1; MAX_AUTO_RELEASES];
        assert!(matches!(judge(&watch, &[], &long_ago, now), Verdict::Release(_)));
    }

    #[test]
    fn test_remember_adds_new_kinds_once() {
        let mut watch = Watch { blockers: vec![Blocker::FilesMissing(vec!["a".into()])], since_unix_ms: 0 };
        remember(&mut watch, &[Blocker::FilesMissing(vec!["b".into()]), Blocker::DependencyDown(name("db"))]);
        remember(&mut watch, &[Blocker::DependencyDown(name("db")), Blocker::DependencyDown(name("cache"))]);
        assert_eq!(watch.blockers.len(), 3, "{watch:?}");
        let mut own = Watch { blockers: Vec::new(), since_unix_ms: 0 };
        remember(&mut own, &[Blocker::DependencyDown(name("db"))]);
        assert!(own.blockers.is_empty(), "a crash loop of its own stays one");
    }
}
