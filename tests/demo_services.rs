//! Integration tests for `warden demo db|model|api`: each test starts the real binary on free
//! loopback ports, waits with bounded polls, and kills its children when it ends.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const START: Duration = Duration::from_secs(10);

/// A loopback port the OS just handed out (and we released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn warden(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(args).kill_on_drop(true).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// Polls `pred` every 20 ms until it holds; panics naming `what` after `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut pred: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a child to exit (bounded) and returns its status.
async fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    tokio::time::timeout(START, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not exit within {START:?}"))
        .unwrap()
}

/// Runs a command to completion (bounded) and returns its exit code and stderr.
async fn run_to_exit(mut cmd: Command, what: &str) -> (Option<i32>, String) {
    cmd.stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let out = tokio::time::timeout(START, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not exit within {START:?}"))
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn signal(child: &Child, sig: Signal) {
    let pid = child.id().expect("child still running");
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap()
}

/// Sends request lines over one db connection and returns the reply lines.
async fn db_session(port: u16, lines: &[&str]) -> std::io::Result<Vec<String>> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut replies = Vec::new();
    for line in lines {
        write.write_all(format!("{line}\n").as_bytes()).await?;
        let mut reply = String::new();
        read.read_line(&mut reply).await?;
        replies.push(reply.trim_end().to_owned());
    }
    Ok(replies)
}

fn db_args(port: u16, dir: &Path, password: Option<&Path>) -> Command {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["demo", "db", "--listen", &listen, "--data-dir", dir.to_str().unwrap()];
    if let Some(p) = password {
        args.extend(["--password-file", p.to_str().unwrap()]);
    }
    warden(&args)
}

async fn start_db(port: u16, dir: &Path, password: Option<&Path>) -> Child {
    let child = db_args(port, dir, password).spawn().unwrap();
    wait_until("db answers PING", START, || async move {
        matches!(db_session(port, &["PING"]).await, Ok(r) if r == ["PONG"])
    })
    .await;
    child
}

async fn start_model(port: u16) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let child = warden(&["demo", "model", "--listen", &listen]).spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/version");
    let client = http();
    wait_until("model answers /api/version", START, || {
        let req = client.get(&url).send();
        async move { req.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    child
}

/// A full demo node (db with password, model, api) in a temporary directory.
struct Node {
    dir: tempfile::TempDir,
    db_port: u16,
    api_port: u16,
    db: Child,
    _model: Child,
    _api: Child,
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("credentials"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"name":"test"}"#).unwrap();
        let (db_port, model_port, api_port) = (free_port(), free_port(), free_port());
        let password = dir.path().join("password");
        let db = start_db(db_port, &dir.path().join("data"), Some(&password)).await;
        let model = start_model(model_port).await;
        let api = Self::api_command(dir.path(), db_port, model_port, api_port).spawn().unwrap();
        let url = format!("http://127.0.0.1:{api_port}/");
        let client = http();
        wait_until("api answers GET /", START, || {
            let req = client.get(&url).send();
            async move { req.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        Node { dir, db_port, api_port, db, _model: model, _api: api }
    }

    fn api_command(dir: &Path, db_port: u16, model_port: u16, api_port: u16) -> Command {
        warden(&[
            "demo",
            "api",
            "--listen",
            &format!("127.0.0.1:{api_port}"),
            "--db",
            &format!("127.0.0.1:{db_port}"),
            "--model-url",
            &format!("http://127.0.0.1:{model_port}"),
            "--config",
            dir.join("config.json").to_str().unwrap(),
            "--credentials",
            dir.join("credentials").to_str().unwrap(),
        ])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    async fn health(&self) -> (u16, Value) {
        let resp = http().get(self.url("/health")).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Polls /health until it answers 503, then returns the body.
    async fn wait_unhealthy(&self) -> Value {
        wait_until("/health answers 503", START, || async { self.health().await.0 == 503 }).await;
        let (status, body) = self.health().await;
        assert_eq!(status, 503, "health still failing: {body}");
        body
    }
}

fn check<'a>(body: &'a Value, name: &str) -> &'a str {
    body["checks"][name].as_str().unwrap_or_else(|| panic!("no checks.{name} in {body}"))
}

// --- db ---

#[tokio::test]
async fn test_db_set_get_persists_across_restart() {
    // Acknowledged writes survive both a graceful stop and a SIGKILL.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut db = start_db(port, dir.path(), None).await;
    let r = db_session(port, &["SET greeting hello world", "GET greeting"]).await.unwrap();
    assert_eq!(r, ["OK", "VALUE hello world"]);
    signal(&db, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut db, "db").await.code(), Some(0), "SIGTERM is a clean exit");

    let mut db = start_db(port, dir.path(), None).await;
    let r = db_session(port, &["GET greeting", "SET k2 v2", "DEL greeting", "CHECK"]).await.unwrap();
    assert_eq!(r, ["VALUE hello world", "OK", "OK", "OK 3 records"]);
    db.kill().await.unwrap();

    let _db = start_db(port, dir.path(), None).await;
    let r = db_session(port, &["GET greeting", "GET k2"]).await.unwrap();
    assert_eq!(r, ["NOT_FOUND", "VALUE v2"], "state after SIGKILL replays from the file");
}

#[tokio::test]
async fn test_db_flipped_byte_exits_with_code_3() {
    // A single flipped byte in the data file is detected at start-up: exit 3 with the offset.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut db = start_db(port, dir.path(), None).await;
    db_session(port, &["SET a 1", "SET b 2", "SET c 3"]).await.unwrap();
    signal(&db, Signal::SIGTERM);
    wait_exit(&mut db, "db").await;

    let file = dir.path().join("data.log");
    let mut bytes = std::fs::read(&file).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes[second + 66] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();

    let (code, stderr) = run_to_exit(db_args(port, dir.path(), None), "corrupt db").await;
    assert_eq!(code, Some(3), "corrupt data exits 3; stderr: {stderr}");
    assert!(stderr.contains(&format!("corrupt at offset {second}")), "stderr names the record offset: {stderr}");
}

#[tokio::test]
async fn test_db_check_reports_corruption_while_running() {
    // CHECK re-verifies the file on disk, so corruption under a live db is visible.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _db = start_db(port, dir.path(), None).await;
    db_session(port, &["SET a 1"]).await.unwrap();
    let file = dir.path().join("data.log");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let r = db_session(port, &["CHECK"]).await.unwrap();
    assert!(r[0].starts_with("ERR corrupt at offset 0"), "got {r:?}");
}

#[tokio::test]
async fn test_db_second_instance_on_same_dir_fails_locked() {
    // The data dir is flock'ed: a second db exits non-zero naming the holder's pid.
    let dir = tempfile::tempdir().unwrap();
    let db = start_db(free_port(), dir.path(), None).await;
    let (code, stderr) = run_to_exit(db_args(free_port(), dir.path(), None), "second db").await;
    assert_eq!(code, Some(75), "locked dir exits 75; stderr: {stderr}");
    let pid = db.id().unwrap();
    assert!(stderr.contains(&format!("is locked by pid {pid}")), "stderr names the holder: {stderr}");
}

#[tokio::test]
async fn test_db_auth_required_with_password_file() {
    // With a password file, only PING and AUTH work before a successful AUTH.
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "  hunter2\n").unwrap();
    let port = free_port();
    let _db = start_db(port, &dir.path().join("data"), Some(&password)).await;
    let r = db_session(port, &["PING", "SET a 1", "CHECK", "AUTH wrong", "GET a"]).await.unwrap();
    assert_eq!(r, ["PONG", "ERR auth required", "ERR auth required", "ERR auth", "ERR auth required"]);
    let r = db_session(port, &["AUTH hunter2", "SET a 1", "GET a"]).await.unwrap();
    assert_eq!(r, ["OK", "OK", "VALUE 1"]);
    let r = db_session(port, &["GET a"]).await.unwrap();
    assert_eq!(r, ["ERR auth required"], "auth is per connection");
}

#[tokio::test]
async fn test_db_port_in_use_exits_with_code_2() {
    // A bind failure is a start-up error with exit code 2 and a one-line reason.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_to_exit(db_args(port, dir.path(), None), "db on busy port").await;
    assert_eq!(code, Some(2), "bind failure exits 2; stderr: {stderr}");
    assert!(stderr.contains("cannot listen on"), "stderr: {stderr}");
    assert!(stderr.to_lowercase().contains("in use"), "stderr: {stderr}");
}

// --- model ---

#[tokio::test]
async fn test_model_version_and_tags_have_ollama_shapes() {
    // /api/version and /api/tags answer what an Ollama client parses.
    let port = free_port();
    let _model = start_model(port).await;
    let client = http();
    let base = format!("http://127.0.0.1:{port}");
    let v: Value = client.get(format!("{base}/api/version")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"version": "0.5.0-warden-demo"}));

    let tags: Value = client.get(format!("{base}/api/tags")).send().await.unwrap().json().await.unwrap();
    let m = &tags["models"][0];
    assert_eq!(m["name"], "demo:latest", "tags: {tags}");
    assert_eq!(m["model"], "demo:latest");
    assert!(m["size"].as_u64().is_some_and(|s| s > 0), "size: {m}");
    let digest = m["digest"].as_str().unwrap();
    assert!(digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()), "digest: {digest}");
    let modified = m["modified_at"].as_str().unwrap();
    assert!(modified.len() >= 20 && &modified[4..5] == "-" && &modified[10..11] == "T", "modified_at: {modified}");
    assert!(m["details"].is_object(), "details: {m}");
}

