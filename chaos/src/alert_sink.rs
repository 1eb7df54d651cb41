//! The soak's alert receiver: a webhook on loopback that the harness adds to the node's
//! config (`alerts.webhooks`), so each fault's record says which alerts the node sent as a
//! receiver (Alertmanager, a pager) gets them, not what its log says.
//!
//! It keeps every alert of every notification with the time it arrived; a fault's record
//! takes those that arrived from its injection to the end of its settle.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// One alert as it reached the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenAlert {
    pub received_unix_ms: u64,
    /// `alertname`.
    pub name: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The `target` label (the service), when the alert has one.
    #[serde(default)]
    pub target: Option<String>,
    /// The one-line `summary` annotation.
    #[serde(default)]
    pub summary: String,
}

/// The alerts of one Alertmanager-style webhook body (`alerts: [...]`), stamped `at`.
pub fn alerts_of(body: &serde_json::Value, at: u64) -> Vec<SeenAlert> {
    body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| SeenAlert {
            received_unix_ms: at,
            name: a["labels"]["alertname"].as_str().unwrap_or_default().to_string(),
            status: a["status"].as_str().unwrap_or_default().to_string(),
            target: a["labels"]["target"].as_str().map(String::from),
            summary: a["annotations"]["summary"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// A running receiver; it stops when dropped.
pub struct AlertSink {
    pub url: String,
    seen: Arc<Mutex<Vec<SeenAlert>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AlertSink {
    /// Binds a free loopback port and serves on a thread of its own.
    pub fn start() -> Result<Self, BenchError> {
        Self::start_at(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Binds `addr` (a node's config may name it among its webhooks) and serves on a
    /// thread of its own.
    pub fn start_at(addr: std::net::SocketAddr) -> Result<Self, BenchError> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(BenchError::io(format!("binding the alert receiver to {addr}")))?;
        listener.set_nonblocking(true).map_err(BenchError::io("setting up the alert receiver"))?;
        let addr = listener.local_addr().map_err(BenchError::io("reading the alert receiver's address"))?;
        let seen: Arc<Mutex<Vec<SeenAlert>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BenchError::io("starting the alert receiver's runtime"))?;
        let kept = seen.clone();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let app = axum::Router::new().route(
                    "/alerts",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let kept = kept.clone();
                        async move {
                            let at = warden_core::time::now_unix_ms();
                            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
                                return axum::http::StatusCode::BAD_REQUEST;
                            };
                            kept.lock().unwrap_or_else(|p| p.into_inner()).extend(alerts_of(&body, at));
                            axum::http::StatusCode::OK
                        }
                    }),
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self { url: format!("http://{addr}/alerts"), seen, stop: Some(stop), thread: Some(thread) })
    }

    /// The last alert named `name` that arrived, if any.
    pub fn last(&self, name: &str) -> Option<SeenAlert> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().rev().find(|a| a.name == name).cloned()
    }

    /// The alerts that arrived at or after `from_unix_ms`.
    pub fn since(&self, from_unix_ms: u64) -> Vec<SeenAlert> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().filter(|a| a.received_unix_ms >= from_unix_ms).cloned().collect()
    }
}

