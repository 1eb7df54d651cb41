//! The node config as written in YAML: every key, its default, and the positions of the
//! values that validation checks. Nothing outside [`super`] sees these types.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

use super::{Layer, Strategy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub node: NodeSection,
    #[serde(default)]
    pub supervision: SupervisionSection,
    pub services: Spanned<Vec<ServiceSection>>,
    #[serde(default)]
    pub probes: Vec<ProbeSection>,
    #[serde(default)]
    pub healing: HealingSection,
    /// Path of the governance policy file; absent: the embedded default.
    #[serde(default)]
    pub governance_policies: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: Spanned<String>,
    pub http_listen: Spanned<String>,
    #[serde(default)]
    pub data_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub startup_deadline_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSection {
    pub strategy: Strategy,
    pub max_restarts: usize,
    pub period_ms: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSection {
    pub node: Option<Spanned<TreeSection>>,
    pub governance: Option<Spanned<TreeSection>>,
    pub guardian: Option<Spanned<TreeSection>>,
    pub healing: Option<Spanned<TreeSection>>,
    pub http: Option<Spanned<TreeSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    pub name: Spanned<String>,
    pub command: Spanned<String>,
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub workdir: Option<Spanned<String>>,
    #[serde(default)]
    pub ports: Vec<Spanned<u16>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub ready: Option<Spanned<ReadySection>>,
    #[serde(default)]
    pub startup_deadline_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub stop_grace_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub restart: Option<Spanned<RestartSection>>,
    #[serde(default)]
    pub logs: Option<Spanned<LogSection>>,
    #[serde(default)]
    pub memory_limit_mb: Option<Spanned<u64>>,
    #[serde(default)]
    pub files: Vec<FileSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum ReadySection {
    Tcp { addr: String },
    Http { url: String },
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSection {
    pub backoff_initial_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub max_restarts: Option<usize>,
    pub window_ms: Option<u64>,
    pub stable_after_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub max_bytes: Option<u64>,
    pub keep: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSection {
    pub path: Spanned<String>,
    pub content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    pub name: Spanned<String>,
    pub layer: Layer,
    pub target: Spanned<String>,
    pub check: Spanned<CheckSection>,
    #[serde(default)]
    pub interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub failure_threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub success_threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum CheckSection {
    Http {
        url: String,
        #[serde(default)]
        expect_status: Option<u16>,
    },
    Tcp {
        addr: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealingSection {
    #[serde(default)]
    pub mttr_alert_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub mttr_window: Option<Spanned<usize>>,
}