#[tokio::test]
async fn test_model_generate_non_streaming_returns_one_object() {
    // stream:false answers one JSON object with the whole response and done:true.
    let port = free_port();
    let _model = start_model(port).await;
    let resp = http()
        .post(format!("http://127.0.0.1:{port}/api/generate"))
        .json(&json!({"model": "demo", "prompt": "why is the sky blue", "stream": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "demo:latest");
    assert_eq!(v["done"], true);
    assert_eq!(v["response"], "why is the sky blue");
    assert!(v["created_at"].is_string() && v["total_duration"].is_u64(), "{v}");
}

#[tokio::test]
async fn test_model_generate_streams_ndjson_by_default() {
    // Without stream (Ollama's default) and with stream:true: NDJSON chunks, last one done:true.
    let port = free_port();
    let _model = start_model(port).await;
    for body in [
        json!({"model": "demo:latest", "prompt": "one two three"}),
        json!({"model": "demo:latest", "prompt": "one two three", "stream": true}),
    ] {
        let resp = http().post(format!("http://127.0.0.1:{port}/api/generate")).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(ctype, "application/x-ndjson");
        let text = resp.text().await.unwrap();
        let chunks: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(chunks.len() >= 2, "several chunks: {text}");
        let (last, parts) = chunks.split_last().unwrap();
        assert_eq!(last["done"], true, "final chunk: {last}");
        assert!(parts.iter().all(|c| c["done"] == false && c["model"] == "demo:latest"));
        let joined: String = chunks.iter().map(|c| c["response"].as_str().unwrap()).collect();
        assert_eq!(joined, "one two three");
    }
}

#[tokio::test]
async fn test_model_rejects_unknown_model_and_bad_json() {
    // Unknown model → 404 and bad JSON → 400, both with an {"error"} body.
    let port = free_port();
    let _model = start_model(port).await;
    let url = format!("http://127.0.0.1:{port}/api/generate");
    let resp = http().post(&url).json(&json!({"model": "x", "prompt": "hi"})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"error": "model 'x' not found"}));
    let resp = http().post(&url).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.json::<Value>().await.unwrap()["error"].is_string());
}

