//! Durable audit appends and governance decisions, measured.
//!
//! In one run, on the same disk: warden's AuditWriter (sealed entries, group commit, one
//! sync per batch) and SQLite (rusqlite, WAL, `synchronous=FULL`, one transaction per
//! entry, as an application would use it for an audit table) store the same sealed
//! entries, each at 1, 8 and 64 concurrent writers; then the gatekeeper's decision latency,
//! pure policy evaluation and the whole decision (evaluated, sealed and synced).
//!
//! `cargo bench -p warden-actors --bench audit` runs it in full (`-- --json FILE` also
//! writes the figures as JSON; a relative FILE is taken from the workspace root). Under `cargo test` it runs a small round, so it stays
//! working.

use hdrhistogram::Histogram;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_actors::addr::Addr;
use warden_actors::current::Current;
use warden_actors::data_dir::DataDir;
use warden_actors::governance::approval_queue::ApprovalQueue;
use warden_actors::governance::audit_writer::AuditWriter;
use warden_actors::governance::gatekeeper::{GateAnswer, Gatekeeper};
use warden_actors::governance::seal::{AuditSeal, ChainTrust};
use warden_actors::metrics::Metrics;
use warden_actors::registry::ActorRegistry;
use warden_actors::store::Store;
use warden_core::audit::{self, AuditActor, AuditEntry, AuditKey, AuditRecord, DecisionKind, EntryKind, GENESIS, Hash};
use warden_core::config::AuditFiles;
use warden_core::policy::{ActionRequest, Policies, RateHistory, evaluate};
use warden_core::source::Source;
use warden_core::tier::Tier;

const POLICY: &str = "mode: dev\nwhitelist:\n  - action: restart_service\n    targets: ['*']\n    rate_limit: { max: 1000000, per_ms: 600000 }\n";

struct Round {
    entries: usize,
    writers: &'static [usize],
    decisions: usize,
    evaluations: usize,
}

const FULL: Round = Round { entries: 4000, writers: &[1, 8, 64], decisions: 4000, evaluations: 200_000 };
const SMOKE: Round = Round { entries: 64, writers: &[1, 8], decisions: 50, evaluations: 1000 };

#[derive(serde::Serialize)]
struct AppendFigures {
    store: &'static str,
    writers: usize,
    entries: usize,
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

#[derive(serde::Serialize)]
struct LatencyFigures {
    what: String,
    count: usize,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let json = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
    let round = if full { FULL } else { SMOKE };
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-bench");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (appends, latencies) = rt.block_on(run(dir.path(), &round))?;

