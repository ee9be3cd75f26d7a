//! `thin_entrypoint`: the thin DaemonSet's main process. Parses the flags, turns SIGTERM/SIGINT
//! into a stop flag and runs `multus_core::confgen::entrypoint`; any error exits 1 with the message on
//! stderr (upstream exited 0).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use multus_core::build_info;
use multus_core::confgen::entrypoint::{self, Args};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> anyhow::Result<()> {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if unsafe { libc::signal(sig, handler as libc::sighandler_t) } == libc::SIG_ERR {
            anyhow::bail!("failed to install the handler for signal {sig}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if build_info::wants_version(&argv) {
        println!("{}", build_info::version_line("thin_entrypoint"));
        return ExitCode::SUCCESS;
    }
    let args = Args::parse_from(&argv);
    let result =
        install_signal_handlers().and_then(|()| Ok(entrypoint::run(&args, &|k| std::env::var(k).ok(), &STOP)?));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thin_entrypoint: {e:#}");
            ExitCode::FAILURE
        }
    }
}