// --- api ---

#[tokio::test]
async fn test_api_health_ok_when_all_up() {
    // All four checks pass → 200 with every check "ok", answered well under 100 ms.
    let node = Node::start().await;
    let (status, body) = node.health().await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(
        body,
        json!({"status": "ok", "checks": {"db": "ok", "model": "ok", "config": "ok", "credentials": "ok"}})
    );
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        node.health().await;
        best = best.min(t.elapsed());
    }
    assert!(best < Duration::from_millis(100), "health took {best:?}");
}

#[tokio::test]
async fn test_api_health_503_names_db_when_db_killed() {
    // A dead db fails only the db check.
    let mut node = Node::start().await;
    node.db.kill().await.unwrap();
    let body = node.wait_unhealthy().await;
    assert!(check(&body, "db").starts_with("unreachable"), "body: {body}");
    assert_eq!(body["status"], "fail");
    for name in ["model", "config", "credentials"] {
        assert_eq!(check(&body, name), "ok", "body: {body}");
    }
}

#[tokio::test]
async fn test_api_health_503_names_db_when_db_hung() {
    // A SIGSTOPped db is caught by the per-check timeout, and /health still answers fast.
    let node = Node::start().await;
    signal(&node.db, Signal::SIGSTOP);
    let t = Instant::now();
    let (status, body) = node.health().await;
    let took = t.elapsed();
    signal(&node.db, Signal::SIGCONT);
    assert_eq!(status, 503, "body: {body}");
    assert!(check(&body, "db").starts_with("timeout"), "body: {body}");
    assert!(took < Duration::from_secs(1), "health took {took:?}");
}

