//! Who is calling, and whether they may: a bearer token looked up by its hash in the token
//! book (re-read when the file changes, so `warden tokens add` takes effect at once), and a
//! role required per route: reads per the policy's `api_reads`, service actions an
//! operator, approval decisions an approver, debug routes an admin. A missing or unknown
//! token is a 401, a role too weak a 403; both JSON. The token itself is never logged or
//! kept.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use warden_core::auth::{Caller, Role, TokenBook};
use warden_core::policy::ApiReads;
use warden_core::source::Source;

/// How often the token file is looked at for changes at most.
const RECHECK: Duration = Duration::from_secs(1);

/// The token book as the server uses it.
#[derive(Clone)]
pub struct Auth {
    path: PathBuf,
    inner: Arc<Mutex<Book>>,
}

struct Book {
    book: TokenBook,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl Auth {
    pub fn new(path: PathBuf, book: TokenBook) -> Self {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Self { path, inner: Arc::new(Mutex::new(Book { book, modified, checked: Instant::now() })) }
    }

    /// The caller `token` belongs to, with the book re-read if its file changed.
    fn caller(&self, token: &str) -> Option<Caller> {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if b.checked.elapsed() >= RECHECK {
            b.checked = Instant::now();
            let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
            if modified != b.modified {
                b.modified = modified;
                match self.read() {
                    Ok(book) => {
                        tracing::info!(file = %self.path.display(), tokens = book.len(), "token book re-read");
                        b.book = book;
                    }
                    Err(e) => tracing::warn!(error = %e, "token book changed but is invalid; the old one stays"),
                }
            }
        }
        b.book.caller(token).cloned()
    }

    fn read(&self) -> anyhow::Result<TokenBook> {
        let text = std::fs::read_to_string(&self.path)?;
        let name = self.path.display().to_string();
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        Ok(TokenBook::load(&Source { name: &name, dir, text: &text })?)
    }
}

/// The caller of a request: `None` without a token; 401 for a token nobody holds or a
/// malformed header.
fn caller_of(app: &AppState, req: &Request) -> Result<Option<Caller>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
    match app.auth.caller(token) {
        Some(c) => Ok(Some(c)),
        None => Err(ApiError::Unauthorized("unknown token".into())),
    }
}

/// The role a read needs now, per the policy; `None`: open.
fn read_needs(app: &AppState) -> Option<Role> {
    match app.views.policies.get().api_reads {
        ApiReads::Open => None,
        ApiReads::Viewer => Some(Role::Viewer),
        ApiReads::Auto if app.listener_is_loopback() => None,
        ApiReads::Auto => Some(Role::Viewer),
    }
}

async fn check(app: &AppState, needed: Option<Role>, mut req: Request, next: Next) -> Response {
    let caller = match caller_of(app, &req) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Some(needed) = needed {
        match &caller {
            None => {
                return ApiError::Unauthorized(format!("this needs a token with the {} role", needed.as_str()))
                    .into_response();
            }
            Some(c) if !c.role.allows(needed) => {
                return ApiError::Forbidden(format!(
                    "`{}` is a {}; this needs {}",
                    c.name,
                    c.role.as_str(),
                    needed.as_str()
                ))
                .into_response();
            }
            Some(_) => {}
        }
    }
    if let Some(c) = caller {
        req.extensions_mut().insert(c);
    }
    next.run(req).await
}

/// Middleware for reads.
pub async fn reads(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let needed = read_needs(&app);
    check(&app, needed, req, next).await
}

/// Middleware for routes that need `role`.
pub async fn needs(State((app, role)): State<(AppState, Role)>, req: Request, next: Next) -> Response {
    check(&app, Some(role), req, next).await
}
