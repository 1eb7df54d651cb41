//! L5, session: one connection must carry several exchanges in a row (HTTP keep-alive, or
//! request lines on one TCP connection), and the port's established and TIME_WAIT counts
//! (sock_diag, see `warden_core::procnet`) stay under their limits: a server that closes
//! every connection, or one drowning in half-closed ones, fails here while a plain connect
//! still passes.

use super::{classify, read_line};
use crate::addr::AbortOnDrop;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use warden_core::config::Exchange;
use warden_core::probe::{Failure, Outcome};

/// How old the connection counts may be. Counting walks the kernel's whole connection table
/// (about 7 ms on a 24 GiB machine, however few sockets there are), so one census serves
/// every session probe for this long: limits on established and TIME_WAIT connections
/// watch a trend, not a single second (TIME_WAIT alone lasts 60 s).
const COUNTS_MAX_AGE: Duration = Duration::from_secs(30);

/// `requests` exchanges on one connection, then the port's connection counts (at most
/// [`COUNTS_MAX_AGE`] old).
pub async fn check(
    exchange: &Exchange,
    requests: u32,
    max_established: Option<u32>,
    max_time_wait: Option<u32>,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let session = match exchange {
        Exchange::Http { url } => tokio::time::timeout(timeout, http_session(url, requests)).await,
        Exchange::Line { addr, send, expect } => {
            tokio::time::timeout(timeout, line_session(*addr, send, expect.as_deref(), requests)).await
        }
    };
    match session {
        Err(_) => return Outcome::Fail(Failure::Timeout),
        Ok(Err(f)) => return Outcome::Fail(f),
        Ok(Ok(())) => {}
    }
    let latency = start.elapsed();
    if let Some(port) = exchange.port()
        && (max_established.is_some() || max_time_wait.is_some())
    {
        let counts = tokio::task::spawn_blocking(move || local_counts(port));
        let (est, tw) = match counts.await {
            Ok(Ok(c)) => c,
            Ok(Err(why)) => return Outcome::Unsupported(why),
            Err(e) => return Outcome::Fail(Failure::Other(e.to_string())),
        };
        if let Some(max) = max_established
            && est > max
        {
            return Outcome::Fail(Failure::Threshold(format!(
                "{est} established connections on port {port}, limit {max}"
            )));
        }
        if let Some(max) = max_time_wait
            && tw > max
        {
            return Outcome::Fail(Failure::Threshold(format!(
                "{tw} connections in TIME_WAIT on port {port}, limit {max}"
            )));
        }
    }
    Outcome::Pass { latency, warning: None }
}

/// The server side's (established, time_wait) on `port`, from a census at most
/// [`COUNTS_MAX_AGE`] old. They count this machine's sockets: without a listener on the
/// port here (the server is on another host) there is nothing to count.
fn local_counts(port: u16) -> Result<(u32, u32), String> {
    let census =
        |age| warden_core::procnet::census(age).map_err(|e| format!("cannot count the port's connections: {e}"));
    let mut c = census(COUNTS_MAX_AGE)?;
    if !c.listening(port) {
        // The census may predate the listener (the service was starting): look again.
        c = census(Duration::ZERO)?;
    }
    if !c.listening(port) {
        return Err(format!(
            "nothing on this machine listens on port {port}: connection limits count this machine's sockets"
        ));
    }
    Ok(c.counts(port))
}

/// `requests` GETs on one HTTP/1.1 keep-alive connection; each must succeed on it.
async fn http_session(url: &url::Url, requests: u32) -> Result<(), Failure> {
    // The config accepts only http:// URLs with a host here.
    let host = url.host_str().ok_or_else(|| Failure::Other("URL without a host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let connected = match url.host() {
        Some(url::Host::Ipv4(ip)) => tokio::net::TcpStream::connect((ip, port)).await,
        Some(url::Host::Ipv6(ip)) => tokio::net::TcpStream::connect((ip, port)).await,
        _ => tokio::net::TcpStream::connect((host, port)).await,
    };
    let stream = connected.map_err(|e| classify(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    // Aborted however this function ends, a timeout of the caller included.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    async {
        for n in 1..=requests {
            sender.ready().await.map_err(|e| {
                Failure::Response(format!(
                    "the server closed the connection after {} of {requests} requests: {e}",
                    n - 1
                ))
            })?;
            let req = hyper::Request::get(path.as_str())
                .header(hyper::header::HOST, authority.as_str())
                .body(Empty::<Bytes>::new())
                .map_err(|e| Failure::Other(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| Failure::Response(format!("request {n} of {requests} on one connection failed: {e}")))?;
            let status = resp.status();
            // The body must be read for the connection to carry the next request.
            resp.into_body().collect().await.map_err(|e| Failure::Response(format!("request {n}: {e}")))?;
            if !status.is_success() {
                return Err(Failure::Status(status.as_u16()));
            }
        }
        Ok(())
    }
    .await
}

/// `requests` lines on one TCP connection, each answered (starting with `expect`).
async fn line_session(
    addr: std::net::SocketAddr,
    send: &str,
    expect: Option<&str>,
    requests: u32,
) -> Result<(), Failure> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| classify(&e))?;
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    for n in 1..=requests {
        write
            .write_all(format!("{send}\n").as_bytes())
            .await
            .map_err(|e| Failure::Response(format!("request {n} of {requests} could not be sent: {e}")))?;
        let line =
            read_line(&mut reader).await.map_err(|e| Failure::Response(format!("request {n} of {requests}: {e}")))?;
        if let Some(want) = expect
            && !line.starts_with(want)
        {
            return Err(Failure::Response(format!("request {n}: answered {}, expected {want:?}", super::shown(&line))));
        }
    }
    Ok(())
}
