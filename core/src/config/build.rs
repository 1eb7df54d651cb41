//! From the raw YAML schema to the validated config, collecting every problem.

use super::raw::{self, NodeFile};
use super::*;
use crate::signal::SignalName;
use crate::source::Collector;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

mod probe_check;

const DATA_DIR_VAR: &str = "${data_dir}";

pub(super) fn node(src: &Source<'_>, raw: NodeFile, opts: &LoadOptions) -> Result<NodeConfig, Problems> {
    let mut c = Collector::new(src.name);
    let data_dir = data_dir(&mut c, src, &raw, opts);
    let ctx = Ctx { dir: src.dir, data_dir: &data_dir, protected: &[] };

    let name = raw.node.name.value.clone();
    if name.trim().is_empty() {
        c.at(raw.node.name.referenced, "node.name must not be empty");
    }
    let http_listen = socket_addr(&mut c, &raw.node.http_listen, "node.http_listen");
    let startup_deadline =
        positive_ms(&mut c, raw.node.startup_deadline_ms.as_ref(), 30_000, "node.startup_deadline_ms");
    let supervision = supervision(&mut c, &raw.supervision);
    let healing = HealingConfig {
        mttr_alert: positive_ms(&mut c, raw.healing.mttr_alert_ms.as_ref(), 120_000, "healing.mttr_alert_ms"),
        mttr_window: match &raw.healing.mttr_window {
            Some(w) if w.value == 0 => {
                c.at(w.referenced, "healing.mttr_window must be at least 1");
                1
            }
            Some(w) => w.value,
            None => 10,
        },
        memory_pressure_pct: pct(&mut c, &raw.healing.memory_pressure_pct, 90, "healing.memory_pressure_pct"),
        disk_min_free_pct: pct(&mut c, &raw.healing.disk_min_free_pct, 5, "healing.disk_min_free_pct"),
        disk_min_free_mb: raw.healing.disk_min_free_mb.as_ref().map_or(512, |v| v.value),
        node_memory_min_available_pct: pct(
            &mut c,
            &raw.healing.node_memory_min_available_pct,
            5,
            "healing.node_memory_min_available_pct",
        ),
        node_memory_min_available_mb: match &raw.healing.node_memory_min_available_mb {
            // More than any machine has (an exabyte) is a typo, and would overflow bytes.
            Some(v) if v.value > 1 << 40 => {
                c.at(v.referenced, "healing.node_memory_min_available_mb must be at most 1099511627776 (an exabyte)");
                256
            }
            Some(v) => v.value,
            None => 256,
        },
        enabled: raw.healing.enabled.unwrap_or(true),
        max_unhealthy: max_unhealthy(&mut c, raw.healing.max_unhealthy.as_ref()),
        repair_budget: crate::holds::RepairBudget {
            per_hour: raw.healing.max_repairs_per_hour.as_ref().map_or(DEFAULT_REPAIRS_PER_HOUR, |v| v.value),
        },
        operator_hold: match &raw.healing.operator_hold_ms {
            Some(v) if v.value > MAX_OPERATOR_HOLD_MS => {
                c.at(
                    v.referenced,
                    format!("healing.operator_hold_ms must be at most {MAX_OPERATOR_HOLD_MS} (an hour)"),
                );
                Duration::from_millis(DEFAULT_OPERATOR_HOLD_MS)
            }
            v => Duration::from_millis(v.as_ref().map_or(DEFAULT_OPERATOR_HOLD_MS, |v| v.value)),
        },
    };

    let http = {
        let d = HttpLimits::default();
        let h = &raw.http;
        let mut count = |v: &Option<Spanned<usize>>, default: usize, key: &str| match v {
            Some(n) if n.value == 0 => {
                c.at(n.referenced, format!("http.{key} must be at least 1"));
                default
            }
            v => v.as_ref().map_or(default, |n| n.value),
        };
        let max_connections = count(&h.max_connections, d.max_connections, "max_connections");
        let max_body_bytes = count(&h.max_body_bytes, d.max_body_bytes, "max_body_bytes");
        let ms = |d: Duration| d.as_millis() as u64;
        HttpLimits {
            max_connections,
            max_body_bytes,
            header_read_timeout: positive_ms(
                &mut c,
                h.header_read_timeout_ms.as_ref(),
                ms(d.header_read_timeout),
                "http.header_read_timeout_ms",
            ),
            request_timeout: positive_ms(
                &mut c,
                h.request_timeout_ms.as_ref(),
                ms(d.request_timeout),
                "http.request_timeout_ms",
            ),
        }
    };
    let alerts = alerts(&mut c, &ctx, &raw.alerts);
    let slo = {
        let mut target = |v: &Option<Spanned<f64>>, key: &str| match v {
            Some(p) if !(p.value > 0.0 && p.value < 100.0) => {
                c.at(p.referenced, format!("slo.{key} must be above 0 and below 100 (a percentage)"));
                DEFAULT_SLO_TARGET_PCT
            }
            Some(p) => p.value,
            None => DEFAULT_SLO_TARGET_PCT,
        };
        let s = &raw.slo;
        SloConfig {
            health_target_pct: target(&s.health_target_pct, "health_target_pct"),
            trust_target_pct: target(&s.trust_target_pct, "trust_target_pct"),
            confidence_target_pct: target(&s.confidence_target_pct, "confidence_target_pct"),
            mttr_target_pct: target(&s.mttr_target_pct, "mttr_target_pct"),
        }
    };
    let tokens = match &raw.http.tokens_file {
        Some(t) => {
            let path = expand(&mut c, t, &data_dir).map(|v| resolve(src.dir, &v)).unwrap_or_default();
            if !path.as_os_str().is_empty() && !path.is_file() {
                c.at(t.referenced, format!("http.tokens_file {} is not a readable file", path.display()));
            }
            TokensFile { path, explicit: true }
        }
        None => TokensFile { path: data_dir.join(DEFAULT_TOKENS_FILE), explicit: false },
    };
    let audit = audit_files(&mut c, src.dir, &raw.audit, &data_dir);
    let governance_policies =
        raw.governance_policies.as_ref().and_then(|p| expand(&mut c, p, &data_dir).map(|v| resolve(src.dir, &v)));
    let playbooks_dir =
        raw.playbooks_dir.as_ref().and_then(|p| expand(&mut c, p, &data_dir).map(|v| resolve(src.dir, &v)));
    // warden's own files, which no repair of a service may touch.
    let config_file = Path::new(src.name).file_name().map(|f| src.dir.join(f));
    let protected: Vec<PathBuf> = [&audit.key_file, &audit.checkpoint_file, &tokens.path]
        .into_iter()
        .cloned()
        .chain(config_file)
        .chain(governance_policies.clone())
        .chain(playbooks_dir.clone())
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| lexical(&p))
        .collect();
    let ctx = Ctx { protected: &protected, ..ctx };
    if raw.services.value.is_empty() {
        c.at(raw.services.referenced, "services: a node needs at least one service");
    }
    let mut names = BTreeSet::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    if let Some(p) = http_listen {
        ports.insert(p.port(), "warden's own http_listen".into());
    }
    let mut services = Vec::new();
    for s in &raw.services.value {
        if let Some(svc) = service(&mut c, &ctx, s, &mut names, &mut ports) {
            services.push(svc);
        }
    }
    let services = start_order(&mut c, &raw.services.value, services, &names);

    let mut probe_names = BTreeSet::new();
    let namespaced: BTreeSet<&ServiceName> =
        services.iter().filter(|s| s.network_namespace.is_some()).map(|s| &s.name).collect();
    let mut probes: Vec<ProbeSpec> = Vec::new();
    for p in &raw.probes {
        let Some(spec) = probe(&mut c, &ctx, p, &names, &mut probe_names) else { continue };
        // Who holds a port is read in warden's namespace: there a host process on the same
        // port would be taken for a stranger on the service's.
        if matches!(spec.check, ProbeCheck::Tcp { owner: true, .. }) && namespaced.contains(&spec.target) {
            c.at(
                p.name.referenced,
                format!(
                    "probe `{}`: its target `{}` runs in another network namespace, where warden cannot see who holds the port; set `owner: false`",
                    spec.name, spec.target
                ),
            );
        }
        probes.push(spec);
    }

    let mut commands = BTreeMap::new();
    for (name, argv) in &raw.commands {
        if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            c.at(argv.referenced, format!("command name `{name}` must be letters, digits, - and _"));
        } else if argv.value.first().is_none_or(|p| !Path::new(p).is_absolute()) {
            c.at(argv.referenced, format!("command `{name}` must start with an absolute program path"));
        } else {
            commands.insert(name.clone(), argv.value.clone());
        }
    }

    c.finish(move || NodeConfig {
        name,
        http_listen: http_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7700))),
        data_dir,
        startup_deadline,
        staggered_boot: raw.node.staggered_boot,
        supervision,
        services,
        probes,
        healing,
        http,
        tokens,
        alerts,
        slo,
        audit,
        governance_policies,
        playbooks_dir,
        commands,
    })
}

