//! `cargo xtask release`: the release pipeline. So far it runs the verified cross build of every
//! target; the image, scan and sign stages do not exist yet, and it says so instead of pretending.

use xshell::Shell;

use crate::build;

#[derive(clap::Args)]
pub struct Args {
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    eprintln!("release plan:");
    eprintln!("  build   every node binary for every target in cross/targets.toml (release, verified)");
    eprintln!("  image   not implemented yet");
    eprintln!("  scan    not implemented yet");
    eprintln!("  sign    not implemented yet");
    if args.dry_run {
        return Ok(());
    }
    let manifest =
        build::run(sh, build::Args { arches: vec![], release: true, bins: vec![], target_dir: None, out_dir: None })?;
    eprintln!(
        "release: built {} targets; no image, scan or signature yet (those stages are not implemented)",
        manifest.targets.len()
    );
    Ok(())
}
