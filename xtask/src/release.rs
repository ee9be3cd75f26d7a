//! `cargo xtask release`: the release pipeline. Until the build, image, scan and sign stages
//! exist, it says exactly what is and is not produced yet instead of pretending.

use xshell::{Shell, cmd};

#[derive(clap::Args)]
pub struct Args {
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    eprintln!("release plan:");
    eprintln!("  build   host release binaries (cross targets: not implemented yet)");
    eprintln!("  image   not implemented yet");
    eprintln!("  scan    not implemented yet");
    eprintln!("  sign    not implemented yet");
    if args.dry_run {
        return Ok(());
    }
    cmd!(sh, "cargo build --release --locked --bins").run()?;
    let dir = sh.current_dir().join("target/release");
    eprintln!("summary: host binaries in {}", dir.display());
    for name in crate::node_binaries()? {
        let meta = std::fs::metadata(dir.join(&name))?;
        eprintln!("  {name:<20} {:>10} bytes", meta.len());
    }
    Ok(())
}
