//! `warden run`: load and check every config file, open the store, start the supervision
//! tree, then wait for SIGINT/SIGTERM (or a meltdown) and shut down in order: services in
//! reverse dependency order, then the tree, then a final store sync.

use crate::http::{AppState, server::HttpServer};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use warden_actors::context::{NodeContext, names};
use warden_actors::service_supervisor::ServiceMsg;
use warden_actors::{
    metrics::Metrics, probe_board::ProbeBoard, process, registry::ActorRegistry, rpc, service_table::ServiceTable,
    store::Store, tree,
};
use warden_core::config::NodeConfig;
use warden_core::playbook::Catalog;
use warden_core::policy::Policies;

#[derive(clap::Args, Default, Debug)]
pub struct RunArgs {
    /// Node config file (default: the embedded demo node).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data dir for the store, logs and service data (default: the config's).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Accept fault-injection requests on the API (crash an actor on command): for tests
    /// and chaos runs, never for production.
    #[arg(long)]
    pub enable_fault_injection: bool,
}

/// Everything read from config files, checked before anything starts.
pub struct Loaded {
    pub config: NodeConfig,
    pub policies: Policies,
    pub catalog: Catalog,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn load(args: &RunArgs) -> anyhow::Result<Loaded> {
    let config = match &args.config {
        Some(p) => NodeConfig::load(&p.display().to_string(), &read(p)?)?,
        None => NodeConfig::embedded_default()?,
    };
    let policies = match &config.governance_policies {
        Some(p) => Policies::load(p, &read(Path::new(p))?)?,
        None => Policies::embedded_default()?,
    };
    let catalog = Catalog::embedded_default()?;
    Ok(Loaded { config, policies, catalog })
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loaded = match load(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: invalid configuration:\n{e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(&loaded.config.node.data_dir));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let data_dir =
        data_dir.canonicalize().with_context(|| format!("cannot resolve data dir {}", data_dir.display()))?;
    let store = Arc::new(Store::open(&data_dir)?);
    let addr = loaded.config.node.http_listen.value.clone();
    let listener = std::net::TcpListener::bind(&addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;

    let ctx = Arc::new(NodeContext {
        prefix: String::new(),
        data_dir: data_dir.clone(),
        self_exe: std::env::current_exe().context("cannot find the warden binary")?,
        store: store.clone(),
        metrics: Metrics::new(),
        services: ServiceTable::default(),
        registry: ActorRegistry::default(),
        probes: ProbeBoard::default(),
        policies: loaded.policies,
        catalog: loaded.catalog,
        config: loaded.config,
    });
    let app = AppState::new(ctx.clone(), Arc::new(listener), args.enable_fault_injection);
    let http_app = app.clone();
    let http = tree::subtree(ctx.name(names::HTTP), ctx.config.supervision.http, move || {
        let a = http_app.clone();
        vec![tree::worker(a.ctx.name(names::HTTP_SERVER), move || HttpServer { app: a.clone() })]
    });
    let (node_ref, mut node_join) = tree::spawn_node(&ctx, http).await.context("cannot start the supervision tree")?;
    info!(node = ctx.config.node.name, http = addr, data_dir = %data_dir.display(), pid = std::process::id(), "warden node started");

    // The node as a whole has a boot budget too (failure mode 3 at node level).
    let boot_ctx = ctx.clone();
    tokio::spawn(async move {
        let deadline = boot_ctx.config.node.startup_deadline_ms;
        tokio::time::sleep(Duration::from_millis(deadline)).await;
        if !boot_ctx.services.all_ready_once() {
            warn!(deadline_ms = deadline, "alert: slow boot, node not ready within its startup deadline");
        }
    });

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let code = tokio::select! {
        _ = term.recv() => { info!("SIGTERM: shutting down"); ExitCode::SUCCESS }
        _ = int.recv() => { info!("SIGINT: shutting down"); ExitCode::SUCCESS }
        _ = &mut node_join => { error!("node supervisor stopped: restart intensity exceeded, shutting down"); ExitCode::from(70) }
    };
    app.begin_shutdown();
    stop_services(&ctx).await;
    node_ref.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(3), node_join).await;
    if let Err(e) = store.sync() {
        warn!(error = %e, "final store sync failed");
    }
    info!("warden stopped");
    Ok(code)
}

/// Stops every service through the service supervisor; if it cannot answer, stops the
/// process groups directly so nothing is left behind.
async fn stop_services(ctx: &Arc<NodeContext>) {
    let grace: u64 = ctx.config.services.iter().map(|s| s.stop_grace_ms).sum();
    let budget = Duration::from_millis(grace + 5_000);
    if let Err(e) = rpc::ask(&ctx.name(names::SERVICE_SUPERVISOR), budget, ServiceMsg::StopAll).await {
        warn!(error = %e, "service supervisor did not stop the services; stopping them directly");
    }
    let left: Vec<_> = {
        let t = ctx.services.lock();
        t.services.iter().filter_map(|(n, e)| Some((n.clone(), e.pid?, e.exit.clone()?))).collect()
    };
    for (name, pid, exit) in left {
        if exit.borrow().is_none() {
            warn!(service = name, pid, "stopping leftover process group");
            process::stop_group(pid, exit, Duration::from_secs(2), false).await;
        }
    }
}