impl Drop for AlertSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `yaml` (a node config) sending its alerts to `url` as well: a webhook added to its
/// `alerts:` section (made when there is none). Written for block-style YAML indented by
/// two spaces, as warden's configs are; a flow-style `webhooks: [...]` is refused.
pub fn with_webhook(yaml: &str, url: &str) -> Result<String, String> {
    let entry = format!("    - url: \"{url}\"\n");
    let lines: Vec<&str> = yaml.lines().collect();
    let Some(alerts) = lines.iter().position(|l| l.trim_end() == "alerts:") else {
        return Ok(format!("{}\nalerts:\n  webhooks:\n{entry}", yaml.trim_end()));
    };
    // The section ends at the next line that is not indented (comments and blank lines
    // inside it do not end it).
    let end = lines[alerts + 1..]
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with('#'))
        .map_or(lines.len(), |p| alerts + 1 + p);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_string()).collect();
    match lines[alerts + 1..end].iter().position(|l| l.starts_with("  webhooks:")) {
        Some(p) if lines[alerts + 1 + p].trim_end() == "  webhooks:" => {
            out.insert(alerts + 2 + p, entry.trim_end().to_string());
        }
        Some(_) => return Err("its `alerts.webhooks` is not a block list; add the harness's receiver by hand".into()),
        None => {
            out.insert(alerts + 1, "  webhooks:".into());
            out.insert(alerts + 2, entry.trim_end().to_string());
        }
    }
    Ok(out.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:9/alerts";

    fn webhooks(yaml: &str) -> Vec<String> {
        let src = warden_core::source::Source { name: "node.yaml", dir: std::path::Path::new("/"), text: yaml };
        let cfg = warden_core::config::NodeConfig::load(&src, &Default::default()).expect("a valid config");
        cfg.alerts.webhooks.iter().map(|w| w.url.to_string()).collect()
    }

    const NODE: &str = warden_core::config::DEFAULT_NODE_YAML;

    #[test]
    fn test_a_config_without_alerts_gets_a_section_with_the_receiver() {
        assert!(!NODE.contains("\nalerts:"), "the default node has no alerts section");
        assert_eq!(webhooks(&with_webhook(NODE, URL).expect("added")), vec![URL.to_string()]);
    }

    #[test]
    fn test_the_receiver_joins_the_webhooks_a_config_has() {
        let own = "http://127.0.0.1:8/a";
        let yaml =
            format!("alerts:\n  group_wait_ms: 500\n  webhooks:\n    - url: \"{own}\"\n    # a comment\n\n{NODE}");
        let out = with_webhook(&yaml, URL).expect("added");
        assert_eq!(webhooks(&out), vec![URL.to_string(), own.to_string()]);
        let yaml = format!("alerts:\n  group_wait_ms: 500\n{NODE}");
        assert_eq!(webhooks(&with_webhook(&yaml, URL).expect("added")), vec![URL.to_string()]);
        let flow = format!("alerts:\n  webhooks: [{{ url: \"{own}\" }}]\n{NODE}");
        assert!(with_webhook(&flow, URL).is_err(), "a flow list is refused, not broken");
    }

    #[test]
    fn test_each_alert_of_a_notification_is_kept_with_its_target() {
        let body = serde_json::json!({"alerts": [
            {"status": "firing", "labels": {"alertname": "ProbeFailing", "target": "api"},
             "annotations": {"summary": "probe api-health (l7) of api is failing"}},
            {"status": "resolved", "labels": {"alertname": "IncidentOpen"}, "annotations": {}}
        ]});
        let seen = alerts_of(&body, 7);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].target.as_deref(), Some("api"));
        assert_eq!(
            (seen[1].name.as_str(), seen[1].status.as_str(), seen[1].target.as_deref()),
            ("IncidentOpen", "resolved", None)
        );
    }

    #[test]
    fn test_a_notification_posted_to_the_receiver_is_kept() {
        let sink = AlertSink::start().expect("a receiver");
        let client = reqwest::blocking::Client::builder().no_proxy().build().expect("a client");
        let body = serde_json::json!({"alerts": [{"status": "firing", "labels": {"alertname": "ProbeFailing", "target": "db"}}]});
        let answer = client.post(&sink.url).json(&body).send().expect("an answer");
        assert!(answer.status().is_success());
        let bad = client.post(&sink.url).body("not json").send().expect("an answer");
        assert_eq!(bad.status().as_u16(), 400);
        let seen = sink.since(0);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].target.as_deref(), Some("db"));
        assert!(sink.since(warden_core::time::now_unix_ms() + 1000).is_empty());
    }
}
