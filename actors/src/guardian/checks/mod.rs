//! The probes' checks, one module per OSI layer, and the [`Prober`] that runs a probe's
//! check with what it keeps between checks (an ICMP socket, a TLS configuration, a
//! resolver). Every check is bounded by the probe's timeout and answers an [`Outcome`]:
//! passed (with a warning when close to failing), failed with a [`Failure`] that says why,
//! or unsupported here with the reason — never a false pass.
//!
//! - [`link`]: L2, interface and gateway neighbour
//! - [`network`]: L3, route and ICMP echo
//! - [`transport`]: L4, TCP connect and port owner, UDP
//! - [`session`]: L5, keep-alive sessions and connection counts
//! - [`presentation`]: L6, TLS and response encoding
//! - [`application`]: L7, HTTP, DNS, PostgreSQL, Ollama, line protocols

pub mod application;
pub mod link;
pub mod network;
pub mod presentation;
pub mod session;
pub mod transport;

use super::service_table::ServiceTable;
use crate::process::LastGroup;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;
use warden_core::config::{ProbeCheck, ProbeSpec, ReadyCheck, ServiceName};
use warden_core::probe::{CheckResult, Failure, Outcome};

/// The longest answer line a line-protocol check reads.
const MAX_LINE: u64 = 64 * 1024;

/// The client of probes and ready checks: no connection reuse (each check is a fresh
/// connect, like Kubernetes probes) and no proxy. One for the process, shared (a client
/// is a handle; each has its own pool, DNS and TLS state otherwise).
pub fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap_or_default())
        .clone()
}

/// What a probe knows of its target service: its processes, for the port-owner check.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub table: ServiceTable,
    pub service: ServiceName,
}

impl ServiceView {
    /// The service's processes now: its main process, everything in its cgroup, or without
    /// a cgroup its process group.
    pub fn processes(&self) -> BTreeSet<u32> {
        let (pid, ticks, cgroup) = {
            let t = self.table.lock();
            match t.services.get(&self.service) {
                Some(e) => (e.pid, e.start_ticks, e.cgroup.clone()),
                None => return BTreeSet::new(),
            }
        };
        let mut own: BTreeSet<u32> = pid.into_iter().collect();
        match cgroup {
            Some(cg) => own.extend(cg.pids()),
            None => {
                if let (Some(pgid), Some(leader_ticks)) = (pid, ticks) {
                    own.extend(LastGroup { pgid, leader_ticks }.members());
                }
            }
        }
        own
    }
}

/// One probe's check, with what it keeps from one check to the next.
pub struct Prober {
    check: ProbeCheck,
    timeout: Duration,
    client: reqwest::Client,
    service: ServiceView,
    icmp: Option<network::Icmp>,
    owner: transport::OwnerCache,
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
    resolver: Option<Result<hickory_resolver::TokioResolver, String>>,
}

impl Prober {
    /// Prepares `spec`'s check (sockets and configurations made once, here).
    pub fn new(spec: &ProbeSpec, table: ServiceTable) -> Self {
        let icmp = match &spec.check {
            ProbeCheck::Route { host, .. } => network::Icmp::new(*host),
            _ => None,
        };
        let tls = match &spec.check {
            ProbeCheck::Tls { ca_file, .. } => Some(presentation::client_config(ca_file.as_deref())),
            _ => None,
        };
        let resolver = match &spec.check {
            ProbeCheck::Dns { resolver, .. } => Some(application::resolver(*resolver, spec.timeout)),
            _ => None,
        };
        Self {
            check: spec.check.clone(),
            timeout: spec.timeout,
            client: http_client(),
            service: ServiceView { table, service: spec.target.clone() },
            icmp,
            owner: transport::OwnerCache::default(),
            tls,
            resolver,
        }
    }

    /// How the check runs here, where there is a choice.
    pub fn method(&self) -> Option<String> {
        match &self.check {
            ProbeCheck::Route { port, .. } => Some(match (&self.icmp, port) {
                (Some(icmp), _) => icmp.method().to_string(),
                (None, Some(port)) => format!("TCP connect to port {port} (ICMP sockets are not permitted here)"),
                (None, None) => "none: ICMP sockets are not permitted here and no port is set".to_string(),
            }),
            ProbeCheck::Tcp { owner: true, .. } => Some("TCP connect, then the port's owner".into()),
            ProbeCheck::Tls { ca_file, .. } => Some(match ca_file {
                Some(f) => format!("TLS, roots from {}", f.display()),
                None => "TLS, the system's roots".into(),
            }),
            ProbeCheck::Dns { resolver, .. } => Some(match resolver {
                Some(r) => format!("DNS through {r}"),
                None => "DNS through the system's resolvers".into(),
            }),
            _ => None,
        }
    }

