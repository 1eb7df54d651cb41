//! Who holds a TCP port, and how many connections it has (Linux).
//!
//! Sockets come from the kernel's sock_diag netlink interface (what `ss` reads): a query
//! names the states it wants and the local port, and the kernel walks only the tables
//! those states live in. A `LISTEN` query never touches the table of established
//! connections, which on a big machine has hundreds of thousands of buckets: reading
//! `/proc/net/tcp` walks (and formats) all of it on every read, which made a 1 Hz port
//! probe cost whole percents of a core. Counting a port's connections cannot avoid that
//! walk (sock_diag's is no cheaper than `/proc`'s), so one [`census`] of every port is
//! taken at a time and shared by every caller that can use one up to a given age. Where
//! sock_diag is missing (a kernel without `inet_diag`), `/proc/net/tcp*` is read instead.
//!
//! Who holds a listening socket: the processes with a file descriptor on its inode
//! (`/proc/<pid>/fd/*` → `socket:[inode]`). A socket shared after `fork` yields one pair per
//! process. Processes that vanish during the scan, or whose fds are another user's
//! (without root), are skipped rather than reported as errors.

use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use procfs::net::TcpState;
use procfs::process::FDTarget;
use std::collections::BTreeSet;
use std::io;

fn io_err(e: procfs::ProcError) -> io::Error {
    io::Error::other(e.to_string())
}

const TCP_ESTABLISHED: u8 = 1;
const TCP_TIME_WAIT: u8 = 6;
const TCP_LISTEN: u8 = 10;

/// States as a bit set (`1 << TCP_*`), as sock_diag takes them.
const LISTEN: u32 = 1 << TCP_LISTEN;
const CONNECTED: u32 = (1 << TCP_ESTABLISHED) | (1 << TCP_TIME_WAIT);

/// One socket as sock_diag reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Diag {
    state: u8,
    local: std::net::IpAddr,
    local_port: u16,
    inode: u32,
}

/// The TCP sockets of `family` in `states` (on local port `port`, if given), from sock_diag.
fn diag(family: u8, states: u32, port: Option<u16>) -> io::Result<Vec<Diag>> {
    let mut socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    // The kernel skips sockets of other local ports while it walks.
    socket_id.source_port = port.unwrap_or(0);
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::from_bits_truncate(states),
        socket_id,
    });
    let answers = crate::netlink::dump(NETLINK_SOCK_DIAG, request)?;
    Ok(answers
        .into_iter()
        .filter_map(|m| match m {
            SockDiagMessage::InetResponse(r) => Some(Diag {
                state: r.header.state,
                local: r.header.socket_id.source_address,
                local_port: r.header.socket_id.source_port,
                inode: r.header.inode,
            }),
            _ => None,
        })
        .filter(|d| port.is_none_or(|p| p == d.local_port) && states & (1 << d.state) != 0)
        .collect())
}