/// The audit key and checkpoint files: relative to the config's folder, never inside the
/// data dir (a copy of the store must not carry what proves it untouched).
fn audit_files(c: &mut Collector, dir: &Path, raw: &raw::AuditSection, data_dir: &Path) -> AuditFiles {
    let mut file = |v: &Option<Spanned<String>>, default: &str, key: &str| {
        let path = match v {
            Some(p) if p.value.trim().is_empty() => {
                c.at(p.referenced, format!("audit.{key} must not be empty"));
                resolve(dir, default)
            }
            Some(p) if p.value.contains("${") => {
                c.at(p.referenced, format!("audit.{key} cannot use variables: it lives outside the data dir"));
                resolve(dir, default)
            }
            Some(p) => resolve(dir, &p.value),
            None => resolve(dir, default),
        };
        let absolute = std::path::absolute(&path).unwrap_or(path);
        if absolute.starts_with(data_dir) {
            let at = v.as_ref().map(|p| p.referenced);
            let message = format!(
                "audit.{key} {} is inside the data dir {}: keep it outside, where a copy of the store does not reach",
                absolute.display(),
                data_dir.display()
            );
            // A default path has no position of its own: the data dir's setting is 1:1.
            c.at(at.unwrap_or(Location::UNKNOWN), message);
        }
        absolute
    };
    AuditFiles {
        key_file: file(&raw.key_file, DEFAULT_AUDIT_KEY_FILE, "key_file"),
        checkpoint_file: file(&raw.checkpoint_file, DEFAULT_AUDIT_CHECKPOINT_FILE, "checkpoint_file"),
    }
}

fn email(c: &mut Collector, ctx: &Ctx<'_>, e: &raw::EmailSection) -> Option<Email> {
    let (host, port) = match e.server.value.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
        Some((h, Ok(p))) if !h.is_empty() && p > 0 => (h.trim_matches(['[', ']']).to_string(), p),
        _ => {
            c.at(e.server.referenced, format!("alerts.email.server `{}` must be HOST:PORT", e.server.value));
            (String::new(), 0)
        }
    };
    let tls = match e.tls.as_ref().map(|t| t.value.as_str()) {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            c.at(
                e.tls.as_ref().map_or(e.server.referenced, |t| t.referenced),
                format!("alerts.email.tls `{other}`: use none, starttls or tls"),
            );
            SmtpTls::StartTls
        }
    };
    let mailbox = |c: &mut Collector, v: &str, loc: Location, what: &str| {
        let ok = v
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty() && !v.contains(char::is_whitespace));
        if !ok {
            c.at(loc, format!("{what} `{v}` is not an email address"));
        }
    };
    mailbox(c, &e.from.value, e.from.referenced, "alerts.email.from");
    if e.to.value.is_empty() {
        c.at(e.to.referenced, "alerts.email.to needs at least one address");
    }
    for to in &e.to.value {
        mailbox(c, to, e.to.referenced, "alerts.email.to");
    }
    let login = match (&e.username, &e.password_file) {
        (Some(u), Some(p)) => expand(c, p, ctx.data_dir).map(|f| (u.value.clone(), resolve(ctx.dir, &f))),
        (None, None) => None,
        (Some(u), None) => {
            c.at(u.referenced, "alerts.email.username needs password_file too");
            None
        }
        (None, Some(p)) => {
            c.at(p.referenced, "alerts.email.password_file needs username too");
            None
        }
    };
    let max_attempts = attempts(c, e.max_attempts.as_ref(), "alerts.email.max_attempts");
    Some(Email {
        host,
        port,
        tls,
        from: e.from.value.clone(),
        to: e.to.value.clone(),
        login,
        timeout: positive_ms(c, e.timeout_ms.as_ref(), 10_000, "alerts.email.timeout_ms"),
        max_attempts,
    })
}

