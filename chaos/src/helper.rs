//! `warden chaos helper ...` (hidden): the long half of an injection, in a process of its
//! own so the fault outlives the `inject` command. It prints `ready` once the fault is in
//! place (the injector waits for that line), then keeps it for its time and leaves.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::procs;

/// Set on SIGTERM or SIGINT: a helper that holds a fault puts back what it changed (the
/// link up, the stopped processes continued) and leaves.
pub static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stopping() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

/// Sleeps `d`, or less when asked to stop.
fn nap(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stopping() {
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
}

#[derive(clap::Subcommand)]
pub enum HelperCommand {
    /// SIGKILL `kill`, take `port` the moment it is free, hold it for `secs`.
    Hold {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        secs: u64,
        #[arg(long, value_delimiter = ',')]
        kill: Vec<u32>,
        /// Print `armed` and wait for a line on stdin before the kill, so a caller that
        /// times the fault does not time this process's start.
        #[arg(long)]
        on_go: bool,
    },
    /// SIGKILL `kill`, then starve the service's next boot of CPU for `secs`: every new
    /// process in its cgroup (its `cgroup.procs` files) goes into a CPU cgroup allowed 0.1 %
    /// of one CPU, then back where it was. It runs (as on an overloaded machine), only
    /// slowly; nothing of its config changes. Gives up if no new process appears in 60 s.
    SlowBoot {
        #[arg(long)]
        secs: u64,
        #[arg(long, value_delimiter = ',')]
        kill: Vec<u32>,
        #[arg(long, value_delimiter = ',')]
        cgroup_procs: Vec<std::path::PathBuf>,
        /// The CPU cgroup the service's processes are in (v1 `cpu` hierarchy, or v2).
        #[arg(long)]
        cpu_cgroup: std::path::PathBuf,
    },
    /// Take `mb` MiB of the node's memory (written, so it is resident) for `secs`, in this
    /// process, which no service of the node's is: memory pressure on the node as a whole.
    NodeMemory {
        #[arg(long)]
        mb: u64,
        #[arg(long)]
        secs: u64,
    },
    /// Take `interface` down, and back up after `secs` (as a cable pulled and put back).
    LinkDown {
        #[arg(long)]
        interface: String,
        #[arg(long)]
        secs: u64,
    },
    /// Drop every packet sent out of `interface` for `secs` (an nftables table of its own,
    /// removed at the end or when asked to stop), as a link that is up and carries nothing.
    LinkLoss {
        #[arg(long)]
        interface: String,
        #[arg(long)]
        secs: u64,
    },
    /// Stop `pids` for `stop_ms`, let them run 100 ms, again and again for `secs`, or until
    /// they are gone: they answer, late. They are left running (SIGCONT) at the end.
    SlowAnswers {
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        #[arg(long)]
        secs: u64,
        /// How long they are stopped in each cycle (they then run for 100 ms).
        #[arg(long, default_value_t = 900)]
        stop_ms: u64,
    },
    /// Join the cgroups (their `cgroup.procs` files) and grow to `mb` MiB, 8 MiB per 100 ms,
    /// touching every page; stay until killed (or 10 minutes).
    Balloon {
        #[arg(long)]
        mb: u64,
        #[arg(long, value_delimiter = ',')]
        cgroup_procs: Vec<std::path::PathBuf>,
    },
}

pub fn run(cmd: HelperCommand) -> anyhow::Result<()> {
    match cmd {
        HelperCommand::Hold { port, secs, kill, on_go } => {
            if on_go {
                say("armed")?;
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                // The caller gone (its end of the pipe closed) is no go: the pids may be
                // someone else's by now.
                anyhow::ensure!(line.trim() == "go", "no go from the caller; nothing done");
            }
            for &p in &kill {
                procs::signal(p, Signal::SIGKILL)?;
            }
            let start = Instant::now();
            let listener = loop {
                match std::net::TcpListener::bind(("127.0.0.1", port)) {
                    Ok(l) => break l,
                    Err(e) if start.elapsed() > Duration::from_secs(2) => {
                        anyhow::bail!("port {port} was not free within 2 s: {e}")
                    }
                    Err(_) => std::thread::yield_now(),
                }
            };
            ready()?;
            // A stranger asked to leave (SIGTERM) leaves.
            nap(Duration::from_secs(secs));
            drop(listener);
            Ok(())
        }
        HelperCommand::SlowBoot { secs, kill, cgroup_procs, cpu_cgroup } => {
            slow_boot(secs, &kill, &cgroup_procs, &cpu_cgroup)
        }
        HelperCommand::LinkDown { interface, secs } => {
            let set = |state: &str| {
                std::process::Command::new("ip")
                    .args(["link", "set", "dev", &interface, state])
                    .status()
                    .map_err(|e| anyhow::anyhow!("ip: {e}"))
                    .and_then(|s| {
                        if s.success() {
                            Ok(())
                        } else {
                            Err(anyhow::anyhow!("ip link set {interface} {state} failed"))
                        }
                    })
            };
            set("down")?;
            let said = ready();
            nap(Duration::from_secs(secs));
            set("up").and(said)
        }
        HelperCommand::LinkLoss { interface, secs } => {
            let table = loss_table(&interface);
            nft(&["add", "table", "inet", &table])?;
            let made = nft(&["add", "chain", "inet", &table, "out", "{ type filter hook output priority 0 ; }"])
                .and_then(|()| nft(&["add", "rule", "inet", &table, "out", "oifname", &interface, "drop"]));
            let said = made.and_then(|()| ready());
            if said.is_ok() {
                nap(Duration::from_secs(secs));
            }
            // Always removed, whatever happened since it was added.
            let removed = nft(&["delete", "table", "inet", &table]);
            said.and(removed)
        }
        HelperCommand::SlowAnswers { pids, secs, stop_ms } => {
            ready()?;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(secs) && !stopping() && pids.iter().any(|p| procs::is_alive(*p))
            {
                for &p in &pids {
                    let _ = procs::signal(p, Signal::SIGSTOP);
                }
                nap(Duration::from_millis(stop_ms));
                // Always continued, whatever ends the loop.
                for &p in &pids {
                    let _ = procs::signal(p, Signal::SIGCONT);
                }
                nap(Duration::from_millis(100));
            }
            Ok(())
        }
        HelperCommand::NodeMemory { mb, secs } => {
            let step = 64usize << 20;
            let mut held: Vec<Vec<u8>> = Vec::new();
            while (held.len() as u64) * 64 < mb && !stopping() {
                held.push(vec![0xa5; step]);
            }
            ready()?;
            nap(Duration::from_secs(secs));
            drop(held);
            Ok(())
        }
        HelperCommand::Balloon { mb, cgroup_procs } => {
            for f in &cgroup_procs {
                std::fs::write(f, std::process::id().to_string())
                    .map_err(|e| anyhow::anyhow!("cannot join {}: {e}", f.display()))?;
            }
            ready()?;
            let step = 8usize << 20;
            let mut held: Vec<Vec<u8>> = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(600) && !stopping() {
                if (held.len() as u64) * 8 < mb {
                    // Written, not just reserved: the pages count against the limit.
                    held.push(vec![0xa5; step]);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
    }
}

fn members(cgroup_procs: &[std::path::PathBuf]) -> Vec<u32> {
    cgroup_procs
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// Where a starved process goes and how it comes back: a v1 `cpu` hierarchy gets a cgroup
/// of the harness's own beside the service's; on v2 the service's own cgroup is throttled.
enum Throttle {
    V1 { starved: std::path::PathBuf, home: std::path::PathBuf },
    V2 { cpu_max: std::path::PathBuf },
}

impl Throttle {
    fn make(cpu_cgroup: &std::path::Path) -> anyhow::Result<Self> {
        let cpu_max = cpu_cgroup.join("cpu.max");
        if cpu_max.exists() {
            std::fs::write(&cpu_max, "1000 1000000")?;
            return Ok(Throttle::V2 { cpu_max });
        }
        let root = cpu_cgroup
            .ancestors()
            .find(|d| d.parent().is_some_and(|p| p == std::path::Path::new("/sys/fs/cgroup")))
            .ok_or_else(|| anyhow::anyhow!("{} is not under /sys/fs/cgroup", cpu_cgroup.display()))?;
        let starved = root.join(format!("warden-chaos-slow-boot-{}", std::process::id()));
        std::fs::create_dir_all(&starved)?;
        std::fs::write(starved.join("cpu.cfs_period_us"), "1000000")?;
        std::fs::write(starved.join("cpu.cfs_quota_us"), "1000")?;
        Ok(Throttle::V1 { starved, home: cpu_cgroup.to_path_buf() })
    }

    fn take(&self, pid: u32) -> bool {
        match self {
            Throttle::V1 { starved, .. } => std::fs::write(starved.join("cgroup.procs"), pid.to_string()).is_ok(),
            Throttle::V2 { .. } => true,
        }
    }

    /// Lets every process go on at full speed, where it was.
    fn lift(&self) {
        match self {
            Throttle::V1 { starved, home } => {
                // One at a time: a process that forked meanwhile is in the list too.
                for _ in 0..100 {
                    let left = members(&[starved.join("cgroup.procs")]);
                    if left.is_empty() {
                        break;
                    }
                    for pid in left {
                        let _ = std::fs::write(home.join("cgroup.procs"), pid.to_string());
                    }
                }
                let _ = std::fs::remove_dir(starved);
            }
            Throttle::V2 { cpu_max } => {
                let _ = std::fs::write(cpu_max, "max 100000");
            }
        }
    }
}

fn slow_boot(
    secs: u64,
    kill: &[u32],
    cgroup_procs: &[std::path::PathBuf],
    cpu_cgroup: &std::path::Path,
) -> anyhow::Result<()> {
    let old: std::collections::HashSet<u32> = members(cgroup_procs).into_iter().chain(kill.iter().copied()).collect();
    let throttle = Throttle::make(cpu_cgroup)?;
    for &p in kill {
        if let Err(e) = procs::signal(p, Signal::SIGKILL) {
            throttle.lift();
            return Err(e.into());
        }
    }
    ready()?;
    let start = Instant::now();
    let mut taken: Vec<u32> = Vec::new();
    let mut until: Option<Instant> = None;
    // Every process of the new boot is starved, the ones it forks too, until the time is up.
    while until.is_none_or(|u| Instant::now() < u) && start.elapsed() < Duration::from_secs(60 + secs) && !stopping() {
        for pid in members(cgroup_procs) {
            if !old.contains(&pid) && !taken.contains(&pid) && throttle.take(pid) {
                taken.push(pid);
                until.get_or_insert_with(|| Instant::now() + Duration::from_secs(secs));
            }
        }
        if until.is_none() && start.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    throttle.lift();
    Ok(())
}

/// The nftables table of a link-loss fault on `interface`: one per interface, so it is
/// found and removed by name.
pub fn loss_table(interface: &str) -> String {
    let name: String = interface.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("warden_chaos_loss_{name}")
}

fn nft(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("nft").args(args).output().map_err(|e| anyhow::anyhow!("nft: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "nft {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn ready() -> anyhow::Result<()> {
    say("ready")
}

fn say(word: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{word}")?;
    out.flush()?;
    Ok(())
}
