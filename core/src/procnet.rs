//! Who holds a TCP port, from `/proc` (Linux only, std only).
//!
//! Three steps, each usable alone:
//!
//! 1. [`parse_tcp_table`] turns the text of `/proc/net/tcp` or `/proc/net/tcp6` into
//!    [`TcpRow`]s (local address, remote address, [`TcpState`], uid, socket inode). The kernel
//!    prints each IPv4 address as one 32-bit word and each IPv6 address as four, in host byte
//!    order, and ports as big-endian hex; the parser undoes both.
//! 2. [`listen_inodes`] picks the inodes of the sockets in `LISTEN` on a port (IPv4 and IPv6,
//!    any local address).
//! 3. [`pids_holding`] scans `/proc/<pid>/fd/*` for symlinks `socket:[<inode>]` and returns
//!    every `(pid, inode)` pair; a socket shared after `fork` yields one pair per process.
//!
//! [`listeners_of_port`] chains them on the real `/proc`; [`listeners_of_port_in`] does the
//! same under another root so the scan is testable on a fake tree. Parsing takes `&str` and
//! never touches the file system. Processes that vanish or whose `fd` directory is not
//! readable (another user's, without root) are skipped, not reported as errors.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// A TCP socket state as numbered by the kernel (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    /// A code this module does not know.
    Other(u8),
}

impl TcpState {
    /// The state for the kernel's numeric code (the `st` column).
    pub fn from_code(code: u8) -> Self {
        match code {
            0x01 => Self::Established,
            0x02 => Self::SynSent,
            0x03 => Self::SynRecv,
            0x04 => Self::FinWait1,
            0x05 => Self::FinWait2,
            0x06 => Self::TimeWait,
            0x07 => Self::Close,
            0x08 => Self::CloseWait,
            0x09 => Self::LastAck,
            0x0A => Self::Listen,
            0x0B => Self::Closing,
            0x0C => Self::NewSynRecv,
            other => Self::Other(other),
        }
    }
}

/// One socket line of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    pub uid: u32,
    /// The socket's inode; 0 for sockets without one (e.g. `TIME_WAIT`).
    pub inode: u64,
}

/// Why a line of a `/proc/net/tcp*` table could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the text given to [`parse_tcp_table`] (1 for [`parse_tcp_line`]).
    pub line: usize,
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole table: skips the header line (it starts with `sl`) and blank lines.
pub fn parse_tcp_table(text: &str) -> Result<Vec<TcpRow>, ParseError> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with("sl") {
            continue;
        }
        let row = parse_tcp_line(line).map_err(|e| ParseError { line: index + 1, reason: e.reason })?;
        rows.push(row);
    }
    Ok(rows)
}

/// Parses one socket line, e.g.
/// `0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4242 1 ...`.
pub fn parse_tcp_line(line: &str) -> Result<TcpRow, ParseError> {
    let err = |reason| ParseError { line: 1, reason };
    let mut fields = line.split_whitespace();
    let slot = fields.next().ok_or(err("empty line"))?;
    if !slot.ends_with(':') {
        return Err(err("first field is not a slot number"));
    }
    let local = parse_endpoint(fields.next().ok_or(err("missing local address"))?).ok_or(err("bad local address"))?;
    let remote =
        parse_endpoint(fields.next().ok_or(err("missing remote address"))?).ok_or(err("bad remote address"))?;
    let state = u8::from_str_radix(fields.next().ok_or(err("missing state"))?, 16).map_err(|_| err("bad state"))?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt
    let mut fields = fields.skip(3);
    let uid = fields.next().ok_or(err("missing uid"))?.parse::<u32>().map_err(|_| err("bad uid"))?;
    // timeout
    let mut fields = fields.skip(1);
    let inode = fields.next().ok_or(err("missing inode"))?.parse::<u64>().map_err(|_| err("bad inode"))?;
    Ok(TcpRow { local, remote, state: TcpState::from_code(state), uid, inode })
}

/// `HEXADDR:HEXPORT`, the address in host-order 32-bit words (1 for IPv4, 4 for IPv6).
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(parse_word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&parse_word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One 8-hex-digit word as the kernel printed it: the native-endian view of 4 network bytes.
fn parse_word(hex: &str) -> Option<[u8; 4]> {
    Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
}

/// Inodes of the sockets listening on `port` (any address, IPv4 or IPv6), without duplicates.
pub fn listen_inodes(rows: &[TcpRow], port: u16) -> Vec<u64> {
    let set: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.state == TcpState::Listen && r.local.port() == port && r.inode != 0)
        .map(|r| r.inode)
        .collect();
    set.into_iter().collect()
}