/// A sink's delivery attempts: at least 1, 5 when not given.
fn attempts(c: &mut Collector, v: Option<&Spanned<u32>>, key: &str) -> u32 {
    match v {
        Some(n) if n.value == 0 => {
            c.at(n.referenced, format!("{key} must be at least 1"));
            1
        }
        Some(n) => n.value,
        None => 5,
    }
}

fn alerts(c: &mut Collector, ctx: &Ctx<'_>, raw: &raw::AlertsSection) -> AlertsConfig {
    let d = crate::alert::FlapPolicy::default();
    let window = positive_ms(c, raw.flap_window_ms.as_ref(), d.window.as_millis() as u64, "alerts.flap_window_ms");
    let max_changes = match &raw.flap_max_changes {
        Some(n) if n.value < 2 => {
            c.at(n.referenced, "alerts.flap_max_changes must be at least 2 (a failure and its recovery)");
            d.max_changes
        }
        Some(n) => n.value,
        None => d.max_changes,
    };
    let webhooks = raw
        .webhooks
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let what = format!("alerts.webhooks[{i}]");
            let url = http_url(c, w.url.referenced, &w.url.value, &format!("{what}.url"));
            let timeout = positive_ms(c, w.timeout_ms.as_ref(), 5_000, &format!("{what}.timeout_ms"));
            let max_attempts = attempts(c, w.max_attempts.as_ref(), &format!("{what}.max_attempts"));
            Some(Webhook { url: url?, timeout, max_attempts })
        })
        .collect();
    let group_wait = Duration::from_millis(raw.group_wait_ms.as_ref().map_or(DEFAULT_GROUP_WAIT_MS, |v| v.value));
    let email = raw.email.as_ref().and_then(|e| email(c, ctx, e));
    AlertsConfig { flap: crate::alert::FlapPolicy { window, max_changes }, group_wait, webhooks, email }
}

/// What relative paths and `${data_dir}` resolve against.
struct Ctx<'a> {
    dir: &'a Path,
    data_dir: &'a Path,
    /// warden's own files (its config, policy, playbooks, tokens, audit key and
    /// checkpoints): no path a service declares for its repairs may be or hold one.
    protected: &'a [PathBuf],
}

/// The data dir: `--data-dir` (against the working directory) or `node.data_dir` (against
/// the config's folder), made absolute. `node.data_dir` is checked either way, so a file
/// that `run` refuses is not passed by `check-config --data-dir`.
fn data_dir(c: &mut Collector, src: &Source<'_>, raw: &NodeFile, opts: &LoadOptions) -> PathBuf {
    let from_file = match &raw.node.data_dir {
        Some(d) if d.value.contains("${") => {
            c.at(d.referenced, "node.data_dir cannot use variables");
            None
        }
        Some(d) if d.value.trim().is_empty() => {
            c.at(d.referenced, "node.data_dir must not be empty");
            None
        }
        Some(d) => Some(resolve(src.dir, &d.value)),
        None => None,
    };
    let chosen = match &opts.data_dir {
        Some(d) => std::env::current_dir().map(|cwd| cwd.join(d)).unwrap_or_else(|_| d.clone()),
        None => from_file.unwrap_or_else(|| resolve(src.dir, DEFAULT_DATA_DIR)),
    };
    let chosen: PathBuf = chosen.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
    std::path::absolute(&chosen).unwrap_or(chosen)
}

/// `p` against `dir` when relative, with `.` components dropped (`./run.sh` reads as
/// `DIR/run.sh` in messages).
fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    let joined = if p.is_absolute() { p.to_path_buf() } else { dir.join(p) };
    joined.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

/// Replaces `${data_dir}`; any other `${...}` is a problem (a typo would otherwise end up
/// as a literal directory name).
fn expand(c: &mut Collector, v: &Spanned<String>, data_dir: &Path) -> Option<String> {
    let out = v.value.replace(DATA_DIR_VAR, &data_dir.display().to_string());
    if let Some(i) = out.find("${") {
        let var: String = out[i..].chars().take_while(|&ch| ch != '}').chain(Some('}')).collect();
        c.at(v.referenced, format!("unknown variable `{var}` (only {DATA_DIR_VAR} is defined)"));
        return None;
    }
    Some(out)
}

fn socket_addr(c: &mut Collector, v: &Spanned<String>, what: &str) -> Option<SocketAddr> {
    match v.value.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            c.at(v.referenced, format!("{what} `{}`: port 0 is not a port anyone can find", v.value));
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            c.at(v.referenced, format!("{what} `{}` is not an IP:port address like 127.0.0.1:7700", v.value));
            None
        }
    }
}

fn http_url(c: &mut Collector, loc: Location, v: &str, what: &str) -> Option<Url> {
    match Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(u) => {
            c.at(loc, format!("{what} `{v}`: needs an http:// or https:// URL with a host, not `{}:`", u.scheme()));
            None
        }
        Err(e) => {
            c.at(loc, format!("{what} `{v}` is not a URL: {e}"));
            None
        }
    }
}

/// A duration in milliseconds that must be positive; `default` when absent.
fn positive_ms(c: &mut Collector, v: Option<&Spanned<u64>>, default: u64, what: &str) -> Duration {
    match v {
        Some(v) if v.value == 0 => {
            c.at(v.referenced, format!("{what} must be positive"));
            Duration::from_millis(default)
        }
        Some(v) => Duration::from_millis(v.value),
        None => Duration::from_millis(default),
    }
}

fn supervision(c: &mut Collector, raw: &raw::SupervisionSection) -> SupervisionConfig {
    let mut tree = |v: &Option<raw::TreeSection>, default: TreeSpec, what: &str| match v {
        None => default,
        Some(t) => TreeSpec {
            strategy: t.strategy,
            max_restarts: t.max_restarts,
            period: positive_ms(c, Some(&t.period_ms), 10_000, &format!("supervision.{what}.period_ms")),
        },
    };
    let spec = |strategy, max_restarts| TreeSpec { strategy, max_restarts, period: Duration::from_secs(10) };
    SupervisionConfig {
        node: tree(&raw.node, spec(Strategy::OneForOne, 10), "node"),
        governance: tree(&raw.governance, spec(Strategy::RestForOne, 5), "governance"),
        guardian: tree(&raw.guardian, spec(Strategy::OneForOne, 5), "guardian"),
        healing: tree(&raw.healing, spec(Strategy::OneForOne, 5), "healing"),
        http: tree(&raw.http, spec(Strategy::OneForOne, 5), "http"),
    }
}

