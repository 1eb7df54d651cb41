//! A database across a real link, for mode 6 (network unreachable) in `warden chaos modes`:
//! a network namespace with the db in it, joined to the host by a veth pair, and a node that
//! is the default node's shape around it (the same ports, the api's db behind that link with
//! a standby on loopback as its fallback). Cutting the link (`link-down` on the host end)
//! is then a fault the node can see and repair (fail the api over to the standby).
//!
//! Everything made here is taken away when the [`Link`] is dropped: the namespace, the
//! veth pair (it goes with the namespace), the unreachable route; and by [`remove_leftover`]
//! when the harness is stopped by a signal, where no destructor runs.

use std::process::Command;
use std::sync::Mutex;

use crate::services::{API_PORT, DB_PORT, MODEL_PORT, WARDEN_PORT};

/// The namespace, its link and its addresses.
pub struct Link {
    pub ns: String,
    /// The host's end of the veth pair: `link-down` takes it down.
    pub host_end: String,
    /// The db's address in the namespace.
    pub db_ip: String,
    subnet: String,
}

/// What the live link made (namespace, subnet, host end), for [`remove_leftover`].
static MADE: Mutex<Option<(String, String, String)>> = Mutex::new(None);

/// Removes what a link that was not dropped made (the harness stopped by a signal).
pub fn remove_leftover() {
    let made = MADE.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((ns, subnet, host_end)) = made {
        remove(&ns, &subnet, &host_end);
    }
}

