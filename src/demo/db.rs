//! `warden demo db`: a small key-value database over a TCP line protocol.
//!
//! It exists so the default node has a real stateful process whose failures look like a real
//! database's: it can be killed, hung, locked out, have its credentials rotated and its data
//! file corrupted. One request line gets one response line:
//!
//! | request | response |
//! | --- | --- |
//! | `PING` | `PONG` (never needs auth) |
//! | `AUTH <token>` | `OK` / `ERR auth` |
//! | `GET <key>` | `VALUE <value>` / `NOT_FOUND` |
//! | `SET <key> <value>` | `OK` |
//! | `DEL <key>` | `OK` / `NOT_FOUND` |
//! | `CHECK` | `OK <n> records` / `ERR corrupt at offset <n>: <reason>` |
//!
//! With `--password-file`, every command but `PING`/`AUTH` answers `ERR auth required` until
//! the connection has authenticated. Data lives in `DIR/data.log`, an append-only file of
//! `<sha256-hex of payload> <payload>\n` records (payload = `SET k v` or `DEL k`), so any
//! flipped byte is detected. Start-up replays and verifies the file and exits with code 3 on
//! corruption; `DIR/LOCK` is flock'ed for the life of the process (exit 75 if taken).
//! SIGUSR1 compacts the file: it is rewritten with one `SET` per live key (written aside,
//! synced, renamed over), so overwritten and deleted records stop taking disk space.
//! `DIR/RESERVE` is a ballast file (256 KiB, made at start when there is room): a
//! compaction that finds the disk full gives it up to make room, and makes it again after.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::ServiceError;

const DATA_FILE: &str = "data.log";
const LOCK_FILE: &str = "LOCK";
const RESERVE_FILE: &str = "RESERVE";
const RESERVE_BYTES: usize = 256 * 1024;
const MAX_LINE: usize = 64 * 1024;
const MAX_KEY: usize = 256;

#[derive(clap::Args, Debug)]
pub struct DbArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5433")]
    pub listen: SocketAddr,
    /// Directory holding the data file and the LOCK file (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// If given, clients must `AUTH` with this file's trimmed content.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

pub async fn run(args: DbArgs) -> Result<(), ServiceError> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| ServiceError::io(format!("cannot create data dir {}", args.data_dir.display()), e))?;
    let _lock = lock_data_dir(&args.data_dir)?;
    let password = args.password_file.as_deref().map(Password::load).transpose()?;
    let store = Store::open(&args.data_dir.join(DATA_FILE))?;
    store.make_reserve();
    let listener = super::bind(args.listen).await?;
    tracing::info!(
        listen = %args.listen,
        records = store.records,
        keys = store.map.len(),
        auth = password.is_some(),
        startup_ms = started.elapsed().as_millis() as u64,
        "demo db ready"
    );
    let shared = Arc::new(Shared { store: Mutex::new(store), password });
    let for_compaction = Arc::clone(&shared);
    super::on_signal(tokio::signal::unix::SignalKind::user_defined1(), "sigusr1", move || {
        let mut store = for_compaction.store();
        let compacted = match store.compact() {
            // A full disk: give up the ballast and try once more.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                let _ = std::fs::remove_file(store.reserve());
                store.compact()
            }
            other => other,
        };
        store.make_reserve();
        match compacted {
            Ok((before, after)) => tracing::info!(before, after, records = store.records, "data file compacted"),
            Err(e) => tracing::error!("compaction failed, the data file is as it was: {e}"),
        }
    });
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, &shared).await {
                            tracing::debug!("connection ended: {e}");
                        }
                    });
                }
                Err(e) => tracing::warn!("accept failed: {e}"),
            },
            _ = &mut shutdown => break,
        }
    }
    let store = shared.store();
    store.file.sync_all().map_err(|e| ServiceError::io("cannot flush data file", e))?;
    tracing::info!(records = store.records, "data file flushed, demo db stopped");
    Ok(())
}

