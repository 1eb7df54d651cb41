//! A probe's `check:` section into a [`ProbeCheck`]: the keys its kind needs, refused keys
//! it does not use, values parsed, and the kind matched against the probe's layer.

use super::super::raw::{FormatName, ProbeCheckSection, ProbeKind};
use super::*;

/// Every key a check section may hold, with where it was written.
fn present(raw: &ProbeCheckSection) -> Vec<(&'static str, Location)> {
    let mut keys = Vec::new();
    let mut add = |key: &'static str, loc: Option<Location>| {
        if let Some(l) = loc {
            keys.push((key, l));
        }
    };
    add("interface", raw.interface.as_ref().map(|v| v.referenced));
    add("gateway", raw.gateway.as_ref().map(|v| v.referenced));
    add("min_mtu", raw.min_mtu.as_ref().map(|v| v.referenced));
    add("host", raw.host.as_ref().map(|v| v.referenced));
    add("port", raw.port.as_ref().map(|v| v.referenced));
    add("addr", raw.addr.as_ref().map(|v| v.referenced));
    add("url", raw.url.as_ref().map(|v| v.referenced));
    add("expect_status", raw.expect_status.as_ref().map(|v| v.referenced));
    add("body", raw.body.as_ref().map(|v| v.referenced));
    add("max_latency_ms", raw.max_latency_ms.as_ref().map(|v| v.referenced));
    add("send", raw.send.as_ref().map(|v| v.referenced));
    add("expect", raw.expect.as_ref().map(|v| v.referenced));
    add("requests", raw.requests.as_ref().map(|v| v.referenced));
    add("max_established", raw.max_established.as_ref().map(|v| v.referenced));
    add("max_time_wait", raw.max_time_wait.as_ref().map(|v| v.referenced));
    add("owner", raw.owner.as_ref().map(|v| v.referenced));
    add("server_name", raw.server_name.as_ref().map(|v| v.referenced));
    add("ca_file", raw.ca_file.as_ref().map(|v| v.referenced));
    add("warn_days", raw.warn_days.as_ref().map(|v| v.referenced));
    add("fail_days", raw.fail_days.as_ref().map(|v| v.referenced));
    add("format", raw.format.as_ref().map(|v| v.referenced));
    add("query", raw.query.as_ref().map(|v| v.referenced));
    add("resolver", raw.resolver.as_ref().map(|v| v.referenced));
    add("user", raw.user.as_ref().map(|v| v.referenced));
    add("dbname", raw.dbname.as_ref().map(|v| v.referenced));
    add("password_file", raw.password_file.as_ref().map(|v| v.referenced));
    add("model", raw.model.as_ref().map(|v| v.referenced));
    keys
}

