//! `cargo xtask bench [NAME]...`: the benchmarks. Each measures its baseline in the same run and
//! prints a ratio; nothing here asserts on time.
//!
//! - `cni`: the CNI core benchmarks (`benches/cni.rs`, release profile).
//! - `build`: cold and warm release build of the node binaries per target, each cold build in a
//!   fresh directory; ratios against the amd64 cold build of the same run.

use std::time::{Duration, Instant};

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::build;

#[derive(clap::Args)]
pub struct Args {
    /// Benchmarks to run: cni, build (default: all).
    names: Vec<String>,
}

const ALL: &[&str] = &["cni", "build"];

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    for n in &args.names {
        if !ALL.contains(&n.as_str()) {
            bail!("unknown benchmark {n:?}; known: {ALL:?}");
        }
    }
    let wanted = |n: &str| args.names.is_empty() || args.names.iter().any(|a| a == n);
    if wanted("cni") {
        cmd!(sh, "bash scripts/install-test-deps.sh").run()?;
        cmd!(sh, "cargo bench --locked --bench cni").run()?;
    }
    if wanted("build") {
        build_times(sh)?;
    }
    Ok(())
}

fn build_times(sh: &Shell) -> anyhow::Result<()> {
    let root = crate::project_root();
    let targets = crate::targets::load(&root)?;
    let mut rows: Vec<(String, String, Duration, Duration)> = Vec::new();
    for t in &targets {
        let base = root.join("target/bench-build").join(&t.arch);
        let _ = std::fs::remove_dir_all(&base);
        let args = build::Args {
            arches: vec![t.arch.clone()],
            release: true,
            bins: vec![],
            target_dir: Some(base.join("target")),
            out_dir: Some(base.join("out")),
        };
        let start = Instant::now();
        let m = build::run(sh, args.clone())?;
        let cold = start.elapsed();
        // Warm: one source file of the library changed, everything else cached.
        cmd!(sh, "touch src/lib.rs").run()?;
        let start = Instant::now();
        build::run(sh, args)?;
        let warm = start.elapsed();
        rows.push((t.arch.clone(), m.targets[0].toolchain.clone(), cold, warm));
        let _ = std::fs::remove_dir_all(&base);
    }
    let baseline = rows[0].2.as_secs_f64();
    println!("bench build (release, every node binary, incl. verification; cold = fresh target dir):");
    println!("  {:<8} {:<16} {:>9} {:>9} {:>14}", "arch", "toolchain", "cold s", "warm s", "cold/amd64");
    for (arch, tc, cold, warm) in &rows {
        println!(
            "  {:<8} {:<16} {:>9.1} {:>9.1} {:>14.2}",
            arch,
            tc,
            cold.as_secs_f64(),
            warm.as_secs_f64(),
            cold.as_secs_f64() / baseline
        );
    }
    Ok(())
}