/// A ready check or a probe check: the fields its kind needs, and no others.
/// A service's ready check: `{kind: tcp, addr}` or `{kind: http, url}`.
fn ready_check(c: &mut Collector, raw: &raw::CheckSection, what: &str) -> Option<ReadyCheck> {
    let unwanted = |c: &mut Collector, v: Option<Location>, key: &str, kind_name: &str| {
        if let Some(loc) = v {
            c.at(loc, format!("{what}: `{key}` does not apply to kind {kind_name}"));
        }
    };
    match raw.kind.value {
        raw::CheckKind::Tcp => {
            unwanted(c, raw.url.as_ref().map(|u| u.referenced), "url", "tcp");
            let Some(addr) = &raw.addr else {
                c.at(raw.kind.referenced, format!("{what}: kind tcp needs `addr`"));
                return None;
            };
            socket_addr(c, addr, &format!("{what}.addr")).map(|addr| ReadyCheck::Tcp { addr })
        }
        raw::CheckKind::Http => {
            unwanted(c, raw.addr.as_ref().map(|a| a.referenced), "addr", "http");
            let Some(url) = &raw.url else {
                c.at(raw.kind.referenced, format!("{what}: kind http needs `url`"));
                return None;
            };
            http_url(c, url.referenced, &url.value, &format!("{what}.url")).map(|url| ReadyCheck::Http { url })
        }
    }
}

fn service(
    c: &mut Collector,
    ctx: &Ctx<'_>,
    s: &raw::ServiceSection,
    names: &mut BTreeSet<ServiceName>,
    ports: &mut BTreeMap<u16, String>,
) -> Option<ServiceSpec> {
    let name = c.check(s.name.referenced, ServiceName::parse(&s.name.value).map_err(|e| format!("service {e}")));
    if let Some(n) = &name
        && !names.insert(n.clone())
    {
        c.at(s.name.referenced, format!("service `{n}` is defined twice"));
    }
    let label = s.name.value.as_str();
    let program = program(c, ctx, &s.command, label);
    let args: Vec<String> = s.args.iter().filter_map(|a| expand(c, a, ctx.data_dir)).collect();
    let env: BTreeMap<String, String> =
        s.env.iter().filter_map(|(k, v)| Some((k.clone(), expand(c, v, ctx.data_dir)?))).collect();
    let workdir = s.workdir.as_ref().and_then(|w| {
        let path = resolve(ctx.dir, &expand(c, w, ctx.data_dir)?);
        // A workdir under the data dir is created before the start; any other must exist.
        if !path.starts_with(ctx.data_dir) && !path.is_dir() {
            c.at(w.referenced, format!("service `{label}`: workdir {} is not a directory", path.display()));
        }
        Some(path)
    });
    let network_namespace = s.network_namespace.as_ref().and_then(|n| network_namespace(c, n, label));
    if let (Some(_), Some(p)) = (&network_namespace, s.ports.first()) {
        // Who holds a port is read from warden's own namespace: it cannot see these.
        c.at(
            p.referenced,
            format!(
                "service `{label}`: ports cannot be declared for a service in another network namespace \
                 (warden checks who holds a port in its own); probe its address instead"
            ),
        );
    }
    let mut own_ports = Vec::new();
    for p in &s.ports {
        if p.value == 0 {
            c.at(p.referenced, format!("service `{label}`: port 0 cannot be probed or checked"));
        } else if let Some(other) = ports.insert(p.value, label.to_string()) {
            c.at(p.referenced, format!("service `{label}`: port {} is also declared by {other}", p.value));
        } else {
            own_ports.push(p.value);
        }
    }
    let ready = s.ready.as_ref().and_then(|r| ready_check(c, r, &format!("service `{label}`: ready")));
    let what = |key: &str| format!("service `{label}`: {key}");
    let startup_deadline = positive_ms(c, s.startup_deadline_ms.as_ref(), 30_000, &what("startup_deadline_ms"));
    let stop_grace = positive_ms(c, s.stop_grace_ms.as_ref(), 3_000, &what("stop_grace_ms"));
    let restart = s.restart.as_ref().map_or_else(RestartPolicy::default, |r| restart_policy(c, r, label));
    let logs = s.logs.as_ref().map_or_else(LogPolicy::default, |l| {
        let d = LogPolicy::default();
        let max_bytes = match &l.max_bytes {
            Some(v) if v.value < 1024 => {
                c.at(v.referenced, format!("service `{label}`: logs.max_bytes must be at least 1024, not {}", v.value));
                d.max_bytes
            }
            v => v.as_ref().map_or(d.max_bytes, |v| v.value),
        };
        let keep = match &l.keep {
            Some(v) if v.value == 0 => {
                c.at(v.referenced, format!("service `{label}`: logs.keep must be at least 1"));
                d.keep
            }
            v => v.as_ref().map_or(d.keep, |v| v.value),
        };
        LogPolicy { max_bytes, keep }
    });
    let memory_limit_mb = match &s.memory_limit_mb {
        Some(m) if m.value == 0 => {
            c.at(m.referenced, format!("service `{label}`: memory_limit_mb must be positive"));
            None
        }
        m => m.as_ref().map(|m| m.value),
    };
    let depends_on = s.depends_on.iter().filter_map(|d| ServiceName::parse(&d.value).ok()).collect();
    let identity = identity(c, s, label);
    let hooks = hooks(c, ctx, s);
    let files = managed_files(c, ctx, s, identity.as_ref(), &hooks);
    let umask = s.umask.as_ref().and_then(|u| {
        let parsed = u32::from_str_radix(&u.value, 8).ok().filter(|m| *m <= 0o777 && !u.value.is_empty());
        if parsed.is_none() {
            c.at(u.referenced, format!("service `{label}`: umask `{}` is not octal digits from 000 to 777", u.value));
        }
        parsed
    });
    let env_file = s.env_file.as_ref().and_then(|f| {
        let path = resolve(ctx.dir, &expand(c, f, ctx.data_dir)?);
        // One of its own `files:` is written before it starts: it may not exist yet.
        let written_at_start = files.iter().any(|m| m.path == path) && !path.exists();
        if let Err(e) = read_env_file(&path).map(|_| ()).or_else(|e| if written_at_start { Ok(()) } else { Err(e) }) {
            c.at(f.referenced, format!("service `{label}`: env_file {}: {e}", path.display()));
        }
        Some(path)
    });
    let upstreams = upstreams(c, s, &args, &env);
    let mut limit = |v: &Option<Spanned<u64>>, key: &str| match v {
        Some(l) if l.value == 0 => {
            c.at(l.referenced, format!("service `{label}`: limits.{key} must be at least 1"));
            None
        }
        v => v.as_ref().map(|l| l.value),
    };
    let limits = s.limits.as_ref().map_or_else(Limits::default, |l| Limits {
        open_files: limit(&l.open_files, "open_files"),
        processes: limit(&l.processes, "processes"),
    });
    // A stop signal must be one a process can act on and end with: STOP would freeze it and
    // CONT does nothing, and either way every stop would wait out the whole grace period.
    let stop_signal = match &s.stop_signal {
        Some(sig) if matches!(sig.value, SignalName::Stop | SignalName::Cont) => {
            c.at(
                sig.referenced,
                format!("service `{label}`: stop_signal {} cannot stop a process; use SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH or SIGKILL", sig.value.as_str()),
            );
            SignalName::Term
        }
        sig => sig.as_ref().map_or(SignalName::Term, |s| s.value),
    };
    Some(ServiceSpec {
        name: name?,
        program: program?,
        args,
        env,
        workdir,
        network_namespace,
        ports: own_ports,
        depends_on,
        ready,
        startup_deadline,
        stop_grace,
        restart,
        logs,
        memory_limit_mb,
        files,
        identity,
        umask,
        stop_signal,
        env_file,
        limits,
        upstreams,
        role: s.role.as_ref().map(|r| r.value),
        hooks,
        diagnose: s
            .diagnose
            .iter()
            .filter_map(|d| match crate::logcause::LogPattern::new(&d.pattern.value, d.cause.value) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.at(
                        d.pattern.referenced,
                        format!("service `{label}`: diagnose pattern is not a regular expression: {e}"),
                    );
                    None
                }
            })
            .collect(),
    })
}

