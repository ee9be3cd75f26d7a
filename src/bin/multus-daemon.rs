//! `multus-daemon`: the thick-mode server. Reads daemon-config.json, waits for the readiness
//! indicator, installs a user-provided multus config, and serves the shim's requests on
//! `<socketDir>/multus.sock` until SIGTERM/SIGINT (see `multus::thick`).
//!
//! Flags (Go `flag` style, `--` accepted too): `-config <path>` (default
//! /etc/cni/net.d/multus.d/daemon-config.json), `-version` (prints and exits 0; upstream exits 4).
//! Exit codes as upstream: 1 config unreadable or readiness indicator missing after 45 s,
//! 2 bad command line, 3 cannot listen or serve.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use multus::build_info;
use multus::multus::kube::{Cluster, NoCluster};
use multus::multus::logging;
use multus::thick::daemon::{self, Cli};
use multus::thick::daemon_config::DaemonConfig;
use multus::thick::server::Server;

/// Where the daemon's view of Kubernetes comes from. The lead replaces this with the kube-rs
/// backed `Cluster` (in-cluster config or `perNodeCertificate`, `MULTUS_NODE_NAME` for the pod
/// watch); until then a node without Kubernetes.
fn cluster(_config: &DaemonConfig) -> anyhow::Result<Arc<dyn Cluster + Send + Sync>> {
    Ok(Arc::new(NoCluster))
}

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    logging::error(&e.to_string());
    eprintln!("multus-daemon: {e}");
    ExitCode::from(code)
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
    if config.is_auto() {
        // The lead wires the config manager (src/confgen/) here: start it before serving,
        // stop it after `daemon::serve` returns.
    } else {
        // Upstream logs a failed copy and serves on; so do we (and, unlike 4.2.1, keep running).
        let file = std::path::Path::new(&config.multus_config_file);
        match daemon::install_user_config(file, &config.cni_config_dir) {
            Ok(dest) => logging::verbose(&format!("installed {} as {}", file.display(), dest.display())),
            Err(e) => logging::error(&format!("failed to copy the multus config file: {e}")),
        }
    }
    let cluster = match cluster(&config).context("cannot reach the Kubernetes API") {
        Ok(c) => c,
        Err(e) => return fail(1, format!("{e:#}")),
    };
    let exec = match daemon::delegate_exec(&config) {
        Ok(x) => x,
        Err(e) => return fail(1, e),
    };
    let cni_path = std::env::var("CNI_PATH").unwrap_or_default();
    let server = Server::new(config, cluster, exec, cni_path);

    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(3, format!("cannot start the runtime: {e}")),
    };
    let served = rt.block_on(async {
        let shutdown = daemon::signals().context("cannot handle signals")?;
        daemon::serve(server, shutdown, |_| {}).await.context("cannot serve")
    });
    match served {
        Ok(()) => {
            logging::verbose("multus-daemon stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(3, format!("{e:#}")),
    }
}
