//! Every kind of probe check against real peers on loopback: listeners that stop, a
//! stranger on a port, UDP and line protocols, HTTP keep-alive sessions, TLS servers with
//! expired, valid and soon-expiring certificates, a DNS responder that starts answering
//! NXDOMAIN, a real PostgreSQL that refuses a password and then stops, the demo model
//! server. Each test states the rule it holds; a check that passed where it should fail
//! (or the reverse) names what it saw.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use warden_actors::guardian::checks::Prober;
use warden_actors::guardian::service_table::ServiceTable;
use warden_core::config::{Exchange, Format, LoadOptions, NodeConfig, ProbeCheck, ProbeSpec, ServiceName};
use warden_core::probe::{Failure, Outcome};
use warden_core::source::Source;

fn spec(check: ProbeCheck, timeout_ms: u64) -> ProbeSpec {
    ProbeSpec {
        name: "t".into(),
        layer: check.layer(),
        target: ServiceName::parse("svc").unwrap(),
        check,
        interval: Duration::from_millis(timeout_ms * 2),
        timeout: Duration::from_millis(timeout_ms),
        failure_threshold: 1,
        success_threshold: 1,
    }
}

/// A service table with one service, `svc`, not started (its node's listener is a port of
/// its own, never the default node's, though nothing here binds it).
fn table() -> ServiceTable {
    let text = format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{}\nservices:\n  - name: svc\n    command: /bin/true\n",
        free_port()
    );
    let cfg = NodeConfig::load(&Source { name: "t.yaml", dir: Path::new("/"), text: &text }, &LoadOptions::default())
        .expect("config");
    ServiceTable::new(&cfg.services)
}

async fn check_in(table: &ServiceTable, check: ProbeCheck, timeout_ms: u64) -> Outcome {
    Prober::new(&spec(check, timeout_ms), table.clone()).check().await
}

async fn check(check: ProbeCheck) -> Outcome {
    check_in(&table(), check, 2_000).await
}

fn passed(o: &Outcome) -> bool {
    matches!(o, Outcome::Pass { .. })
}

fn url(addr: SocketAddr, path: &str) -> url::Url {
    url::Url::parse(&format!("http://{addr}{path}")).unwrap()
}