/// Octal permission digits (`"0640"`, `"640"`) up to 0777.
fn octal_mode(text: &str) -> Option<u32> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o777 && !text.is_empty())
}

/// `network_namespace:`: a name made by `ip netns add` (under `/run/netns`) or an absolute
/// path to a namespace file (`/proc/PID/ns/net`). Whether it exists is checked at each
/// start, not here: it may be made after the config is checked.
fn network_namespace(c: &mut Collector, n: &Spanned<String>, label: &str) -> Option<PathBuf> {
    let v = n.value.as_str();
    let path = if v.starts_with('/') {
        PathBuf::from(v)
    } else if !v.is_empty() && !v.contains('/') && v != "." && v != ".." {
        Path::new("/run/netns").join(v)
    } else {
        c.at(
            n.referenced,
            format!("service `{label}`: network_namespace `{v}` is neither a name (as `ip netns add` makes) nor an absolute path"),
        );
        return None;
    };
    if path.components().any(|p| p == std::path::Component::ParentDir) {
        c.at(n.referenced, format!("service `{label}`: network_namespace `{v}` must not contain `..`"));
        return None;
    }
    Some(path)
}

/// A service's `files:`: paths resolved, modes and owners worked out. A secret (declared, or
/// a file the service reads its credentials from) is 0600 unless its mode says otherwise;
/// any other file 0644, so the workers a service forks under another user can read it.
fn managed_files(
    c: &mut Collector,
    ctx: &Ctx<'_>,
    s: &raw::ServiceSection,
    identity: Option<&Identity>,
    hooks: &RepairHooks,
) -> Vec<ManagedFile> {
    use nix::unistd::{Group, User};
    let label = s.name.value.as_str();
    // Its credentials are secrets (the hooks' paths are already checked and worked out).
    let declared_secret = |path: &Path| {
        let p = lexical(path);
        hooks.credentials_file.as_ref() == Some(&p) || hooks.secret_files.contains(&p)
    };
    let mut out = Vec::new();
    for f in &s.files {
        let Some(path) = expand(c, &f.path, ctx.data_dir).map(|p| resolve(ctx.dir, &p)) else { continue };
        let secret = f.secret.as_ref().map_or_else(|| declared_secret(&path), |v| v.value);
        let mode = match &f.mode {
            Some(m) => octal_mode(&m.value).unwrap_or_else(|| {
                c.at(
                    m.referenced,
                    format!("service `{label}`: file mode `{}` is not octal digits up to 0777", m.value),
                );
                0o600
            }),
            None if secret => 0o600,
            None => 0o644,
        };
        let uid = match &f.user {
            Some(u) => match User::from_name(&u.value) {
                Ok(Some(user)) => Some(user.uid.as_raw()),
                _ => {
                    c.at(u.referenced, format!("service `{label}`: no user `{}` on this machine", u.value));
                    None
                }
            },
            None => identity.and_then(|i| i.user.as_ref()).map(|u| u.uid),
        };
        let gid = match &f.group {
            Some(g) => match Group::from_name(&g.value) {
                Ok(Some(group)) => Some(group.gid.as_raw()),
                _ => {
                    c.at(g.referenced, format!("service `{label}`: no group `{}` on this machine", g.value));
                    None
                }
            },
            None => identity.map(|i| i.gid),
        };
        out.push(ManagedFile { path, content: f.content.clone(), mode, uid, gid });
    }
    out
}

