//! `warden chaos helper ...` (hidden): the long half of an injection, in a process of its
//! own so the fault outlives the `inject` command. It prints `ready` once the fault is in
//! place (the injector waits for that line), then keeps it for its time and leaves.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::procs;

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
            std::thread::sleep(Duration::from_secs(secs));
            drop(listener);
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
            while start.elapsed() < Duration::from_secs(600) {
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

fn ready() -> anyhow::Result<()> {
    say("ready")
}

fn say(word: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{word}")?;
    out.flush()?;
    Ok(())
}
