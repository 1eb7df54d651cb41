//! Runtime overrides: what playbooks changed in the node's configuration, kept apart from
//! the files people write.
//!
//! A relocated port, a switched upstream, a longer startup deadline or a staggered boot
//! live in one JSON document in the data dir (`overrides.json`). The config files stay as
//! written; the node runs the files' config with the overrides applied over it, at start,
//! at every reload and whenever a playbook changes them. A rollback writes the previous
//! document back. Deleting the file (and reloading) returns the node to its files.

#[cfg(test)]
use crate::config::host_port;
use crate::config::{NodeConfig, ProbeCheck, ReadyCheck, ServiceSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use url::Url;

/// The file's name in the data dir.
pub const FILE: &str = "overrides.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Start one service at a time, each once the one before is ready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staggered_boot: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceOverride>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceOverride {
    /// Ports moved: the config's port → the port it listens on now.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, u16>,
    /// Upstreams switched: the upstream's name → the address in use (one of its fallbacks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_deadline_ms: Option<u64>,
}

impl ServiceOverride {
    fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.upstreams.is_empty() && self.startup_deadline_ms.is_none()
    }
}

/// One value of the overrides: what a step sets, and what its undo sets back. `None` (or
/// `false`) is "as the files say".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "setting")]
pub enum Setting {
    Port { service: String, from: u16, to: Option<u16> },
    Upstream { service: String, name: String, address: Option<String> },
    StartupDeadline { service: String, ms: Option<u64> },
    StaggeredBoot { on: bool },
}

