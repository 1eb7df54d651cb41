//! `warden demo api`: the default node's HTTP backend.
//!
//! Its `/health` is what the guardian probes, so it must tell the failure modes apart: it runs
//! four checks concurrently, each bounded by [`CHECK_TIMEOUT`], and answers 200 when all pass or
//! 503 with the failing checks' reasons:
//!
//! ```json
//! {"status":"ok","checks":{"db":"ok","model":"ok","config":"ok","credentials":"ok"}}
//! {"status":"fail","checks":{"db":"ok","model":"ok","config":"ok","credentials":"rejected by db"}}
//! ```
//!
//! - db: connect, `AUTH <token>`, `PING` → `PONG` (an AUTH rejection fails `credentials`);
//! - model: `GET <model-url>/api/tags` answers 200 with `{"models": [...]}`;
//! - config: the file exists and is a JSON object (re-read on every check);
//! - credentials: the file exists and is non-empty (its trimmed content is the db token).
//!
//! It also serves real traffic: `GET /`, `GET|PUT /api/items/{key}` (proxied to the db) and
//! `POST /api/generate` (proxied to the model). A missing or invalid config at start-up exits
//! with code 78; dependencies are never waited for.
//!
//! Like most clients it resolves the db's address once and keeps authenticated db
//! connections in a pool (up to [`POOL_MAX_IDLE`] idle ones; a pooled connection that fails
//! is retried once on a fresh one). SIGHUP forgets the resolved address (the next use
//! resolves it again) and closes the pooled connections; `POST /admin/pool/reset` closes the
//! pooled connections only and says how many.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::ServiceError;
use super::db;

/// Upper bound of each health check.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(100);
/// Upper bound of a proxied db request.
const DB_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle db connections kept for reuse.
pub const POOL_MAX_IDLE: usize = 8;
/// Upper bound of a proxied generation.
const MODEL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// The demo db's address (host:port).
    #[arg(long, default_value = "127.0.0.1:5433")]
    pub db: String,
    /// Base URL of the Ollama-compatible model server.
    #[arg(long, default_value = "http://127.0.0.1:11434")]
    pub model_url: String,
    /// JSON object config file; read at start (exit 78 if missing/invalid) and on each check.
    #[arg(long)]
    pub config: PathBuf,
    /// File whose trimmed content is the db token; read on each use.
    #[arg(long)]
    pub credentials: PathBuf,
}

struct AppState {
    args: ApiArgs,
    db: DbLink,
    http: reqwest::Client,
    started: Instant,
    name: Option<String>,
    healthy: AtomicBool,
}

pub async fn run(mut args: ApiArgs) -> Result<(), ServiceError> {
    let config = read_config(&args.config).map_err(|e| ServiceError::Config(format!("config file {e}")))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| ServiceError::io("cannot build http client", std::io::Error::other(e)))?;
    args.model_url = args.model_url.trim_end_matches('/').to_owned();
    let listen = args.listen;
    let state = Arc::new(AppState {
        name: config.get("name").and_then(Value::as_str).map(str::to_owned),
        db: DbLink::new(args.db.clone()),
        args,
        http,
        started: Instant::now(),
        healthy: AtomicBool::new(true),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/api/items/{key}", get(get_item).put(put_item))
        .route("/api/generate", post(generate))
        .route("/admin/pool/reset", post(reset_pool))
        .with_state(Arc::clone(&state));
    let listener = super::bind(listen).await?;
    tracing::info!(%listen, "demo api ready");
    let reload = move || {
        let closed = state.db.reset(true);
        tracing::info!(closed, "sighup received: the db address will be resolved again, pooled connections closed");
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(super::shutdown_signal_with(reload))
        .await
        .map_err(|e| ServiceError::io("api server failed", e))?;
    tracing::info!("demo api stopped");
    Ok(())
}

/// Reads the config file as a JSON object; the error names the file and the reason.
fn read_config(path: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("missing: {}", path.display()),
        _ => format!("unreadable: {}: {e}", path.display()),
    })?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("invalid: {}: not a JSON object", path.display())),
        Err(e) => Err(format!("invalid: {}: {e}", path.display())),
    }
}

/// Reads the db token: the credentials file's trimmed content.
fn read_credentials(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("missing: {}", path.display()),
        _ => format!("unreadable: {e}"),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err("empty".into());
    }
    if token.chars().any(char::is_control) {
        return Err("invalid: contains control characters".into());
    }
    Ok(token.to_owned())
}

