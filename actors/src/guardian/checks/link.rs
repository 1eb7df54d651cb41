//! L2, the data link: the interface (`/sys/class/net/IF`) and the neighbour (ARP or NDP)
//! entries of the default gateways through it (rtnetlink, see `warden_core::netlink`).
//!
//! A gateway entry that is not freshly confirmed (STALE, INCOMPLETE, FAILED, or absent) is
//! poked with one UDP datagram to the gateway's discard port, which makes the kernel
//! resolve or re-confirm it (as `arping` would), and read again until the check's
//! deadline: an idle link is not reported broken because nothing used it lately. STALE,
//! DELAY and PROBE still count as usable (the address is known; the kernel is
//! re-confirming it), so a gateway that stops answering fails once the kernel calls it
//! FAILED: after `delay_first_probe_time` and its unicast probes, about 8 s with Linux's
//! defaults. The route probe's echo to the same host fails sooner.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;
use warden_core::netlink::{self, NudState};
use warden_core::probe::{Failure, Outcome};

/// `IFF_UP`: the administrator brought the interface up.
const IFF_UP: u32 = 0x1;
/// `ARPHRD_LOOPBACK`: `type` of a loopback interface, which has no MAC and reports its
/// operstate as `unknown`.
const ARPHRD_LOOPBACK: u32 = 772;
/// How often a poked neighbour entry is read again.
const REREAD: Duration = Duration::from_millis(10);

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_string())
}

