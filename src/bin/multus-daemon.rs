//! `multus-daemon`: the thick-mode server. Reads daemon-config.json, waits for the readiness
//! indicator, installs a user-provided multus config, and serves the shim's requests on
//! `<socketDir>/multus.sock` until SIGTERM/SIGINT (see `multus::thick`).
//!
//! Flags (Go `flag` style, `--` accepted too): `-config <path>` (default
//! /etc/cni/net.d/multus.d/daemon-config.json), `-version` (prints and exits 0; upstream exits 4).
//! Exit codes as upstream: 1 config unreadable, readiness indicator missing after 45 s or API
//! server unusable, 2 bad command line or config manager failure (also: readiness indicator
//! removed while running), 3 cannot listen or serve.
//!
//! Kubernetes: the `kubeconfig` key of daemon-config, else `KUBECONFIG`, else in-cluster settings
//! (`k8s::client::daemon_source`); with none, the daemon serves static delegates only. Pods of
//! `MULTUS_NODE_NAME` and every NetworkAttachmentDefinition are watched (`k8s::informer`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use multus::build_info;
use multus::confgen::manager::{Fatal, Manager, ManagerConfig, ManagerHandle};
use multus::k8s::client;
use multus::k8s::informer::InformerCluster;
use multus::multus::kube::{Cluster, NoCluster};
use multus::multus::logging;
use multus::thick::daemon::{self, Cli};
use multus::thick::daemon_config::DaemonConfig;
use multus::thick::server::Server;

/// How long the daemon waits for its pod and NAD caches to fill before serving (upstream: 20 s;
/// an unsynced cache only means live lookups).
const CACHE_SYNC: std::time::Duration = std::time::Duration::from_secs(20);

/// The daemon's view of Kubernetes: watch-fed caches when an API server is configured, else none.
async fn cluster(config: &DaemonConfig, node: &str) -> anyhow::Result<Arc<dyn Cluster + Send + Sync>> {
    let kubeconfig = config.raw.get("kubeconfig").and_then(|v| v.as_str()).unwrap_or_default();
    let source = client::daemon_source(kubeconfig, |k| std::env::var(k).ok());
    let Some(client) = client::connect(&source).await? else {
        logging::verbose("no Kubernetes API server configured: serving static delegates only");
        return Ok(Arc::new(NoCluster));
    };
    if node.is_empty() {
        logging::error("MULTUS_NODE_NAME is not set: watching the pods of every node");
    }
    let handle = tokio::runtime::Handle::current();
    Ok(Arc::new(InformerCluster::start(handle, client, node, CACHE_SYNC).await))
}

/// In `auto` mode the config manager generates `00-multus.conf` (and watches the primary);
/// otherwise the user's file is copied into cniConfigDir (a failed copy is logged and the daemon
/// serves on, as upstream; unlike 4.2.1 it keeps running).
fn config_manager(config: &DaemonConfig) -> Result<Option<ManagerHandle>, String> {
    if !config.is_auto() {
        let file = std::path::Path::new(&config.multus_config_file);
        match daemon::install_user_config(file, &config.cni_config_dir) {
            Ok(dest) => logging::verbose(&format!("installed {} as {}", file.display(), dest.display())),
            Err(e) => logging::error(&format!("failed to copy the multus config file: {e}")),
        }
        return Ok(None);
    }
    ManagerConfig::from_daemon_config(&config.raw)
        .and_then(Manager::start)
        .map(Some)
        .map_err(|e| format!("config manager: {e}"))
}

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    logging::error(&e.to_string());
    eprintln!("multus-daemon: {e}");
    ExitCode::from(code)
}

/// Lifts the soft limit on open files to the hard one (Go programs do this at start): every
/// connection is a descriptor, and `maxConnections` bounds them, not the soft default of 1024.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: get/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config_path = match daemon::parse_args(&args) {
        Ok(Cli::Run { config }) => config,
        Ok(Cli::Version) => {
            println!("{}", build_info::version_line("multus-daemon"));
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Help) => {
            eprint!("{}", daemon::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{e}\n{}", daemon::USAGE);
            return ExitCode::from(2);
        }
    };
    let config = match DaemonConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) => return fail(1, e),
    };
    logging::init_with(&config.log_file, &config.log_level, config.log_to_stderr, &config.log_options);
    raise_open_files_limit();
    let node = std::env::var("MULTUS_NODE_NAME").unwrap_or_default();
    logging::verbose(&format!(
        "multus-daemon {} starting with {} (node {node:?})",
        build_info::VERSION,
        config_path.display()
    ));

    if !config.readiness_indicator_file.is_empty() {
        let file = std::path::Path::new(&config.readiness_indicator_file);
        if !daemon::wait_for_file(file, daemon::READINESS_WAIT, daemon::READINESS_POLL) {
            return fail(1, format!("readiness indicator file {} did not appear within 45s", file.display()));
        }
    }
    let mut manager = match config_manager(&config) {
        Ok(m) => m,
        Err(e) => return fail(2, e),
    };
    let fatal = manager.as_mut().and_then(ManagerHandle::take_fatal);
    let exec = match daemon::delegate_exec(&config) {
        Ok(x) => x,
        Err(e) => return fail(1, e),
    };
    let cni_path = std::env::var("CNI_PATH").unwrap_or_default();
    // The blocking pool runs the requests' work (at most maxConcurrentRequests at once) and a few
    // cache lookups: sized to that, not to tokio's default of 512 threads.
    let blocking = config.max_concurrent_requests + 8;
    let rt = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(blocking).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(3, format!("cannot start the runtime: {e}")),
    };
    let cluster = match rt.block_on(cluster(&config, &node)).context("cannot use the Kubernetes API") {
        Ok(c) => c,
        Err(e) => return fail(1, format!("{e:#}")),
    };
    let server = Server::new(config, cluster, exec, cni_path);
    // Serve until SIGTERM/SIGINT, or until the config manager reports a fatal condition.
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<Fatal>();
    if let Some(rx) = fatal {
        std::thread::spawn(move || {
            if let Ok(f) = rx.recv() {
                let _ = fatal_tx.send(f);
            }
        });
    }
    let served = rt.block_on(async {
        let signals = daemon::signals().context("cannot handle signals")?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Option<Fatal>>();
        tokio::spawn(async move {
            let why = tokio::select! {
                () = signals => None,
                Ok(f) = fatal_rx => Some(f),
            };
            let _ = stop_tx.send(why);
        });
        let (why_tx, why_rx) = tokio::sync::oneshot::channel();
        let shutdown = async move {
            let why = stop_rx.await.ok().flatten();
            let _ = why_tx.send(why);
        };
        daemon::serve(server, shutdown, |_| {}).await.context("cannot serve")?;
        anyhow::Ok(why_rx.await.ok().flatten())
    });
    // Work still running past the shutdown deadline is not waited for (the process exits and its
    // delegates die with their parent-death signal).
    rt.shutdown_background();
    if let Some(m) = manager {
        if let Err(e) = m.stop() {
            logging::error(&format!("config manager: {e}"));
        }
    }
    match served {
        Ok(None) => {
            logging::verbose("multus-daemon stopped");
            ExitCode::SUCCESS
        }
        Ok(Some(f)) => fail(f.exit_code() as u8, format!("config manager: {f}")),
        Err(e) => fail(3, format!("{e:#}")),
    }
}
