//! `cargo xtask test`: installs what the tests need (Debian packages, as root), then runs the
//! fmt check, clippy with warnings as errors, and every test suite, printing phase timings.

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::report::Phases;

#[derive(clap::Args)]
pub struct Args {
    /// Skip installing test dependencies.
    #[arg(long)]
    no_install: bool,
    /// Skip fmt and clippy (only the test suites).
    #[arg(long)]
    no_lint: bool,
    /// Only run test names matching this filter (passed to the test binaries).
    filter: Option<String>,
}

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    let mut phases = Phases::default();
    let result = run_phases(sh, &args, &mut phases);
    eprint!("{}", phases.summary());
    result
}

/// Tools from crates.io the tests use as independent judges, installed under target/tools.
const TOOLS: &[(&str, &str)] = &[("rust-audit-info", "0.5.4")];

fn install_tools(sh: &Shell) -> anyhow::Result<()> {
    for (name, version) in TOOLS {
        if sh.path_exists(format!("target/tools/bin/{name}")) {
            continue;
        }
        cmd!(sh, "cargo install --locked --quiet --root target/tools {name} --version {version}")
            .run()
            .with_context(|| format!("installing {name} {version}"))?;
    }
    Ok(())
}

fn run_phases(sh: &Shell, args: &Args, phases: &mut Phases) -> anyhow::Result<()> {
    if !args.no_install {
        phases.run("install test dependencies", || {
            cmd!(sh, "bash scripts/install-test-deps.sh").run().context("scripts/install-test-deps.sh failed")?;
            install_tools(sh)
        })?;
        phases.run("install cross toolchains", || {
            let sysroot = crate::toolchain::debian_sysroot(&crate::project::root());
            cmd!(sh, "bash scripts/install-cross-toolchains.sh {sysroot}")
                .run()
                .context("scripts/install-cross-toolchains.sh failed")
        })?;
    }
    if !args.no_lint {
        phases
            .run("cargo fmt --check", || cmd!(sh, "cargo fmt --all -- --check").run().context("formatting differs"))?;
        phases.run("cargo clippy", || {
            cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings")
                .run()
                .context("clippy found problems")
        })?;
    }
    let filter: Vec<String> = args.filter.iter().cloned().collect();
    phases.run("build tests", || {
        cmd!(sh, "cargo test --workspace --locked --no-run").run().context("test build failed")
    })?;
    phases.run("cargo test", || {
        cmd!(sh, "cargo test --workspace --locked -- {filter...}").run().context("tests failed")
    })?;
    Ok(())
}
