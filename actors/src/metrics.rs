//! Metric names in one place, in Prometheus text format via prometheus-client.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaybookLabels {
    pub playbook: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub probe: String,
    pub layer: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: String,
}

/// Every metric warden exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub service_restarts: Family<ServiceLabel, Counter>,
    pub service_quarantines: Family<ServiceLabel, Counter>,
    pub incidents_opened: Family<ModeLabel, Counter>,
    pub incidents_open: Gauge,
    pub mttr_seconds: Histogram,
    pub playbook_executions: Family<PlaybookLabels, Counter>,
    pub probe_checks: Family<ProbeLabels, Counter>,
    pub gate_decisions: Family<DecisionLabel, Counter>,
    pub audit_entries: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("warden");
        let m = Self {
            registry: Arc::new(Registry::default()),
            service_restarts: Family::default(),
            service_quarantines: Family::default(),
            incidents_opened: Family::default(),
            incidents_open: Gauge::default(),
            mttr_seconds: Histogram::new([0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0]),
            playbook_executions: Family::default(),
            probe_checks: Family::default(),
            gate_decisions: Family::default(),
            audit_entries: Counter::default(),
        };
        r.register("service_restarts", "Service processes restarted", m.service_restarts.clone());
        r.register("service_quarantines", "Services quarantined for crash-looping", m.service_quarantines.clone());
        r.register("incidents", "Incidents opened, by failure mode", m.incidents_opened.clone());
        r.register("incidents_open", "Incidents currently open", m.incidents_open.clone());
        r.register("mttr_seconds", "Time from detection to verified restore", m.mttr_seconds.clone());
        r.register("playbook_executions", "Playbook runs, by outcome", m.playbook_executions.clone());
        r.register("probe_checks", "Probe checks, by result", m.probe_checks.clone());
        r.register("gate_decisions", "Gatekeeper decisions", m.gate_decisions.clone());
        r.register("audit_entries", "Audit entries appended", m.audit_entries.clone());
        Self { registry: Arc::new(r), ..m }
    }

    /// OpenMetrics text, for scrapers that ask for it.
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Prometheus text format 0.0.4 (what `promtool check metrics` and most scrapers read).
    pub fn encode_prometheus(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_prometheus(&self.encode_openmetrics()?))
    }
}

/// OpenMetrics names a counter family without `_total` and ends with `# EOF`; the
/// Prometheus text format names the family like its samples and has no terminator.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_counter_families_are_named_like_their_samples() {
        let m = Metrics::new();
        m.audit_entries.inc();
        let text = m.encode_prometheus().expect("encode");
        assert!(text.contains("# TYPE warden_audit_entries_total counter"), "{text}");
        assert!(text.contains("# HELP warden_audit_entries_total "), "{text}");
        assert!(text.contains("warden_audit_entries_total 1"), "{text}");
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE warden_mttr_seconds histogram"), "non-counters untouched");
    }
}
