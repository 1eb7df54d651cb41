//! Steps that change the node's configuration at run time: move a port, switch an
//! upstream to a fallback, extend a startup deadline, stagger the boot.
//!
//! Each resolves to concrete [`Setting`]s against the node as it is now (which port is
//! free, which fallback answers), then changes them through `reconfigure`, which writes the
//! overrides document and applies it like a reload. The undo of each is the value it
//! replaced. A dry run resolves the same settings and says which services and probes the
//! new config would restart.

use crate::reconfigure;
use crate::wiring::Wiring;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;
use warden_core::config::{NodeConfig, ServiceName, ServiceSpec, host_port};
use warden_core::overrides::Setting;
use warden_core::playbook::Primitive;
use warden_core::run::Undo;

/// How far above its port `set_port` looks for a free one.
const PORT_SEARCH: u16 = 200;
/// A fallback answers if a TCP connect succeeds within this.
const CONNECT_WITHIN: Duration = Duration::from_millis(500);

/// Whether the step changes settings (handled here, not by the service supervisor or the
/// file effects).
pub fn is_setting(p: &Primitive) -> bool {
    matches!(
        p,
        Primitive::SetPort { .. }
            | Primitive::SetEndpoint { .. }
            | Primitive::SetStartupDeadline { .. }
            | Primitive::StaggerBoot
    )
}

fn spec<'a>(config: &'a NodeConfig, target: &ServiceName) -> Result<&'a ServiceSpec, String> {
    config.services.iter().find(|s| &s.name == target).ok_or_else(|| format!("no service `{target}`"))
}

/// The settings the step would set now, resolved against the running node (blocking:
/// it binds and connects to find a free port or an answering fallback).
fn resolve(w: &Wiring, target: &ServiceName, p: &Primitive) -> Result<Vec<Setting>, String> {
    let running = w.views.config.get();
    let base = w.base.get();
    let now = spec(&running, target)?;
    let service = target.to_string();
    match p {
        Primitive::SetPort { to } => {
            let (Some(&from), Some(&current)) = (spec(&base, target)?.ports.first(), now.ports.first()) else {
                return Err(format!("`{target}` declares no port to move"));
            };
            let taken: Vec<u16> = running.services.iter().flat_map(|s| s.ports.iter().copied()).collect();
            let to = match to {
                Some(p) if *p == current => return Err(format!("`{target}` is on port {p} already")),
                Some(p) if taken.contains(p) => return Err(format!("port {p} is another service's")),
                Some(p) if !bindable(*p) => return Err(format!("port {p} is in use")),
                Some(p) => *p,
                None => (1..=PORT_SEARCH)
                    .filter_map(|d| current.checked_add(d))
                    .find(|p| !taken.contains(p) && bindable(*p))
                    .ok_or_else(|| format!("no free port within {PORT_SEARCH} above {current}"))?,
            };
            Ok(vec![Setting::Port { service, from, to: Some(to) }])
        }
        Primitive::SetEndpoint { upstream, .. } => {
            if now.upstreams.is_empty() {
                return Err(format!("`{target}` declares no upstreams (see `upstreams:` in the node config)"));
            }
            let base_spec = spec(&base, target)?;
            let in_force = reconfigure::read(&w.views.data_dir).map_err(|e| e.to_string())?;
            let mut settings = Vec::new();
            for u in base_spec.upstreams.iter().filter(|u| upstream.as_ref().is_none_or(|n| &u.name == n)) {
                let current = in_force
                    .services
                    .get(&service)
                    .and_then(|o| o.upstreams.get(&u.name).cloned())
                    .unwrap_or_else(|| u.address.clone());
                // Named: switch it. Unnamed: only the ones that do not answer now.
                if upstream.is_none() && answers(&current) {
                    continue;
                }
                let candidates: Vec<&str> = u.candidates().collect();
                let at = candidates.iter().position(|c| *c == current).unwrap_or(0);
                let next = (1..candidates.len())
                    .map(|k| candidates[(at + k) % candidates.len()])
                    .find(|c| answers(c))
                    .ok_or_else(|| format!("no other address of upstream `{}` answers", u.name))?;
                let address = (next != u.address).then(|| next.to_string());
                settings.push(Setting::Upstream { service: service.clone(), name: u.name.clone(), address });
            }
            if settings.is_empty() {
                return Err(match upstream {
                    Some(n) => format!("`{target}` has no upstream `{n}`"),
                    None => format!("every upstream of `{target}` answers: nothing to switch"),
                });
            }
            Ok(settings)
        }
        Primitive::SetStartupDeadline { factor, max_ms } => {
            let current = now.startup_deadline.as_millis() as u64;
            if current >= *max_ms {
                return Err(format!("the startup deadline of `{target}` is {current} ms, at its maximum already"));
            }
            let ms = current.saturating_mul(u64::from(*factor)).min(*max_ms);
            Ok(vec![Setting::StartupDeadline { service, ms: Some(ms) }])
        }
        Primitive::StaggerBoot => Ok(vec![Setting::StaggeredBoot { on: true }]),
        other => Err(format!("`{}` is not a settings step", other.action())),
    }
}

