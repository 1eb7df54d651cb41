//! `warden run`: load and check every config file, take the data dir, open the store, start
//! the supervision tree, then wait for SIGINT/SIGTERM or a meltdown, and
//! shut down in order: playbook runs, services in reverse dependency order, the tree, a final
//! store sync. SIGHUP reloads the files (an invalid set is refused; the running one stays).
//!
//! Exit codes: 0 after a signal, 2 on invalid configuration, 70 when the node supervisor
//! gave up (restart intensity exceeded), 1 when warden cannot start (a locked data dir, a
//! busy API address, a corrupt store journal: the message says which). A store that stops
//! taking writes (a full disk) degrades warden rather than stopping it.

use crate::http::{AppState, server::HttpServer};
use crate::{load, systemd};
use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use warden_actors::addr::AbortOnDrop;
use warden_actors::data_dir::DataDir;
use warden_actors::governance::seal::AuditSeal;
use warden_actors::node::{Node, NodeParts};
use warden_actors::process::{self, cgroup::Containment};
use warden_actors::store::Store;
use warden_actors::{fault, tree};
use warden_core::config::HttpLimits;

pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_MELTDOWN: u8 = 70;

#[derive(clap::Args, Default, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub node: load::NodeArgs,
    /// Accept fault-injection requests on the API (crash an actor on command). Only in
    /// builds with the `fault-injection` feature (the test suite's); never for production.
    #[arg(long)]
    pub enable_fault_injection: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.node.url {
        anyhow::bail!("--url {url} names a running node's API; `warden run` starts one (use --config)");
    }
    // Taken before anything starts: a SIGTERM while the node starts (its API may already
    // answer) waits for the loop below and shuts down cleanly, instead of ending warden by
    // the signal's default action with its services left behind.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let loaded = match args.node.load() {
        Ok(l) => l,
        Err(problems) => {
            if crate::telemetry::is_json() {
                error!(problems = %problems, "invalid configuration");
            } else {
                eprintln!("error: invalid configuration:\n{problems}");
            }
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if args.enable_fault_injection && !fault::BUILT {
        anyhow::bail!("{}", fault::FaultError::NotBuilt);
    }
    let config = loaded.config;
    let data_dir = DataDir::new(&config.data_dir);
    let _lock = data_dir.lock(Some(config.http_listen))?;
    // The token book: made at the first start (the data dir's default), with one admin.
    let tokens = match loaded.tokens {
        Some(book) => book,
        None => {
            let (book, token_file) = crate::tokens_cmd::first_admin(&config.tokens.path)
                .with_context(|| format!("cannot make the API token book {}", config.tokens.path.display()))?;
            info!(token_file = %token_file.display(), "made an admin API token");
            if !crate::telemetry::is_json() {
                eprintln!("warden: the API admin token is in {} (mode 0600)", token_file.display());
            }
            book
        }
    };
    let auth = crate::http::auth::Auth::new(config.tokens.path.clone(), tokens);
    let store =
        Store::open(&data_dir).with_context(|| format!("cannot open the store in {}", data_dir.root().display()))?;
    // The audit key lives outside the data dir; it is made at the first start only.
    let chain_is_empty = store.audit_head().await.map(|h| h.is_none()).unwrap_or(false);
    let audit_seal = AuditSeal::open(&config.audit, chain_is_empty);
    let addr = config.http_listen;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;

    // A service that forks and exits leaves its children to warden, inside its cgroup.
    if let Err(e) = process::reaper::become_subreaper() {
        warn!(error = %e, "cannot become a child subreaper; orphans of services go to init");
    }
    tokio::spawn(process::reaper::run());
    let containment = Containment::detect(&data_dir.id());
    if containment.is_active() {
        info!(containment = %containment, "each service runs in its own cgroup");
    } else {
        warn!(containment = %containment, "no cgroups: a stop reaches each service's process group only, memory limits are not enforced");
    }
    for shortfall in containment.shortfalls(&config.services) {
        warn!("{shortfall}");
    }
    let containment_for_cleanup = containment.clone();
    match loaded.policies.mode {
        warden_core::policy::Mode::Dev => warn!(
            policy = loaded.policies_from,
            "governance in dev mode: tier 3 actions (kills, restores, deletions) are approved at once; give the node a policy in production mode before it runs anything that matters"
        ),
        warden_core::policy::Mode::Production => {
            info!(policy = loaded.policies_from, "governance in production mode: tier 3 actions wait for an approver")
        }
    }
    let name = config.name.clone();
    let node = Node::new(NodeParts {
        containment,
        config,
        policies: loaded.policies,
        catalog: loaded.catalog,
        self_exe: std::env::current_exe().context("cannot find the warden binary")?,
        data_dir: data_dir.clone(),
        store: store.clone(),
        audit_seal,
    });
    let views = node.views();
    let limits = http_limits(views.config.get().http);
    let app = AppState::new(
        views.clone(),
        node.addrs().clone(),
        Arc::new(listener),
        args.enable_fault_injection,
        limits,
        auth,
    );
    let http_app = app.clone();
    let server_name = crate::http::server::PATH;
    let http = tree::subtree(crate::http::PATH, views.config.get().supervision.http, move || {
        let a = http_app.clone();
        vec![tree::worker(server_name, move || HttpServer { app: a.clone() })]
    });
    let running = node.spawn(http).await.context("cannot start the supervision tree")?;
    let mut join = running.join;
    info!(node = name, http = %addr, data_dir = %data_dir.root().display(), pid = std::process::id(), "warden node started");
    // So the command line finds this node without --config; gone with it.
    let mut shown = addr;
    if shown.ip().is_unspecified() {
        shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let _published = match crate::runtime_file::publish(&crate::runtime_file::Published {
        pid: std::process::id(),
        name: name.clone(),
        url: format!("http://{shown}"),
        data_dir: data_dir.root().to_path_buf(),
        config: args.node.config.as_deref().and_then(|c| std::path::absolute(c).ok()),
    }) {
        Ok(p) => Some(p),
        Err(why) => {
            warn!("cannot publish the node's address for the command line ({why}); commands need --config or --url");
            None
        }
    };

    // One line when every service has been ready once; the node as a whole has a boot
    // budget too (failure mode 3 at node level).
    let boot = views.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let deadline = boot.config.get().startup_deadline;
        while started.elapsed() < deadline {
            if boot.services.all_ready_once() {
                let c = boot.config.get();
                info!(
                    services = c.services.len(),
                    probes = c.probes.len(),
                    api = %format!("http://{addr}"),
                    after_ms = started.elapsed().as_millis() as u64,
                    "node ready"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        warn!(
            deadline_ms = deadline.as_millis() as u64,
            "alert: slow boot, node not ready within its startup deadline"
        );
    });

    let _watchdog = AbortOnDrop(tokio::spawn(systemd::watchdog(running.supervisor.clone(), node.addrs().clone())));
    systemd::ready();

    let code = loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break ExitCode::SUCCESS }
            _ = int.recv() => { info!("SIGINT: shutting down"); break ExitCode::SUCCESS }
            _ = hup.recv() => reload(&args, &node).await,
            _ = &mut join => {
                error!("node supervisor stopped: restart intensity exceeded, shutting down");
                break ExitCode::from(EXIT_MELTDOWN)
            }
        }
    };
    systemd::stopping();
    app.begin_shutdown();
    node.shutdown().await;
    // The head as it stands, signed: the next start checks the chain against it.
    if let Err(e) = node.addrs().audit.checkpoint().await {
        warn!(error = %e, "cannot sign the audit chain's head at shutdown");
    }
    running.supervisor.stop(None);
    if !join.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(3), join).await;
    }
    containment_for_cleanup.remove_node();
    if let Err(e) = store.sync_now() {
        warn!(error = %e, "final store sync failed");
    }
    info!("warden stopped");
    Ok(code)
}

