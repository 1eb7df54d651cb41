//! Questions to the kernel over netlink, for the probes: its default routes and neighbour
//! (ARP and NDP) entries (rtnetlink), and its sockets (sock_diag, see [`crate::procnet`]).
//!
//! [`dump`] sends one dump request and collects the answers until the kernel says done.
//! Each call opens its own socket: a dump is rare (once a probe interval) and a socket per
//! call keeps callers independent. Calls block (briefly): async callers run them on the
//! blocking pool.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::fmt::Debug;
use std::io;
use std::net::IpAddr;

/// Answers of one dump at most (a bound against a kernel that never says done).
const MAX_DATAGRAMS: usize = 100_000;
/// The longest wait for one answer datagram: a dump is answered at once, so a silent
/// kernel is an error, not a hang of the caller.
const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends `request` as a dump on a socket of `protocol`; every inner message of the answer.
pub fn dump<I>(protocol: isize, request: I) -> io::Result<Vec<I>>
where
    I: NetlinkSerializable + NetlinkDeserializable + Debug,
{
    let mut socket = netlink_sys::Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(RECV_TIMEOUT))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    packet.finalize();
    let mut out = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0)?;
    let mut found = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    for _ in 0..MAX_DATAGRAMS {
        buf.clear();
        let n = socket.recv(&mut buf, 0)?;
        let mut offset = 0;
        while offset < n.min(buf.len()) {
            let msg = NetlinkMessage::<I>::deserialize(&buf[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netlink answer: {e}")))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => found.push(m),
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::from_raw_os_error(e.code.map_or(0, |c| -c.get())));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
    Err(io::Error::other("the netlink dump did not end"))
}

fn route_dump(request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
    dump(netlink_sys::protocols::NETLINK_ROUTE, request)
}

fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

/// The gateways of the default routes (IPv4 and IPv6, main table) through interface
/// `ifindex`.
pub fn default_gateways(ifindex: u32) -> io::Result<Vec<IpAddr>> {
    let mut gateways = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        let answers = match route_dump(RouteNetlinkMessage::GetRoute(req)) {
            Ok(a) => a,
            // No IPv6 on this machine.
            Err(e) if family == AddressFamily::Inet6 && e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT) => continue,
            Err(e) => return Err(e),
        };
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(route) = answer else { continue };
            let h = &route.header;
            let main = h.table == RouteHeader::RT_TABLE_MAIN
                || route.attributes.iter().any(|a| matches!(a, RouteAttribute::Table(t) if *t == 254));
            if h.destination_prefix_length != 0 || h.kind != RouteType::Unicast || !main {
                continue;
            }
            let oif = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            let gateway = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => ip_of(g),
                _ => None,
            });
            if let (Some(i), Some(g)) = (oif, gateway)
                && i == ifindex
            {
                gateways.push(g);
            }
            // A multipath default route: each next hop has its own interface and gateway.
            for hops in route.attributes.iter().filter_map(|a| match a {
                RouteAttribute::MultiPath(hops) => Some(hops),
                _ => None,
            }) {
                for hop in hops.iter().filter(|h| h.interface_index == ifindex) {
                    gateways.extend(hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => ip_of(g),
                        _ => None,
                    }));
                }
            }
        }
    }
    Ok(gateways)
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A neighbour cache entry: its state and link-layer (MAC) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub state: NudState,
    pub mac: Option<Vec<u8>>,
}

/// A neighbour entry's state (`NUD_*`), as `ip neigh` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudState {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    Noarp,
    Permanent,
    None,
}

impl NudState {
    pub fn as_str(self) -> &'static str {
        match self {
            NudState::Incomplete => "INCOMPLETE",
            NudState::Reachable => "REACHABLE",
            NudState::Stale => "STALE",
            NudState::Delay => "DELAY",
            NudState::Probe => "PROBE",
            NudState::Failed => "FAILED",
            NudState::Noarp => "NOARP",
            NudState::Permanent => "PERMANENT",
            NudState::None => "NONE",
        }
    }

    /// Whether frames can reach the neighbour: its address is known. STALE, DELAY and PROBE
    /// still have it (the kernel is only re-confirming); INCOMPLETE and FAILED do not.
    pub fn usable(self) -> bool {
        matches!(
            self,
            NudState::Reachable
                | NudState::Stale
                | NudState::Delay
                | NudState::Probe
                | NudState::Permanent
                | NudState::Noarp
        )
    }
}

/// The neighbour entry of `ip` on interface `ifindex`, if the kernel has one.
pub fn neighbour(ifindex: u32, ip: IpAddr) -> io::Result<Option<Neighbour>> {
    let mut req = NeighbourMessage::default();
    req.header.family = family_of(ip);
    for answer in route_dump(RouteNetlinkMessage::GetNeighbour(req))? {
        let RouteNetlinkMessage::NewNeighbour(n) = answer else { continue };
        if n.header.ifindex != ifindex {
            continue;
        }
        let dest = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
            _ => None,
        });
        if dest != Some(ip) {
            continue;
        }
        let mac = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(m) if m.iter().any(|b| *b != 0) => Some(m.clone()),
            _ => None,
        });
        let state = match n.header.state {
            NeighbourState::Incomplete => NudState::Incomplete,
            NeighbourState::Reachable => NudState::Reachable,
            NeighbourState::Stale => NudState::Stale,
            NeighbourState::Delay => NudState::Delay,
            NeighbourState::Probe => NudState::Probe,
            NeighbourState::Failed => NudState::Failed,
            NeighbourState::Noarp => NudState::Noarp,
            NeighbourState::Permanent => NudState::Permanent,
            _ => NudState::None,
        };
        return Ok(Some(Neighbour { state, mac }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_loopback_has_no_default_gateway_and_dumps_end() {
        // A real dump of this machine's tables: it must end, and loopback (ifindex 1) is
        // never a default route's interface.
        assert_eq!(default_gateways(1).expect("route dump"), Vec::<IpAddr>::new());
        assert_eq!(neighbour(1, "127.0.0.1".parse().expect("ip")).expect("neighbour dump"), None);
    }

    #[test]
    fn test_usable_states_are_those_with_a_known_address() {
        assert!(NudState::Stale.usable() && NudState::Reachable.usable() && NudState::Permanent.usable());
        assert!(!NudState::Incomplete.usable() && !NudState::Failed.usable() && !NudState::None.usable());
    }
}