    println!("filesystem: {}", filesystem(dir.path()));
    println!("\n| store | writers | entries | appends/s | p50 | p99 |\n|---|---:|---:|---:|---:|---:|");
    for a in &appends {
        println!(
            "| {} | {} | {} | {:.0} | {} µs | {} µs |",
            a.store, a.writers, a.entries, a.per_sec, a.p50_us, a.p99_us
        );
    }
    println!("\n| decision | count | per second | p50 | p99 |\n|---|---:|---:|---:|---:|");
    for l in &latencies {
        println!("| {} | {} | {:.0} | {:.1} µs | {:.1} µs |", l.what, l.count, l.per_sec, l.p50_us, l.p99_us);
    }
    if let Some(path) = json {
        // cargo runs a bench in its package's folder; a relative path means the workspace's.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        let doc =
            serde_json::json!({ "filesystem": filesystem(dir.path()), "appends": appends, "decisions": latencies });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

async fn run(dir: &Path, round: &Round) -> anyhow::Result<(Vec<AppendFigures>, Vec<LatencyFigures>)> {
    let data = DataDir::new(dir.join("data"));
    std::fs::create_dir_all(data.root())?;
    let store = Store::open(&data)?;
    let files = AuditFiles { key_file: dir.join("audit.key"), checkpoint_file: dir.join("audit.checkpoints") };
    let seal = AuditSeal::open(&files, true)?;
    let key = seal.key().clone();
    let metrics = Metrics::new();
    let registry = ActorRegistry::default();
    let trust = ChainTrust::default();
    let writer = AuditWriter {
        store: store.clone(),
        seal: Ok(seal),
        trust: trust.clone(),
        metrics: metrics.clone(),
        registry: registry.clone(),
        data_dir: data.root().to_path_buf(),
    };
    let audit = Addr::<AuditWriter>::at();
    let (_w, _wh) = ractor::Actor::spawn(Some(audit.name().to_string()), writer, ()).await?;
    let policies =
        Policies::load(&Source { name: "bench_policies.yaml", dir, text: POLICY }, &["api".to_string().try_into()?])
            .map_err(|p| anyhow::anyhow!("{p}"))?;
    let gatekeeper = Gatekeeper {
        policies: Current::new(policies.clone()),
        store: store.clone(),
        audit: audit.clone(),
        approvals: Addr::<ApprovalQueue>::at(),
        trust,
        metrics,
        registry,
    };
    let gate = Addr::<Gatekeeper>::at();
    let (_g, _gh) = ractor::Actor::spawn(Some(gate.name().to_string()), gatekeeper, ()).await?;
    let sqlite = Sqlite::open(&dir.join("audit.sqlite"), key)?;

    let mut appends = Vec::new();
    for &writers in round.writers {
        appends.push(warden_appends(&audit, writers, round.entries).await?);
        appends.push(sqlite.appends(writers, round.entries).await?);
    }
    let stored = store.audit_head().await?.map(|(seq, _)| seq).unwrap_or(0);
    let written: usize = appends.iter().filter(|a| a.store == "warden").map(|a| a.entries).sum();
    anyhow::ensure!(stored as usize == written, "warden stored {stored} entries, {written} were acknowledged");
    anyhow::ensure!(sqlite.count()? == written, "SQLite stored {} entries, {written} were written", sqlite.count()?);
    let verified = store.verify_chain(Some(seal_key(dir)?), Vec::new(), None, None).await?;
    anyhow::ensure!(verified.is_ok(), "the benchmarked chain fails verification");

    let mut latencies = vec![evaluations(&policies, round.evaluations)];
    for &askers in round.writers {
        latencies.push(decisions(&gate, askers, round.decisions).await?);
    }
    Ok((appends, latencies))
}

fn seal_key(dir: &Path) -> anyhow::Result<AuditKey> {
    Ok(AuditKey::parse_hex(&std::fs::read_to_string(dir.join("audit.key"))?)?)
}

/// A decision record as the gatekeeper writes it: the sizes the trail really stores.
fn record(i: usize) -> AuditRecord {
    let req = request(i);
    AuditRecord {
        kind: EntryKind::Decision,
        actor: req.actor,
        action: req.action,
        tier: req.tier.into(),
        target: req.target,
        rationale: req.rationale,
        decision: DecisionKind::Allow,
        outcome: None,
        detail: "whitelisted: restart_service on * (rule 1)".into(),
        incident_id: req.incident_id,
        run_id: req.run_id,
    }
}

fn request(i: usize) -> ActionRequest {
    ActionRequest {
        action: "restart_service".into(),
        tier: Tier::REVERSIBLE,
        target: "api".into(),
        rationale: format!("api_timeout: GET /health timed out after 2000 ms (incident {i})"),
        actor: AuditActor::System,
        incident_id: Some(i as u64),
        run_id: Some(i as u64),
        plan: "send SIGTERM to api (pid 4242), wait 5 s, SIGKILL, start it again".into(),
        touches: Vec::new(),
    }
}

async fn warden_appends(audit: &Addr<AuditWriter>, writers: usize, entries: usize) -> anyhow::Result<AppendFigures> {
    let per = entries / writers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let audit = audit.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            for i in 0..per {
                let t = Instant::now();
                audit.append(record(w * per + i)).await?;
                let _ = h.record(t.elapsed().as_micros() as u64);
            }
            anyhow::Ok(h)
        }));
    }
    let mut h = histogram();
    for t in tasks {
        h.add(t.await??)?;
    }
    Ok(figures("warden", writers, per * writers, started.elapsed(), &h))
}

