//! L4, transport: a TCP connect and the port's owner, a UDP request and its answer.
//!
//! The owner check answers "is the process listening on the service's port the service?":
//! the listening socket that takes connections to the address (sock_diag, see
//! `warden_core::procnet`) must be held by one of the service's processes (its main
//! process, its cgroup, or without a cgroup its process group). A stranger (an orphan of
//! an earlier run, another program) is a finding in itself: its pid and process name are
//! given (not its command line, which may carry a secret). Where the owner cannot be
//! known (no local listener: the address is on another host; a holder this process may
//! not see) the check says it cannot run, never that it passed.

use super::{ServiceView, classify};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use warden_core::probe::{Failure, Outcome};

/// The listener last found to be the service's own: its socket inodes and the process that
/// held them. While the listener is the same socket and that process is still one of the
/// service's, it is still the service's (a socket changes hands only by descriptor
/// passing), so the steady state costs one sock_diag query and no scan of descriptors.
#[derive(Debug, Clone, Default)]
pub struct OwnerCache(Option<(BTreeSet<u64>, u32)>);

/// A TCP connect; with `owner`, the listener must belong to the service.
pub async fn tcp(
    addr: SocketAddr,
    owner: bool,
    service: &ServiceView,
    cache: &mut OwnerCache,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let connected = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Outcome::Fail(classify(&e)),
        Err(_) => return Outcome::Fail(Failure::Timeout),
    };
    let latency = start.elapsed();
    drop(connected);
    if owner {
        let mut known = std::mem::take(cache);
        let service = service.clone();
        let verdict = tokio::task::spawn_blocking(move || (stranger_on(addr, &service, &mut known), known)).await;
        match verdict {
            Ok((verdict, known)) => {
                *cache = known;
                match verdict {
                    Ok(Some(f)) => return Outcome::Fail(f),
                    Ok(None) => {}
                    Err(why) => return Outcome::Unsupported(why),
                }
            }
            Err(e) => return Outcome::Fail(Failure::Other(format!("owner check failed: {e}"))),
        }
    }
    Outcome::Pass { latency, warning: None }
}

/// The process holding the listener of `addr` when it is not the service's; `Err` when the
/// owner cannot be known here.
fn stranger_on(addr: SocketAddr, service: &ServiceView, cache: &mut OwnerCache) -> Result<Option<Failure>, String> {
    let port = addr.port();
    let inodes =
        warden_core::procnet::listen_inodes_at(addr).map_err(|e| format!("cannot list the port's sockets: {e}"))?;
    if inodes.is_empty() {
        return Err(format!(
            "nothing on this machine listens on {addr}: the owner check needs the service's listener here \
             (set `owner: false` for a remote address)"
        ));
    }
    let own = service.processes();
    if let Some((known, pid)) = &cache.0
        && *known == inodes
        && own.contains(pid)
    {
        return Ok(None);
    }
    cache.0 = None;
    // The service's own processes first: in the common case nobody else is looked at.
    if let Some(pid) = own.iter().find(|pid| holds(**pid, &inodes)) {
        cache.0 = Some((inodes, *pid));
        return Ok(None);
    }
    let holders = warden_core::procnet::pids_holding(&inodes).map_err(|e| format!("cannot scan /proc: {e}"))?;
    if holders.iter().any(|(p, _)| own.contains(p)) {
        // Held by a process of ours after all (it appeared between the two reads).
        return Ok(None);
    }
    let Some((pid, _)) = holders.first() else {
        return Err(format!(
            "cannot see which process holds {addr} (its descriptors are another user's; run warden as root)"
        ));
    };
    let command = procfs::process::Process::new(*pid as i32)
        .and_then(|p| p.stat())
        .map(|st| st.comm)
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "?".into());
    Ok(Some(Failure::Stranger { port, pid: *pid, command }))
}

/// Whether process `pid` has a file descriptor on one of `inodes`.
fn holds(pid: u32, inodes: &BTreeSet<u64>) -> bool {
    let Ok(p) = procfs::process::Process::new(pid as i32) else { return false };
    let Ok(fds) = p.fd() else { return false };
    fds.flatten().any(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(inode) if inodes.contains(&inode)))
}

/// A UDP datagram to `addr` is answered (starting with `expect`, if set).
pub async fn udp(addr: SocketAddr, send: &str, expect: Option<&str>, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(Failure::Other(format!("cannot open a UDP socket: {e}"))),
    };
    if let Err(e) = socket.connect(addr).await {
        return Outcome::Fail(classify(&e));
    }
    let exchange = async {
        socket.send(send.as_bytes()).await?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = socket.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Outcome::Fail(Failure::Timeout),
        // A port unreachable answer surfaces as ECONNREFUSED on a connected UDP socket.
        Ok(Err(e)) => Outcome::Fail(classify(&e)),
        Ok(Ok(reply)) => match expect {
            Some(want) if !reply.starts_with(want.as_bytes()) => Outcome::Fail(Failure::Response(format!(
                "answered {:?}, expected it to start with {want:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(64)])
            ))),
            _ => Outcome::Pass { latency: start.elapsed(), warning: None },
        },
    }
}