impl Setting {
    /// The primitive's action that changes it (what a rollback is governed as).
    pub fn action(&self) -> &'static str {
        match self {
            Setting::Port { .. } => "set_port",
            Setting::Upstream { .. } => "set_endpoint",
            Setting::StartupDeadline { .. } => "set_startup_deadline",
            Setting::StaggeredBoot { .. } => "stagger_boot",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Setting::Port { service, from, to: Some(to) } => format!("port {from} of `{service}` moved to {to}"),
            Setting::Port { service, from, to: None } => format!("port {from} of `{service}` as configured"),
            Setting::Upstream { service, name, address: Some(a) } => {
                format!("upstream `{name}` of `{service}` at {a}")
            }
            Setting::Upstream { service, name, address: None } => {
                format!("upstream `{name}` of `{service}` as configured")
            }
            Setting::StartupDeadline { service, ms: Some(ms) } => format!("startup deadline of `{service}` {ms} ms"),
            Setting::StartupDeadline { service, ms: None } => format!("startup deadline of `{service}` as configured"),
            Setting::StaggeredBoot { on } => format!("staggered boot {}", if *on { "on" } else { "off" }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("overrides file: {0}")]
    Parse(#[from] serde_json::Error),
}

impl Overrides {
    pub fn parse(text: &str) -> Result<Self, OverrideError> {
        Ok(serde_json::from_str(text)?)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn is_empty(&self) -> bool {
        !self.staggered_boot && self.services.values().all(ServiceOverride::is_empty)
    }

    /// The override of `service`, created empty if there is none.
    pub fn service_mut(&mut self, service: &str) -> &mut ServiceOverride {
        self.services.entry(service.to_string()).or_default()
    }

    /// The current value of the setting `like` names (its value in `like` is ignored).
    pub fn current(&self, like: &Setting) -> Setting {
        let svc = |s: &str| self.services.get(s);
        match like {
            Setting::Port { service, from, .. } => Setting::Port {
                service: service.clone(),
                from: *from,
                to: svc(service).and_then(|o| o.ports.get(from).copied()),
            },
            Setting::Upstream { service, name, .. } => Setting::Upstream {
                service: service.clone(),
                name: name.clone(),
                address: svc(service).and_then(|o| o.upstreams.get(name).cloned()),
            },
            Setting::StartupDeadline { service, .. } => Setting::StartupDeadline {
                service: service.clone(),
                ms: svc(service).and_then(|o| o.startup_deadline_ms),
            },
            Setting::StaggeredBoot { .. } => Setting::StaggeredBoot { on: self.staggered_boot },
        }
    }

    /// Sets one value; returns the one it replaces (the undo).
    pub fn set(&mut self, setting: &Setting) -> Setting {
        let before = self.current(setting);
        match setting {
            Setting::Port { service, from, to } => {
                let ports = &mut self.service_mut(service).ports;
                match to {
                    Some(to) if to != from => ports.insert(*from, *to),
                    _ => ports.remove(from),
                };
            }
            Setting::Upstream { service, name, address } => {
                let ups = &mut self.service_mut(service).upstreams;
                match address {
                    Some(a) => ups.insert(name.clone(), a.clone()),
                    None => ups.remove(name),
                };
            }
            Setting::StartupDeadline { service, ms } => self.service_mut(service).startup_deadline_ms = *ms,
            Setting::StaggeredBoot { on } => self.staggered_boot = *on,
        }
        self.tidy();
        before
    }

    /// Drops empty service entries, so that undoing the last change leaves `{}`.
    pub fn tidy(&mut self) {
        self.services.retain(|_, o| !o.is_empty());
    }

    /// `base` with these overrides applied, and what no longer applies (a service or port
    /// or upstream the files do not have any more), so it can be reported, not guessed at.
    pub fn apply(&self, base: &NodeConfig) -> (NodeConfig, Vec<String>) {
        let mut config = base.clone();
        let mut stale = Vec::new();
        config.staggered_boot |= self.staggered_boot;
        let position = |config: &NodeConfig, name: &str| config.services.iter().position(|s| s.name.as_str() == name);
        // Upstream switches first, against the addresses as the files write them; then
        // port moves, which also move the addresses in upstreams and their fallbacks.
        for (name, o) in &self.services {
            let Some(i) = position(&config, name) else {
                stale.push(format!("service `{name}` is not in the config"));
                continue;
            };
            if let Some(ms) = o.startup_deadline_ms {
                config.services[i].startup_deadline = Duration::from_millis(ms);
            }
            for (upstream, address) in &o.upstreams {
                let spec = &mut config.services[i];
                let Some(u) = spec.upstreams.iter().find(|u| &u.name == upstream) else {
                    stale.push(format!("service `{name}` has no upstream `{upstream}`"));
                    continue;
                };
                if !u.candidates().any(|c| c == address) {
                    stale.push(format!("`{address}` is not an address of upstream `{upstream}` of `{name}`"));
                    continue;
                }
                let from = u.address.clone();
                rewrite_text(spec, &|t: &str| replace_address(t, &from, address));
                // The service's own probes that check that upstream as it uses it (its
                // credentials against the db) follow it to the new address.
                let target = spec.name.clone();
                for probe in config.probes.iter_mut().filter(|p| p.target == target) {
                    follow_upstream(&mut probe.check, &from, address);
                }
            }
        }
        for (name, o) in &self.services {
            let Some(i) = position(&config, name) else { continue };
            for (&from, &to) in &o.ports {
                if !config.services[i].ports.contains(&from) {
                    stale.push(format!("service `{name}` does not declare port {from}"));
                    continue;
                }
                if let Some(other) = config.services.iter().find(|s| s.ports.contains(&to)) {
                    stale.push(format!("port {to} for `{name}` is `{}`'s", other.name));
                    continue;
                }
                move_port(&mut config, i, from, to);
            }
        }
        (config, stale)
    }
}

/// Moves service `i`'s port `from` to `to`: its port list, and every local address with
/// that port anywhere in the node (the service's arguments, its dependents' arguments and
/// environment, ready checks, probes), since they all speak of the same listener.
fn move_port(config: &mut NodeConfig, i: usize, from: u16, to: u16) {
    for p in config.services[i].ports.iter_mut().filter(|p| **p == from) {
        *p = to;
    }
    for spec in &mut config.services {
        rewrite_text(spec, &|t: &str| replace_local_port(t, from, to));
        for u in &mut spec.upstreams {
            u.address = replace_local_port(&u.address, from, to);
            for f in &mut u.fallbacks {
                *f = replace_local_port(f, from, to);
            }
        }
        if let Some(ready) = &mut spec.ready {
            match ready {
                ReadyCheck::Tcp { addr } => move_addr(addr, from, to),
                ReadyCheck::Http { url } => move_url(url, from, to),
            }
        }
    }
    for probe in &mut config.probes {
        match &mut probe.check {
            ProbeCheck::Route { host, port: Some(p) }
                if *p == from && (host.is_loopback() || host.is_unspecified()) =>
            {
                *p = to
            }
            ProbeCheck::Tcp { addr, .. }
            | ProbeCheck::Udp { addr, .. }
            | ProbeCheck::Tls { addr, .. }
            | ProbeCheck::Postgres { addr, .. }
            | ProbeCheck::Line { addr, .. } => move_addr(addr, from, to),
            ProbeCheck::Session { exchange, .. } | ProbeCheck::Encoding { exchange, .. } => match exchange {
                crate::config::Exchange::Http { url } => move_url(url, from, to),
                crate::config::Exchange::Line { addr, .. } => move_addr(addr, from, to),
            },
            ProbeCheck::Http { url, .. } | ProbeCheck::Ollama { url, .. } => move_url(url, from, to),
            ProbeCheck::Route { .. } | ProbeCheck::Link { .. } | ProbeCheck::Dns { .. } => {}
        }
    }
}

/// Points a probe check that names upstream address `from` at `to` instead (a socket
/// address equal to it, or a URL that starts with it).
fn follow_upstream(check: &mut ProbeCheck, from: &str, to: &str) {
    let socket = |addr: &mut std::net::SocketAddr| {
        if let (Ok(f), Ok(t)) = (from.parse::<std::net::SocketAddr>(), to.parse::<std::net::SocketAddr>())
            && *addr == f
        {
            *addr = t;
        }
    };
    let url = |u: &mut url::Url| {
        if let Some(rest) = u.as_str().strip_prefix(from.trim_end_matches('/'))
            && let Ok(moved) = url::Url::parse(&format!("{}{rest}", to.trim_end_matches('/')))
        {
            *u = moved;
        }
    };
    match check {
        ProbeCheck::Tcp { addr, .. }
        | ProbeCheck::Udp { addr, .. }
        | ProbeCheck::Tls { addr, .. }
        | ProbeCheck::Postgres { addr, .. }
        | ProbeCheck::Line { addr, .. } => socket(addr),
        ProbeCheck::Session { exchange, .. } | ProbeCheck::Encoding { exchange, .. } => match exchange {
            crate::config::Exchange::Http { url: u } => url(u),
            crate::config::Exchange::Line { addr, .. } => socket(addr),
        },
        ProbeCheck::Http { url: u, .. } | ProbeCheck::Ollama { url: u, .. } => url(u),
        ProbeCheck::Route { host, port: Some(port) } => {
            let mut addr = std::net::SocketAddr::new(*host, *port);
            socket(&mut addr);
            (*host, *port) = (addr.ip(), addr.port());
        }
        ProbeCheck::Route { .. } | ProbeCheck::Link { .. } | ProbeCheck::Dns { .. } => {}
    }
}

fn rewrite_text(spec: &mut ServiceSpec, f: &dyn Fn(&str) -> String) {
    for a in &mut spec.args {
        *a = f(a);
    }
    for v in spec.env.values_mut() {
        *v = f(v);
    }
}

fn move_addr(addr: &mut SocketAddr, from: u16, to: u16) {
    if addr.port() == from && (addr.ip().is_loopback() || addr.ip().is_unspecified()) {
        addr.set_port(to);
    }
}

fn move_url(url: &mut Url, from: u16, to: u16) {
    let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0" | "[::]"));
    if local && url.port_or_known_default() == Some(from) {
        let _ = url.set_port(Some(to));
    }
}

/// `text` with every whole `from` (an address: not inside a longer number or name) as `to`.
fn replace_address(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let end = at + from.len();
        let digit_after = rest[end..].chars().next().is_some_and(|c| c.is_ascii_digit());
        let word_before = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
        out.push_str(&rest[..at]);
        out.push_str(if digit_after || word_before { from } else { to });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Hosts whose `HOST:PORT` in a text names a listener on this machine.
const LOCAL_HOSTS: &[&str] = &["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "[::]"];

/// `text` with every `LOCALHOST:from` (not followed by another digit) as `LOCALHOST:to`.
/// Only local hosts: a remote address with the same port number is someone else's.
pub fn replace_local_port(text: &str, from: u16, to: u16) -> String {
    LOCAL_HOSTS
        .iter()
        .fold(text.to_string(), |t, host| replace_address(&t, &format!("{host}:{from}"), &format!("{host}:{to}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn test_replace_local_port_touches_only_local_listeners_on_that_port() {
        assert_eq!(replace_local_port("127.0.0.1:8000", 8000, 8100), "127.0.0.1:8100");
        assert_eq!(replace_local_port("http://localhost:8000/health", 8000, 8100), "http://localhost:8100/health");
        assert_eq!(replace_local_port("127.0.0.1:80001", 8000, 8100), "127.0.0.1:80001");
        assert_eq!(replace_local_port("10.0.0.5:8000", 8000, 8100), "10.0.0.5:8000");
        assert_eq!(replace_local_port("a127.0.0.1:8000", 8000, 8100), "a127.0.0.1:8000");
        assert_eq!(replace_local_port("[::1]:8000,127.0.0.1:8000", 8000, 1), "[::1]:1,127.0.0.1:1");
        assert_eq!(replace_address("127.0.0.1:54330 127.0.0.1:5433", "127.0.0.1:5433", "X"), "127.0.0.1:54330 X");
    }

    #[test]
    fn test_host_port_reads_addresses_and_urls() {
        assert_eq!(host_port("127.0.0.1:5433"), Some(("127.0.0.1".into(), 5433)));
        assert_eq!(host_port("http://127.0.0.1:11434"), Some(("127.0.0.1".into(), 11434)));
        assert_eq!(host_port("https://example.org/x"), Some(("example.org".into(), 443)));
        assert_eq!(host_port("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(host_port("nope"), None);
        assert_eq!(host_port("h:0"), None);
        assert_eq!(host_port("ftp://h:21"), None, "only http(s) URLs");
    }

    #[test]
    fn test_overrides_round_trip_and_tidy_to_empty() {
        let mut o = Overrides::default();
        o.service_mut("api").ports.insert(8000, 8100);
        o.service_mut("api").startup_deadline_ms = Some(60_000);
        let back = Overrides::parse(&o.to_json()).unwrap();
        assert_eq!(back, o);
        o.service_mut("api").ports.clear();
        o.service_mut("api").startup_deadline_ms = None;
        o.tidy();
        assert!(o.is_empty());
        assert_eq!(o.to_json(), "{}");
        assert!(Overrides::parse("{\"bogus\": 1}").is_err());
    }

    fn node() -> NodeConfig {
        NodeConfig::embedded_default(std::path::Path::new("/srv"), &crate::config::LoadOptions::default()).unwrap()
    }

    #[test]
    fn test_a_moved_port_follows_into_dependents_ready_checks_and_probes_only() {
        let base = node();
        let mut o = Overrides::default();
        o.set(&Setting::Port { service: "db".into(), from: 5433, to: Some(5533) });
        let (c, stale) = o.apply(&base);
        assert!(stale.is_empty(), "{stale:?}");
        let svc = |n: &str| c.services.iter().find(|s| s.name.as_str() == n).unwrap();
        assert_eq!(svc("db").ports, vec![5533]);
        assert!(svc("db").args.contains(&"127.0.0.1:5533".to_string()));
        assert!(svc("api").args.contains(&"127.0.0.1:5533".to_string()), "the dependent follows");
        assert!(matches!(&svc("db").ready, Some(ReadyCheck::Tcp { addr }) if addr.port() == 5533));
        let db_port = c.probes.iter().find(|p| p.name == "db-port").unwrap();
        assert!(matches!(&db_port.check, ProbeCheck::Tcp { addr, .. } if addr.port() == 5533));
        assert_eq!(svc("model"), base.services.iter().find(|s| s.name.as_str() == "model").unwrap());
        // Undone, the config is the files' again.
        o.set(&Setting::Port { service: "db".into(), from: 5433, to: None });
        assert!(o.is_empty());
        assert_eq!(o.apply(&base).0.services, base.services);
        assert_eq!(o.apply(&base).0.probes, base.probes);
    }

    #[test]
    fn test_a_switched_upstream_takes_the_services_own_probes_of_it_along() {
        let mut base = node();
        let api = base.services.iter().position(|s| s.name.as_str() == "api").unwrap();
        base.services[api].upstreams.push(crate::config::Upstream {
            name: "db".into(),
            address: "127.0.0.1:5433".into(),
            fallbacks: vec!["127.0.0.1:6433".into()],
        });
        let mut o = Overrides::default();
        o.set(&Setting::Upstream { service: "api".into(), name: "db".into(), address: Some("127.0.0.1:6433".into()) });
        let (c, stale) = o.apply(&base);
        assert!(stale.is_empty(), "{stale:?}");
        let port_of = |name: &str| match &c.probes.iter().find(|p| p.name == name).unwrap().check {
            ProbeCheck::Line { addr, .. } => addr.port(),
            other => panic!("{other:?}"),
        };
        assert_eq!(port_of("api-credentials"), 6433, "the api's login to its db follows the api");
        assert_eq!(port_of("db-ping"), 5433, "the db's own probe stays with the db");
    }

    #[test]
    fn test_overrides_that_no_longer_fit_the_files_are_reported_and_left_out() {
        let base = node();
        let mut o = Overrides::default();
        o.set(&Setting::Port { service: "db".into(), from: 9999, to: Some(1) });
        o.set(&Setting::Upstream { service: "api".into(), name: "db".into(), address: Some("x:1".into()) });
        o.set(&Setting::StartupDeadline { service: "gone".into(), ms: Some(1) });
        o.set(&Setting::Port { service: "api".into(), from: 8000, to: Some(5433) });
        let (c, stale) = o.apply(&base);
        assert_eq!(stale.len(), 4, "{stale:?}");
        assert!(stale.iter().any(|s| s.contains("port 5433 for `api` is `db`'s")), "{stale:?}");
        assert_eq!((c.services, c.probes), (base.services.clone(), base.probes.clone()));
        let before = o.set(&Setting::StaggeredBoot { on: true });
        assert_eq!(before, Setting::StaggeredBoot { on: false });
        assert!(o.apply(&base).0.staggered_boot);
    }
}