/// SQLite as an application would keep an audit table durable: WAL, `synchronous=FULL`,
/// one transaction per entry, one connection shared by the writers.
#[derive(Clone)]
struct Sqlite {
    inner: Arc<Mutex<(Connection, u64, Hash)>>,
    key: AuditKey,
}

impl Sqlite {
    fn open(path: &Path, key: AuditKey) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL)", ())?;
        Ok(Self { inner: Arc::new(Mutex::new((conn, 0, GENESIS))), key })
    }

    fn append(&self, record: AuditRecord) -> anyhow::Result<()> {
        let mut guard = self.inner.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (conn, seq, prev) = &mut *guard;
        let entry =
            AuditEntry { seq: *seq + 1, ts_unix_ms: warden_core::time::now_unix_ms(), record, prev_hash: *prev };
        let sealed = audit::seal(entry, *prev, &self.key)?;
        let bytes = postcard::to_stdvec(&sealed)?;
        conn.execute("INSERT INTO audit (seq, entry) VALUES (?1, ?2)", (sealed.entry.seq as i64, bytes))?;
        *seq = sealed.entry.seq;
        *prev = sealed.hash;
        Ok(())
    }

    fn count(&self) -> anyhow::Result<usize> {
        let guard = self.inner.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(guard.0.query_row("SELECT count(*) FROM audit", (), |r| r.get::<_, i64>(0))? as usize)
    }

    async fn appends(&self, writers: usize, entries: usize) -> anyhow::Result<AppendFigures> {
        let per = entries / writers;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let db = self.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let mut h = histogram();
                for i in 0..per {
                    let t = Instant::now();
                    db.append(record(w * per + i))?;
                    let _ = h.record(t.elapsed().as_micros() as u64);
                }
                anyhow::Ok(h)
            }));
        }
        let mut h = histogram();
        for t in tasks {
            h.add(t.await??)?;
        }
        Ok(figures("SQLite", writers, per * writers, started.elapsed(), &h))
    }
}

/// The policy alone: what a decision costs before it is written down.
fn evaluations(policies: &Policies, count: usize) -> LatencyFigures {
    let mut history = RateHistory::default();
    let now = warden_core::time::now_unix_ms();
    for i in 0..1000 {
        history.record("restart_service", "api", now - i, 1000);
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let started = Instant::now();
    for i in 0..count {
        let req = request(i);
        let t = Instant::now();
        let verdict = evaluate(policies, req, now, &history);
        let _ = h.record(t.elapsed().as_nanos() as u64);
        std::hint::black_box(verdict);
    }
    let secs = started.elapsed().as_secs_f64();
    LatencyFigures {
        what: "policy evaluation (1000 allowed in the rate window)".into(),
        count,
        per_sec: count as f64 / secs,
        p50_us: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: h.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

/// Whole decisions through the gatekeeper: evaluated, sealed, synced, answered.
async fn decisions(gate: &Addr<Gatekeeper>, askers: usize, count: usize) -> anyhow::Result<LatencyFigures> {
    let per = count / askers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..askers {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            for i in 0..per {
                let t = Instant::now();
                let answer = gate.request(request(a * per + i)).await?;
                let _ = h.record(t.elapsed().as_micros() as u64);
                anyhow::ensure!(matches!(answer, GateAnswer::Granted(_)), "not granted: {answer:?}");
            }
            anyhow::Ok(h)
        }));
    }
    let mut h = histogram();
    for t in tasks {
        h.add(t.await??)?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(LatencyFigures {
        what: format!("gatekeeper decision, durable ({askers} at once)"),
        count: per * askers,
        per_sec: (per * askers) as f64 / secs,
        p50_us: h.value_at_quantile(0.5) as f64,
        p99_us: h.value_at_quantile(0.99) as f64,
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn figures(store: &'static str, writers: usize, entries: usize, took: Duration, h: &Histogram<u64>) -> AppendFigures {
    AppendFigures {
        store,
        writers,
        entries,
        per_sec: entries as f64 / took.as_secs_f64(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
    }
}

/// The filesystem under the benchmark: a sync on tmpfs costs nothing, so say which it was.
fn filesystem(dir: &Path) -> String {
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
