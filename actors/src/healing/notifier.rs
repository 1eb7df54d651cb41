//! The notifier: delivers alerts to the sinks beside the log: the webhooks of the config
//! (Alertmanager's webhook payload, version 4) and email through an SMTP server (lettre).
//!
//! An alert an active silence matches goes to the log only; a firing one it muted is sent
//! when the silence ends if it is still firing (its resolve then, or never), and the
//! resolve of an alert that was sent always goes out. Alerts queued together for a
//! sink with the same name go out as one notification (Alertmanager's grouping by
//! `alertname`), each alert in it once.
//!
//! Never in the way of healing: [`Notifier::send`] only queues. Each sink has its own
//! queue and task, so alerts reach a receiver in the order they were raised and a receiver
//! that is down delays only itself; a delivery is retried with exponential backoff up to
//! the sink's `max_attempts`, then dropped with an alert in the log. A full queue drops
//! its oldest alert. The notifier outlives restarts of the alerter (it is made with the
//! node), so nothing queued is lost when the alerter restarts.

use super::silences::SilenceBook;
use crate::current::Current;
use crate::metrics::{AlertLabels, Metrics};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use warden_core::alert::{Alert, alertmanager_payload, take_group};
use warden_core::config::{Email, NodeConfig, SmtpTls, Webhook};

/// Alerts waiting per sink at most.
const QUEUE: usize = 1024;
/// The first retry's delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Alerts in one notification at most.
const GROUP_MAX: usize = 100;

/// Where alerts go besides the log.
#[derive(Debug, Clone)]
enum Sink {
    Webhook(Webhook),
    Email(Email),
}

impl Sink {
    /// What its queue is known by.
    fn key(&self) -> String {
        match self {
            Sink::Webhook(w) => w.url.to_string(),
            Sink::Email(_) => "email".into(),
        }
    }

    /// As logs and metrics name it: a webhook by scheme, host and port only, since
    /// receivers often carry a secret in the path or query (a chat webhook's token).
    fn shown(&self) -> String {
        match self {
            Sink::Webhook(hook) => {
                let u = &hook.url;
                match u.port_or_known_default() {
                    Some(port) => format!("webhook {}://{}:{port}", u.scheme(), u.host_str().unwrap_or("?")),
                    None => format!("webhook {}://{}", u.scheme(), u.host_str().unwrap_or("?")),
                }
            }
            Sink::Email(e) => format!("email {}:{}", e.host, e.port),
        }
    }

    fn max_attempts(&self) -> u32 {
        match self {
            Sink::Webhook(w) => w.max_attempts,
            Sink::Email(e) => e.max_attempts,
        }
    }
}

/// The sinks of a config.
fn sinks(config: &NodeConfig) -> Vec<Sink> {
    let mut all: Vec<Sink> = config.alerts.webhooks.iter().cloned().map(Sink::Webhook).collect();
    all.extend(config.alerts.email.clone().map(Sink::Email));
    all
}