/// The deepest cause of an error, which is the readable one for reqwest and io errors.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn bounded<T>(fut: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(CHECK_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(format!("timeout after {}ms", CHECK_TIMEOUT.as_millis())))
}

enum DbAuth {
    Accepted,
    Rejected,
    NotTried,
}

/// The db as this process reaches it: its address, resolved once, and a pool of
/// authenticated connections.
struct DbLink {
    address: String,
    resolved: std::sync::Mutex<Option<Vec<SocketAddr>>>,
    idle: std::sync::Mutex<Vec<db::Client>>,
    /// Bumped by a reset: a connection in use during it is not put back afterwards.
    generation: std::sync::atomic::AtomicU64,
}

impl DbLink {
    fn new(address: String) -> Self {
        Self {
            address,
            resolved: std::sync::Mutex::new(None),
            idle: std::sync::Mutex::new(Vec::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The resolved addresses: cached after the first successful lookup.
    async fn addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Some(a) = self.resolved.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(a);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host(&self.address).await?.collect();
        tracing::info!(address = self.address, resolved = ?found, "resolved the db address");
        *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
        Ok(found)
    }

    async fn connect(&self) -> std::io::Result<db::Client> {
        db::Client::connect(&self.addrs().await?).await
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn take_idle(&self) -> Option<(db::Client, u64)> {
        let generation = self.generation();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop().map(|c| (c, generation))
    }

    /// Keeps an authenticated connection taken or made in `generation` for reuse, unless
    /// the pool was reset since or is full.
    fn put_back(&self, conn: db::Client, generation: u64) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_MAX_IDLE && generation == self.generation() {
            idle.push(conn);
        }
    }

    /// Closes the pooled connections (and with `resolve_again`, forgets the address);
    /// how many were closed.
    fn reset(&self, resolve_again: bool) -> usize {
        if resolve_again {
            *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner())).len()
    }
}

async fn reset_pool(State(state): State<Arc<AppState>>) -> Json<Value> {
    let closed = state.db.reset(false);
    tracing::info!(closed, "db connection pool reset");
    Json(json!({ "closed": closed }))
}

async fn check_db(link: &DbLink, token: Option<&str>) -> Result<DbAuth, String> {
    let mut conn = link.connect().await.map_err(|e| format!("unreachable: {e}"))?;
    let auth = match token {
        None => DbAuth::NotTried,
        Some(token) => match conn.request(&format!("AUTH {token}")).await {
            Ok(r) if r == "OK" => DbAuth::Accepted,
            Ok(r) if r == "ERR auth" => DbAuth::Rejected,
            Ok(r) => return Err(format!("unexpected reply to AUTH: {r}")),
            Err(e) => return Err(format!("unreachable: {e}")),
        },
    };
    match conn.request("PING").await {
        Ok(r) if r == "PONG" => Ok(auth),
        Ok(r) => Err(format!("unexpected reply to PING: {r}")),
        Err(e) => Err(format!("unreachable: {e}")),
    }
}

async fn check_model(state: &AppState) -> Result<(), String> {
    let url = format!("{}/api/tags", state.args.model_url);
    let resp = state.http.get(&url).send().await.map_err(|e| format!("unreachable: {}", root_cause(&e)))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("/api/tags answered {}", resp.status()));
    }
    match resp.json::<Value>().await {
        Ok(v) if v.get("models").is_some_and(Value::is_array) => Ok(()),
        _ => Err("/api/tags answer is not {\"models\": [...]}".into()),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let credentials = read_credentials(&state.args.credentials);
    let token = credentials.as_deref().ok();
    let (db, model) = tokio::join!(bounded(check_db(&state.db, token)), bounded(check_model(&state)),);
    let config = read_config(&state.args.config).map(|_| ());
    let credentials = match (&credentials, &db) {
        (Err(e), _) => Err(e.clone()),
        (Ok(_), Ok(DbAuth::Rejected)) => Err("rejected by db".to_owned()),
        (Ok(_), _) => Ok(()),
    };
    let checks = [("db", db.map(|_| ())), ("model", model), ("config", config), ("credentials", credentials)];
    let healthy = checks.iter().all(|(_, r)| r.is_ok());
    let body: Map<String, Value> = checks
        .into_iter()
        .map(|(name, r)| (name.to_owned(), Value::from(r.err().unwrap_or_else(|| "ok".into()))))
        .collect();
    if state.healthy.swap(healthy, Ordering::Relaxed) != healthy {
        let checks = Value::Object(body.clone());
        tracing::warn!(healthy, %checks, "health changed");
    }
    let (status, word) = if healthy { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "fail") };
    (status, Json(json!({ "status": word, "checks": body }))).into_response()
}

