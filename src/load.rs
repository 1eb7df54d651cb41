//! Reading a node's files — the node config, the governance policy it names, the playbook
//! catalog — into validated types, every problem of every file reported at once. Used by
//! `warden run` (nothing starts on a bad file) and `warden check-config` (nothing starts).

use std::path::{Path, PathBuf};
use warden_core::auth::TokenBook;
use warden_core::config::{LoadOptions, NodeConfig};
use warden_core::playbook::Catalog;
use warden_core::policy::Policies;
use warden_core::source::{Problems, Source};

/// `--config` and `--data-dir`: which node a command works on.
#[derive(clap::Args, Default, Debug, Clone)]
pub struct NodeArgs {
    /// Node config file (default: the embedded demo node).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The node's data dir (default: the config's): its store, logs, service data and
    /// API tokens.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A running node's API (`http://HOST:PORT`); also `WARDEN_URL`. Without it, nor
    /// `--config`, the one running node that published itself is used.
    #[arg(long)]
    pub url: Option<String>,
}

impl NodeArgs {
    /// The node's files, read and checked as `warden run` reads them.
    pub fn load(&self) -> Result<Loaded, Problems> {
        load(self.config.as_deref(), self.data_dir.as_deref())
    }
}

/// Everything read from config files, checked.
pub struct Loaded {
    pub config: NodeConfig,
    /// Where the policy came from, for messages.
    pub policies_from: String,
    pub policies: Policies,
    pub catalog: Catalog,
    /// The API's token book; `None` while the data dir's default does not exist yet.
    pub tokens: Option<TokenBook>,
}

/// The folder relative paths of `file` resolve against (absolute).
fn folder_of(file: &Path) -> PathBuf {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn read(file: &Path) -> Result<String, Problems> {
    std::fs::read_to_string(file)
        .map_err(|e| Problems::whole_file(&file.display().to_string(), format!("cannot read the file: {e}")))
}

/// Every problem found so far, across files.
#[derive(Default)]
struct AllProblems(Option<Problems>);

impl AllProblems {
    fn keep<T>(&mut self, r: Result<T, Problems>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(p) => {
                match &mut self.0 {
                    Some(all) => all.extend(p),
                    None => self.0 = Some(p),
                }
                None
            }
        }
    }
}

/// The embedded catalog with the playbook files of `dir` (every `*.yaml`, in name order)
/// over it.
fn catalog_of(dir: Option<&Path>) -> Result<Catalog, Problems> {
    let Some(dir) = dir else { return Catalog::embedded_default() };
    let shown = dir.display().to_string();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Problems::whole_file(&shown, format!("cannot read the playbooks folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut texts = Vec::new();
    for f in &files {
        texts.push((f.display().to_string(), read(f)?));
    }
    let overrides: Vec<Source<'_>> = texts.iter().map(|(name, text)| Source { name, dir, text }).collect();
    Catalog::embedded_with(&overrides)
}

/// Loads `config` (the embedded default node when `None`) and the files it names. The
/// catalog is checked whatever the node config says; the policy needs a valid node config
/// (its targets are the node's services).
pub fn load(config: Option<&Path>, data_dir: Option<&Path>) -> Result<Loaded, Problems> {
    let opts = LoadOptions { data_dir: data_dir.map(Path::to_path_buf) };
    let mut all = AllProblems::default();
    let node =
        match config {
            Some(path) => {
                let name = path.display().to_string();
                all.keep(read(path).and_then(|text| {
                    NodeConfig::load(&Source { name: &name, dir: &folder_of(path), text: &text }, &opts)
                }))
            }
            None => {
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
                all.keep(NodeConfig::embedded_default(&cwd, &opts))
            }
        };
    let catalog = all.keep(catalog_of(node.as_ref().and_then(|n| n.playbooks_dir.as_deref())));
    let policies = node.as_ref().and_then(|node| {
        let services: Vec<_> = node.service_names().cloned().collect();
        match &node.governance_policies {
            Some(path) => {
                let name = path.display().to_string();
                let loaded = read(path).and_then(|text| {
                    Policies::load(&Source { name: &name, dir: &folder_of(path), text: &text }, &services)
                });
                all.keep(loaded).map(|p| (name, p))
            }
            // The demo node keeps dev mode (tier 3 approved at once, said at start); a user's
            // own node without a policy waits for an approver for tier 3.
            None if config.is_none() => all
                .keep(Policies::embedded_default(&services))
                .map(|p| ("embedded default, the demo node's".to_string(), p)),
            None => all
                .keep(Policies::safe_default(&services))
                .map(|p| ("embedded default (production: no `governance_policies` in the config)".to_string(), p)),
        }
    });
    let tokens = node.as_ref().and_then(|node| {
        let file = &node.tokens;
        if !file.explicit && !file.path.exists() {
            return None;
        }
        let name = file.path.display().to_string();
        let loaded = read(&file.path)
            .and_then(|text| TokenBook::load(&Source { name: &name, dir: &folder_of(&file.path), text: &text }));
        all.keep(loaded)
    });
    match (all.0, node, policies, catalog) {
        (None, Some(config), Some((policies_from, policies)), Some(catalog)) => {
            Ok(Loaded { config, policies_from, policies, catalog, tokens })
        }
        (Some(problems), ..) => Err(problems),
        // Every loader either gives its value or a problem.
        _ => Err(Problems::whole_file("configuration", "could not be loaded")),
    }
}