/// `snapshot:`: the method (a command needs its program), how many to keep, how much room.
fn snapshot_policy(c: &mut Collector, ctx: &Ctx<'_>, s: &raw::ServiceSection) -> SnapshotPolicy {
    let label = s.name.value.as_str();
    let Some(raw) = &s.snapshot else { return SnapshotPolicy::default() };
    let d = SnapshotPolicy::default();
    let method = match raw.method.as_ref().map(|m| (m.value, m.referenced)) {
        Some((SnapshotMethodName::Command, at)) => {
            let argv: Vec<String> = raw
                .command
                .iter()
                .filter_map(|a| {
                    // `${snapshot}` is the command's own: the folder it fills, known at the step.
                    let text = a.value.replace("${snapshot}", "\u{1}");
                    let spanned = Spanned { value: text, referenced: a.referenced, defined: a.defined };
                    expand(c, &spanned, ctx.data_dir).map(|v| v.replace('\u{1}', "${snapshot}"))
                })
                .collect();
            if raw.command.is_empty() {
                c.at(at, format!("service `{label}`: snapshot.method command needs snapshot.command (the program and its arguments)"));
            } else if !argv.iter().any(|a| a.contains("${snapshot}")) {
                c.at(
                    raw.command[0].referenced,
                    format!(
                        "service `{label}`: snapshot.command must write into `${{snapshot}}` (the folder it fills)"
                    ),
                );
            }
            SnapshotMethod::Command(argv)
        }
        other => {
            if let Some(first) = raw.command.first() {
                c.at(first.referenced, format!("service `{label}`: snapshot.command is only for `method: command`"));
            }
            match other.map(|(m, _)| m) {
                Some(SnapshotMethodName::Live) => SnapshotMethod::Live,
                _ => SnapshotMethod::Stop,
            }
        }
    };
    let keep = match &raw.keep {
        Some(k) if k.value == 0 => {
            c.at(k.referenced, format!("service `{label}`: snapshot.keep must be at least 1"));
            d.keep
        }
        k => k.as_ref().map_or(d.keep, |k| k.value),
    };
    let max_bytes = match &raw.max_mb {
        Some(m) if m.value == 0 || m.value > (1 << 30) => {
            c.at(m.referenced, format!("service `{label}`: snapshot.max_mb must be from 1 to 1073741824"));
            d.max_bytes
        }
        m => m.as_ref().map_or(d.max_bytes, |m| m.value << 20),
    };
    if let Some(m) = raw.method.as_ref().filter(|_| s.data.is_none()) {
        c.at(m.referenced, format!("service `{label}`: snapshot needs `data` (the folder it copies)"));
    }
    SnapshotPolicy { method, keep, max_bytes }
}

/// Automatic repairs of one service per hour when the config says nothing.
pub const DEFAULT_REPAIRS_PER_HOUR: u32 = 12;
/// How long an operator's action holds automatic repair of the service, by default.
pub const DEFAULT_OPERATOR_HOLD_MS: u64 = 60_000;
const MAX_OPERATOR_HOLD_MS: u64 = 3_600_000;

/// `healing.max_unhealthy`: a count, `"N%"` (1 to 100), or `off`.
fn max_unhealthy(c: &mut Collector, v: Option<&Spanned<raw::CountOrShare>>) -> crate::holds::MaxUnhealthy {
    use crate::holds::MaxUnhealthy;
    let Some(v) = v else { return MaxUnhealthy::default() };
    let bad = |c: &mut Collector| {
        c.at(v.referenced, "healing.max_unhealthy must be a count of services, a share such as \"50%\", or off");
        MaxUnhealthy::default()
    };
    match &v.value {
        raw::CountOrShare::Count(n) => usize::try_from(*n).map_or_else(|_| bad(c), MaxUnhealthy::Count),
        raw::CountOrShare::Text(t) if t.trim() == "off" => MaxUnhealthy::Off,
        raw::CountOrShare::Switch(false) => MaxUnhealthy::Off,
        raw::CountOrShare::Switch(true) => bad(c),
        raw::CountOrShare::Text(t) => match t.trim().strip_suffix('%').map(|p| p.trim().parse::<u8>()) {
            Some(Ok(p)) if (1..=100).contains(&p) => MaxUnhealthy::Percent(p),
            _ => bad(c),
        },
    }
}

/// What a service declares that playbooks may use: paths resolved, signals it can act on,
/// an http(s) pool-reset URL.
fn hooks(c: &mut Collector, ctx: &Ctx<'_>, s: &raw::ServiceSection) -> RepairHooks {
    let label = s.name.value.as_str();
    let mut path = |v: &Spanned<String>| {
        let p = lexical(&resolve(ctx.dir, &expand(c, v, ctx.data_dir)?));
        if let Some(why) = unsafe_hook_path(&p, &lexical(ctx.data_dir), ctx.protected) {
            c.at(v.referenced, format!("service `{label}`: `{}` {why}", p.display()));
            return None;
        }
        Some(p)
    };
    let lock_file = s.lock_file.as_ref().and_then(&mut path);
    let data = s.data.as_ref().and_then(&mut path);
    let credentials_file = s.credentials_file.as_ref().and_then(&mut path);
    let secret_files = s.secret_files.iter().filter_map(&mut path).collect();
    let mut signals = BTreeMap::new();
    for (purpose, sig) in &s.signals {
        if matches!(
            sig.value,
            SignalName::Kill
                | SignalName::Stop
                | SignalName::Cont
                | SignalName::Term
                | SignalName::Int
                | SignalName::Quit
        ) {
            c.at(
                sig.referenced,
                format!(
                    "service `{label}`: signals.{purpose}: {} stops or freezes a process; declare the signals it handles and lives on (SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH)",
                    sig.value.as_str()
                ),
            );
            continue;
        }
        signals.insert(purpose.clone(), sig.value);
    }
    let pool_reset_url = s.pool_reset_url.as_ref().and_then(|u| {
        let url = Url::parse(&u.value).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if url.is_none() {
            c.at(u.referenced, format!("service `{label}`: pool_reset_url `{}` is not an http(s) URL", u.value));
        }
        url
    });
    let model = s.model.as_ref().and_then(|m| {
        if m.value.trim().is_empty() {
            c.at(m.referenced, format!("service `{label}`: model must not be empty"));
            None
        } else {
            Some(m.value.trim().to_string())
        }
    });
    let snapshot = snapshot_policy(c, ctx, s);
    RepairHooks { signals, lock_file, data, snapshot, credentials_file, secret_files, pool_reset_url, model }
}