/// Both families; an absent IPv6 stack is an empty table.
fn diag_all(states: u32, port: Option<u16>) -> io::Result<Vec<Diag>> {
    let mut all = diag(AF_INET, states, port)?;
    match diag(AF_INET6, states, port) {
        Ok(v6) => all.extend(v6),
        Err(e) if is_unsupported(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(all)
}

/// Rows of `/proc/net/tcp` and `/proc/net/tcp6` (on local port `port`, if given).
fn proc_rows(port: Option<u16>) -> io::Result<Vec<Diag>> {
    let mut rows = Vec::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()] {
        let entries = match table {
            Ok(rows) => rows,
            // No IPv6 in this kernel: an absent table is an empty one.
            Err(procfs::ProcError::NotFound(_)) => continue,
            Err(e) => return Err(io_err(e)),
        };
        rows.extend(entries.iter().filter(|r| port.is_none_or(|p| r.local_address.port() == p)).map(|r| Diag {
            state: match r.state {
                TcpState::Listen => TCP_LISTEN,
                TcpState::Established => TCP_ESTABLISHED,
                TcpState::TimeWait => TCP_TIME_WAIT,
                _ => 0,
            },
            local: r.local_address.ip(),
            local_port: r.local_address.port(),
            inode: u32::try_from(r.inode).unwrap_or(0),
        }));
    }
    Ok(rows)
}

/// sock_diag, or `/proc/net/tcp*` where the kernel has no sock_diag for TCP.
fn sockets(states: u32, port: Option<u16>) -> io::Result<Vec<Diag>> {
    match diag_all(states, port) {
        Ok(found) => Ok(found),
        Err(e) if is_unsupported(&e) => {
            Ok(proc_rows(port)?.into_iter().filter(|d| d.state != 0 && states & (1 << d.state) != 0).collect())
        }
        Err(e) => Err(e),
    }
}

/// Errors that mean "this kernel has no sock_diag for TCP", not a failed query.
fn is_unsupported(e: &io::Error) -> bool {
    use nix::libc;
    matches!(e.raw_os_error(), Some(libc::EPROTONOSUPPORT | libc::ENOENT | libc::EAFNOSUPPORT | libc::EOPNOTSUPP))
}

/// Inodes of the sockets listening on `port` (IPv4 or IPv6, any address).
pub fn listen_inodes(port: u16) -> io::Result<BTreeSet<u64>> {
    Ok(sockets(LISTEN, Some(port))?.into_iter().filter(|d| d.inode != 0).map(|d| u64::from(d.inode)).collect())
}

/// Inodes of the sockets listening where a connection to `addr` lands: on its port, at its
/// address or at the wildcard address (IPv6's also takes IPv4 unless the socket is
/// IPv6-only, which is not reported, so it counts).
pub fn listen_inodes_at(addr: std::net::SocketAddr) -> io::Result<BTreeSet<u64>> {
    use std::net::IpAddr;
    let takes = |local: IpAddr| match (local, addr.ip()) {
        (l, a) if l == a => true,
        (IpAddr::V4(l), IpAddr::V4(_)) => l.is_unspecified(),
        (IpAddr::V6(l), _) if l.is_unspecified() => true,
        (IpAddr::V6(l), IpAddr::V4(a)) => l.to_ipv4_mapped() == Some(a),
        _ => false,
    };
    Ok(sockets(LISTEN, Some(addr.port()))?
        .into_iter()
        .filter(|d| d.inode != 0 && takes(d.local))
        .map(|d| u64::from(d.inode))
        .collect())
}

/// Listening ports, and established and TIME_WAIT connections per local port, as of
/// `taken`.
#[derive(Debug, Clone)]
pub struct Census {
    pub taken: std::time::Instant,
    listening: std::collections::HashSet<u16>,
    counts: std::collections::HashMap<u16, (u32, u32)>,
}

impl Census {
    /// (established, time_wait) on local port `port`.
    pub fn counts(&self, port: u16) -> (u32, u32) {
        self.counts.get(&port).copied().unwrap_or((0, 0))
    }

    /// Whether something on this machine listened on `port`.
    pub fn listening(&self, port: u16) -> bool {
        self.listening.contains(&port)
    }
}

/// Takes a census of every listening, established and TIME_WAIT TCP socket. Unlike a
/// `LISTEN` query, this walks the kernel's whole connection table (milliseconds on a big
/// machine, whatever the number of sockets), so it is shared: see [`census`].
fn take_census() -> io::Result<Census> {
    let found = sockets(CONNECTED | LISTEN, None)?;
    let mut counts: std::collections::HashMap<u16, (u32, u32)> = std::collections::HashMap::new();
    let mut listening = std::collections::HashSet::new();
    for d in found {
        match d.state {
            TCP_LISTEN => {
                listening.insert(d.local_port);
            }
            TCP_ESTABLISHED => counts.entry(d.local_port).or_default().0 += 1,
            TCP_TIME_WAIT => counts.entry(d.local_port).or_default().1 += 1,
            _ => {}
        }
    }
    Ok(Census { taken: std::time::Instant::now(), listening, counts })
}

/// A census no older than `max_age`: the last one taken by any caller, or a new one. One
/// walk of the connection table serves every port and every probe within `max_age`.
pub fn census(max_age: std::time::Duration) -> io::Result<Census> {
    static LAST: std::sync::Mutex<Option<Census>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = last.as_ref().filter(|c| c.taken.elapsed() <= max_age) {
        return Ok(c.clone());
    }
    let fresh = take_census()?;
    *last = Some(fresh.clone());
    Ok(fresh)
}

/// Connections on local port `port` now: (established, time_wait), over IPv4 and IPv6.
#[cfg(test)]
fn connection_counts(port: u16) -> io::Result<(u32, u32)> {
    Ok(census(std::time::Duration::ZERO)?.counts(port))
}

/// Every `(pid, inode)` where process `pid` has an fd on one of `inodes`, sorted.
pub fn pids_holding(inodes: &BTreeSet<u64>) -> io::Result<Vec<(u32, u64)>> {
    let mut found = BTreeSet::new();
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    for process in procfs::process::all_processes().map_err(io_err)? {
        let Ok(process) = process else { continue };
        let Ok(fds) = process.fd() else { continue };
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target
                && inodes.contains(&inode)
                && let Ok(pid) = u32::try_from(process.pid())
            {
                found.insert((pid, inode));
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// `(pid, inode)` of every process holding a socket in `LISTEN` on `port`.
pub fn listeners_of_port(port: u16) -> io::Result<Vec<(u32, u64)>> {
    pids_holding(&listen_inodes(port)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_finds_this_process_listening_on_ipv4_and_ipv6() {
        // A real listener on loopback: the scan must name us as its holder.
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind v4");
        let port = v4.local_addr().expect("addr").port();
        let me = std::process::id();
        let found = listeners_of_port(port).expect("scan /proc");
        assert!(found.iter().any(|(pid, _)| *pid == me), "{found:?}");
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            let port6 = v6.local_addr().expect("addr").port();
            assert!(listeners_of_port(port6).expect("scan").iter().any(|(p, _)| *p == me), "IPv6 listener found");
        }
    }

    #[test]
    fn test_a_port_nobody_listens_on_has_no_holder() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        assert_eq!(listeners_of_port(port).expect("scan"), vec![]);
    }

    #[test]
    fn test_counts_established_connections_on_the_port_only() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("c")).collect();
        let accepted: Vec<_> = (0..3).map(|_| l.accept().expect("accept")).collect();
        let (est, tw) = connection_counts(port).expect("counts");
        assert_eq!(est, 3, "the server's three ends, not the clients' (their local port is another)");
        // The server closes first: its ends go to TIME_WAIT, on its port.
        drop(accepted);
        drop(clients);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut counts = (est, tw);
        while std::time::Instant::now() < deadline {
            counts = connection_counts(port).expect("counts");
            if counts == (0, 3) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(counts, (0, 3), "three server ends in TIME_WAIT");
        assert_eq!(proc_rows(Some(port)).expect("proc").iter().filter(|d| d.state == TCP_TIME_WAIT).count(), 3);
    }

    #[test]
    fn test_a_listener_on_another_address_does_not_take_the_connection() {
        let l = std::net::TcpListener::bind("127.0.0.2:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let at = |ip: &str| listen_inodes_at(format!("{ip}:{port}").parse().expect("addr")).expect("query");
        assert_eq!(at("127.0.0.2").len(), 1);
        assert!(at("127.0.0.1").is_empty(), "a connection to 127.0.0.1 does not reach it");
    }

    #[test]
    fn test_connected_sockets_are_not_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let found = listeners_of_port(port).expect("scan");
        assert_eq!(found.len(), 1, "only the listening socket, not the two connected ends: {found:?}");
    }
}