/// The kind's name in the config, its layer, and the keys it uses.
fn kind_info(kind: ProbeKind) -> (&'static str, Layer, &'static [&'static str]) {
    match kind {
        ProbeKind::Link => ("link", Layer::L2, &["interface", "gateway", "min_mtu"]),
        ProbeKind::Route => ("route", Layer::L3, &["host", "port"]),
        ProbeKind::Tcp => ("tcp", Layer::L4, &["addr", "owner"]),
        ProbeKind::Udp => ("udp", Layer::L4, &["addr", "send", "expect"]),
        ProbeKind::Session => {
            ("session", Layer::L5, &["url", "addr", "send", "expect", "requests", "max_established", "max_time_wait"])
        }
        ProbeKind::Tls => ("tls", Layer::L6, &["addr", "server_name", "ca_file", "warn_days", "fail_days"]),
        ProbeKind::Encoding => ("encoding", Layer::L6, &["url", "addr", "send", "format"]),
        ProbeKind::Http => ("http", Layer::L7, &["url", "expect_status", "body", "max_latency_ms"]),
        ProbeKind::Dns => ("dns", Layer::L7, &["query", "resolver", "expect"]),
        ProbeKind::Postgres => ("postgres", Layer::L7, &["addr", "user", "dbname", "password_file"]),
        ProbeKind::Ollama => ("ollama", Layer::L7, &["url", "model"]),
        ProbeKind::Line => ("line", Layer::L7, &["addr", "send", "expect", "password_file"]),
    }
}

/// Builds the check of probe `what` on `layer`, reporting every problem.
pub(super) fn probe_check(
    c: &mut Collector,
    ctx: &Ctx<'_>,
    raw: &ProbeCheckSection,
    layer: &Spanned<Layer>,
    what: &str,
) -> Option<ProbeCheck> {
    let (name, kind_layer, allowed) = kind_info(raw.kind.value);
    let what = format!("{what}: check");
    for (key, loc) in present(raw) {
        if !allowed.contains(&key) {
            c.at(loc, format!("{what}: `{key}` does not apply to kind {name}"));
        }
    }
    if kind_layer != layer.value {
        c.at(
            layer.referenced,
            format!(
                "{what}: kind {name} is a layer {} check, not {}",
                kind_layer.as_str().trim_start_matches('l'),
                layer.value.as_str()
            ),
        );
    }
    let need = |c: &mut Collector, v: Option<&Spanned<String>>, key: &str| -> Option<Spanned<String>> {
        if v.is_none() {
            c.at(raw.kind.referenced, format!("{what}: kind {name} needs `{key}`"));
        }
        v.cloned()
    };
    let addr_of = |c: &mut Collector, v: &Spanned<String>| socket_addr(c, v, &format!("{what}.addr"));
    let url_of = |c: &mut Collector, v: &Spanned<String>| http_url(c, v.referenced, &v.value, &format!("{what}.url"));
    let file_of = |c: &mut Collector, v: &Spanned<String>, key: &str| -> Option<PathBuf> {
        let path = resolve(ctx.dir, &expand(c, v, ctx.data_dir)?);
        // A file under the data dir may be written only when the node starts (a service's
        // `files:`); if it is missing then, the check fails and says so.
        if !path.is_file() && !path.starts_with(ctx.data_dir) {
            c.at(v.referenced, format!("{what}.{key} {} is not a readable file", path.display()));
            return None;
        }
        Some(path)
    };
    match raw.kind.value {
        ProbeKind::Link => {
            let interface = need(c, raw.interface.as_ref(), "interface")?;
            let ok = !interface.value.is_empty()
                && interface.value.len() < 16
                && !interface.value.contains(['/', ' ', '\0'])
                && interface.value != "."
                && interface.value != "..";
            if !ok {
                c.at(interface.referenced, format!("{what}.interface `{}` is not an interface name", interface.value));
                return None;
            }
            if let Some(m) = &raw.min_mtu
                && m.value < 68
            {
                c.at(m.referenced, format!("{what}.min_mtu {} is below 68, the smallest IPv4 MTU", m.value));
            }
            Some(ProbeCheck::Link {
                interface: interface.value,
                gateway: raw.gateway.as_ref().is_some_and(|g| g.value),
                min_mtu: raw.min_mtu.as_ref().map(|m| m.value),
            })
        }
        ProbeKind::Route => {
            let host = need(c, raw.host.as_ref(), "host")?;
            let Ok(ip) = host.value.parse::<IpAddr>() else {
                c.at(host.referenced, format!("{what}.host `{}` is not an IP address", host.value));
                return None;
            };
            if let Some(p) = &raw.port
                && p.value == 0
            {
                c.at(p.referenced, format!("{what}.port 0 is not a port"));
            }
            Some(ProbeCheck::Route { host: ip, port: raw.port.as_ref().map(|p| p.value).filter(|p| *p != 0) })
        }
        ProbeKind::Tcp => {
            let addr = need(c, raw.addr.as_ref(), "addr")?;
            let addr = addr_of(c, &addr)?;
            Some(ProbeCheck::Tcp { addr, owner: raw.owner.as_ref().is_none_or(|o| o.value) })
        }
        ProbeKind::Udp => {
            let addr = need(c, raw.addr.as_ref(), "addr");
            let send = need(c, raw.send.as_ref(), "send");
            let addr = addr_of(c, &addr?)?;
            Some(ProbeCheck::Udp { addr, send: send?.value, expect: raw.expect.as_ref().map(|e| e.value.clone()) })
        }
        ProbeKind::Session => {
            let exchange = exchange(c, raw, &what, name)?;
            if let (Exchange::Http { url }, Some(at)) = (&exchange, &raw.url)
                && url.scheme() != "http"
            {
                c.at(
                    at.referenced,
                    format!("{what}.url: a session is checked over plain http (a tls probe checks TLS)"),
                );
                return None;
            }
            let requests = match &raw.requests {
                Some(r) if r.value < 2 => {
                    c.at(
                        r.referenced,
                        format!("{what}.requests must be at least 2 (one connection, several requests)"),
                    );
                    return None;
                }
                Some(r) => r.value,
                None => 5,
            };
            Some(ProbeCheck::Session {
                exchange,
                requests,
                max_established: raw.max_established.as_ref().map(|v| v.value),
                max_time_wait: raw.max_time_wait.as_ref().map(|v| v.value),
            })
        }
        ProbeKind::Tls => {
            let addr = need(c, raw.addr.as_ref(), "addr")?;
            let addr = addr_of(c, &addr)?;
            let server_name = raw.server_name.as_ref().map_or_else(|| addr.ip().to_string(), |s| s.value.clone());
            let ca_file = match &raw.ca_file {
                Some(f) => Some(file_of(c, f, "ca_file")?),
                None => None,
            };
            let fail_days = raw.fail_days.as_ref().map_or(0, |d| d.value);
            // Unset, the warning starts 14 days ahead, or at the failing limit if later.
            let warn_days = raw.warn_days.as_ref().map_or(fail_days.max(14), |d| d.value);
            if let (Some(w), Some(f)) = (&raw.warn_days, &raw.fail_days)
                && w.value < f.value
            {
                c.at(w.referenced, format!("{what}: warn_days {} is below fail_days {}", w.value, f.value));
            }
            Some(ProbeCheck::Tls { addr, server_name, ca_file, warn_days, fail_days })
        }
        ProbeKind::Encoding => {
            let exchange = exchange(c, raw, &what, name);
            let Some(format) = &raw.format else {
                c.at(raw.kind.referenced, format!("{what}: kind encoding needs `format` (utf8 or json)"));
                return None;
            };
            let format = match format.value {
                FormatName::Utf8 => Format::Utf8,
                FormatName::Json => Format::Json,
            };
            Some(ProbeCheck::Encoding { exchange: exchange?, format })
        }
        ProbeKind::Http => {
            let url = need(c, raw.url.as_ref(), "url")?;
            let url = url_of(c, &url)?;
            if let Some(s) = &raw.expect_status
                && !(100..=599).contains(&s.value)
            {
                c.at(s.referenced, format!("{what}: expect_status {} is not an HTTP status", s.value));
            }
            let max_latency = raw.max_latency_ms.as_ref().map(|m| {
                if m.value == 0 {
                    c.at(m.referenced, format!("{what}.max_latency_ms must be positive"));
                }
                Duration::from_millis(m.value)
            });
            Some(ProbeCheck::Http {
                url,
                expect_status: raw.expect_status.as_ref().map(|s| s.value),
                body: raw.body.as_ref().map(|b| b.value.clone()),
                max_latency,
            })
        }
        ProbeKind::Dns => {
            let query = need(c, raw.query.as_ref(), "query")?;
            let name_ok = !query.value.is_empty()
                && query.value.len() <= 253
                && query.value.trim_end_matches('.').split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
                });
            if !name_ok {
                c.at(query.referenced, format!("{what}.query `{}` is not a DNS name", query.value));
            }
            let resolver = match &raw.resolver {
                Some(r) => Some(socket_addr(c, r, &format!("{what}.resolver"))?),
                None => None,
            };
            let expect = match &raw.expect {
                Some(e) => match e.value.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        c.at(e.referenced, format!("{what}.expect `{}` is not an IP address", e.value));
                        None
                    }
                },
                None => None,
            };
            Some(ProbeCheck::Dns { query: query.value, resolver, expect })
        }
        ProbeKind::Postgres => {
            let addr = need(c, raw.addr.as_ref(), "addr");
            let user = need(c, raw.user.as_ref(), "user");
            let addr = addr_of(c, &addr?)?;
            let user = user?.value;
            let password_file = match &raw.password_file {
                Some(f) => Some(file_of(c, f, "password_file")?),
                None => None,
            };
            let dbname = raw.dbname.as_ref().map_or_else(|| user.clone(), |d| d.value.clone());
            Some(ProbeCheck::Postgres { addr, user, dbname, password_file })
        }
        ProbeKind::Ollama => {
            let url = need(c, raw.url.as_ref(), "url")?;
            let url = url_of(c, &url)?;
            Some(ProbeCheck::Ollama { url, model: raw.model.as_ref().map(|m| m.value.clone()) })
        }
        ProbeKind::Line => {
            let addr = need(c, raw.addr.as_ref(), "addr");
            let send = need(c, raw.send.as_ref(), "send");
            let expect = need(c, raw.expect.as_ref(), "expect");
            let password_file = match &raw.password_file {
                Some(f) => Some(file_of(c, f, "password_file")?),
                None => None,
            };
            let addr = addr_of(c, &addr?)?;
            Some(ProbeCheck::Line { addr, send: line(c, &send?, &what)?, expect: expect?.value, password_file })
        }
    }
}