/// The inode in a `/proc/<pid>/fd/<n>` link target `socket:[<inode>]`, if it is a socket.
pub fn socket_inode(link_target: &str) -> Option<u64> {
    link_target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Every `(pid, inode)` where process `pid` under `proc_root` has an fd on one of `inodes`,
/// sorted by pid then inode.
pub fn pids_holding(proc_root: &Path, inodes: &[u64]) -> io::Result<Vec<(u32, u64)>> {
    let mut found = BTreeSet::new();
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // The process may exit, or its fds may be another user's: skip it either way.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target.to_str().and_then(socket_inode)
                && inodes.contains(&inode)
            {
                found.insert((pid, inode));
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Reads and parses `<proc_root>/net/tcp` and `<proc_root>/net/tcp6`; a missing table (no
/// IPv6 in the kernel) counts as empty.
pub fn read_tcp_tables(proc_root: &Path) -> io::Result<Vec<TcpRow>> {
    let mut rows = Vec::new();
    for name in ["net/tcp", "net/tcp6"] {
        let text = match std::fs::read_to_string(proc_root.join(name)) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let parsed =
            parse_tcp_table(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))?;
        rows.extend(parsed);
    }
    Ok(rows)
}

/// `(pid, inode)` of every process holding a socket in `LISTEN` on `port`, from `/proc`.
pub fn listeners_of_port(port: u16) -> io::Result<Vec<(u32, u64)>> {
    listeners_of_port_in(Path::new("/proc"), port)
}

/// [`listeners_of_port`] under another proc root (a fake tree in tests).
pub fn listeners_of_port_in(proc_root: &Path, port: u16) -> io::Result<Vec<(u32, u64)>> {
    let rows = read_tcp_tables(proc_root)?;
    pids_holding(proc_root, &listen_inodes(&rows, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on x86_64 (little-endian): a listener on 127.0.0.1:8000, an established
    // connection 127.0.0.1:41234 -> 127.0.0.1:8000, a TIME_WAIT without inode.
    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A112 0100007F:1F40 01 00000000:00000000 00:00000000 00000000  1000        0 5151 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A113 0100007F:1F40 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";

    // A listener on [::]:8000 and one on [::1]:7700.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6161 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1E14 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7171 1 0000000000000000 100 0 0 10 0
";

    #[test]
    #[cfg(target_endian = "little")]
    fn test_parse_tcp4_reads_addresses_state_uid_inode() {
        // Invariant: host-order words and big-endian ports decode to the real endpoints.
        let rows = parse_tcp_table(TCP4).expect("sample parses");
        assert_eq!(rows.len(), 3, "header skipped, three sockets");
        let listen = &rows[0];
        assert_eq!(listen.local, "127.0.0.1:8000".parse().expect("addr"));
        assert_eq!(listen.remote, "0.0.0.0:0".parse().expect("addr"));
        assert_eq!(listen.state, TcpState::Listen);
        assert_eq!((listen.uid, listen.inode), (0, 4242));
        assert_eq!(rows[1].local, "127.0.0.1:41234".parse().expect("addr"));
        assert_eq!(rows[1].state, TcpState::Established);
        assert_eq!(rows[1].uid, 1000);
        assert_eq!(rows[2].state, TcpState::TimeWait);
        assert_eq!(rows[2].inode, 0);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn test_parse_tcp6_reads_any_and_loopback() {
        let rows = parse_tcp_table(TCP6).expect("sample parses");
        assert_eq!(rows[0].local, "[::]:8000".parse().expect("addr"));
        assert_eq!(rows[1].local, "[::1]:7700".parse().expect("addr"));
        assert_eq!(rows[1].inode, 7171);
    }

    #[test]
    fn test_listen_inodes_only_listeners_on_port() {
        // Invariant: established/TIME_WAIT sockets on the port are not "holders".
        let mut rows = parse_tcp_table(TCP4).expect("v4");
        rows.extend(parse_tcp_table(TCP6).expect("v6"));
        assert_eq!(listen_inodes(&rows, 8000), vec![4242, 6161]);
        assert_eq!(listen_inodes(&rows, 7700), vec![7171]);
        assert!(listen_inodes(&rows, 9).is_empty());
    }

    #[test]
    fn test_parse_rejects_garbage_with_line_number() {
        let err = parse_tcp_table("  sl local\n   0: zz:1F40 00000000:0000 0A\n").expect_err("bad address must fail");
        assert_eq!(err.line, 2, "line numbers count the header");
        assert!(parse_tcp_line("0: 0100007F:1F40").is_err(), "truncated line");
        assert!(parse_tcp_line("0100007F:1F40 00000000:0000").is_err(), "no slot");
    }

    #[test]
    fn test_socket_inode_parses_only_sockets() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn test_listeners_of_port_in_fake_proc_tree() {
        // Invariant: every process holding the listening inode is found, others are not.
        let root = std::env::temp_dir().join(format!("procnet-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("net")).expect("mkdir net");
        std::fs::write(root.join("net/tcp"), TCP4).expect("write tcp");
        std::fs::write(root.join("net/tcp6"), TCP6).expect("write tcp6");
        let link = |pid: &str, fd: &str, target: &str| {
            let dir = root.join(pid).join("fd");
            std::fs::create_dir_all(&dir).expect("mkdir fd");
            std::os::unix::fs::symlink(target, dir.join(fd)).expect("symlink");
        };
        link("100", "3", "socket:[4242]");
        link("100", "4", "socket:[6161]");
        link("101", "3", "socket:[4242]"); // a forked child sharing the listener
        link("102", "3", "socket:[5151]"); // a client, not a listener
        link("103", "0", "/dev/null");
        std::fs::create_dir_all(root.join("self")).expect("non-numeric entry");

        let found = listeners_of_port_in(&root, 8000).expect("scan");
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(found, vec![(100, 4242), (100, 6161), (101, 4242)]);
    }

    #[test]
    fn test_listeners_of_port_real_proc_finds_own_listener() {
        // Invariant: on Linux, a listener we open is attributed to our own pid.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let found = listeners_of_port(port).expect("scan /proc");
        assert!(found.iter().any(|&(pid, _)| pid == std::process::id()), "own pid in {found:?}");
    }
}
