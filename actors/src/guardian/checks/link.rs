//! L2, the data link: the interface (`/sys/class/net/IF`) and the default gateway's
//! neighbour entry (`/proc/net/route`, `/proc/net/arp`).

use std::net::Ipv4Addr;
use std::path::Path;
use warden_core::probe::{Failure, Outcome};

/// `IFF_UP`: the administrator brought the interface up.
const IFF_UP: u32 = 0x1;
/// `ARPHRD_LOOPBACK`: `type` of a loopback interface, which has no MAC and reports its
/// operstate as `unknown`.
const ARPHRD_LOOPBACK: u32 = 772;
/// `ATF_COM`: the neighbour entry is complete (its MAC is known).
const ATF_COM: u32 = 0x2;

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
/// with `gateway`, the default gateway has a complete neighbour entry on it.
pub fn check(interface: &str, gateway: bool, min_mtu: Option<u32>) -> Outcome {
    check_in(Path::new("/sys/class/net"), interface, gateway, min_mtu)
}

fn check_in(sys: &Path, interface: &str, gateway: bool, min_mtu: Option<u32>) -> Outcome {
    let dir = sys.join(interface);
    if !dir.is_dir() {
        return Outcome::Unsupported(format!("no interface `{interface}` on this machine"));
    }
    let fail = |why: String| Outcome::Fail(Failure::Link(format!("{interface}: {why}")));
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
    let mtu = number(read(&dir, "mtu")).unwrap_or(0);
    if let Some(min) = min_mtu
        && mtu < min
    {
        return fail(format!("MTU {mtu} is below {min}"));
    }
    if !loopback {
        let mac = read(&dir, "address").unwrap_or_default();
        if mac.is_empty() || mac.chars().all(|c| c == '0' || c == ':') {
            return fail("no MAC address".into());
        }
    }
    if gateway {
        return match gateway_neighbour(interface) {
            Ok(()) => Outcome::Pass { latency: std::time::Duration::ZERO, warning: None },
            Err(why) => fail(why),
        };
    }
    Outcome::Pass { latency: std::time::Duration::ZERO, warning: None }
}

/// The IPv4 default gateway through `interface` has a complete neighbour (ARP) entry
/// with a MAC.
fn gateway_neighbour(interface: &str) -> Result<(), String> {
    let routes = procfs::net::route().map_err(|e| format!("cannot read the routing table: {e}"))?;
    let gw = routes
        .iter()
        .find(|r| r.iface == interface && r.destination == Ipv4Addr::UNSPECIFIED && r.mask == Ipv4Addr::UNSPECIFIED)
        .map(|r| r.gateway)
        .ok_or_else(|| "no default route through it".to_string())?;
    let arp = procfs::net::arp().map_err(|e| format!("cannot read the neighbour table: {e}"))?;
    let entry = arp
        .iter()
        .find(|a| a.ip_address == gw && a.device == interface)
        .ok_or_else(|| format!("gateway {gw} has no neighbour entry"))?;
    let complete = entry.flags.bits() & ATF_COM != 0;
    let mac = entry.hw_address.map(|m| m.iter().any(|b| *b != 0)).unwrap_or(false);
    if complete && mac { Ok(()) } else { Err(format!("gateway {gw} neighbour entry is incomplete (no MAC)")) }
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
        assert!(matches!(check_in(root.path(), "eth0", false, Some(1400)), Outcome::Pass { .. }));
        assert!(
            matches!(check_in(root.path(), "eth0", false, Some(9000)), Outcome::Fail(Failure::Link(m)) if m.contains("MTU 1500"))
        );
        iface(root.path(), "eth1", &[("flags", "0x1002"), ("operstate", "down"), ("type", "1")]);
        assert!(
            matches!(check_in(root.path(), "eth1", false, None), Outcome::Fail(Failure::Link(m)) if m.contains("administratively down"))
        );
        iface(root.path(), "eth2", &[("flags", "0x1003"), ("operstate", "down"), ("carrier", "0"), ("type", "1")]);
        assert!(
            matches!(check_in(root.path(), "eth2", false, None), Outcome::Fail(Failure::Link(m)) if m.contains("operstate down"))
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
        assert!(matches!(check_in(root.path(), "lo", false, None), Outcome::Pass { .. }), "loopback has no MAC");
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
            matches!(check_in(root.path(), "nomac", false, None), Outcome::Fail(Failure::Link(m)) if m.contains("no MAC"))
        );
        assert!(matches!(check_in(root.path(), "wlan9", false, None), Outcome::Unsupported(_)));
    }
}
