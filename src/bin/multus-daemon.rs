//! `multus-daemon`: the thick-mode server (see `multus::thick::daemon::run`). Reads
//! daemon-config.json and serves the shim's requests on `<socketDir>/multus.sock` until
//! SIGTERM/SIGINT.
//!
//! Flags (Go `flag` style, `--` accepted too): `-config <path>` (default
//! /etc/cni/net.d/multus.d/daemon-config.json), `-version` (prints and exits 0; upstream exits 4).
//! Exit codes as upstream: 1 config unreadable (and what `run` says), 2 bad command line, else
//! `run`'s: 1 readiness indicator missing or API server unusable, 2 config manager failure, 3
//! cannot listen or serve.

use std::process::ExitCode;

use multus::build_info;
use multus::logging;
use multus::thick::daemon::{self, Cli, Env};
use multus::thick::daemon_config::DaemonConfig;

fn fail(code: u8, message: &str) -> ExitCode {
    logging::error(message);
    eprintln!("multus-daemon: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // Started as cert-approver or kubeconfig_generator (the image links those names to us).
    if let Some(code) = multus::multicall::dispatch(&argv) {
        return ExitCode::from(code);
    }
    let args: Vec<String> = argv[1..].to_vec();
    let config_path = match daemon::parse_args(&args) {
        Ok(Cli::Run { config }) => {
            // Still single-threaded: may re-execute the daemon (see the function).
            daemon::tune_malloc_at_start();
            config
        }
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
        Err(e) => return fail(1, &e.to_string()),
    };
    config.init_logging();
    let env = Env::from_process();
    logging::verbose(&format!(
        "multus-daemon {} starting with {} (node {:?})",
        build_info::VERSION,
        config_path.display(),
        env.node
    ));
    match daemon::run(config, env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => fail(exit.code(), &exit.to_string()),
    }
}
