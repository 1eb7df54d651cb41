//! Reading a node's files — the node config, the governance policy it names, the playbook
//! catalog — into validated types, every problem of every file reported at once. Used by
//! `warden run` (nothing starts on a bad file) and `warden check-config` (nothing starts).

use std::path::{Path, PathBuf};
use warden_core::config::{LoadOptions, NodeConfig};
use warden_core::playbook::Catalog;
use warden_core::policy::Policies;
use warden_core::source::{Problems, Source};

/// Everything read from config files, checked.
pub struct Loaded {
    pub config: NodeConfig,
    /// Where the policy came from, for messages.
    pub policies_from: String,
    pub policies: Policies,
    pub catalog: Catalog,
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

/// Loads `config` (the embedded default node when `None`) and the files it names.
pub fn load(config: Option<&Path>, data_dir: Option<&Path>) -> Result<Loaded, Problems> {
    let opts = LoadOptions { data_dir: data_dir.map(Path::to_path_buf) };
    let node = match config {
        Some(path) => {
            let text = read(path)?;
            let name = path.display().to_string();
            NodeConfig::load(&Source { name: &name, dir: &folder_of(path), text: &text }, &opts)?
        }
        None => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            NodeConfig::embedded_default(&cwd, &opts)?
        }
    };
    let services: Vec<_> = node.service_names().cloned().collect();
    let mut problems: Option<Problems> = None;
    let mut note = |p: Problems| match &mut problems {
        Some(all) => all.extend(p),
        None => problems = Some(p),
    };
    let (policies_from, policies) = match &node.governance_policies {
        Some(path) => {
            let name = path.display().to_string();
            let loaded = read(path).and_then(|text| {
                Policies::load(&Source { name: &name, dir: &folder_of(path), text: &text }, &services)
            });
            (name, loaded)
        }
        None => ("embedded default".to_string(), Policies::embedded_default(&services)),
    };
    let policies = policies.map_err(&mut note).ok();
    let catalog = Catalog::embedded_default().map_err(&mut note).ok();
    match (policies, catalog, problems) {
        (Some(policies), Some(catalog), None) => Ok(Loaded { config: node, policies_from, policies, catalog }),
        (_, _, Some(p)) => Err(p),
        _ => Err(Problems::whole_file("config", "cannot load the policy or catalog")),
    }
}
