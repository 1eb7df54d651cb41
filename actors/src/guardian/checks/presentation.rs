//! L6, presentation: a TLS handshake (rustls) whose chain verifies and whose certificate
//! is far enough from expiry, and responses that are what they claim to be (valid UTF-8,
//! JSON that parses).

use super::{classify, read_line_bytes};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use warden_core::config::{Exchange, Format};
use warden_core::probe::{Failure, Outcome};

const DAY_SECS: i64 = 86_400;

/// The client configuration of a TLS probe: the system's roots, or only `ca_file`'s.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no system CA certificates found (install ca-certificates, or set `ca_file`)".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Handshake with `addr` as `server_name`; the leaf's days to expiry against the limits.
pub async fn tls(
    config: &Result<Arc<rustls::ClientConfig>, String>,
    addr: SocketAddr,
    server_name: &str,
    warn_days: u32,
    fail_days: u32,
    timeout: Duration,
) -> Outcome {
    let config = match config {
        Ok(c) => c.clone(),
        Err(why) => return Outcome::Unsupported(why.clone()),
    };
    let Ok(name) = ServerName::try_from(server_name.to_string()) else {
        return Outcome::Fail(Failure::Tls(format!("`{server_name}` is not a server name")));
    };
    let start = Instant::now();
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| classify(&e))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Tls(format!("handshake: {}", super::root_cause(&e))))?;
        let (_, session) = stream.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| Failure::Tls("the server sent no certificate".into()))?;
        Ok::<_, Failure>(leaf)
    };
    let leaf = match tokio::time::timeout(timeout, handshake).await {
        Err(_) => return Outcome::Fail(Failure::Timeout),
        Ok(Err(f)) => return Outcome::Fail(f),
        Ok(Ok(leaf)) => leaf,
    };
    let latency = start.elapsed();
    let not_after = match x509_parser::parse_x509_certificate(&leaf) {
        Ok((_, cert)) => cert.validity().not_after.timestamp(),
        Err(e) => return Outcome::Fail(Failure::Tls(format!("cannot read the certificate: {e}"))),
    };
    let now = warden_core::time::now_unix_ms() as i64 / 1000;
    let days = (not_after - now).div_euclid(DAY_SECS);
    expiry(days, warn_days, fail_days, latency)
}

/// The verdict on a certificate with `days` left.
fn expiry(days: i64, warn_days: u32, fail_days: u32, latency: Duration) -> Outcome {
    if days < i64::from(fail_days) {
        return Outcome::Fail(Failure::Tls(format!("certificate expires in {days} days (fail under {fail_days})")));
    }
    let warning =
        (days < i64::from(warn_days)).then(|| format!("certificate expires in {days} days (warn under {warn_days})"));
    Outcome::Pass { latency, warning }
}

/// The answer to `exchange` is valid UTF-8, or JSON that parses.
pub async fn encoding(client: &reqwest::Client, exchange: &Exchange, format: Format, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let body = match tokio::time::timeout(timeout, fetch(client, exchange)).await {
        Err(_) => return Outcome::Fail(Failure::Timeout),
        Ok(Err(f)) => return Outcome::Fail(f),
        Ok(Ok(body)) => body,
    };
    match decode(&body, format) {
        Ok(()) => Outcome::Pass { latency: start.elapsed(), warning: None },
        Err(why) => Outcome::Fail(Failure::Response(why)),
    }
}

fn decode(body: &[u8], format: Format) -> Result<(), String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("not valid UTF-8 at byte {} of {}", e.valid_up_to(), body.len()))?;
    if format == Format::Json {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| format!("not JSON: {e}"))?;
    }
    Ok(())
}

/// The raw answer: an HTTP body (of a 2xx), or one line.
async fn fetch(client: &reqwest::Client, exchange: &Exchange) -> Result<Vec<u8>, Failure> {
    match exchange {
        Exchange::Http { url } => {
            let resp = client.get(url.clone()).send().await.map_err(|e| super::reqwest_failure(&e))?;
            if !resp.status().is_success() {
                return Err(Failure::Status(resp.status().as_u16()));
            }
            Ok(resp.bytes().await.map_err(|e| Failure::Response(e.to_string()))?.to_vec())
        }
        Exchange::Line { addr, send, .. } => {
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| classify(&e))?;
            let (read, mut write) = stream.into_split();
            write.write_all(format!("{send}\n").as_bytes()).await.map_err(|e| classify(&e))?;
            let mut reader = tokio::io::BufReader::new(read);
            read_line_bytes(&mut reader).await.map_err(|e| Failure::Response(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_expiry_thresholds() {
        let d = Duration::ZERO;
        assert!(matches!(expiry(30, 14, 0, d), Outcome::Pass { warning: None, .. }));
        assert!(matches!(expiry(3, 14, 0, d), Outcome::Pass { warning: Some(w), .. } if w.contains("3 days")));
        assert!(matches!(expiry(-1, 14, 0, d), Outcome::Fail(Failure::Tls(_))));
        assert!(matches!(expiry(5, 14, 7, d), Outcome::Fail(Failure::Tls(m)) if m.contains("fail under 7")));
    }

    #[test]
    fn test_decoding() {
        assert!(decode(b"{\"a\":1}", Format::Json).is_ok());
        assert!(decode(b"PONG", Format::Utf8).is_ok());
        assert!(decode(b"PONG", Format::Json).is_err());
        assert!(decode(&[0xff, 0xfe], Format::Utf8).is_err_and(|e| e.contains("UTF-8")));
    }
}
