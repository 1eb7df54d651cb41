//! `warden demo model`: a model server speaking the Ollama HTTP API.
//!
//! The default node needs a model server that real Ollama clients (and warden's own `ollama`
//! check) can talk to without downloading weights. It answers `GET /`, `GET /api/version`,
//! `GET /api/tags`, `POST /api/show`, `POST /api/generate`, `POST /api/pull` and
//! `DELETE /api/delete` with Ollama's JSON shapes; generation is deterministic: the response
//! echoes the prompt's words. A pull adds the model at once (there is no registry to fetch
//! from); a delete removes it from the list, as a real server's would, until a pull or a
//! restart brings it back. `stream` defaults to
//! true as in Ollama: the answer is NDJSON, one chunk per word, then a final `done: true` chunk.
//! Errors are `{"error": "..."}` with 400 (bad request) or 404 (unknown model).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ServiceError;

pub const VERSION: &str = "0.5.0-warden-demo";
/// Models the demo server lists at most (a pull past it is refused).
const MAX_MODELS: usize = 100;

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:11434")]
    pub listen: SocketAddr,
    /// Model names to serve (repeatable); a name without a tag gets `:latest`.
    #[arg(long = "model", default_value = "demo:latest")]
    pub models: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`); SIGHUP reads both
    /// files again.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

struct Catalog {
    models: std::sync::Mutex<Vec<String>>,
    modified_at: String,
}

impl Catalog {
    fn models(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, name: &str) -> Option<String> {
        let wanted = normalize(name);
        self.models().iter().find(|m| **m == wanted).cloned()
    }
}

fn normalize(name: &str) -> String {
    if name.contains(':') { name.to_owned() } else { format!("{name}:latest") }
}

pub async fn run(args: ModelArgs) -> Result<(), ServiceError> {
    let catalog = Arc::new(Catalog {
        models: std::sync::Mutex::new(args.models.iter().map(|m| normalize(m)).collect()),
        modified_at: super::rfc3339_now(),
    });
    let app = Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route("/api/version", get(|| async { Json(json!({ "version": VERSION })) }))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/generate", post(generate))
        .route("/api/pull", post(pull))
        .route("/api/delete", axum::routing::delete(delete))
        .with_state(catalog.clone());
    let listener = super::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, models = ?*catalog.models(), tls = args.tls_cert.is_some(), "demo model server ready");
    let served = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let certificate = super::tls::Certificate::load(cert, key).map_err(ServiceError::Config)?;
            let on_reload = certificate.clone();
            let reload = move || match on_reload.reload() {
                Ok(()) => tracing::info!("sighup received: certificate and key read again"),
                Err(e) => tracing::error!("sighup received: certificate not reloaded, the old one stays: {e}"),
            };
            let tls = super::tls::TlsListener { tcp: listener, certificate };
            axum::serve(tls, app).with_graceful_shutdown(super::shutdown_signal_with(reload)).await
        }
        _ => axum::serve(listener, app).with_graceful_shutdown(super::shutdown_signal()).await,
    };
    served.map_err(|e| ServiceError::io("model server failed", e))?;
    tracing::info!("demo model server stopped");
    Ok(())
}

/// Why a request was refused; every variant answers Ollama's `{"error": "..."}` shape.
#[derive(Debug, thiserror::Error)]
enum ModelError {
    #[error("{0}")]
    BadRequest(String),
    #[error("model '{0}' not found")]
    NotFound(String),
}

impl IntoResponse for ModelError {
    fn into_response(self) -> Response {
        let status = match self {
            ModelError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ModelError::NotFound(_) => StatusCode::NOT_FOUND,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Parses a JSON body ourselves so that every rejection has Ollama's `{"error"}` shape.
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ModelError> {
    serde_json::from_slice(body).map_err(|e| ModelError::BadRequest(e.to_string()))
}

fn digest(name: &str) -> String {
    Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn details() -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "demo",
        "families": ["demo"],
        "parameter_size": "1M",
        "quantization_level": "Q4_0",
    })
}

async fn tags(State(catalog): State<Arc<Catalog>>) -> Json<Value> {
    let models: Vec<Value> = catalog
        .models()
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "model": name,
                "modified_at": catalog.modified_at,
                "size": 1_048_576 + name.len() as u64,
                "digest": digest(name),
                "details": details(),
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

#[derive(Deserialize)]
struct ShowRequest {
    #[serde(alias = "name")]
    model: String,
}

async fn show(State(catalog): State<Arc<Catalog>>, body: Bytes) -> Result<Response, ModelError> {
    let req: ShowRequest = parse(&body)?;
    let name = catalog.find(&req.model).ok_or_else(|| ModelError::NotFound(req.model.clone()))?;
    Ok(Json(json!({
        "modelfile": format!("FROM {name}\n"),
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": details(),
        "model_info": { "general.architecture": "demo" },
        "modified_at": catalog.modified_at,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    stream: Option<bool>,
}

async fn generate(State(catalog): State<Arc<Catalog>>, body: Bytes) -> Result<Response, ModelError> {
    let started = Instant::now();
    let req: GenerateRequest = parse(&body)?;
    let name = catalog.find(&req.model).ok_or_else(|| ModelError::NotFound(req.model.clone()))?;
    let words: Vec<&str> = req.prompt.split_whitespace().collect();
    let created_at = super::rfc3339_now();
    let done = |response: String| {
        let total = started.elapsed().as_nanos() as u64;
        json!({
            "model": name,
            "created_at": created_at,
            "response": response,
            "done": true,
            "done_reason": if words.is_empty() { "load" } else { "stop" },
            "context": (0..words.len() as u64).collect::<Vec<_>>(),
            "total_duration": total,
            "load_duration": 0,
            "prompt_eval_count": words.len(),
            "prompt_eval_duration": total / 2,
            "eval_count": words.len(),
            "eval_duration": total / 2,
        })
    };
    if req.stream == Some(false) {
        return Ok(Json(done(words.join(" "))).into_response());
    }
    let mut body = String::new();
    for (i, word) in words.iter().enumerate() {
        let piece = if i + 1 < words.len() { format!("{word} ") } else { (*word).to_owned() };
        let chunk = json!({
            "model": name,
            "created_at": created_at,
            "response": piece,
            "done": false,
        });
        body.push_str(&chunk.to_string());
        body.push('\n');
    }
    body.push_str(&done(String::new()).to_string());
    body.push('\n');
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[derive(Deserialize)]
struct PullRequest {
    #[serde(alias = "name")]
    model: String,
    stream: Option<bool>,
}

/// Adds the model to the list (Ollama's `/api/pull`: NDJSON progress unless `stream` is
/// false, ending in `{"status": "success"}`).
async fn pull(State(catalog): State<Arc<Catalog>>, body: Bytes) -> Result<Response, ModelError> {
    let req: PullRequest = parse(&body)?;
    if req.model.trim().is_empty() {
        return Err(ModelError::BadRequest("model is required".into()));
    }
    let name = normalize(&req.model);
    {
        let mut models = catalog.models();
        if !models.contains(&name) {
            if models.len() >= MAX_MODELS {
                return Err(ModelError::BadRequest(format!("at most {MAX_MODELS} models; delete one first")));
            }
            models.push(name.clone());
        }
    }
    tracing::info!(model = name, "model pulled");
    if req.stream == Some(false) {
        return Ok(Json(json!({ "status": "success" })).into_response());
    }
    let steps = ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"];
    let body: String = steps.iter().map(|s| format!("{}\n", json!({ "status": s }))).collect();
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Removes the model from the list (Ollama's `/api/delete`: 200, or 404 when absent).
async fn delete(State(catalog): State<Arc<Catalog>>, body: Bytes) -> Result<Response, ModelError> {
    let req: ShowRequest = parse(&body)?;
    let name = normalize(&req.model);
    let mut models = catalog.models();
    let before = models.len();
    models.retain(|m| *m != name);
    if models.len() == before {
        return Err(ModelError::NotFound(req.model));
    }
    drop(models);
    tracing::info!(model = name, "model deleted");
    Ok(StatusCode::OK.into_response())
}