fn number(text: Option<String>) -> Option<u32> {
    let t = text?;
    match t.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// The interface is up with carrier, has a MAC (loopback aside) and at least `min_mtu`;
/// with `gateway`, every default gateway through it has a usable neighbour entry.
pub async fn check(interface: &str, gateway: bool, min_mtu: Option<u32>, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let dir = match check_in(Path::new("/sys/class/net"), interface, min_mtu) {
        Ok(dir) => dir,
        Err(outcome) => return outcome,
    };
    if gateway {
        let ifindex = number(read(&dir, "ifindex")).unwrap_or(0);
        // Netlink answers and short waits: on the blocking pool, not an async worker.
        let deadline = std::time::Instant::now() + timeout.saturating_sub(start.elapsed());
        match tokio::task::spawn_blocking(move || gateways(ifindex, deadline)).await {
            Ok(Ok(())) => {}
            Ok(Err(GatewayError::Down(why))) => return Outcome::Fail(Failure::Link(format!("{interface}: {why}"))),
            Ok(Err(GatewayError::Unreadable(why))) => return Outcome::Unsupported(why),
            Err(e) => return Outcome::Fail(Failure::Other(format!("gateway check failed: {e}"))),
        }
    }
    Outcome::Pass { latency: start.elapsed(), warning: None }
}

/// The interface's own state, from `sys`; its directory when it passes.
fn check_in(sys: &Path, interface: &str, min_mtu: Option<u32>) -> Result<std::path::PathBuf, Outcome> {
    let dir = sys.join(interface);
    if !dir.is_dir() {
        return Err(Outcome::Unsupported(format!("no interface `{interface}` on this machine")));
    }
    let fail = |why: String| Err(Outcome::Fail(Failure::Link(format!("{interface}: {why}"))));
    let flags = number(read(&dir, "flags")).unwrap_or(0);
    let loopback = number(read(&dir, "type")) == Some(ARPHRD_LOOPBACK);
    if flags & IFF_UP == 0 {
        return fail("administratively down".into());
    }
    let operstate = read(&dir, "operstate").unwrap_or_default();
    // `carrier` cannot be read on an interface that is down; a read error is no carrier.
    let carrier = read(&dir, "carrier").as_deref() == Some("1");
    match operstate.as_str() {
        "up" => {}
        // Loopback and some virtual links never say `up`; their carrier says it.
        "unknown" if carrier => {}
        other => return fail(format!("operstate {other}, carrier {}", if carrier { "on" } else { "off" })),
    }
    if !carrier {
        return fail("no carrier".into());
    }
    // Only what the check uses is read (each file is an open and a read, every interval).
    if let Some(min) = min_mtu {
        let mtu = number(read(&dir, "mtu")).unwrap_or(0);
        if mtu < min {
            return fail(format!("MTU {mtu} is below {min}"));
        }
    }
    if !loopback {
        let mac = read(&dir, "address").unwrap_or_default();
        if mac.is_empty() || mac.chars().all(|c| c == '0' || c == ':') {
            return fail("no MAC address".into());
        }
    }
    Ok(dir)
}

enum GatewayError {
    /// The gateway cannot be reached at layer 2 (or there is none): a failure.
    Down(String),
    /// The kernel's tables could not be read: the check cannot run.
    Unreadable(String),
}

/// Every default gateway through `ifindex` has a usable neighbour entry with a MAC.
fn gateways(ifindex: u32, deadline: std::time::Instant) -> Result<(), GatewayError> {
    let unreadable = |what: &str, e: std::io::Error| GatewayError::Unreadable(format!("cannot read {what}: {e}"));
    let gws = netlink::default_gateways(ifindex).map_err(|e| unreadable("the routing table", e))?;
    if gws.is_empty() {
        return Err(GatewayError::Down("no default route through it".into()));
    }
    for gw in gws {
        let mut entry = netlink::neighbour(ifindex, gw).map_err(|e| unreadable("the neighbour table", e))?;
        let confirmed = |e: &Option<netlink::Neighbour>| {
            e.as_ref().is_some_and(|n| matches!(n.state, NudState::Reachable | NudState::Permanent | NudState::Noarp))
        };
        if !confirmed(&entry) {
            poke(gw, ifindex);
            while std::time::Instant::now() + REREAD < deadline && !confirmed(&entry) {
                std::thread::sleep(REREAD);
                entry = netlink::neighbour(ifindex, gw).map_err(|e| unreadable("the neighbour table", e))?;
            }
        }
        match entry {
            Some(n) if n.state.usable() && n.mac.is_some() => {}
            Some(n) if n.state.usable() => {
                return Err(GatewayError::Down(format!(
                    "gateway {gw}: neighbour entry {} without a MAC",
                    n.state.as_str()
                )));
            }
            Some(n) => return Err(GatewayError::Down(format!("gateway {gw}: neighbour entry {}", n.state.as_str()))),
            None => return Err(GatewayError::Down(format!("gateway {gw}: no neighbour entry"))),
        }
    }
    Ok(())
}

/// One datagram to the gateway's discard port: the kernel resolves (or re-confirms) its
/// link-layer address to send it. Errors are the verdict's business, not the poke's.
fn poke(gw: IpAddr, ifindex: u32) {
    let (bind, to): (SocketAddr, SocketAddr) = match gw {
        IpAddr::V4(v4) => (([0, 0, 0, 0], 0).into(), (v4, 9).into()),
        // A link-local gateway needs the interface as its scope.
        IpAddr::V6(v6) => (([0u16; 8], 0).into(), SocketAddr::V6(SocketAddrV6::new(v6, 9, 0, ifindex))),
    };
    if let Ok(socket) = std::net::UdpSocket::bind(bind) {
        let _ = socket.send_to(&[0], to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(root: &Path, name: &str, files: &[(&str, &str)]) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        for (f, v) in files {
            std::fs::write(dir.join(f), format!("{v}\n")).expect("write");
        }
    }

    #[test]
    fn test_link_states_from_sysfs() {
        let root = tempfile::tempdir().expect("tempdir");
        let up = [
            ("flags", "0x1003"),
            ("operstate", "up"),
            ("carrier", "1"),
            ("mtu", "1500"),
            ("type", "1"),
            ("address", "52:54:00:12:34:56"),
        ];
        iface(root.path(), "eth0", &up);
        assert!(check_in(root.path(), "eth0", Some(1400)).is_ok());
        assert!(
            matches!(check_in(root.path(), "eth0", Some(9000)), Err(Outcome::Fail(Failure::Link(m))) if m.contains("MTU 1500"))
        );
        iface(root.path(), "eth1", &[("flags", "0x1002"), ("operstate", "down"), ("type", "1")]);
        assert!(
            matches!(check_in(root.path(), "eth1", None), Err(Outcome::Fail(Failure::Link(m))) if m.contains("administratively down"))
        );
        iface(root.path(), "eth2", &[("flags", "0x1003"), ("operstate", "down"), ("carrier", "0"), ("type", "1")]);
        assert!(
            matches!(check_in(root.path(), "eth2", None), Err(Outcome::Fail(Failure::Link(m))) if m.contains("operstate down"))
        );
        let lo = [
            ("flags", "0x9"),
            ("operstate", "unknown"),
            ("carrier", "1"),
            ("mtu", "65536"),
            ("type", "772"),
            ("address", "00:00:00:00:00:00"),
        ];
        iface(root.path(), "lo", &lo);
        assert!(check_in(root.path(), "lo", None).is_ok(), "loopback has no MAC");
        iface(
            root.path(),
            "nomac",
            &[
                ("flags", "0x1003"),
                ("operstate", "up"),
                ("carrier", "1"),
                ("type", "1"),
                ("address", "00:00:00:00:00:00"),
            ],
        );
        assert!(
            matches!(check_in(root.path(), "nomac", None), Err(Outcome::Fail(Failure::Link(m))) if m.contains("no MAC"))
        );
        assert!(matches!(check_in(root.path(), "wlan9", None), Err(Outcome::Unsupported(_))));
    }
}
