//! The audit trail against someone who can write the store but does not have the key:
//! every way of tampering with a real node's chain is named by `warden audit verify`, and
//! a warden started on a tampered chain refuses tier 2+ actions and says why.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;
use warden_actors::data_dir::DataDir;
use warden_actors::store::Store;
use warden_core::audit::{AuditKey, SealedEntry, seal};

/// A stopped node whose chain holds decisions, outcomes and supervision entries.
fn node_with_a_chain() -> Node {
    let mut node = Node::start_default(&[]);
    node.wait_ready();
    for _ in 0..3 {
        let (pid, _) = node.service("db").unwrap();
        kill(pid.unwrap(), Signal::SIGKILL);
        wait_until(
            "db restarted",
            Duration::from_secs(20),
            || matches!(node.service("db"), Some((Some(p), ref s)) if Some(p) != pid && s == "running"),
        );
        // Ready for its stable time, so the next kill is not a crash loop.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (pid, _) = node.service("api").unwrap();
    kill(pid.unwrap(), Signal::SIGSTOP);
    wait_until("the hang healed", Duration::from_secs(40), || node.healer_stats()["incidents"]["resolved"] == 1);
    assert!(node.stop().unwrap().success(), "{}", node.stderr());
    node
}

/// A copy of the node's data dir (the key and checkpoints stay where the config says).
fn copy_of(node: &Node, name: &str) -> PathBuf {
    let to = node.dir.path().join(name);
    let ok = Command::new("cp").arg("-a").arg(node.data_dir()).arg(&to).status().unwrap();
    assert!(ok.success());
    to
}

fn verify(node: &Node, data: &Path) -> (bool, String) {
    let out = Command::new(WARDEN)
        .args(["audit", "verify", "--config"])
        .arg(node.config_path())
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Runs `f` on the store of `data` (the node is stopped).
fn with_store<T>(data: &Path, f: impl AsyncFnOnce(&Store) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dd = DataDir::new(data);
        let _lock = dd.lock(None).unwrap();
        let store = Store::open(&dd).unwrap();
        let out = f(&store).await;
        store.sync_now().unwrap();
        out
    })
}

async fn all(store: &Store) -> Vec<SealedEntry> {
    store.audit_range(1, 100_000).await.unwrap()
}

fn forger() -> AuditKey {
    AuditKey::from_bytes([0x5a; 32])
}

