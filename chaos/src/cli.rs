//! `warden chaos ...` subcommands.

#[derive(clap::Subcommand)]
pub enum ChaosCommand {}

pub async fn run(cmd: ChaosCommand) -> anyhow::Result<()> {
    match cmd {}
}
