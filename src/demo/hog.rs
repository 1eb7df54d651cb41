//! `warden demo hog`: a memory balloon. It allocates and touches memory in steps until it
//! holds `--mb` MiB, then idles. A real process for memory-limit and OOM tests and for
//! chaos runs: under a cgroup memory limit below `--mb`, the kernel's OOM killer ends it.

use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct HogArgs {
    /// MiB to hold in the end.
    #[arg(long, default_value_t = 128)]
    pub mb: usize,
    /// MiB added per step.
    #[arg(long, default_value_t = 16)]
    pub step_mb: usize,
    /// Pause between steps, milliseconds.
    #[arg(long, default_value_t = 50)]
    pub step_ms: u64,
}

pub async fn run(args: HogArgs) -> Result<(), super::ServiceError> {
    let mut held: Vec<Vec<u8>> = Vec::new();
    let step = args.step_mb.max(1);
    while held.len() * step < args.mb {
        // Filled with non-zero bytes so every page is really resident.
        held.push(vec![0x5a; step * 1024 * 1024]);
        tracing::info!(mb = held.len() * step, "holding");
        tokio::time::sleep(Duration::from_millis(args.step_ms)).await;
    }
    tracing::info!(mb = held.len() * step, "demo hog ready");
    super::shutdown_signal().await;
    drop(held);
    Ok(())
}