    /// Runs the check once, within the probe's timeout.
    pub async fn check(&mut self) -> Outcome {
        let timeout = self.timeout;
        // Every check bounds its own steps; this is the backstop.
        match tokio::time::timeout(timeout + Duration::from_millis(50), self.run()).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Fail(Failure::Timeout),
        }
    }

    async fn run(&mut self) -> Outcome {
        let t = self.timeout;
        match &self.check {
            ProbeCheck::Link { interface, gateway, min_mtu } => {
                // A few small sysfs files and netlink answers, read in place: handing them
                // to the blocking pool would cost more than reading them.
                link::check(interface, *gateway, *min_mtu, t).await
            }
            ProbeCheck::Route { host, port } => network::check(*host, *port, self.icmp.as_mut(), t).await,
            ProbeCheck::Tcp { addr, owner } => transport::tcp(*addr, *owner, &self.service, &mut self.owner, t).await,
            ProbeCheck::Udp { addr, send, expect } => transport::udp(*addr, send, expect.as_deref(), t).await,
            ProbeCheck::Session { exchange, requests, max_established, max_time_wait } => {
                session::check(exchange, *requests, *max_established, *max_time_wait, t).await
            }
            ProbeCheck::Tls { addr, server_name, warn_days, fail_days, .. } => {
                let Some(config) = &self.tls else { return Outcome::Unsupported("no TLS configuration".into()) };
                presentation::tls(config, *addr, server_name, *warn_days, *fail_days, t).await
            }
            ProbeCheck::Encoding { exchange, format } => {
                presentation::encoding(&self.client, exchange, *format, t).await
            }
            ProbeCheck::Http { url, expect_status, body, max_latency } => {
                application::http(&self.client, url, *expect_status, body.as_deref(), *max_latency, t).await
            }
            ProbeCheck::Dns { query, expect, .. } => {
                let Some(resolver) = &self.resolver else { return Outcome::Unsupported("no resolver".into()) };
                application::dns(resolver, query, *expect, t).await
            }
            ProbeCheck::Postgres { addr, user, dbname, password_file } => {
                application::postgres(*addr, user, dbname, password_file.as_deref(), t).await
            }
            ProbeCheck::Ollama { url, model } => application::ollama(&self.client, url, model.as_deref(), t).await,
            ProbeCheck::Line { addr, send, expect, password_file } => {
                application::line(*addr, send, expect, password_file.as_deref(), t).await
            }
        }
    }
}

/// A service's ready check: an HTTP GET that answers 2xx, or a TCP connect.
pub async fn ready(client: &reqwest::Client, check: &ReadyCheck, timeout: Duration) -> CheckResult {
    let start = Instant::now();
    match check {
        ReadyCheck::Http { url } => {
            let resp = client.get(url.clone()).timeout(timeout).send().await.map_err(|e| reqwest_failure(&e))?;
            if resp.status().is_success() { Ok(start.elapsed()) } else { Err(Failure::Status(resp.status().as_u16())) }
        }
        ReadyCheck::Tcp { addr } => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(Failure::Timeout),
        },
    }
}

/// An I/O error as a failure: unreachable network and host told apart from a refusal.
/// `EPERM` on a connect or a send is this host's packet filter dropping what goes out (a
/// remote filter answers `EHOSTUNREACH`): the path is blocked, as it is for a cut link.
pub fn classify(e: &std::io::Error) -> Failure {
    match e.raw_os_error().map(nix::errno::Errno::from_raw) {
        Some(nix::errno::Errno::ENETUNREACH) => Failure::NetworkUnreachable(e.to_string()),
        Some(nix::errno::Errno::EHOSTUNREACH) => Failure::HostUnreachable(e.to_string()),
        Some(nix::errno::Errno::EPERM) => {
            Failure::HostUnreachable(format!("{e}: a packet filter on this host drops what is sent there"))
        }
        Some(nix::errno::Errno::ETIMEDOUT) => Failure::Timeout,
        _ => Failure::Connect(e.to_string()),
    }
}

/// A reqwest error as a failure, with the I/O error underneath classified.
pub fn reqwest_failure(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return classify(io);
        }
        cur = err.source();
    }
    if e.is_connect() { Failure::Connect(root_cause(e)) } else { Failure::Other(root_cause(e)) }
}

/// The innermost error's message.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// An answer as a failure message quotes it: at most 120 characters, so a peer cannot fill
/// the probe's history (and every alert) with what it sends.
pub fn shown(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// One line of an answer (without its line break), bounded in length.
pub async fn read_line_bytes<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let n = reader.take(MAX_LINE).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the connection closed without an answer"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(buf)
}

/// One line of an answer as text (invalid UTF-8 replaced).
pub async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<String> {
    read_line_bytes(reader).await.map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_path_blocked_here_or_away_is_unreachable_and_a_refusal_is_a_connect_failure() {
        let err = |n: nix::errno::Errno| std::io::Error::from_raw_os_error(n as i32);
        assert!(
            matches!(classify(&err(nix::errno::Errno::EPERM)), Failure::HostUnreachable(m) if m.contains("packet filter"))
        );
        assert!(matches!(classify(&err(nix::errno::Errno::EHOSTUNREACH)), Failure::HostUnreachable(_)));
        assert!(matches!(classify(&err(nix::errno::Errno::ENETUNREACH)), Failure::NetworkUnreachable(_)));
        assert_eq!(classify(&err(nix::errno::Errno::ETIMEDOUT)), Failure::Timeout);
        assert!(matches!(classify(&err(nix::errno::Errno::ECONNREFUSED)), Failure::Connect(_)));
    }
}