#[tokio::test]
async fn test_api_health_503_names_config_when_deleted() {
    // Deleting the config under a running api fails the config check; the api keeps serving.
    let node = Node::start().await;
    std::fs::remove_file(node.path("config.json")).unwrap();
    let body = node.wait_unhealthy().await;
    assert!(check(&body, "config").starts_with("missing"), "body: {body}");
    assert_eq!(check(&body, "db"), "ok", "body: {body}");
}

#[tokio::test]
async fn test_api_health_503_names_credentials_when_rejected() {
    // Wrong credentials are told apart from a db outage: credentials fails, db stays ok.
    let node = Node::start().await;
    std::fs::write(node.path("credentials"), "wrong\n").unwrap();
    let body = node.wait_unhealthy().await;
    assert_eq!(check(&body, "credentials"), "rejected by db", "body: {body}");
    assert_eq!(check(&body, "db"), "ok", "body: {body}");

    std::fs::write(node.path("credentials"), "").unwrap();
    let (status, body) = node.health().await;
    assert_eq!(status, 503);
    assert_eq!(check(&body, "credentials"), "empty", "body: {body}");

    std::fs::write(node.path("credentials"), "s3cret").unwrap();
    assert_eq!(node.health().await.0, 200, "fixing the file heals without restart");
}

#[tokio::test]
async fn test_api_items_and_generate_proxy_to_db_and_model() {
    // Real traffic: items round-trip through the db, generate through the model.
    let node = Node::start().await;
    let client = http();
    let resp = client.put(node.url("/api/items/color")).json(&json!({"value": "deep blue"})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = client.get(node.url("/api/items/color")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"key": "color", "value": "deep blue"}));
    let r = db_session(node.db_port, &["AUTH s3cret", "GET color"]).await.unwrap();
    assert_eq!(r[1], "VALUE deep blue", "stored in the db");
    assert_eq!(client.get(node.url("/api/items/none")).send().await.unwrap().status(), 404);

    let resp = client
        .post(node.url("/api/generate"))
        .json(&json!({"model": "demo", "prompt": "hello there", "stream": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["response"], "hello there");
}

#[tokio::test]
async fn test_api_exits_78_on_missing_config() {
    // A missing config at start-up is a permanent fault: exit 78 (EX_CONFIG), no serving.
    let dir = tempfile::tempdir().unwrap();
    let cmd = Node::api_command(dir.path(), free_port(), free_port(), free_port());
    let (code, stderr) = run_to_exit(cmd, "api without config").await;
    assert_eq!(code, Some(78), "stderr: {stderr}");
    assert!(stderr.contains("config.json"), "stderr names the file: {stderr}");
}

#[tokio::test]
async fn test_api_exits_78_on_invalid_config() {
    // A config that is not a JSON object is rejected the same way.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "[1, 2").unwrap();
    let cmd = Node::api_command(dir.path(), free_port(), free_port(), free_port());
    let (code, stderr) = run_to_exit(cmd, "api with bad config").await;
    assert_eq!(code, Some(78), "stderr: {stderr}");
}

#[tokio::test]
async fn test_model_delete_unlists_and_pull_lists_again() {
    // Ollama's /api/delete removes a model from /api/tags (404 when absent); /api/pull adds it.
    let port = free_port();
    let _model = start_model(port).await;
    let client = http();
    let base = format!("http://127.0.0.1:{port}");
    let names = || async {
        let tags: Value = client.get(format!("{base}/api/tags")).send().await.unwrap().json().await.unwrap();
        tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let del = client.delete(format!("{base}/api/delete")).body(r#"{"model":"demo"}"#).send().await.unwrap();
    assert_eq!(del.status().as_u16(), 200);
    assert!(names().await.is_empty());
    let again = client.delete(format!("{base}/api/delete")).body(r#"{"model":"demo"}"#).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 404);
    let err: Value = again.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("not found"), "{err}");
    let gen_ = client.post(format!("{base}/api/generate")).body(r#"{"model":"demo","prompt":"hi"}"#).send().await;
    assert_eq!(gen_.unwrap().status().as_u16(), 404, "a deleted model cannot generate");
    let pull = client.post(format!("{base}/api/pull")).body(r#"{"model":"demo"}"#).send().await.unwrap();
    let progress = pull.text().await.unwrap();
    assert_eq!(progress.lines().last(), Some(r#"{"status":"success"}"#), "{progress}");
    assert_eq!(names().await, vec!["demo:latest"]);
}