fn remove(ns: &str, subnet: &str, host_end: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
    let _ = Command::new("ip").args(["route", "del", "unreachable", subnet]).output();
    let _ = Command::new("ip").args(["link", "del", host_end]).output();
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Link {
    /// Makes the namespace and the link; `k` (1–250) picks the 10.253.k.0/30 subnet.
    pub fn create(k: u8) -> Result<Self, String> {
        let ns = format!("wdmodes{}", std::process::id());
        ip(&["netns", "add", &ns])?;
        let link = Self {
            ns: ns.clone(),
            host_end: format!("wmh{k}"),
            db_ip: format!("10.253.{k}.2"),
            subnet: format!("10.253.{k}.0/24"),
        };
        *MADE.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((ns.clone(), link.subnet.clone(), link.host_end.clone()));
        let ns_end = format!("wmn{k}");
        let host_ip = format!("10.253.{k}.1/30");
        ip(&["link", "add", &link.host_end, "type", "veth", "peer", "name", &ns_end, "netns", &ns])?;
        ip(&["addr", "add", &host_ip, "dev", &link.host_end])?;
        ip(&["link", "set", &link.host_end, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{}/30", link.db_ip), "dev", &ns_end])?;
        ip(&["-n", &ns, "link", "set", &ns_end, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // With the link down the path is gone, not routed elsewhere.
        ip(&["route", "add", "unreachable", &link.subnet, "metric", "4000"])?;
        Ok(link)
    }

    /// Brings the host end back up (between two faults).
    pub fn up(&self) -> Result<(), String> {
        set_up(&self.host_end)
    }

    /// The node: db in the namespace, standby db, model and api on loopback at the default
    /// node's ports, an L7 probe of the api and an L3 probe of its path to the db.
    pub fn node_yaml(&self, exe: &str, standby_port: u16) -> String {
        let (ns, db) = (&self.ns, format!("{}:{DB_PORT}", self.db_ip));
        format!(
            "node:\n  name: modes-link\n  http_listen: 127.0.0.1:{WARDEN_PORT}\n\
             governance_policies: policy.yaml\n\
             services:\n\
             \x20 - name: db\n    role: database\n    command: ip\n    \
             args: [netns, exec, {ns}, {exe}, demo, db, --listen, '{db}', --data-dir, '${{data_dir}}/services/db/data', --password-file, '${{data_dir}}/services/db/password']\n    \
             ready: {{ kind: tcp, addr: '{db}' }}\n    files:\n      - path: '${{data_dir}}/services/db/password'\n        content: \"t0k3n\\n\"\n\
             \x20 - name: dbstandby\n    command: '@warden'\n    \
             args: [demo, db, --listen, '127.0.0.1:{standby_port}', --data-dir, '${{data_dir}}/services/dbstandby/data', --password-file, '${{data_dir}}/services/db/password']\n    \
             ports: [{standby_port}]\n    depends_on: [db]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{standby_port}' }}\n\
             \x20 - name: model\n    role: model_server\n    command: '@warden'\n    args: [demo, model, --listen, '127.0.0.1:{MODEL_PORT}']\n    ports: [{MODEL_PORT}]\n\
             \x20 - name: api\n    command: '@warden'\n    \
             args: [demo, api, --listen, '127.0.0.1:{API_PORT}', --db, '{db}', --model-url, 'http://127.0.0.1:{MODEL_PORT}', --config, '${{data_dir}}/services/api/api.json', --credentials, '${{data_dir}}/services/db/password']\n    \
             ports: [{API_PORT}]\n    depends_on: [db, model]\n    ready: {{ kind: http, url: 'http://127.0.0.1:{API_PORT}/health' }}\n    \
             upstreams:\n      - {{ name: db, address: '{db}', fallbacks: ['127.0.0.1:{standby_port}'] }}\n    \
             files:\n      - path: '${{data_dir}}/services/api/api.json'\n        content: '{{\"name\": \"modes\"}}'\n\
             probes:\n\
             \x20 - name: api-health\n    layer: l7\n    target: api\n    check: {{ kind: http, url: 'http://127.0.0.1:{API_PORT}/health' }}\n    interval_ms: 300\n    timeout_ms: 250\n\
             \x20 - name: api-db-route\n    layer: l3\n    target: api\n    check: {{ kind: route, host: '{db_ip}', port: {DB_PORT} }}\n    interval_ms: 200\n    timeout_ms: 150\n    failure_threshold: 2\n\
             healing:\n{healing}",
            db_ip = self.db_ip,
            healing = crate::modes::HARNESS_HEALING,
        )
    }
}

/// Brings an interface (back) up.
pub fn set_up(interface: &str) -> Result<(), String> {
    ip(&["link", "set", "dev", interface, "up"])
}

/// The link `link-down` cuts on a node: the host's end of the veth into the network
/// namespace one of its services runs in (made beforehand, as the reference node's
/// `link.sh up` does); why there is none.
pub fn of_node(config: &warden_core::config::NodeConfig) -> Result<String, String> {
    let ns = config.services.iter().find_map(|s| s.network_namespace.as_ref()).ok_or(
        "no service of this node runs in a network namespace of its own: its links are loopback, which is not cut \
         (config/examples/reference/link.yaml puts PostgreSQL across a link); name the interface with --interface",
    )?;
    host_end_of(ns)
}

/// The host's end of the veth pair into the network namespace at `ns` (a name made by `ip
/// netns add`, under `/run/netns`): the interface `link-down` takes down for a node whose
/// service runs in that namespace.
pub fn host_end_of(ns: &std::path::Path) -> Result<String, String> {
    let name = ns
        .strip_prefix("/run/netns")
        .ok()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| {
            format!("{} is not a named namespace (under /run/netns): name the interface with --interface", ns.display())
        })?;
    if !ns.exists() {
        return Err(format!(
            "the network namespace `{name}` does not exist: make it first (for the reference node: `config/examples/reference/link.sh up`)"
        ));
    }
    let out =
        Command::new("ip").args(["-o", "link", "show", "type", "veth"]).output().map_err(|e| format!("ip: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    veth_into(&text, name).ok_or_else(|| {
        format!("no veth on this host leads into the namespace `{name}`: name the interface with --interface")
    })
}

/// In `ip -o link show type veth` output, the interface whose peer is in namespace `name`.
fn veth_into(listing: &str, name: &str) -> Option<String> {
    listing.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let iface = words.nth(1)?.trim_end_matches(':');
        let peer_ns = line.split_whitespace().skip_while(|w| *w != "link-netns").nth(1)?;
        (peer_ns == name).then(|| iface.split('@').next().unwrap_or(iface).to_string())
    })
}

impl Drop for Link {
    fn drop(&mut self) {
        *MADE.lock().unwrap_or_else(|p| p.into_inner()) = None;
        remove(&self.ns, &self.subnet, &self.host_end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_host_end_is_the_veth_whose_peer_is_in_the_namespace() {
        let listing = "39: wref-h@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether b6:a8:e2:af:5f:35 brd ff:ff:ff:ff:ff:ff link-netns wref\n\
                       41: other@if3: <BROADCAST> mtu 1500 link/ether 00:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff link-netns elsewhere\n";
        assert_eq!(veth_into(listing, "wref").as_deref(), Some("wref-h"));
        assert_eq!(veth_into(listing, "elsewhere").as_deref(), Some("other"));
        assert_eq!(veth_into(listing, "none"), None);
        assert!(host_end_of(std::path::Path::new("/proc/1/ns/net")).is_err(), "not a named one");
    }

    #[test]
    fn test_node_yaml_is_a_valid_config_with_the_db_behind_the_link() {
        let link = Link {
            ns: "wdmodes1".into(),
            host_end: "wmh7".into(),
            db_ip: "10.253.7.2".into(),
            subnet: "10.253.7.0/24".into(),
        };
        let yaml = link.node_yaml("/opt/warden", 5499);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("node.yaml");
        std::fs::write(&path, &yaml).expect("write");
        std::fs::write(dir.path().join("policy.yaml"), crate::modes::raised_limits_policy()).expect("policy");
        let config = crate::inject::running_config(Some(&path), Some(&dir.path().join("data")))
            .unwrap_or_else(|p| panic!("{p}\n{yaml}"));
        let api = config.services.iter().find(|s| s.name.as_str() == "api").expect("api");
        assert_eq!(api.upstreams[0].candidates().collect::<Vec<_>>(), ["10.253.7.2:5433", "127.0.0.1:5499"]);
        std::mem::forget(link); // nothing was made
    }
}