/// Folders whose contents belong to the system, not to a service: a playbook deletes,
/// restores and rewrites what a service declares, so none of these may be declared
/// (`/usr/local`, where services built from source keep their data, excepted).
const SYSTEM_DIRS: &[&str] = &["/bin", "/boot", "/dev", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr"];

/// `p` with `.` and `..` worked out on the text alone (no link is followed): what a path
/// with `..` names, for comparing it with another.
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Why a path a service declares for its repairs (a lock file, its data, a credentials
/// file, secrets; `p`, worked out with [`lexical`]) is not one a playbook may touch: the
/// root or a top-level folder, the system's own folders, warden's own data (its store,
/// audit, keys) outside `${data_dir}/services/`, or a path that is or holds one of
/// warden's own files (`protected`).
pub(crate) fn unsafe_hook_path(p: &Path, data_dir: &Path, protected: &[PathBuf]) -> Option<&'static str> {
    use std::path::Component;
    if p.components().filter(|c| matches!(c, Component::Normal(_))).count() < 2 {
        return Some("is the root or a top-level folder: name the service's own file or folder");
    }
    if SYSTEM_DIRS.iter().any(|d| p.starts_with(d)) && !p.starts_with("/usr/local") {
        return Some("is inside a system folder: a repair may delete or rewrite it");
    }
    if p.starts_with(data_dir) && !p.starts_with(data_dir.join("services")) || data_dir.starts_with(p) {
        return Some("is warden's own data: only `${data_dir}/services/` is the services' there");
    }
    if protected.iter().any(|f| f.starts_with(p) || p.starts_with(f)) {
        return Some(
            "is or holds one of warden's own files (its config, policy, playbooks, tokens, audit key or checkpoints)",
        );
    }
    None
}

/// A percentage from 1 to 99 (0 and 100 would make a rule that never or always fires).
fn pct(c: &mut Collector, v: &Option<Spanned<u8>>, default: u8, key: &str) -> u8 {
    match v {
        Some(p) if !(1..=99).contains(&p.value) => {
            c.at(p.referenced, format!("{key} must be between 1 and 99"));
            default
        }
        Some(p) => p.value,
        None => default,
    }
}

/// A service's upstreams: unique names, an address its arguments or environment carry (or
/// a switch would change nothing), at least one fallback, every address `HOST:PORT` or an
/// http(s) URL with a port.
fn upstreams(
    c: &mut Collector,
    s: &raw::ServiceSection,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Vec<Upstream> {
    let label = s.name.value.as_str();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for u in &s.upstreams {
        let name = u.name.value.trim();
        if name.is_empty() {
            c.at(u.name.referenced, format!("service `{label}`: upstream name must not be empty"));
            continue;
        }
        if !seen.insert(name.to_string()) {
            c.at(u.name.referenced, format!("service `{label}`: upstream `{name}` is defined twice"));
        }
        let mut ok = true;
        for a in std::iter::once(&u.address).chain(&u.fallbacks) {
            if host_port(&a.value).is_none() {
                c.at(
                    a.referenced,
                    format!(
                        "service `{label}`: upstream `{name}`: `{}` is not HOST:PORT or an http(s) URL with a host",
                        a.value
                    ),
                );
                ok = false;
            }
        }
        let used = args.iter().chain(env.values()).any(|t| t.contains(&u.address.value));
        if !used && !u.address.value.is_empty() {
            c.at(
                u.address.referenced,
                format!("service `{label}`: upstream `{name}`: `{}` appears in none of its args or env, so switching it would change nothing", u.address.value),
            );
            ok = false;
        }
        if u.fallbacks.is_empty() {
            c.at(u.name.referenced, format!("service `{label}`: upstream `{name}` needs at least one fallback"));
            ok = false;
        }
        if ok {
            out.push(Upstream {
                name: name.to_string(),
                address: u.address.value.clone(),
                fallbacks: u.fallbacks.iter().map(|f| f.value.clone()).collect(),
            });
        }
    }
    out
}

/// `user` and `group` looked up now (`/etc/passwd`, `/etc/group`, NSS), with the user's
/// supplementary groups, as `initgroups` would set them.
fn identity(c: &mut Collector, s: &raw::ServiceSection, label: &str) -> Option<Identity> {
    use nix::unistd::{Group, User};
    let user = s.user.as_ref().and_then(|u| match User::from_name(&u.value) {
        Ok(Some(user)) => Some(user),
        Ok(None) => {
            c.at(u.referenced, format!("service `{label}`: no user `{}` on this machine", u.value));
            None
        }
        Err(e) => {
            c.at(u.referenced, format!("service `{label}`: cannot look up user `{}`: {e}", u.value));
            None
        }
    });
    let group = s.group.as_ref().and_then(|g| match Group::from_name(&g.value) {
        Ok(Some(group)) => Some(group),
        Ok(None) => {
            c.at(g.referenced, format!("service `{label}`: no group `{}` on this machine", g.value));
            None
        }
        Err(e) => {
            c.at(g.referenced, format!("service `{label}`: cannot look up group `{}`: {e}", g.value));
            None
        }
    });
    match (user, group) {
        (None, None) => None,
        (Some(user), group) => {
            let gid = group.map_or(user.gid, |g| g.gid);
            let groups = std::ffi::CString::new(user.name.clone())
                .ok()
                .and_then(|name| nix::unistd::getgrouplist(&name, gid).ok())
                .unwrap_or_else(|| vec![gid]);
            Some(Identity {
                user: Some(UserId { name: user.name, uid: user.uid.as_raw(), home: user.dir }),
                gid: gid.as_raw(),
                groups: groups.into_iter().map(|g| g.as_raw()).collect(),
            })
        }
        (None, Some(group)) => Some(Identity { user: None, gid: group.gid.as_raw(), groups: vec![group.gid.as_raw()] }),
    }
}

/// Reads an env file (`KEY=VALUE` lines, `#` comments, quoted values), as dotenv does.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    dotenvy::from_path_iter(path).map_err(|e| e.to_string())?.map(|item| item.map_err(|e| e.to_string())).collect()
}

/// `@warden`, a path (relative to the config's folder) or a name looked up in `PATH`,
/// checked to be an executable file now rather than at the first start.
fn program(c: &mut Collector, ctx: &Ctx<'_>, cmd: &Spanned<String>, label: &str) -> Option<Program> {
    if cmd.value == SELF_COMMAND {
        return Some(Program::SelfExe);
    }
    let value = expand(c, cmd, ctx.data_dir)?;
    if value.trim().is_empty() {
        c.at(cmd.referenced, format!("service `{label}`: command must not be empty"));
        return None;
    }
    let found = if value.contains('/') {
        let path = resolve(ctx.dir, &value);
        executable(&path).map(|()| path.clone()).map_err(|why| {
            if path.as_os_str() == value.as_str() { why } else { format!("{why} (resolved to {})", path.display()) }
        })
    } else {
        find_in_path(&value)
    };
    match found {
        Ok(path) => Some(Program::Path(path)),
        Err(why) => {
            c.at(cmd.referenced, format!("service `{label}`: command `{value}` {why}"));
            None
        }
    }
}

fn executable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("does not exist".into()),
        Err(e) => Err(format!("cannot be read: {e}")),
        Ok(m) if !m.is_file() => Err("is not a file".into()),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("is not executable".into()),
        Ok(_) => Ok(()),
    }
}

