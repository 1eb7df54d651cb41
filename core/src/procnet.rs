//! Who holds a TCP port (Linux), through the `procfs` crate.
//!
//! Two steps: the inodes of the sockets in `LISTEN` on the port (from `/proc/net/tcp` and
//! `/proc/net/tcp6`, any local address), then the processes with a file descriptor on one
//! of those inodes (`/proc/<pid>/fd/*` → `socket:[inode]`). A socket shared after `fork`
//! yields one pair per process. Processes that vanish during the scan, or whose fds are
//! another user's (without root), are skipped rather than reported as errors.

use procfs::net::TcpState;
use procfs::process::FDTarget;
use std::collections::BTreeSet;
use std::io;

fn io_err(e: procfs::ProcError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Inodes of the sockets listening on `port` (IPv4 or IPv6, any address).
pub fn listen_inodes(port: u16) -> io::Result<BTreeSet<u64>> {
    let mut inodes = BTreeSet::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()] {
        let rows = match table {
            Ok(rows) => rows,
            // No IPv6 in this kernel: an absent table is an empty one.
            Err(procfs::ProcError::NotFound(_)) => continue,
            Err(e) => return Err(io_err(e)),
        };
        inodes.extend(
            rows.iter()
                .filter(|r| r.state == TcpState::Listen && r.local_address.port() == port && r.inode != 0)
                .map(|r| r.inode),
        );
    }
    Ok(inodes)
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
    fn test_connected_sockets_are_not_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let found = listeners_of_port(port).expect("scan");
        assert_eq!(found.len(), 1, "only the listening socket, not the two connected ends: {found:?}");
    }
}