/// An HTTP/1.1 server answering every request with `status` and `body`, keeping the
/// connection open unless `close`; after `delay` per request.
async fn http_server(status: u16, body: Vec<u8>, close: bool, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let body = body.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = tokio::io::BufReader::new(read);
                loop {
                    // Read a request head (no bodies in these tests).
                    let mut line = String::new();
                    let mut got = false;
                    loop {
                        line.clear();
                        match reader.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => got = true,
                        }
                    }
                    if !got {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{}\r\n",
                        body.len(),
                        if close { "connection: close\r\n" } else { "" }
                    );
                    if write.write_all(head.as_bytes()).await.is_err() || write.write_all(&body).await.is_err() {
                        return;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A line server: answers each line with `answer`, closing after `per_conn` answers.
async fn line_server(answer: &'static [u8], per_conn: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = tokio::io::BufReader::new(read);
                for _ in 0..per_conn {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn test_tcp_check_fails_once_the_listener_stops() {
    // A listener that goes away is a refused connection, not a pass.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tcp = ProbeCheck::Tcp { addr, owner: false };
    assert!(passed(&check(tcp.clone()).await));
    drop(listener);
    let out = check(tcp).await;
    assert!(matches!(out, Outcome::Fail(Failure::Connect(_))), "{out:?}");
}

/// `warden demo model` on `port`, in its own process (killed on drop).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn demo_model(port: u16) -> Proc {
    let child = Command::new(WARDEN)
        .args(["demo", "model", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("demo model listening", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Proc(child)
}

#[tokio::test]
async fn test_a_stranger_on_the_service_port_is_named_and_the_service_itself_is_not() {
    // The listener belongs to a process that is not the service's: a finding with its pid.
    let port = free_port();
    let stranger = demo_model(port);
    let table = table();
    let tcp = ProbeCheck::Tcp { addr: SocketAddr::from(([127, 0, 0, 1], port)), owner: true };
    let out = check_in(&table, tcp.clone(), 2_000).await;
    match &out {
        Outcome::Fail(Failure::Stranger { port: p, pid, command }) => {
            assert_eq!((*p, *pid), (port, stranger.0.id()), "{out:?}");
            assert_eq!(command, "warden", "the process name, not the command line");
        }
        other => panic!("expected a stranger, got {other:?}"),
    }
    // Once the table says that process is the service's own, it is no stranger.
    {
        let mut t = table.lock();
        let entry = t.services.values_mut().next().unwrap();
        entry.pid = Some(stranger.0.id());
    }
    let out = check_in(&table, tcp, 2_000).await;
    assert!(passed(&out), "{out:?}");
}

#[tokio::test]
async fn test_udp_check_wants_an_answer() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let reply = if &buf[..n] == b"ping" { b"pong".as_slice() } else { b"what".as_slice() };
            let _ = socket.send_to(reply, peer).await;
        }
    });
    let udp = |send: &str, expect: &str| ProbeCheck::Udp { addr, send: send.into(), expect: Some(expect.into()) };
    assert!(passed(&check(udp("ping", "pong")).await));
    let wrong = check(udp("hello", "pong")).await;
    assert!(matches!(wrong, Outcome::Fail(Failure::Response(_))), "{wrong:?}");
    // Nobody on the port: the ICMP port-unreachable answer is a refusal.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let none = check(ProbeCheck::Udp { addr: closed_addr, send: "ping".into(), expect: None }).await;
    assert!(matches!(none, Outcome::Fail(Failure::Connect(_))), "{none:?}");
}

#[tokio::test]
async fn test_http_check_judges_status_body_and_latency() {
    let ok = http_server(200, b"{\"status\":\"ok\"}".to_vec(), false, Duration::ZERO).await;
    let http = |addr, status, body: Option<&str>, max_ms: Option<u64>| ProbeCheck::Http {
        url: url(addr, "/health"),
        expect_status: status,
        body: body.map(str::to_string),
        max_latency: max_ms.map(Duration::from_millis),
    };
    assert!(passed(&check(http(ok, None, Some("\"ok\""), None)).await));
    let body = check(http(ok, None, Some("\"degraded\""), None)).await;
    assert!(matches!(body, Outcome::Fail(Failure::Response(_))), "{body:?}");
    let unavailable = http_server(503, b"down".to_vec(), false, Duration::ZERO).await;
    let status = check(http(unavailable, None, None, None)).await;
    assert_eq!(status, Outcome::Fail(Failure::Status(503)));
    assert!(passed(&check(http(unavailable, Some(503), None, None)).await), "an expected status passes");
    let slow = http_server(200, b"ok".to_vec(), false, Duration::from_millis(300)).await;
    let latency = check(http(slow, None, None, Some(50))).await;
    assert!(matches!(latency, Outcome::Fail(Failure::Threshold(_))), "{latency:?}");
    let hung = check_in(&table(), http(slow, None, None, None), 100).await;
    assert_eq!(hung, Outcome::Fail(Failure::Timeout), "no answer within the timeout is a timeout");
}

#[tokio::test]
async fn test_session_check_needs_one_connection_to_carry_every_request() {
    let keep = http_server(200, b"ok".to_vec(), false, Duration::ZERO).await;
    let session = |addr, max_established| ProbeCheck::Session {
        exchange: Exchange::Http { url: url(addr, "/") },
        requests: 5,
        max_established,
        max_time_wait: None,
    };
    assert!(passed(&check(session(keep, None)).await));
    // A server that closes after every answer passes a plain GET but fails a session.
    let closing = http_server(200, b"ok".to_vec(), true, Duration::ZERO).await;
    let out = check(session(closing, None)).await;
    assert!(matches!(&out, Outcome::Fail(Failure::Response(m)) if m.contains("after 1 of 5")), "{out:?}");
    // Three idle clients hold connections: over a limit of 2 established.
    let _held: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(keep).unwrap()).collect();
    // The counts come from a census shared for up to 30 s: the next one sees the crowd.
    let mut crowded = check(session(keep, Some(2))).await;
    for _ in 0..400 {
        if !passed(&crowded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        crowded = check(session(keep, Some(2))).await;
    }
    assert!(matches!(&crowded, Outcome::Fail(Failure::Threshold(m)) if m.contains("established")), "{crowded:?}");
    // A line protocol: five requests on one connection, the server answers only two.
    let two = line_server(b"PONG\n", 2).await;
    let line = |addr| ProbeCheck::Session {
        exchange: Exchange::Line { addr, send: "PING".into(), expect: Some("PONG".into()) },
        requests: 5,
        max_established: None,
        max_time_wait: None,
    };
    let out = check(line(two)).await;
    assert!(matches!(&out, Outcome::Fail(Failure::Response(m)) if m.contains("request 3 of 5")), "{out:?}");
    let many = line_server(b"PONG\n", 100).await;
    assert!(passed(&check(line(many)).await));
}

#[tokio::test]
async fn test_encoding_check_refuses_bytes_that_are_not_what_was_promised() {
    let encoding = |addr, format| ProbeCheck::Encoding { exchange: Exchange::Http { url: url(addr, "/") }, format };
    let json = http_server(200, b"{\"a\": [1, 2]}".to_vec(), false, Duration::ZERO).await;
    assert!(passed(&check(encoding(json, Format::Json)).await));
    let html = http_server(200, b"<html>oops</html>".to_vec(), false, Duration::ZERO).await;
    let out = check(encoding(html, Format::Json)).await;
    assert!(matches!(&out, Outcome::Fail(Failure::Response(m)) if m.starts_with("not JSON")), "{out:?}");
    assert!(passed(&check(encoding(html, Format::Utf8)).await), "HTML is valid UTF-8");
    let latin1 = http_server(200, b"caf\xe9".to_vec(), false, Duration::ZERO).await;
    let out = check(encoding(latin1, Format::Utf8)).await;
    assert!(matches!(&out, Outcome::Fail(Failure::Response(m)) if m.contains("UTF-8 at byte 3")), "{out:?}");
    let line = line_server(b"\xff\xfe\n", 1).await;
    let out = check(ProbeCheck::Encoding {
        exchange: Exchange::Line { addr: line, send: "PING".into(), expect: None },
        format: Format::Utf8,
    })
    .await;
    assert!(matches!(out, Outcome::Fail(Failure::Response(_))), "{out:?}");
}

// ---- TLS ----

/// A TLS server on loopback presenting `cert` (completes handshakes, then closes).
async fn tls_server(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> SocketAddr {
    let chain = vec![cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 16];
                    let _ = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn test_tls_check_fails_an_expired_certificate_warns_near_expiry_and_passes_a_valid_one() {
    let pki = Pki::new();
    let tls = |addr, ca: Option<std::path::PathBuf>| ProbeCheck::Tls {
        addr,
        server_name: "localhost".into(),
        ca_file: ca,
        warn_days: 14,
        fail_days: 0,
    };
    let (valid, key) = pki.leaf(time::Duration::days(90));
    let addr = tls_server(&valid, &key).await;
    let out = check(tls(addr, Some(pki.ca_file()))).await;
    assert!(matches!(out, Outcome::Pass { warning: None, .. }), "90 days left: {out:?}");

    let (soon, key) = pki.leaf(time::Duration::days(3) + time::Duration::hours(1));
    let addr = tls_server(&soon, &key).await;
    let out = check(tls(addr, Some(pki.ca_file()))).await;
    assert!(
        matches!(&out, Outcome::Pass { warning: Some(w), .. } if w.contains("expires in 3 days")),
        "3 days left warns: {out:?}"
    );

    let (expired, key) = pki.leaf(-time::Duration::days(1));
    let addr = tls_server(&expired, &key).await;
    let out = check(tls(addr, Some(pki.ca_file()))).await;
    assert!(
        matches!(&out, Outcome::Fail(Failure::Tls(m)) if m.to_lowercase().contains("expired")),
        "expired fails the handshake: {out:?}"
    );

    // A chain the probe does not trust fails too (the system roots do not know our CA).
    let (valid, key) = pki.leaf(time::Duration::days(90));
    let addr = tls_server(&valid, &key).await;
    let out = check(tls(addr, None)).await;
    assert!(matches!(&out, Outcome::Fail(Failure::Tls(_)) | Outcome::Unsupported(_)), "untrusted: {out:?}");
}

// ---- DNS ----

/// A DNS responder on loopback UDP: `name` → 10.1.2.3 while `nx` is false, NXDOMAIN for
/// everything while it is true.
async fn dns_server(nx: Arc<AtomicBool>) -> SocketAddr {
    use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(req) = Message::from_vec(&buf[..n]) else { continue };
            let mut resp = Message::new();
            resp.set_id(req.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Query)
                .set_recursion_desired(req.recursion_desired())
                .set_recursion_available(true)
                .set_authoritative(true);
            resp.add_queries(req.queries().to_vec());
            if nx.load(Ordering::SeqCst) {
                resp.set_response_code(ResponseCode::NXDomain);
            } else {
                for q in req.queries() {
                    if q.query_type() == RecordType::A {
                        resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A::new(10, 1, 2, 3))));
                    }
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn test_dns_check_passes_then_fails_on_nxdomain() {
    let nx = Arc::new(AtomicBool::new(false));
    let resolver = dns_server(nx.clone()).await;
    let dns = |expect: Option<&str>| ProbeCheck::Dns {
        query: "db.warden.test.".into(),
        resolver: Some(resolver),
        expect: expect.map(|e| e.parse().unwrap()),
    };
    let out = check(dns(Some("10.1.2.3"))).await;
    assert!(passed(&out), "{out:?}");
    let wrong = check(dns(Some("10.9.9.9"))).await;
    assert!(matches!(&wrong, Outcome::Fail(Failure::Dns(m)) if m.contains("not to 10.9.9.9")), "{wrong:?}");
    nx.store(true, Ordering::SeqCst);
    let out = check(dns(None)).await;
    assert!(matches!(&out, Outcome::Fail(Failure::Dns(m)) if m.contains("NXDOMAIN")), "{out:?}");
}

// ---- PostgreSQL ----

/// A PostgreSQL of our own: initdb with a password, started as `postgres` on `port`.
struct Postgres {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    password_file: std::path::PathBuf,
    wrong_password_file: std::path::PathBuf,
}

impl Postgres {
    fn start(port: u16) -> Self {
        let bin = postgres_bin_dir();
        let pg = nix::unistd::User::from_name("postgres").unwrap().expect("the postgresql package makes the user");
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let data = dir.path().join("pgdata");
        std::fs::create_dir(&data).unwrap();
        nix::unistd::chown(&data, Some(pg.uid), Some(pg.gid)).unwrap();
        let pwfile = dir.path().join("initpw");
        std::fs::write(&pwfile, "s3cret\n").unwrap();
        nix::unistd::chown(&pwfile, Some(pg.uid), Some(pg.gid)).unwrap();
        let init = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["--auth=scram-sha-256", "-U", "postgres", "--no-sync", "--pwfile"])
            .arg(&pwfile)
            .env("LC_ALL", "C")
            .uid(pg.uid.as_raw())
            .gid(pg.gid.as_raw())
            .output()
            .unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let child = Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .uid(pg.uid.as_raw())
            .gid(pg.gid.as_raw())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, "s3cret\n").unwrap();
        let wrong_password_file = dir.path().join("wrong");
        std::fs::File::create(&wrong_password_file).unwrap().write_all(b"guess\n").unwrap();
        wait_until("postgres listening", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self { child: Some(child), _dir: dir, password_file, wrong_password_file }
    }

    /// A fast shutdown (SIGINT), waited for.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(c.id(), nix::sys::signal::Signal::SIGINT);
            let _ = c.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_postgres_check_selects_1_refuses_a_wrong_password_and_fails_once_stopped() {
    let port = free_port();
    let mut pg = Postgres::start(port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let pgcheck = |file: &Path| ProbeCheck::Postgres {
        addr,
        user: "postgres".into(),
        dbname: "postgres".into(),
        password_file: Some(file.to_path_buf()),
    };
    let mut ok = Outcome::Unsupported("not tried".into());
    // The server may still be starting up ("the database system is starting up").
    for _ in 0..50 {
        ok = check(pgcheck(&pg.password_file)).await;
        if passed(&ok) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(passed(&ok), "SELECT 1: {ok:?}");
    let wrong = check(pgcheck(&pg.wrong_password_file)).await;
    assert!(matches!(&wrong, Outcome::Fail(Failure::Auth(m)) if m.contains("28P01")), "{wrong:?}");
    pg.stop();
    let down = check(pgcheck(&pg.password_file)).await;
    assert!(matches!(down, Outcome::Fail(Failure::Connect(_))), "stopped: {down:?}");
}

#[tokio::test]
async fn test_ollama_check_wants_the_server_and_the_model() {
    let port = free_port();
    let server = demo_model(port);
    let base = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let ollama = |model: &str| ProbeCheck::Ollama { url: base.clone(), model: Some(model.into()) };
    assert!(passed(&check(ollama("demo:latest")).await));
    let missing = check(ollama("llama3:8b")).await;
    assert!(
        matches!(&missing, Outcome::Fail(Failure::Response(m)) if m.contains("llama3:8b is not listed")),
        "{missing:?}"
    );
    drop(server);
    let stopped = check(ollama("demo:latest")).await;
    assert!(matches!(stopped, Outcome::Fail(Failure::Connect(_))), "{stopped:?}");
}

#[tokio::test]
async fn test_line_check_wants_the_expected_answer() {
    let pong = line_server(b"PONG\n", 10).await;
    let line =
        |addr, expect: &str| ProbeCheck::Line { addr, send: "PING".into(), expect: expect.into(), password_file: None };
    assert!(passed(&check(line(pong, "PONG")).await));
    let out = check(line(pong, "OK")).await;
    assert!(matches!(out, Outcome::Fail(Failure::Response(_))), "{out:?}");
}

#[tokio::test]
async fn test_route_check_reaches_loopback_and_says_how() {
    // As root the raw ICMP socket is there; elsewhere an unprivileged one or a TCP connect.
    let mut prober =
        Prober::new(&spec(ProbeCheck::Route { host: "127.0.0.1".parse().unwrap(), port: None }, 1_000), table());
    let out = prober.check().await;
    let method = prober.method().unwrap_or_default();
    if method.starts_with("ICMP") {
        assert!(passed(&out), "{method}: {out:?}");
    } else {
        assert!(matches!(out, Outcome::Unsupported(_)), "no ICMP and no port: unsupported, never up: {out:?}");
    }
}