/// SIGHUP: read the files again; apply them if they are valid, keep the running ones if not.
async fn reload(args: &RunArgs, node: &Node) {
    info!("SIGHUP: reloading the configuration");
    let loaded = match args.node.load() {
        Ok(l) => l,
        Err(problems) => {
            error!("alert: configuration reload refused, the running configuration stays:\n{problems}");
            systemd::status("reload refused: invalid configuration");
            return;
        }
    };
    match node.reload(loaded.config, loaded.policies, loaded.catalog).await {
        Ok(r) => {
            let names =
                |v: &[warden_core::config::ServiceName]| v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(",");
            info!(
                changed = names(&r.services.changed),
                added = names(&r.services.added),
                removed = names(&r.services.removed),
                unchanged = r.services.unchanged.len(),
                probes_changed = r.probes_changed,
                "configuration reloaded"
            );
            systemd::status("supervising (configuration reloaded)");
        }
        Err(e) => {
            error!(error = %e, "alert: configuration reload refused, the running configuration stays");
            systemd::status("reload refused");
        }
    }
}

/// Descriptors kept for supervision (processes, pipes, probes, the store) whatever the API
/// holds.
const FDS_FOR_SUPERVISION: u64 = 1024;

/// Raises the open-files limit to its hard limit (as servers do) and caps the API's
/// connections so that supervision always has descriptors left.
fn http_limits(wanted: HttpLimits) -> HttpLimits {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((given, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
        warden_actors::process::remember_inherited_open_files(given);
    }
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if hard > soft => setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_or(soft, |()| hard),
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    let room = usize::try_from(soft.saturating_sub(FDS_FOR_SUPERVISION) / 2).unwrap_or(usize::MAX).max(16);
    if wanted.max_connections > room {
        warn!(
            wanted = wanted.max_connections,
            capped = room,
            open_files = soft,
            "http.max_connections capped to keep descriptors for supervision"
        );
    }
    HttpLimits { max_connections: wanted.max_connections.min(room), ..wanted }
}
