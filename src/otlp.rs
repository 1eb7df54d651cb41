//! Trace export: OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, nothing otherwise.
//!
//! The standard variables are honoured as the OpenTelemetry SDK reads them: the protocol
//! (`http/protobuf`, the default, or `http/json`), headers, compression (`gzip`), the
//! sampler (`OTEL_TRACES_SAMPLER`), the batch processor (`OTEL_BSP_*`) and the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; the service is `warden` unless they say
//! otherwise). `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off.
//! gRPC and `https` endpoints are refused at start: the collector is expected on the node
//! (an OpenTelemetry Collector, which forwards over TLS), reached over plain HTTP.
//!
//! The exporter's requests go through warden's own reqwest client on the node's runtime
//! (the SDK's batch processor encodes on a thread of its own and waits there for the
//! answer), so a collector that is down costs a timeout on that thread, never a probe's or
//! a repair's time. A failed export is a warning in the log (the SDK's internal logs).

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;

/// The OTel default for `OTEL_EXPORTER_OTLP_TIMEOUT`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long warden's exit waits for the spans still queued to leave.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{var}={value}: the protocols built in are http/protobuf and http/json")]
    Protocol { var: &'static str, value: String },
    #[error("{var}={value}: the compressions built in are gzip and none")]
    Compression { var: &'static str, value: String },
    #[error("{var}={value}: only plain http:// endpoints are supported (run a collector on the node)")]
    Endpoint { var: &'static str, value: String },
}

/// The tracer provider while export is on; flushes what is queued when dropped.
pub struct Export {
    provider: SdkTracerProvider,
    endpoint: String,
    protocol: String,
}

impl Export {
    /// The tracer the tracing bridge and warden's incident traces use.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("warden")
    }

    /// Says once, when logging is up, where the traces go.
    pub fn announce(&self) {
        tracing::info!(endpoint = self.endpoint, protocol = self.protocol, "incident traces exported with OTLP");
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_ON_EXIT) {
            tracing::warn!(error = %e, "traces not all exported at exit");
        }
    }
}

/// The first of `vars` that is set (and not blank), with its value.
fn first_set(vars: &[&'static str]) -> Option<(&'static str, String)> {
    vars.iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()).map(|v| (*k, v.trim().to_string())))
}

/// Whether the environment asks for trace export.
pub fn wanted() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Starts export (see the module doc) and makes its provider the global one, which the
/// incident traces of warden-actors start their spans on. `rt` runs the HTTP requests.
pub fn start(rt: tokio::runtime::Handle) -> Result<Export, OtlpError> {
    if let Some((var, value)) = first_set(&["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
        && !value.to_ascii_lowercase().starts_with("http://")
    {
        return Err(OtlpError::Endpoint { var, value });
    }
    let protocol = first_set(&["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]);
    if let Some((var, value)) = &protocol
        && !matches!(value.as_str(), "http/protobuf" | "http/json")
    {
        return Err(OtlpError::Protocol { var, value: value.clone() });
    }
    if let Some((var, value)) = first_set(&["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"])
        && !matches!(value.as_str(), "gzip" | "none")
    {
        return Err(OtlpError::Compression { var, value });
    }
    let timeout = env_timeout();
    let client = RuntimeClient { http: reqwest::Client::builder().timeout(timeout).build()?, rt };
    let mut builder = SpanExporter::builder().with_http().with_http_client(client).with_timeout(timeout);
    // With JSON built in too, the crate's own default would be JSON; OTel's is protobuf.
    if protocol.is_none() {
        builder = builder.with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    }
    let exporter = builder.build()?;
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let endpoint = first_set(&["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]).map(|(_, v)| v);
    let protocol = protocol.map_or_else(|| "http/protobuf".to_string(), |(_, v)| v);
    Ok(Export { provider, endpoint: endpoint.unwrap_or_default(), protocol })
}

/// The environment's resource, named `warden` where it names no service.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let builder =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named { builder.build() } else { builder.with_service_name("warden").build() }
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds.
fn env_timeout() -> Duration {
    ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

/// An OTLP HTTP client that sends on the node's tokio runtime. The batch processor's thread
/// polls it with a plain executor: it only awaits the task's join handle, which needs no
/// reactor of its own.
#[derive(Debug)]
struct RuntimeClient {
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
}

/// OTLP responses are small; a larger one is not read whole.
const MAX_RESPONSE: usize = 4 << 20;

#[async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = self.http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body);
        let answer = self.rt.spawn(async move {
            let mut response = request.send().await?;
            let (status, headers) = (response.status(), response.headers().clone());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = answer.await??;
        let mut response = http::Response::new(Bytes::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