/// Takes an exclusive flock on `DIR/LOCK` and writes our pid into it.
fn lock_data_dir(dir: &Path) -> Result<Flock<File>, ServiceError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| ServiceError::io(format!("cannot open {}", path.display()), e))?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            let pid = pid.trim();
            return Err(ServiceError::Locked {
                dir: dir.to_path_buf(),
                pid: if pid.is_empty() { "unknown".into() } else { pid.into() },
            });
        }
        Err((_, errno)) => {
            return Err(ServiceError::io(format!("cannot lock {}", path.display()), errno.into()));
        }
    };
    let write_pid = |mut f: &File| {
        f.set_len(0)?;
        f.write_all(format!("{}\n", std::process::id()).as_bytes())
    };
    write_pid(&lock).map_err(|e| ServiceError::io(format!("cannot write {}", path.display()), e))?;
    Ok(lock)
}

struct Shared {
    store: Mutex<Store>,
    password: Option<Password>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers one request line; `authed` is the connection's auth state.
    fn handle(&self, line: &str, authed: &mut bool) -> String {
        let request = match Request::parse(line) {
            Ok(r) => r,
            Err(e) => return format!("ERR {e}"),
        };
        match request {
            Request::Ping => return "PONG".into(),
            Request::Auth(token) => {
                *authed = self.password.as_ref().is_none_or(|p| p.matches(token));
                return if *authed { "OK".into() } else { "ERR auth".into() };
            }
            _ if !*authed => return "ERR auth required".into(),
            _ => {}
        }
        let mut store = self.store();
        let result = match request {
            Request::Get(key) => Ok(match store.map.get(key) {
                Some(value) => format!("VALUE {value}"),
                None => "NOT_FOUND".into(),
            }),
            Request::Set(..) => store.apply(&request).map(|_| "OK".into()),
            Request::Del(key) if !store.map.contains_key(key) => Ok("NOT_FOUND".into()),
            Request::Del(_) => store.apply(&request).map(|_| "OK".into()),
            Request::Check => Ok(match store.check() {
                Ok(n) => format!("OK {n} records"),
                Err(c) => {
                    tracing::error!(offset = c.offset, "integrity check failed: {}", c.reason);
                    format!("ERR corrupt at offset {}: {}", c.offset, c.reason)
                }
            }),
            // Answered before taking the lock.
            Request::Ping | Request::Auth(_) => Ok(String::new()),
        };
        result.unwrap_or_else(|e| {
            tracing::error!("cannot append to data file: {e}");
            format!("ERR io: {e}")
        })
    }
}

