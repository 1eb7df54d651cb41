//! The embedded demo node's services: `warden demo db|model|api`.

#[derive(clap::Subcommand)]
pub enum DemoCommand {}

pub async fn run(cmd: DemoCommand) -> anyhow::Result<()> {
    match cmd {}
}