fn find_in_path(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p).is_ok())
        .ok_or_else(|| "is not found in PATH".to_string())
}

fn restart_policy(c: &mut Collector, r: &raw::RestartSection, label: &str) -> RestartPolicy {
    let d = RestartPolicy::default();
    let what = |key: &str| format!("service `{label}`: restart.{key}");
    let ms = |v: &Option<Spanned<u64>>, d: Duration| v.as_ref().map_or(d, |v| Duration::from_millis(v.value));
    let max_restarts = match &r.max_restarts {
        Some(m) if m.value == 0 => {
            c.at(m.referenced, format!("{} must be at least 1", what("max_restarts")));
            d.max_restarts
        }
        m => m.as_ref().map_or(d.max_restarts, |m| m.value),
    };
    let p = RestartPolicy {
        backoff_initial: ms(&r.backoff_initial_ms, d.backoff_initial),
        backoff_max: ms(&r.backoff_max_ms, d.backoff_max),
        max_restarts,
        window: positive_ms(c, r.window_ms.as_ref(), d.window.as_millis() as u64, &what("window_ms")),
        stable_after: ms(&r.stable_after_ms, d.stable_after),
    };
    if p.backoff_max < p.backoff_initial
        && let Some(m) = r.backoff_max_ms.as_ref().or(r.backoff_initial_ms.as_ref())
    {
        c.at(
            m.referenced,
            format!(
                "{} ({}) is below backoff_initial_ms ({})",
                what("backoff_max_ms"),
                p.backoff_max.as_millis(),
                p.backoff_initial.as_millis()
            ),
        );
    }
    p
}

/// Orders services so each comes after its dependencies; reports unknown dependencies
/// and cycles at the services that name them.
fn start_order(
    c: &mut Collector,
    raw: &[raw::ServiceSection],
    services: Vec<ServiceSpec>,
    names: &BTreeSet<ServiceName>,
) -> Vec<ServiceSpec> {
    let mut unknown = false;
    for s in raw {
        for d in &s.depends_on {
            if d.value == s.name.value {
                unknown = true;
                c.at(d.referenced, format!("service `{}` depends on itself", s.name.value));
            } else if !names.iter().any(|n| n.as_str() == d.value) {
                unknown = true;
                c.at(d.referenced, format!("service `{}` depends on unknown service `{}`", s.name.value, d.value));
            }
        }
    }
    let mut placed: BTreeSet<ServiceName> = BTreeSet::new();
    let mut order = Vec::with_capacity(services.len());
    let mut rest = services;
    // Bounded: each pass places at least one service while the graph is acyclic.
    for _ in 0..=rest.len() {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            rest.into_iter().partition(|s| s.depends_on.iter().all(|d| placed.contains(d)));
        placed.extend(ready.iter().map(|s| s.name.clone()));
        order.extend(ready);
        rest = waiting;
        if rest.is_empty() {
            break;
        }
    }
    if !rest.is_empty() && !unknown {
        for s in &rest {
            if let Some(r) = raw.iter().find(|r| r.name.value == s.name.as_str()) {
                c.at(r.name.referenced, format!("service `{}` is part of a dependency cycle", s.name));
            }
        }
    }
    order.extend(rest);
    order
}

fn probe(
    c: &mut Collector,
    ctx: &Ctx<'_>,
    p: &raw::ProbeSection,
    services: &BTreeSet<ServiceName>,
    probe_names: &mut BTreeSet<String>,
) -> Option<ProbeSpec> {
    let name = p.name.value.clone();
    let name_ok = c.check(p.name.referenced, ServiceName::parse(&name).map_err(|e| format!("probe {e}"))).is_some();
    if name_ok && !probe_names.insert(name.clone()) {
        c.at(p.name.referenced, format!("probe `{name}` is defined twice"));
    }
    let target = match ServiceName::parse(&p.target.value) {
        Ok(t) if services.contains(&t) => Some(t),
        _ => {
            c.at(p.target.referenced, format!("probe `{name}` targets unknown service `{}`", p.target.value));
            None
        }
    };
    let what = format!("probe `{name}`");
    let check = probe_check::probe_check(c, ctx, &p.check, &p.layer, &what);
    let interval = positive_ms(c, p.interval_ms.as_ref(), 1_000, &format!("{what}: interval_ms"));
    let timeout = positive_ms(c, p.timeout_ms.as_ref(), 500, &format!("{what}: timeout_ms"));
    // A check must end before the next one is due: probes never pile up.
    if timeout >= interval {
        let at = p.timeout_ms.as_ref().or(p.interval_ms.as_ref()).map_or(p.name.referenced, |v| v.referenced);
        c.at(
            at,
            format!("{what}: timeout_ms {} must be below interval_ms {}", timeout.as_millis(), interval.as_millis()),
        );
    }
    let mut threshold = |v: &Option<Spanned<u32>>, default: u32, key: &str| match v {
        Some(t) if t.value == 0 => {
            c.at(t.referenced, format!("{what}: {key} must be at least 1"));
            default
        }
        Some(t) => t.value,
        None => default,
    };
    let failure_threshold = threshold(&p.failure_threshold, 3, "failure_threshold");
    let success_threshold = threshold(&p.success_threshold, 1, "success_threshold");
    Some(ProbeSpec {
        name,
        layer: p.layer.value,
        target: target?,
        check: check?,
        interval,
        timeout,
        failure_threshold,
        success_threshold,
    })
}