async fn index(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "service": "warden-demo-api",
        "name": state.name,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "db": state.args.db,
        "model_url": state.args.model_url,
        "pooled_db_connections": state.db.idle.lock().unwrap_or_else(|p| p.into_inner()).len(),
        "endpoints": ["/health", "/api/items/{key}", "/api/generate", "/admin/pool/reset"],
    }))
}

/// Why a proxied request failed; each variant has one HTTP status.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("db rejected the credentials")]
    DbAuth,
    #[error("db unavailable: {0}")]
    DbUnavailable(String),
    #[error("model unavailable: {0}")]
    ModelUnavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::DbAuth | ApiError::DbUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ModelUnavailable(_) => StatusCode::BAD_GATEWAY,
        };
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Sends one request over a pooled connection, or a fresh authenticated one; a pooled
/// connection that fails (the db restarted since) is dropped and the request is retried once
/// on a fresh connection.
async fn db_request(state: &AppState, line: &str) -> Result<String, ApiError> {
    let call = async {
        if let Some((mut conn, generation)) = state.db.take_idle()
            && let Ok(reply) = conn.request(line).await
        {
            state.db.put_back(conn, generation);
            return Ok(Ok(reply));
        }
        let generation = state.db.generation();
        let mut conn = state.db.connect().await?;
        let authenticated = match read_credentials(&state.args.credentials) {
            Ok(token) if conn.request(&format!("AUTH {token}")).await? != "OK" => return Ok(Err(ApiError::DbAuth)),
            Ok(_) => true,
            Err(_) => false,
        };
        let reply = conn.request(line).await?;
        // Only an authenticated connection is worth keeping: the pooled path never
        // authenticates again.
        if authenticated {
            state.db.put_back(conn, generation);
        }
        Ok::<_, std::io::Error>(Ok(reply))
    };
    match tokio::time::timeout(DB_TIMEOUT, call).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => Err(ApiError::DbUnavailable(e.to_string())),
        Err(_) => Err(ApiError::DbUnavailable("timeout".into())),
    }
}

fn valid_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 256 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::BadRequest("key must be 1..=256 chars without whitespace".into()));
    }
    Ok(())
}

async fn get_item(State(state): State<Arc<AppState>>, UrlPath(key): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    valid_key(&key)?;
    let reply = db_request(&state, &format!("GET {key}")).await?;
    match reply.strip_prefix("VALUE ") {
        Some(value) => Ok(Json(json!({ "key": key, "value": value }))),
        None if reply == "NOT_FOUND" => Err(ApiError::NotFound),
        None => Err(ApiError::DbUnavailable(format!("unexpected reply: {reply}"))),
    }
}

/// Stores the body: either `{"value": "..."}` or the raw UTF-8 text.
async fn put_item(
    State(state): State<Arc<AppState>>,
    UrlPath(key): UrlPath<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    valid_key(&key)?;
    let value = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(obj)) => match obj.get("value") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ApiError::BadRequest("expected {\"value\": string}".into())),
        },
        _ => String::from_utf8(body.to_vec()).map_err(|_| ApiError::BadRequest("body is not utf-8".into()))?,
    };
    if value.contains(['\n', '\r']) {
        return Err(ApiError::BadRequest("value must be a single line".into()));
    }
    let reply = db_request(&state, &format!("SET {key} {value}")).await?;
    if reply != "OK" {
        return Err(ApiError::DbUnavailable(format!("unexpected reply: {reply}")));
    }
    Ok(Json(json!({ "key": key, "value": value })))
}

/// Forwards the request body to the model server and relays its answer as is.
async fn generate(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let url = format!("{}/api/generate", state.args.model_url);
    let unavailable = |e: reqwest::Error| ApiError::ModelUnavailable(root_cause(&e));
    let resp = state
        .http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(MODEL_TIMEOUT)
        .send()
        .await
        .map_err(unavailable)?;
    let status = resp.status();
    let content_type =
        resp.headers().get(header::CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static("application/json"));
    let bytes = resp.bytes().await.map_err(unavailable)?;
    Ok((status, [(header::CONTENT_TYPE, content_type)], bytes).into_response())
}