async fn serve_connection(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut authed = shared.password.is_none();
    let mut buf = Vec::with_capacity(128);
    loop {
        buf.clear();
        let n = (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() > MAX_LINE {
            write.write_all(b"ERR line too long\n").await?;
            return Ok(());
        }
        let reply = match std::str::from_utf8(&buf) {
            Ok(line) => shared.handle(line.trim_end_matches(['\n', '\r']), &mut authed),
            Err(_) => "ERR invalid utf-8".into(),
        };
        write.write_all(format!("{reply}\n").as_bytes()).await?;
    }
}

/// One parsed request line; `Set` and `Del` are also the payloads of data-file records.
#[derive(Debug, PartialEq)]
enum Request<'a> {
    Ping,
    Auth(&'a str),
    Get(&'a str),
    Set(&'a str, &'a str),
    Del(&'a str),
    Check,
}

impl<'a> Request<'a> {
    fn parse(line: &'a str) -> Result<Self, String> {
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        match cmd.to_ascii_uppercase().as_str() {
            "PING" => Ok(Request::Ping),
            "AUTH" => Ok(Request::Auth(rest.trim())),
            "GET" => Ok(Request::Get(key(rest)?)),
            "DEL" => Ok(Request::Del(key(rest)?)),
            "SET" => match rest.split_once(' ') {
                Some((k, v)) => Ok(Request::Set(key(k)?, v)),
                None => Err("usage: SET <key> <value>".into()),
            },
            "CHECK" => Ok(Request::Check),
            _ => Err(format!("unknown command {cmd:?}")),
        }
    }
}

fn key(s: &str) -> Result<&str, String> {
    if s.is_empty() || s.len() > MAX_KEY || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid key (1..={MAX_KEY} chars, no whitespace)"));
    }
    Ok(s)
}

/// Where and why the data file failed verification.
#[derive(Debug)]
struct CorruptAt {
    offset: u64,
    reason: String,
}

/// The in-memory map plus the append-only record file it was replayed from.
struct Store {
    path: PathBuf,
    file: File,
    map: HashMap<String, String>,
    records: u64,
}

impl Store {
    fn open(path: &Path) -> Result<Self, ServiceError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ServiceError::io(format!("cannot read {}", path.display()), e));
            }
        };
        let (map, records) = replay(&bytes).map_err(|c| ServiceError::Corrupt {
            path: path.to_path_buf(),
            offset: c.offset,
            reason: c.reason,
        })?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ServiceError::io(format!("cannot open {}", path.display()), e))?;
        // New records go after the last whole one, never after a torn tail.
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            tracing::warn!(dropped_bytes = bytes.len() - whole, "the data file ended in a record cut short: dropped");
            file.set_len(whole as u64)
                .map_err(|e| ServiceError::io(format!("cannot truncate {}", path.display()), e))?;
        }
        Ok(Store { path: path.to_path_buf(), file, map, records })
    }

    /// Appends the record (one `write`), then applies it to the map. A write that fails
    /// part-way (ENOSPC) is cut off again, as a database's log does, so a full disk fails
    /// the write and leaves no torn record behind.
    fn apply(&mut self, request: &Request<'_>) -> std::io::Result<()> {
        let line = encode(request);
        let before = self.file.metadata()?.len();
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            let _ = self.file.set_len(before);
            return Err(e);
        }
        self.records += 1;
        apply(&mut self.map, request);
        Ok(())
    }

    fn reserve(&self) -> PathBuf {
        self.path.with_file_name(RESERVE_FILE)
    }

    /// Makes the ballast file if it is not there and there is room for it (best effort: a
    /// ballast that does not fit is left out, never a half-written one).
    fn make_reserve(&self) {
        let path = self.reserve();
        if path.exists() {
            return;
        }
        if std::fs::write(&path, vec![0u8; RESERVE_BYTES]).is_err() {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Rewrites the file with one record per live key; the bytes before and after. The new
    /// file is complete and synced before it replaces the old one.
    fn compact(&mut self) -> std::io::Result<(u64, u64)> {
        let before = self.file.metadata()?.len();
        let aside = self.path.with_extension("log.compacting");
        let mut keys: Vec<&String> = self.map.keys().collect();
        keys.sort();
        let written = (|| {
            let mut out = File::create(&aside)?;
            for k in &keys {
                out.write_all(encode(&Request::Set(k, &self.map[*k])).as_bytes())?;
            }
            out.sync_all()
        })();
        // A compaction that cannot be written (a full disk) leaves nothing half-made behind.
        if let Err(e) = written {
            let _ = std::fs::remove_file(&aside);
            return Err(e);
        }
        // The handle for appends is opened on the new file before it takes the name, so
        // after the rename every write goes to the file that has the name, whatever fails
        // later (the directory sync).
        let appender = OpenOptions::new().append(true).open(&aside)?;
        std::fs::rename(&aside, &self.path)?;
        self.file = appender;
        self.records = keys.len() as u64;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok((before, self.file.metadata()?.len()))
    }

    /// Re-reads the file from disk and verifies every record.
    fn check(&self) -> Result<u64, CorruptAt> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| CorruptAt { offset: 0, reason: format!("cannot read data file: {e}") })?;
        replay(&bytes).map(|(_, n)| n)
    }
}

fn apply(map: &mut HashMap<String, String>, request: &Request<'_>) {
    match *request {
        Request::Set(k, v) => {
            map.insert(k.to_owned(), v.to_owned());
        }
        Request::Del(k) => {
            map.remove(k);
        }
        _ => {}
    }
}