/// Hands alerts to the sinks.
#[derive(Clone)]
pub struct Notifier {
    config: Current<NodeConfig>,
    metrics: Metrics,
    client: reqwest::Client,
    silences: SilenceBook,
    /// Firing alerts a silence kept from the sinks, by fingerprint, until it ends.
    muted: Arc<Mutex<BTreeMap<String, Alert>>>,
    /// One queue per sink, made when the first alert for it arrives.
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
    pub fn new(config: Current<NodeConfig>, metrics: Metrics, silences: SilenceBook) -> Self {
        let client = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
        // Every sink's series from the start: the log, and each webhook of the config.
        let _ = metrics.alerts_sent.get_or_create(&AlertLabels { sink: "log".into(), outcome: "sent".into() });
        for sink in sinks(&config.get()) {
            for outcome in ["sent", "failed", "retried", "dropped"] {
                let _ = metrics.alerts_sent.get_or_create(&AlertLabels { sink: sink.shown(), outcome: outcome.into() });
            }
        }
        let _ = metrics.alerts_sent.get_or_create(&AlertLabels { sink: "log".into(), outcome: "silenced".into() });
        Self { config, metrics, client, silences, muted: Arc::default(), queues: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// Queues `alert` for every configured sink; returns at once. The log is a sink too:
    /// the caller has logged it.
    pub fn send(&self, alert: &Alert) {
        self.metrics.alerts_sent.get_or_create(&AlertLabels { sink: "log".into(), outcome: "sent".into() }).inc();
        let firing = alert.status == warden_core::alert::AlertStatus::Firing;
        let fingerprint = alert.fingerprint();
        let mut muted = self.muted.lock().unwrap_or_else(|p| p.into_inner());
        if !firing && muted.remove(&fingerprint).is_some() {
            // Its firing was never sent: neither is its end.
            return;
        }
        if firing && let Some(silence) = self.silences.muting(alert, warden_core::time::now_unix_ms()) {
            self.metrics
                .alerts_sent
                .get_or_create(&AlertLabels { sink: "log".into(), outcome: "silenced".into() })
                .inc();
            tracing::info!(
                alert = alert.name(),
                silence = silence.id,
                by = silence.created_by,
                "alert silenced: told to the log only"
            );
            muted.insert(fingerprint, alert.clone());
            return;
        }
        drop(muted);
        self.queue_everywhere(alert);
    }

    /// Sends the firing alerts a silence kept back once no silence mutes them any more
    /// (it ended, or was ended); the alerter calls it every second.
    pub fn unmute_ended(&self) {
        let now = warden_core::time::now_unix_ms();
        let due: Vec<Alert> = {
            let mut muted = self.muted.lock().unwrap_or_else(|p| p.into_inner());
            let ended: Vec<String> =
                muted.iter().filter(|(_, a)| self.silences.muting(a, now).is_none()).map(|(f, _)| f.clone()).collect();
            ended.iter().filter_map(|f| muted.remove(f)).collect()
        };
        for alert in due {
            tracing::warn!(alert = alert.name(), summary = alert.summary(), "alert: still firing as its silence ends");
            self.queue_everywhere(&alert);
        }
    }

    fn queue_everywhere(&self, alert: &Alert) {
        for sink in sinks(&self.config.get()) {
            let queue = self.queue(&sink);
            let mut q = queue.alerts.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= QUEUE {
                q.pop_front();
                self.count(&sink, "dropped");
                tracing::warn!(sink = sink.shown(), "alert: sink queue full, the oldest alert was dropped");
            }
            q.push_back(alert.clone());
            drop(q);
            queue.ready.notify_one();
        }
    }

    fn queue(&self, sink: &Sink) -> Arc<Queue> {
        let key = sink.key();
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(&key) {
            return q.clone();
        }
        let q = Arc::new(Queue { alerts: Mutex::new(VecDeque::new()), ready: Notify::new() });
        queues.insert(key.clone(), q.clone());
        let me = self.clone();
        let worker = q.clone();
        tokio::spawn(async move { me.deliver_forever(&key, &worker).await });
        q
    }

    /// The sink's settings now (a reload may change its timeout or attempts), or `None`
    /// once a reload removed it.
    fn settings(&self, key: &str) -> Option<Sink> {
        sinks(&self.config.get()).into_iter().find(|s| s.key() == key)
    }

    /// Delivers the queue's alerts in order; ends (and forgets the queue) once a reload has
    /// removed the sink.
    async fn deliver_forever(&self, key: &str, queue: &Queue) {
        loop {
            let Some(sink) = self.settings(key) else {
                self.queues.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
                return;
            };
            let group = take_group(&mut queue.alerts.lock().unwrap_or_else(|p| p.into_inner()), GROUP_MAX);
            match group.first() {
                Some(_) => self.deliver(&sink, &group).await,
                // Wakes now and then to see whether a reload removed the webhook.
                None => {
                    let _ = tokio::time::timeout(Duration::from_secs(60), queue.ready.notified()).await;
                }
            }
        }
    }

    /// One notification of `alerts` (one group) to `sink`, retried with backoff.
    async fn deliver(&self, sink: &Sink, alerts: &[Alert]) {
        let name = alerts.first().map_or("", Alert::name);
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=sink.max_attempts() {
            let why = match self.attempt(sink, alerts).await {
                Ok(()) => {
                    for _ in alerts {
                        self.count(sink, "sent");
                    }
                    return;
                }
                Err(why) => why,
            };
            if attempt == sink.max_attempts() {
                for _ in alerts {
                    self.count(sink, "failed");
                }
                tracing::warn!(
                    sink = sink.shown(),
                    alert = name,
                    alerts = alerts.len(),
                    attempts = attempt,
                    error = why,
                    "alert: delivery failed, the notification is dropped"
                );
                return;
            }
            self.count(sink, "retried");
            tracing::debug!(sink = sink.shown(), attempt, error = why, "delivery failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, sink: &Sink, alerts: &[Alert]) -> Result<(), String> {
        let node = self.config.get().name.clone();
        match sink {
            Sink::Webhook(hook) => {
                let name = alerts.first().map_or("", Alert::name);
                let groups = BTreeMap::from([("alertname".to_string(), name.to_string()), ("node".to_string(), node)]);
                let payload = alertmanager_payload("warden", &groups, alerts);
                match self.client.post(hook.url.clone()).timeout(hook.timeout).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("answered {}", r.status().as_u16())),
                    // Without the URL: it may carry the receiver's secret.
                    Err(e) => Err(e.without_url().to_string()),
                }
            }
            Sink::Email(email) => send_mail(email, &node, alerts).await,
        }
    }

    fn count(&self, sink: &Sink, outcome: &str) {
        let labels = AlertLabels { sink: sink.shown(), outcome: outcome.into() };
        self.metrics.alerts_sent.get_or_create(&labels).inc();
    }
}

/// One email for a group of alerts: the subject says what and how many, the body each
/// alert's status, labels, summary and start.
async fn send_mail(e: &Email, node: &str, alerts: &[Alert]) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let name = alerts.first().map_or("", Alert::name);
    let firing = alerts.iter().filter(|a| a.status == warden_core::alert::AlertStatus::Firing).count();
    let status = if firing > 0 { "FIRING" } else { "RESOLVED" };
    let subject = format!(
        "[warden {node}] {status}: {name} ({} alert{})",
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" }
    );
    let mut body = String::new();
    for a in alerts {
        body.push_str(&format!(
            "{} {}\n  summary: {}\n  since: {}\n",
            a.status.as_str(),
            a.name(),
            a.summary(),
            warden_core::time::rfc3339(a.starts_at_unix_ms)
        ));
        for (k, v) in &a.labels {
            body.push_str(&format!("  {k}: {v}\n"));
        }
        if let Some(end) = a.ends_at_unix_ms {
            body.push_str(&format!("  ended: {}\n", warden_core::time::rfc3339(end)));
        }
        body.push('\n');
    }
    let mailbox = |v: &str| v.parse::<Mailbox>().map_err(|err| format!("`{v}`: {err}"));
    let mut message = Message::builder().from(mailbox(&e.from)?).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        message = message.to(mailbox(to)?);
    }
    let message = message.body(body).map_err(|err| err.to_string())?;
    let builder = match e.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&e.host),
        SmtpTls::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&e.host).map_err(|err| err.to_string())?
        }
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&e.host).map_err(|err| err.to_string())?,
    };
    let mut builder = builder.port(e.port).timeout(Some(e.timeout));
    if let Some((user, file)) = &e.login {
        // Read at each send, so a rotated password is used without a reload.
        let password = std::fs::read_to_string(file).map_err(|err| format!("{}: {err}", file.display()))?;
        builder = builder.credentials(Credentials::new(user.clone(), password.trim().to_string()));
    }
    builder.build().send(message).await.map(|_| ()).map_err(|err| err.to_string())
}
