//! The notifier: delivers alerts to the sinks beside the log, today the webhooks of the
//! config (Alertmanager's webhook payload, version 4).
//!
//! Never in the way of healing: [`Notifier::send`] only queues. Each webhook has its own
//! queue and task, so alerts reach a receiver in the order they were raised and a receiver
//! that is down delays only itself; a delivery is retried with exponential backoff up to
//! the webhook's `max_attempts`, then dropped with an alert in the log. A full queue drops
//! its oldest alert. The notifier outlives restarts of the alerter (it is made with the
//! node), so nothing queued is lost when the alerter restarts.

use crate::current::Current;
use crate::metrics::{AlertLabels, Metrics};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use warden_core::alert::{Alert, alertmanager_payload};
use warden_core::config::{NodeConfig, Webhook};

/// Alerts waiting per webhook at most.
const QUEUE: usize = 1024;
/// The first retry's delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Hands alerts to the sinks.
#[derive(Clone)]
pub struct Notifier {
    config: Current<NodeConfig>,
    metrics: Metrics,
    client: reqwest::Client,
    /// One queue per webhook URL, made when the first alert for it arrives.
    queues: Arc<Mutex<BTreeMap<String, Arc<Queue>>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

struct Queue {
    alerts: Mutex<VecDeque<Alert>>,
    ready: Notify,
}

impl Notifier {
    pub fn new(config: Current<NodeConfig>, metrics: Metrics) -> Self {
        let client = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
        // Every sink's series from the start: the log, and each webhook of the config.
        let _ = metrics.alerts_sent.get_or_create(&AlertLabels { sink: "log".into(), outcome: "sent".into() });
        for hook in &config.get().alerts.webhooks {
            for outcome in ["sent", "failed", "retried", "dropped"] {
                let labels = AlertLabels { sink: format!("webhook {}", shown(hook)), outcome: outcome.into() };
                let _ = metrics.alerts_sent.get_or_create(&labels);
            }
        }
        Self { config, metrics, client, queues: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// Queues `alert` for every configured webhook; returns at once. The log is a sink
    /// too: the caller has logged it.
    pub fn send(&self, alert: &Alert) {
        self.metrics.alerts_sent.get_or_create(&AlertLabels { sink: "log".into(), outcome: "sent".into() }).inc();
        let webhooks = self.config.get().alerts.webhooks.clone();
        for hook in webhooks {
            let queue = self.queue(&hook);
            let mut q = queue.alerts.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= QUEUE {
                q.pop_front();
                self.count(&hook, "dropped");
                tracing::warn!(webhook = shown(&hook), "alert: webhook queue full, the oldest alert was dropped");
            }
            q.push_back(alert.clone());
            drop(q);
            queue.ready.notify_one();
        }
    }

    fn queue(&self, hook: &Webhook) -> Arc<Queue> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(hook.url.as_str()) {
            return q.clone();
        }
        let q = Arc::new(Queue { alerts: Mutex::new(VecDeque::new()), ready: Notify::new() });
        queues.insert(hook.url.to_string(), q.clone());
        let me = self.clone();
        let url = hook.url.to_string();
        let worker = q.clone();
        tokio::spawn(async move { me.deliver_forever(&url, &worker).await });
        q
    }

    /// The webhook's settings now (a reload may change its timeout or attempts), or `None`
    /// once a reload removed it.
    fn settings(&self, url: &str) -> Option<Webhook> {
        self.config.get().alerts.webhooks.iter().find(|w| w.url.as_str() == url).cloned()
    }

    /// Delivers the queue's alerts in order; ends (and forgets the queue) once a reload has
    /// removed the webhook.
    async fn deliver_forever(&self, url: &str, queue: &Queue) {
        loop {
            let Some(hook) = self.settings(url) else {
                self.queues.lock().unwrap_or_else(|p| p.into_inner()).remove(url);
                return;
            };
            let next = queue.alerts.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            match next {
                Some(alert) => self.deliver(&hook, &alert).await,
                // Wakes now and then to see whether a reload removed the webhook.
                None => {
                    let _ = tokio::time::timeout(Duration::from_secs(60), queue.ready.notified()).await;
                }
            }
        }
    }

    async fn deliver(&self, hook: &Webhook, alert: &Alert) {
        let groups = BTreeMap::from([
            ("alertname".to_string(), alert.name().to_string()),
            ("node".to_string(), self.config.get().name.clone()),
        ]);
        let payload = alertmanager_payload("warden", &groups, std::slice::from_ref(alert));
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=hook.max_attempts {
            let sent = self.client.post(hook.url.clone()).timeout(hook.timeout).json(&payload).send().await;
            let why = match sent {
                Ok(r) if r.status().is_success() => {
                    self.count(hook, "sent");
                    return;
                }
                Ok(r) => format!("answered {}", r.status().as_u16()),
                // Without the URL: it may carry the receiver's secret.
                Err(e) => e.without_url().to_string(),
            };
            if attempt == hook.max_attempts {
                self.count(hook, "failed");
                tracing::warn!(
                    webhook = shown(hook),
                    alert = alert.name(),
                    attempts = attempt,
                    error = why,
                    "alert: webhook delivery failed, the notification is dropped"
                );
                return;
            }
            self.count(hook, "retried");
            tracing::debug!(webhook = shown(hook), attempt, error = why, "webhook delivery failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn count(&self, hook: &Webhook, outcome: &str) {
        let labels = AlertLabels { sink: format!("webhook {}", shown(hook)), outcome: outcome.into() };
        self.metrics.alerts_sent.get_or_create(&labels).inc();
    }
}

/// A webhook as logs and metrics name it: scheme, host and port only, since receivers
/// often carry a secret in the path or query (a chat webhook's token).
fn shown(hook: &Webhook) -> String {
    let u = &hook.url;
    match u.port_or_known_default() {
        Some(port) => format!("{}://{}:{port}", u.scheme(), u.host_str().unwrap_or("?")),
        None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")),
    }
}
