//! L7, the application: HTTP status, body and latency; DNS resolution (hickory); the
//! protocols of the services themselves: PostgreSQL `SELECT 1` (tokio-postgres), an
//! Ollama server's model list, a line protocol's answer.

use super::{classify, read_line, reqwest_failure, shown};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use warden_core::probe::{Failure, Outcome};

/// GET `url`: the status (any 2xx unless `expect_status`), the body contains `body`, the
/// answer came within `max_latency`.
pub async fn http(
    client: &reqwest::Client,
    url: &url::Url,
    expect_status: Option<u16>,
    body: Option<&str>,
    max_latency: Option<Duration>,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let resp = match client.get(url.clone()).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(reqwest_failure(&e)),
    };
    let status = resp.status().as_u16();
    let status_ok = match expect_status {
        Some(s) => status == s,
        None => resp.status().is_success(),
    };
    if !status_ok {
        return Outcome::Fail(Failure::Status(status));
    }
    if let Some(want) = body {
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Outcome::Fail(reqwest_failure(&e)),
        };
        if !text.contains(want) {
            return Outcome::Fail(Failure::Response(format!("body does not contain {want:?}: {}", shown(&text))));
        }
    }
    let latency = start.elapsed();
    match max_latency {
        Some(max) if latency > max => Outcome::Fail(Failure::Threshold(format!(
            "answered in {} ms, limit {} ms",
            latency.as_millis(),
            max.as_millis()
        ))),
        _ => Outcome::Pass { latency, warning: None },
    }
}

/// A resolver for a DNS probe: the configured server, or the system's (`/etc/resolv.conf`).
/// No cache: every check asks.
pub fn resolver(server: Option<SocketAddr>, timeout: Duration) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(addr) => {
            let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?,
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.timeout = timeout;
    opts.attempts = 1;
    Ok(builder.build())
}

/// `query` resolves; to `expect` among its addresses, if set.
pub async fn dns(
    resolver: &Result<TokioResolver, String>,
    query: &str,
    expect: Option<IpAddr>,
    timeout: Duration,
) -> Outcome {
    let resolver = match resolver {
        Ok(r) => r,
        Err(why) => return Outcome::Unsupported(why.clone()),
    };
    let start = Instant::now();
    let answer = match tokio::time::timeout(timeout, resolver.lookup_ip(query)).await {
        Err(_) => return Outcome::Fail(Failure::Timeout),
        Ok(Err(e)) if e.is_nx_domain() => return Outcome::Fail(Failure::Dns(format!("{query}: NXDOMAIN"))),
        Ok(Err(e)) if e.is_no_records_found() => {
            return Outcome::Fail(Failure::Dns(format!("{query}: no A or AAAA records")));
        }
        Ok(Err(e)) => return Outcome::Fail(Failure::Dns(format!("{query}: {e}"))),
        Ok(Ok(a)) => a,
    };
    let ips: Vec<IpAddr> = answer.iter().collect();
    match expect {
        Some(want) if !ips.contains(&want) => {
            Outcome::Fail(Failure::Dns(format!("{query} resolves to {ips:?}, not to {want}")))
        }
        _ => Outcome::Pass { latency: start.elapsed(), warning: None },
    }
}

/// PostgreSQL answers `SELECT 1` to `user` on `dbname`.
pub async fn postgres(
    addr: SocketAddr,
    user: &str,
    dbname: &str,
    password_file: Option<&Path>,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(user)
        .dbname(dbname)
        .connect_timeout(timeout)
        .application_name("warden-probe");
    if let Some(path) = password_file {
        match std::fs::read_to_string(path) {
            Ok(p) => {
                config.password(p.trim_end_matches(['\n', '\r']));
            }
            Err(e) => return Outcome::Fail(Failure::Auth(format!("cannot read {}: {e}", path.display()))),
        }
    }
    let session = async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| pg_failure(&e))?;
        // Aborted however this ends, the caller's timeout included.
        let _driver = crate::addr::AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        client.simple_query("SELECT 1").await.map_err(|e| pg_failure(&e)).map(|_| ())
    };
    match tokio::time::timeout(timeout, session).await {
        Err(_) => Outcome::Fail(Failure::Timeout),
        Ok(Err(f)) => Outcome::Fail(f),
        Ok(Ok(())) => Outcome::Pass { latency: start.elapsed(), warning: None },
    }
}