#[test]
fn test_every_kind_of_tampering_is_named_and_a_tampered_chain_grants_nothing() {
    let node = node_with_a_chain();
    let (ok, out) = verify(&node, &node.data_dir());
    assert!(ok, "the untouched chain verifies: {out}");
    assert!(out.contains("seals checked"), "{out}");
    let n = with_store(&node.data_dir(), async |s| all(s).await.len() as u64);
    assert!(n >= 5, "three restarts, a decision and its outcome: {n} entries");
    let kinds = with_store(&node.data_dir(), async |s| {
        all(s).await.iter().map(|e| format!("{:?}", e.entry.record.kind)).collect::<Vec<_>>()
    });
    assert!(kinds.iter().any(|k| k == "Supervision"), "crash restarts are audited: {kinds:?}");

    // (name, tamper, what verify must say)
    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, String)> = vec![
        (
            "modified",
            Box::new(|d| {
                with_store(d, async |s| {
                    let mut raw = s.audit_raw(2).await.unwrap().unwrap();
                    let at = raw.len() / 2;
                    raw[at] ^= 0x01;
                    s.audit_put_raw(2, raw).await.unwrap();
                })
            }),
            "(seq 2)".into(),
        ),
        (
            "deleted",
            Box::new(|d| with_store(d, async |s| s.audit_remove_raw(3).await.unwrap())),
            "expected seq 3, found 4".into(),
        ),
        (
            "reordered",
            Box::new(|d| {
                with_store(d, async |s| {
                    let (a, b) = (s.audit_raw(2).await.unwrap().unwrap(), s.audit_raw(3).await.unwrap().unwrap());
                    s.audit_put_raw(2, b).await.unwrap();
                    s.audit_put_raw(3, a).await.unwrap();
                })
            }),
            "expected seq 2, found 3".into(),
        ),
        (
            "truncated",
            Box::new(move |d| {
                with_store(d, async |s| {
                    s.audit_remove_raw(n).await.unwrap();
                    s.audit_remove_raw(n - 1).await.unwrap();
                })
            }),
            "missing tail".into(),
        ),
        (
            "wiped",
            Box::new(move |d| {
                with_store(d, async |s| {
                    for seq in 1..=n {
                        s.audit_remove_raw(seq).await.unwrap();
                    }
                })
            }),
            "wiped".into(),
        ),
        (
            "appended forgery",
            Box::new(|d| {
                with_store(d, async |s| {
                    let last = all(s).await.pop().unwrap();
                    let mut e = last.entry.clone();
                    e.seq += 1;
                    e.record.detail = "nothing to see".into();
                    s.audit_append(vec![seal(e, last.hash, &forger()).unwrap()]).await.unwrap();
                })
            }),
            format!("(seq {}): its seal does not match", n + 1),
        ),
        (
            "rewritten and re-hashed",
            Box::new(|d| {
                with_store(d, async |s| {
                    let entries = all(s).await;
                    let mut prev = entries[0].hash;
                    let mut rewritten = Vec::new();
                    for (i, old) in entries[1..].iter().enumerate() {
                        let mut e = old.entry.clone();
                        if i == 0 {
                            e.record.rationale = "routine check".into();
                        }
                        let s = seal(e, prev, &forger()).unwrap();
                        prev = s.hash;
                        rewritten.push(s);
                    }
                    s.audit_append(rewritten).await.unwrap();
                })
            }),
            "(seq 2): its seal does not match".into(),
        ),
    ];
    for (name, tamper, says) in &cases {
        let copy = copy_of(&node, &format!("tampered-{}", name.replace(' ', "-")));
        tamper(&copy);
        let (ok, out) = verify(&node, &copy);
        assert!(!ok, "{name}: verify must fail: {out}");
        assert!(out.contains(says.as_str()), "{name}: expected `{says}` in: {out}");
    }

    // A warden started on a forged chain says so and grants nothing of tier 2+: a hang's
    // restart is refused, with the reason.
    let copy = copy_of(&node, "tampered-start");
    cases[5].1(&copy);
    let mut bad = Node::prepare(&std::fs::read_to_string(node.config_path()).unwrap(), node.ports);
    std::fs::copy(node.dir.path().join(".warden-audit.key"), bad.dir.path().join(".warden-audit.key")).unwrap();
    std::fs::copy(node.dir.path().join(".warden-audit.checkpoints"), bad.dir.path().join(".warden-audit.checkpoints"))
        .unwrap();
    std::fs::remove_dir_all(bad.data_dir()).ok();
    let ok = Command::new("cp").arg("-a").arg(&copy).arg(bad.data_dir()).status().unwrap();
    assert!(ok.success());
    bad.spawn(&[]);
    wait_until("the broken chain named in /readyz", Duration::from_secs(30), || {
        get_json(&bad.url("/readyz")).is_some_and(|r| r.to_string().contains("audit chain fails verification"))
    });
    assert!(bad.stderr().contains("alert: the audit chain fails verification"), "{}", bad.stderr());
    wait_until(
        "the api running",
        Duration::from_secs(30),
        || matches!(bad.service("api"), Some((Some(_), ref s)) if s == "running"),
    );
    let (pid, _) = bad.service("api").unwrap();
    kill(pid.unwrap(), Signal::SIGSTOP);
    wait_until("the restart refused", Duration::from_secs(40), || {
        bad.healer_stats()["last_runs"].as_array().is_some_and(|runs| {
            runs.iter().any(|r| r["outcome"] == "denied" && r["detail"].as_str().unwrap_or("").contains("audit chain"))
        })
    });
    kill(pid.unwrap(), Signal::SIGCONT);
}

#[test]
fn test_kill_9_while_appending_loses_no_acknowledged_entry() {
    // Operators' requests keep the audit writer busy (each is a synced decision entry,
    // answered with its seq); warden is killed with SIGKILL at a random moment, 20 times.
    // Every restart verifies the whole chain, and every entry an answer acknowledged is
    // still there afterwards.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut node = Node::start_default(&[]);
    node.wait_ready();
    let token = node.admin_token();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    for round in 0..20 {
        if round > 0 {
            node.spawn(&[]);
        }
        wait_until("warden answers", Duration::from_secs(30), || status_code(&node.url("/healthz")) == Some(200));
        let verify = get_json(&node.url("/api/audit/verify")).unwrap_or_default();
        assert_eq!(verify["ok"], true, "round {round}: the chain verifies after a kill -9: {verify}");
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (url, token, stop, acked) =
                    (node.url("/api/services/db/restart"), token.clone(), stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(resp) = http().post(&url).bearer_auth(&token).send() else { continue };
                        let body: serde_json::Value = resp.json().unwrap_or_default();
                        if let Some(seq) = body["audit_seq"].as_u64() {
                            acked.lock().unwrap().push(seq);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + rand_ms(350)));
        node.stop_with(Signal::SIGKILL);
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
    }
    node.spawn(&[]);
    wait_until("warden answers", Duration::from_secs(30), || status_code(&node.url("/healthz")) == Some(200));
    assert!(node.stop().unwrap().success());
    let (ok, out) = verify(&node, &node.data_dir());
    assert!(ok, "{out}");
    let stored: std::collections::BTreeSet<u64> =
        with_store(&node.data_dir(), async |s| all(s).await.iter().map(|e| e.entry.seq).collect());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "requests were answered under the kills: {}", acked.len());
    let lost: Vec<&u64> = acked.iter().filter(|s| !stored.contains(s)).collect();
    assert!(lost.is_empty(), "acknowledged but missing: {lost:?}");
}

/// A pseudo-random number of milliseconds below `max` (no seed to share between tests).
fn rand_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos) % max
}
