//! Traces: every incident is one trace (detect → diagnose → decide → remediate → verify),
//! exported with OTLP/HTTP (JSON here) to a real receiver on loopback, configured only by
//! the standard OpenTelemetry environment variables.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

/// One exported span, as the receiver got it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
    service: String,
}

/// Every span in every OTLP/JSON export request `rx` accepted.
fn spans(rx: &Receiver) -> Vec<Span> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = Vec::new();
    for body in rx.bodies() {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| text(&a["value"]["stringValue"]))
                .unwrap_or_default();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attributes = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let v =
                                a["value"].as_object().and_then(|o| o.values().next()).map(text).unwrap_or_default();
                            (text(&a["key"]), v)
                        })
                        .collect();
                    out.push(Span {
                        name: text(&s["name"]),
                        trace: text(&s["traceId"]),
                        id: text(&s["spanId"]),
                        parent: s["parentSpanId"].as_str().unwrap_or("").to_string(),
                        attributes,
                        service: service.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The default node on fresh ports with `env`, its api hung by the chaos harness once it
/// is ready.
fn node_with_a_hung_api(env: &[(&str, &str)]) -> Node {
    let ports = Ports::fresh();
    let node = Node::start_with_env(&default_config_on(ports), ports, &[], env);
    node.wait_ready();
    let (ok, out) = node.cli(&["chaos", "inject", "api-hang", "--json", "--verify-secs", "60"], &[]);
    assert!(ok, "{out}\n{}", node.stderr());
    node
}

#[test]
fn test_a_healed_incident_is_one_trace_from_detection_to_verification() {
    let rx = Receiver::start(0);
    let endpoint = format!("http://{}", rx.addr);
    let node = node_with_a_hung_api(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_SERVICE_NAME", "warden-under-test"),
    ]);

    let mut incident = Value::Null;
    wait_until("the api_timeout incident resolved", Duration::from_secs(60), || {
        incident = get_json(&node.url("/api/incidents?mode=api_timeout"))
            .and_then(|v| v["incidents"].as_array().and_then(|a| a.first().cloned()))
            .unwrap_or_default();
        incident["status"] == "resolved"
    });
    assert!(node.stderr().contains("incident traces exported with OTLP"), "said once at start: {}", node.stderr());
    let id = incident["id"].as_u64().unwrap();
    let trace_id = incident["trace_id"].as_str().unwrap_or_else(|| panic!("the incident names its trace: {incident}"));

    // The root is sent when the incident ends; the batch goes within a second of it.
    let mut of_trace = Vec::new();
    wait_until("the incident's root span exported", Duration::from_secs(30), || {
        of_trace = spans(&rx).into_iter().filter(|s| s.trace == trace_id).collect();
        of_trace.iter().any(|s| s.name == "incident")
    });
    let names: Vec<&str> = of_trace.iter().map(|s| s.name.as_str()).collect();
    let root = of_trace.iter().find(|s| s.name == "incident").unwrap();
    assert_eq!(root.parent, "", "the incident span is the root: {root:?}");
    assert_eq!(root.attributes["warden.incident.id"], id.to_string(), "{root:?}");
    assert_eq!(root.attributes["warden.failure_mode"], "api_timeout", "{root:?}");
    assert_eq!(root.attributes["warden.service"], "api", "{root:?}");
    assert_eq!(root.attributes["warden.outcome"], "resolved", "{root:?}");
    assert_eq!(root.service, "warden-under-test", "OTEL_SERVICE_NAME honoured");
    assert_eq!(incident["trace"], format!("00-{trace_id}-{}-01", root.id), "{incident}");

    // Each phase is a child of the root, in this one trace.
    for phase in ["detect", "diagnose", "decide", "remediate", "verify"] {
        let found: Vec<&Span> = of_trace.iter().filter(|s| s.name == phase).collect();
        assert!(!found.is_empty(), "no `{phase}` span in the trace: {names:?}");
        for s in found {
            assert_eq!(s.parent, root.id, "`{phase}` hangs off the incident: {s:?}");
        }
    }
    let decisions: Vec<&str> =
        of_trace.iter().filter(|s| s.name == "decide").map(|s| s.attributes["warden.next"].as_str()).collect();
    assert!(decisions.contains(&"run") && decisions.contains(&"resolved"), "{decisions:?}");
    let diagnose = of_trace.iter().find(|s| s.name == "diagnose").unwrap();
    assert_eq!(diagnose.attributes["warden.cause"], "hung", "{diagnose:?}");
    assert!(diagnose.attributes["warden.plan"].starts_with("restart_hung_service"), "{diagnose:?}");

    // The run's steps hang off `remediate`, and the governance decision off its step.
    let remediate = of_trace.iter().find(|s| s.name == "remediate").unwrap();
    assert_eq!(remediate.attributes["warden.incident.id"], id.to_string());
    assert_eq!(remediate.attributes["warden.playbook"], "restart_hung_service");
    let steps: Vec<&Span> = of_trace.iter().filter(|s| s.name == "step").collect();
    assert!(!steps.is_empty(), "{names:?}");
    assert!(steps.iter().all(|s| s.parent == remediate.id), "{steps:?}");
    let permits: Vec<&Span> = of_trace.iter().filter(|s| s.name == "permit").collect();
    assert!(
        permits.iter().any(|p| p.attributes["warden.decision"] == "granted" && steps.iter().any(|s| s.id == p.parent)),
        "a granted permit under a step: {permits:?}"
    );
    // Nothing of the trace is orphaned: every parent is in it.
    for s in &of_trace {
        assert!(s.parent.is_empty() || of_trace.iter().any(|p| p.id == s.parent), "orphan {s:?}");
    }
}

#[test]
fn test_a_collector_that_is_down_does_not_hold_up_a_repair() {
    let closed = free_port();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let node =
        node_with_a_hung_api(&[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    wait_until("the api_timeout incident resolved", Duration::from_secs(60), || {
        get_json(&node.url("/api/incidents?mode=api_timeout"))
            .and_then(|v| v["incidents"].as_array().and_then(|a| a.first().cloned()))
            .is_some_and(|i| i["status"] == "resolved")
    });
    // The spans it could not send are not lost in silence.
    wait_until("the failed export in the log", Duration::from_secs(30), || node.stderr().contains("ExportError"));
}

#[test]
fn test_export_speaks_protobuf_by_default_and_an_https_endpoint_is_refused_at_start() {
    let rx = Receiver::start(0);
    let endpoint = format!("http://{}", rx.addr);
    let _exporting =
        node_with_a_hung_api(&[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    wait_until("a protobuf export request", Duration::from_secs(60), || {
        rx.heads()
            .iter()
            .any(|h| h.starts_with("post /v1/traces ") && h.contains("content-type: application/x-protobuf"))
    });

    let ports = Ports::fresh();
    let tls = Node::start_with_env(
        &default_config_on(ports),
        ports,
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.invalid:4318")],
    );
    tls.wait_ready();
    let log = tls.stderr();
    assert!(
        log.contains("traces are not exported")
            && log.contains("OTEL_EXPORTER_OTLP_ENDPOINT=https://collector.invalid:4318"),
        "the refusal names the variable and its value: {log}"
    );
}
