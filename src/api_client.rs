//! How the command line talks to a running warden's API: its address from the node config,
//! a token from `WARDEN_TOKEN`, the file `WARDEN_TOKEN_FILE` names, or the node's own
//! admin token file in its data dir (readable by whoever runs warden).

use crate::load;
use anyhow::Context;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The API token to send, if the environment gives one.
pub fn token() -> Option<String> {
    if let Ok(t) = std::env::var("WARDEN_TOKEN")
        && !t.trim().is_empty()
    {
        return Some(t.trim().to_string());
    }
    let path = std::env::var_os("WARDEN_TOKEN_FILE")?;
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// A running node's API.
pub struct Api {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    /// How the address was found, for the error when it does not answer.
    found_by: String,
}

impl Api {
    /// The API of the node `config` describes (the embedded default when `None`).
    pub fn of(config: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let loaded = load::load(config, data_dir).map_err(|p| anyhow::anyhow!("{p}"))?;
        Self::at(loaded.config.http_listen, &loaded.config.data_dir)
    }

    /// The API of the node the command names: `--url` (or `WARDEN_URL`), else
    /// `--config`/`--data-dir`, else the one node running here that published itself
    /// ([`crate::runtime_file`]), else the embedded default's address.
    pub fn for_node(node: &crate::load::NodeArgs) -> anyhow::Result<Self> {
        let url = node.url.clone().or_else(|| std::env::var("WARDEN_URL").ok().filter(|u| !u.trim().is_empty()));
        if let Some(url) = url {
            let base = url.trim().trim_end_matches('/').to_string();
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                anyhow::bail!("--url/WARDEN_URL `{base}` is not an http(s) URL");
            }
            let own = node.data_dir.as_ref().map(|d| d.join("admin.token"));
            return Self::with_base(base, own.as_deref(), "--url or WARDEN_URL".into());
        }
        if node.config.is_none() && node.data_dir.is_none() {
            return match crate::runtime_file::the_running_node()? {
                Some(one) => {
                    let how = format!("the running node `{}` (pid {})", one.name, one.pid);
                    Self::with_base(one.url, Some(&one.data_dir.join("admin.token")), how)
                }
                None => {
                    let mut api = Self::of(None, None)?;
                    api.found_by = format!("the embedded default node's address; {}", crate::runtime_file::tried());
                    Ok(api)
                }
            };
        }
        Self::of(node.config.as_deref(), node.data_dir.as_deref())
    }

    fn with_base(base: String, own_token: Option<&Path>, found_by: String) -> anyhow::Result<Self> {
        let token =
            token().or_else(|| own_token.and_then(|p| std::fs::read_to_string(p).ok()).map(|t| t.trim().to_string()));
        let client = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(120)).build()?;
        Ok(Self { base, token, client, found_by })
    }

    /// The API listening on `addr` of the node whose data dir is `data_dir`.
    pub fn at(mut addr: SocketAddr, data_dir: &Path) -> anyhow::Result<Self> {
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let own: PathBuf = data_dir.join("admin.token");
        let token = token().or_else(|| std::fs::read_to_string(own).ok().map(|t| t.trim().to_string()));
        let client = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(120)).build()?;
        Ok(Self { base: format!("http://{addr}"), token, client, found_by: "the node's config".into() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The answer as it came (for bodies that are not one JSON value).
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let req = self.client.get(format!("{}{path}", self.base));
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        req.send()
            .await
            .with_context(|| format!("warden's API at {} did not answer (found from {})", self.base, self.found_by))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("warden's API at {} did not answer (found from {})", self.base, self.found_by))?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body)).await
    }
}

/// The message of a JSON error answer.
pub fn error_message(body: &Value) -> String {
    body["error"]["message"].as_str().map_or_else(|| body.to_string(), str::to_string)
}
