//! `cargo xtask bench`: runs the benchmark targets (release profile). Each benchmark measures its
//! own baseline in the same run and prints a ratio; nothing here asserts on time.

use xshell::{Shell, cmd};

#[derive(clap::Args)]
pub struct Args {
    /// Only run benchmarks whose name contains this.
    filter: Option<String>,
}

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    cmd!(sh, "bash scripts/install-test-deps.sh").run()?;
    let filter: Vec<String> = args.filter.into_iter().collect();
    cmd!(sh, "cargo bench --locked --bench cni -- {filter...}").run()?;
    Ok(())
}