/// The request of a `session` or `encoding` check: `url`, or `addr` with `send`.
fn exchange(c: &mut Collector, raw: &ProbeCheckSection, what: &str, name: &str) -> Option<Exchange> {
    match (&raw.url, &raw.addr) {
        (Some(url), None) => {
            for (key, v) in [("send", &raw.send), ("expect", &raw.expect)] {
                if let Some(v) = v {
                    c.at(v.referenced, format!("{what}: `{key}` goes with `addr`, not `url`"));
                }
            }
            Some(Exchange::Http { url: http_url(c, url.referenced, &url.value, &format!("{what}.url"))? })
        }
        (None, Some(addr)) => {
            let Some(send) = &raw.send else {
                c.at(addr.referenced, format!("{what}: `addr` needs `send`, the line to send"));
                return None;
            };
            let addr = socket_addr(c, addr, &format!("{what}.addr"))?;
            Some(Exchange::Line {
                addr,
                send: line(c, send, what)?,
                expect: raw.expect.as_ref().map(|e| e.value.clone()),
            })
        }
        (Some(url), Some(_)) => {
            c.at(url.referenced, format!("{what}: kind {name} takes `url` or `addr`, not both"));
            None
        }
        (None, None) => {
            c.at(raw.kind.referenced, format!("{what}: kind {name} needs `url`, or `addr` and `send`"));
            None
        }
    }
}

/// A line to send: one line, no line break inside.
fn line(c: &mut Collector, v: &Spanned<String>, what: &str) -> Option<String> {
    if v.value.is_empty() || v.value.contains(['\n', '\r']) {
        c.at(v.referenced, format!("{what}.send must be one non-empty line"));
        return None;
    }
    Some(v.value.clone())
}