/// A PostgreSQL error as a failure: a refused connection, a login refused (auth), or the
/// server's message with its SQLSTATE.
fn pg_failure(e: &tokio_postgres::Error) -> Failure {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Class 28: invalid authorization specification (wrong password, no such role).
        return if code.starts_with("28") {
            Failure::Auth(format!("{} ({code})", db.message()))
        } else {
            Failure::Response(format!("{} ({code})", db.message()))
        };
    }
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io {
        Some(io) => classify(io),
        None => Failure::Connect(super::root_cause(e)),
    }
}

/// An Ollama server's `/api/tags` answers, listing `model` if set.
pub async fn ollama(client: &reqwest::Client, base: &url::Url, model: Option<&str>, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let Ok(url) = base.join("api/tags") else {
        return Outcome::Fail(Failure::Other(format!("cannot build the tags URL from {base}")));
    };
    let resp = match client.get(url).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(reqwest_failure(&e)),
    };
    if !resp.status().is_success() {
        return Outcome::Fail(Failure::Status(resp.status().as_u16()));
    }
    let tags: serde_json::Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(Failure::Response(format!("/api/tags is not JSON: {e}"))),
    };
    let Some(models) = tags["models"].as_array() else {
        return Outcome::Fail(Failure::Response("/api/tags has no `models` list".into()));
    };
    if let Some(want) = model {
        let names: Vec<&str> = models.iter().filter_map(|m| m["name"].as_str()).collect();
        if !names.contains(&want) {
            let listed = shown(&names.join(", "));
            return Outcome::Fail(Failure::Response(format!("model {want} is not listed (listed: {listed})")));
        }
    }
    Outcome::Pass { latency: start.elapsed(), warning: None }
}

/// One line sent, one line back, starting with `expect`. With a password file, the
/// session first logs in with `AUTH <token>` (the demo db's and Redis's command): an
/// answer other than `OK`/`+OK` is a refused login ([`Failure::Auth`]), which is how
/// invalid credentials are told from a dead server.
pub async fn line(
    addr: SocketAddr,
    send: &str,
    expect: &str,
    password_file: Option<&Path>,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let token = match password_file.map(std::fs::read_to_string) {
        Some(Ok(t)) => Some(t.trim().to_string()),
        Some(Err(e)) => {
            let path = password_file.map(Path::display).map(|p| p.to_string()).unwrap_or_default();
            return Outcome::Fail(Failure::Auth(format!("cannot read {path}: {e}")));
        }
        None => None,
    };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| classify(&e))?;
        let (read, mut write) = stream.into_split();
        let mut reader = tokio::io::BufReader::new(read);
        if let Some(token) = &token {
            write.write_all(format!("AUTH {token}\n").as_bytes()).await.map_err(|e| classify(&e))?;
            let answer = read_line(&mut reader).await.map_err(|e| Failure::Response(e.to_string()))?;
            if !(answer.starts_with("OK") || answer.starts_with("+OK")) {
                return Err(Failure::Auth(format!("AUTH answered {}", shown(&answer))));
            }
        }
        write.write_all(format!("{send}\n").as_bytes()).await.map_err(|e| classify(&e))?;
        read_line(&mut reader).await.map_err(|e| Failure::Response(e.to_string()))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Outcome::Fail(Failure::Timeout),
        Ok(Err(f)) => Outcome::Fail(f),
        Ok(Ok(answer)) if answer.starts_with(expect) => Outcome::Pass { latency: start.elapsed(), warning: None },
        Ok(Ok(answer)) => {
            Outcome::Fail(Failure::Response(format!("answered {} to {send:?}, expected {expect:?}", shown(&answer))))
        }
    }
}
