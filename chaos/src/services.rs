//! The demo node's services as the harness starts them by hand (for a peer supervisor and
//! for the api's own start time): fixed loopback ports, the same as the embedded default node
//! `warden run` starts, and the files the api needs (config, credentials, db password).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::BenchError;
use crate::procs::Group;

pub const API_PORT: u16 = 8000;
pub const DB_PORT: u16 = 5433;
pub const MODEL_PORT: u16 = 11434;
pub const WARDEN_PORT: u16 = 7700;

/// Every port the embedded default node uses.
pub const NODE_PORTS: [u16; 4] = [WARDEN_PORT, API_PORT, DB_PORT, MODEL_PORT];

pub fn api_health_url() -> String {
    format!("http://127.0.0.1:{API_PORT}/health")
}

pub fn warden_health_url() -> String {
    format!("http://127.0.0.1:{WARDEN_PORT}/healthz")
}

/// The loopback ports of the demo services: the embedded default node's, or a test's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoPorts {
    pub api: u16,
    pub db: u16,
    pub model: u16,
}

impl DemoPorts {
    pub const DEFAULT: DemoPorts = DemoPorts { api: API_PORT, db: DB_PORT, model: MODEL_PORT };

    /// The ports of a node config's `api`, `db` and `model` services (their first port
    /// each), when it has all three: the demo node, on whatever ports it was given.
    pub fn of(config: &warden_core::config::NodeConfig) -> Option<Self> {
        let port = |name: &str| config.services.iter().find(|s| s.name.as_str() == name)?.ports.first().copied();
        Some(Self { api: port("api")?, db: port("db")?, model: port("model")? })
    }

    pub fn all(self) -> [u16; 3] {
        [self.api, self.db, self.model]
    }

    pub fn api_health_url(self) -> String {
        format!("http://127.0.0.1:{}/health", self.api)
    }

    pub fn model_url(self) -> String {
        format!("http://127.0.0.1:{}/api/tags", self.model)
    }
}

/// The files of a hand-started demo node, all under one private directory.
pub struct DemoFiles {
    pub config: PathBuf,
    pub credentials: PathBuf,
    pub db_dir: PathBuf,
    pub dir: PathBuf,
    pub ports: DemoPorts,
}

impl DemoFiles {
    /// Writes `config.json` (`{"name":"demo-api"}`), `credentials` (a token, mode 0600) and
    /// creates the db data directory.
    pub fn create(dir: &Path) -> Result<Self, BenchError> {
        Self::create_on(dir, DemoPorts::DEFAULT)
    }

    /// As [`DemoFiles::create`], for services on `ports`.
    pub fn create_on(dir: &Path, ports: DemoPorts) -> Result<Self, BenchError> {
        let files = Self {
            config: dir.join("config.json"),
            credentials: dir.join("credentials"),
            db_dir: dir.join("db"),
            dir: dir.to_path_buf(),
            ports,
        };
        std::fs::write(&files.config, "{\"name\":\"demo-api\"}\n").map_err(BenchError::io("writing the api config"))?;
        let token = format!("bench-{:x}", std::process::id());
        write_private(&files.credentials, &format!("{token}\n"))?;
        std::fs::create_dir_all(&files.db_dir).map_err(BenchError::io("creating the db dir"))?;
        Ok(files)
    }

    /// `demo db` arguments.
    pub fn db_args(&self) -> Vec<String> {
        vec![
            "demo".into(),
            "db".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.ports.db),
            "--data-dir".into(),
            path_arg(&self.db_dir),
            "--password-file".into(),
            path_arg(&self.credentials),
        ]
    }

    /// `demo model` arguments.
    pub fn model_args(&self) -> Vec<String> {
        vec!["demo".into(), "model".into(), "--listen".into(), format!("127.0.0.1:{}", self.ports.model)]
    }

    /// `demo api` arguments.
    pub fn api_args(&self) -> Vec<String> {
        vec![
            "demo".into(),
            "api".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.ports.api),
            "--db".into(),
            format!("127.0.0.1:{}", self.ports.db),
            "--model-url".into(),
            format!("http://127.0.0.1:{}", self.ports.model),
            "--config".into(),
            path_arg(&self.config),
            "--credentials".into(),
            path_arg(&self.credentials),
        ]
    }

    /// Starts `demo db` and `demo model` as groups of ours and waits for their ports.
    pub async fn start_dependencies(&self, exe: &Path) -> Result<(Group, Group), BenchError> {
        let db = Group::spawn("demo db", exe, &self.db_args(), &self.dir.join("db.log"))?;
        let model = Group::spawn("demo model", exe, &self.model_args(), &self.dir.join("model.log"))?;
        wait_listening(&db, self.ports.db).await?;
        wait_listening(&model, self.ports.model).await?;
        Ok((db, model))
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> Result<(), BenchError> {
    use std::io::Write;
    let context = format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(BenchError::io(context.clone()))?;
    file.write_all(text.as_bytes()).map_err(BenchError::io(context))
}

/// Waits (up to 30 s) until a TCP connect to 127.0.0.1:`port` succeeds.
async fn wait_listening(group: &Group, port: u16) -> Result<(), BenchError> {
    let limit = Duration::from_secs(30);
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BenchError::NotHealthy {
        what: format!("{} (port {port})", group.name()),
        secs: limit.as_secs(),
        log: group.log_tail(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_api_args_point_at_the_node_ports_and_files() {
        let files = DemoFiles {
            config: "/t/config.json".into(),
            credentials: "/t/credentials".into(),
            db_dir: "/t/db".into(),
            dir: "/t".into(),
            ports: DemoPorts::DEFAULT,
        };
        assert_eq!(
            files.api_args().join(" "),
            "demo api --listen 127.0.0.1:8000 --db 127.0.0.1:5433 \
             --model-url http://127.0.0.1:11434 --config /t/config.json --credentials /t/credentials"
        );
        assert_eq!(
            files.db_args().join(" "),
            "demo db --listen 127.0.0.1:5433 --data-dir /t/db --password-file /t/credentials"
        );
    }
}