/// Whether nothing listens on `port` (it can be bound on the loopback and any address).
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// Whether `address` (`HOST:PORT` or a URL) takes a TCP connection now.
fn answers(address: &str) -> bool {
    let Some((host, port)) = host_port(address) else { return false };
    let addrs: Vec<SocketAddr> = (host.as_str(), port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
    addrs.iter().any(|a| TcpStream::connect_timeout(a, CONNECT_WITHIN).is_ok())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())?
}

/// What the step would set and what that would restart; nothing changes.
pub async fn preview(w: &Wiring, target: &ServiceName, p: &Primitive) -> Result<String, String> {
    let (w2, t, p) = (w.clone(), target.clone(), p.clone());
    let settings = blocking(move || resolve(&w2, &t, &p)).await?;
    let mut said = Vec::new();
    for s in &settings {
        let config = reconfigure::preview(w, s).map_err(|e| e.to_string())?;
        said.push(format!("would set {} ({})", s.describe(), effects_of(&w.views.config.get(), &config)));
    }
    Ok(said.join("; "))
}

/// Sets what the step resolves to; its undo is the values replaced.
pub async fn apply(w: &Wiring, target: &ServiceName, p: &Primitive) -> Result<(String, Vec<Undo>), String> {
    let (w2, t, p2) = (w.clone(), target.clone(), p.clone());
    let settings = blocking(move || resolve(&w2, &t, &p2)).await?;
    let mut said = Vec::new();
    let mut undo = Vec::new();
    for s in settings {
        let before_config = w.views.config.get();
        match reconfigure::change(w, &s, None).await {
            Ok((before, _)) => {
                said.push(format!("set {} ({})", s.describe(), effects_of(&before_config, &w.views.config.get())));
                undo.push(Undo::Override { setting: before, set: Some(s) });
            }
            // What was set stays recorded: the run's rollback puts it back.
            Err(e) if !undo.is_empty() => {
                return Ok((format!("{}; then failed: {e}", said.join("; ")), undo));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok((said.join("; "), undo))
}

/// Sets a value back, if it is still what the step set (`set`).
pub async fn undo(w: &Wiring, setting: &Setting, set: Option<&Setting>) -> Result<String, String> {
    let before_config = w.views.config.get();
    reconfigure::change(w, setting, set).await.map_err(|e| e.to_string())?;
    Ok(format!("set {} again ({})", setting.describe(), effects_of(&before_config, &w.views.config.get())))
}

/// Which services and probes differ between two configs: what applying it restarts.
fn effects_of(before: &NodeConfig, after: &NodeConfig) -> String {
    let restarts: Vec<&str> =
        after
            .services
            .iter()
            .filter(|s| {
                before.services.iter().find(|b| b.name == s.name).is_some_and(|b| {
                    b != *s && ServiceSpec { startup_deadline: s.startup_deadline, ..b.clone() } != **s
                })
            })
            .map(|s| s.name.as_str())
            .collect();
    let probes: Vec<&str> =
        after.probes.iter().filter(|p| !before.probes.contains(p)).map(|p| p.name.as_str()).collect();
    let list = |v: &[&str]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    format!("restarts: {}; probes changed: {}", list(&restarts), list(&probes))
}