fn checksum(payload: &str) -> String {
    Sha256::digest(payload.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(request: &Request<'_>) -> String {
    let payload = match *request {
        Request::Set(k, v) => format!("SET {k} {v}"),
        Request::Del(k) => format!("DEL {k}"),
        _ => String::new(),
    };
    format!("{} {payload}\n", checksum(&payload))
}

/// Verifies and replays every record; returns the map and the record count.
fn replay(bytes: &[u8]) -> Result<(HashMap<String, String>, u64), CorruptAt> {
    let mut map = HashMap::new();
    let mut records = 0;
    let mut offset = 0usize;
    while offset < bytes.len() {
        let corrupt = |reason: &str| CorruptAt { offset: offset as u64, reason: reason.into() };
        let rest = &bytes[offset..];
        // A last record without its newline is a write cut short (a crash, or a copy made
        // while it was written): dropped, as a database's recovery drops a torn log tail
        // (Redis's `aof-load-truncated`). Anything else wrong is corruption.
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = std::str::from_utf8(&rest[..len]).map_err(|_| corrupt("not utf-8"))?;
        let (sum, payload) = line.split_once(' ').ok_or_else(|| corrupt("missing checksum"))?;
        if sum != checksum(payload) {
            return Err(corrupt("checksum mismatch"));
        }
        let request = Request::parse(payload).map_err(|e| corrupt(&e))?;
        if !matches!(request, Request::Set(..) | Request::Del(_)) {
            return Err(corrupt("not a data record"));
        }
        apply(&mut map, &request);
        records += 1;
        offset += len + 1;
    }
    Ok((map, records))
}

/// The shared secret; re-read on every AUTH so a rotated file takes effect without restart.
struct Password {
    path: PathBuf,
    cached: Mutex<String>,
}

impl Password {
    fn load(path: &Path) -> Result<Self, ServiceError> {
        let secret =
            read_secret(path).map_err(|e| ServiceError::Config(format!("password file {}: {e}", path.display())))?;
        Ok(Password { path: path.to_path_buf(), cached: Mutex::new(secret) })
    }

    fn matches(&self, token: &str) -> bool {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        match read_secret(&self.path) {
            Ok(secret) => *cached = secret,
            Err(e) => tracing::warn!("password file {}: {e}; using the last good one", self.path.display()),
        }
        constant_time_eq(cached.as_bytes(), token.as_bytes())
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    let content = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let secret = content.trim();
    if secret.is_empty() {
        return Err("empty".into());
    }
    Ok(secret.to_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A minimal client for the line protocol (used by `warden demo api`). Callers bound each
/// call with a timeout.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: &[SocketAddr]) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(Client { reader: BufReader::new(read), writer })
    }

    /// Sends one request line and returns the reply line without its newline.
    pub async fn request(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\n").as_bytes()).await?;
        let mut reply = String::new();
        let n = (&mut self.reader).take(MAX_LINE as u64 + 1).read_line(&mut reply).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "db closed the connection"));
        }
        Ok(reply.trim_end_matches(['\n', '\r']).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_replay_accepts_encoded_records_and_detects_a_flipped_byte() {
        let mut data = encode(&Request::Set("a", "1 2"));
        data += &encode(&Request::Set("b", "x"));
        data += &encode(&Request::Del("a"));
        let (map, n) = replay(data.as_bytes()).expect("valid file replays");
        assert_eq!(n, 3);
        assert_eq!(map.get("b").map(String::as_str), Some("x"));
        assert!(!map.contains_key("a"));

        // A copy made mid-write ends in a torn record: the whole ones before it replay.
        let torn = &data.as_bytes()[..data.len() - 5];
        assert_eq!(replay(torn).expect("a torn tail is dropped").1, 2);

        let mut bytes = data.into_bytes();
        let second = bytes.iter().position(|&b| b == b'\n').expect("newline") + 1;
        bytes[second + 70] ^= 0x01;
        let err = replay(&bytes).expect_err("flipped byte is detected");
        assert_eq!(err.offset, second as u64, "offset names the bad record");
    }

    #[test]
    fn test_request_parse_rejects_bad_keys_and_usage() {
        assert_eq!(Request::parse("set k v w"), Ok(Request::Set("k", "v w")));
        assert!(Request::parse("SET k").is_err());
        assert!(Request::parse("GET ").is_err());
        assert!(Request::parse("GET a b").is_err());
        assert!(Request::parse("NOPE").is_err());
    }
}
