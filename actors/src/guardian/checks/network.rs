//! L3, the network: a route to the host exists (the kernel's own route lookup), and the
//! host answers ICMP echo (an unprivileged ICMP socket where `net.ipv4.ping_group_range`
//! allows it, a raw one as root), or, where ICMP may not be used, a TCP connect.
//! `ENETUNREACH`, `EHOSTUNREACH` and a timeout are told apart.

use super::classify;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};
use tokio::time::Instant;
use warden_core::probe::{Failure, Outcome};

/// ICMP for one host: a client (its socket and receive task) made once per probe.
pub struct Icmp {
    client: Client,
    ident: PingIdentifier,
    seq: u16,
}

impl Icmp {
    /// `None` where this process may open neither an unprivileged ICMP socket nor a raw one.
    pub fn new(host: IpAddr) -> Option<Self> {
        let kind = if host.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
        let config = Config::builder().kind(kind).sock_type_hint(socket2::Type::DGRAM).build();
        let client = Client::new(&config).ok()?;
        Some(Self { client, ident: PingIdentifier(rand::random()), seq: 0 })
    }

    /// Which ICMP socket this process got.
    pub fn method(&self) -> &'static str {
        if self.client.get_socket().get_type() == socket2::Type::RAW {
            "ICMP echo, raw socket"
        } else {
            "ICMP echo, unprivileged ICMP socket"
        }
    }
}

/// Whether the kernel has a route to `host`: connecting a UDP socket runs the same route
/// lookup a packet would, without sending anything.
fn route_lookup(host: IpAddr) -> Result<(), Failure> {
    let bind: SocketAddr = if host.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| Failure::Other("bad bind address".into()))?;
    let socket =
        std::net::UdpSocket::bind(bind).map_err(|e| Failure::Other(format!("cannot open a UDP socket: {e}")))?;
    socket.connect(SocketAddr::new(host, 9)).map_err(|e| match classify(&e) {
        Failure::Connect(m) => Failure::Other(format!("route lookup: {m}")),
        f => f,
    })
}

/// A route to `host` exists and it answers.
pub async fn check(host: IpAddr, port: Option<u16>, icmp: Option<&mut Icmp>, timeout: Duration) -> Outcome {
    let start = Instant::now();
    if let Err(f) = route_lookup(host) {
        return Outcome::Fail(f);
    }
    match icmp {
        Some(icmp) => {
            icmp.seq = icmp.seq.wrapping_add(1);
            let mut pinger = icmp.client.pinger(host, icmp.ident).await;
            pinger.timeout(timeout);
            match pinger.ping(PingSequence(icmp.seq), &[0u8; 16]).await {
                Ok((_, rtt)) => Outcome::Pass { latency: rtt, warning: None },
                Err(SurgeError::Timeout { .. }) => Outcome::Fail(Failure::Timeout),
                Err(SurgeError::IOError(e)) => Outcome::Fail(classify(&e)),
                Err(e) => Outcome::Fail(Failure::Other(format!("ICMP echo: {e}"))),
            }
        }
        None => match port {
            // Any answer proves the host is reachable: an accepted connection, or a refusal
            // (its TCP stack answered with a reset).
            Some(port) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(SocketAddr::new(host, port))).await {
                    Ok(Ok(_)) => Outcome::Pass { latency: start.elapsed(), warning: None },
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Outcome::Pass { latency: start.elapsed(), warning: None }
                    }
                    Ok(Err(e)) => Outcome::Fail(classify(&e)),
                    Err(_) => Outcome::Fail(Failure::Timeout),
                }
            }
            None => Outcome::Unsupported(
                "ICMP sockets are not permitted here (net.ipv4.ping_group_range, no root) and no `port` is set for a TCP connect"
                    .into(),
            ),
        },
    }
}
