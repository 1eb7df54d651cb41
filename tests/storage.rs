//! Storage faults: a corrupt journal is named and repaired keeping every intact entry; a
//! full disk degrades warden (tier 1 healing goes on, tier 2 fails closed) and the store
//! resumes by itself when space returns.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::process::Command;
use std::time::Duration;
use support::*;

fn hang_api_and_wait_for_heal(node: &Node, resolved: u64) {
    let (pid, _) = node.service("api").unwrap();
    kill(pid.unwrap(), Signal::SIGSTOP);
    wait_until("the hang healed", Duration::from_secs(40), || {
        node.healer_stats()["incidents"]["resolved"].as_u64().unwrap_or(0) >= resolved
    });
}

#[test]
fn test_a_flipped_journal_byte_is_named_and_recovered_keeping_every_intact_entry() {
    let mut node = Node::start_default(&[]);
    node.wait_ready();
    hang_api_and_wait_for_heal(&node, 1);
    hang_api_and_wait_for_heal(&node, 2);
    node.stop();
    let data = node.data_dir();
    let journal = data.join("store/0.jnl");
    let mut bytes = std::fs::read(&journal).unwrap();
    let at = bytes.windows(10).position(|w| w == b"playbook `").expect("the first audit entry's rationale");
    bytes[at] ^= 0x20;
    std::fs::write(&journal, &bytes).unwrap();

    // warden refuses to start on it, naming the file, the offset and the way out.
    node.spawn(&[]);
    let status = node.child.as_mut().unwrap().wait().unwrap();
    assert!(!status.success());
    let err = node.stderr();
    assert!(err.contains("0.jnl at byte offset") && err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("warden store recover"), "{err}");
    node.child = None;

    let (ok, out) = node.cli(&["store", "check"], &[]);
    assert!(!ok && out.contains("corrupt:"), "{out}");
    let (_, out) = node.cli(&["store", "recover"], &[]);
    assert!(out.contains("audit entry 1"), "says what was cut: {out}");
    assert!(out.contains("store.before-recover-"), "keeps a copy: {out}");
    // The intact entries are all there; the verifier names the gap.
    let (ok, out) = node.cli(&["audit", "verify"], &[]);
    assert!(!ok && out.contains("expected seq 1, found 2"), "{out}");
    // warden runs on it, but a trail with a gap vouches for nothing risky: it says so in
    // /readyz and refuses tier 2+ (healing's records are all there).
    node.spawn(&[]);
    wait_until("warden answers", Duration::from_secs(30), || status_code(&node.url("/healthz")) == Some(200));
    wait_until("the broken chain named", Duration::from_secs(30), || {
        get_json(&node.url("/readyz")).is_some_and(|r| r.to_string().contains("audit chain fails verification"))
    });
    assert!(node.stderr().contains("alert: the audit chain fails verification"), "{}", node.stderr());
    assert_eq!(node.healer_stats()["incidents"]["resolved"], 2, "both incidents survived");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn test_a_full_disk_degrades_warden_and_the_store_resumes_when_space_returns() {
    let ports = Ports::fresh();
    let mut node = Node::prepare(&default_config_on(ports), ports);
    let Some(tmpfs) = Tmpfs::mount(&node.data_dir(), "24m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    node.spawn(&[]);
    node.wait_ready();

    // Fill the volume.
    let filler = tmpfs.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5a; 256 * 1024];
        while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
    }

    // Tier 1 healing needs no store: a killed service is restarted on the full disk.
    let (model, _) = node.service("model").unwrap();
    kill(model.unwrap(), Signal::SIGKILL);
    wait_until(
        "model restarted on a full disk",
        Duration::from_secs(20),
        || matches!(node.service("model"), Some((Some(p), ref s)) if Some(p) != model && s == "running"),
    );
    // A hang needs a durable decision: the store degrades and says so; nothing unaudited runs.
    let (api, _) = node.service("api").unwrap();
    kill(api.unwrap(), Signal::SIGSTOP);
    wait_until("readyz says the store is degraded", Duration::from_secs(30), || {
        get_json(&node.url("/readyz")).is_some_and(|r| r["reasons"].to_string().contains("store degraded"))
    });
    assert!(node.stderr().contains("alert: the store refused a write"), "{}", node.stderr());
    assert_eq!(node.healer_stats()["incidents"]["resolved"], serde_json::Value::Null, "no stats while degraded");

    // Space returns: the store resumes on its own, and the waiting hang is healed, audited.
    std::fs::remove_file(&filler).unwrap();
    wait_until("store resumed", Duration::from_secs(30), || node.stderr().contains("store resumed"));
    let start = std::time::Instant::now();
    while node.healer_stats()["incidents"]["resolved"].as_u64().unwrap_or(0) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the hang not healed after the store resumed: {}\n{}\n{}",
            get_json(&node.url("/api/guardian/probes/api-health")).unwrap_or_default(),
            get_json(&node.url("/api/status")).unwrap_or_default(),
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status_code(&node.url("/readyz")), Some(200));
    let verify = get_json(&node.url("/api/audit/verify")).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    node.stop();
    drop(tmpfs);
}
