//! `cargo xtask release`: the release pipeline. So far it runs the verified cross build of every
//! target and assembles the multi-arch images into a local OCI layout (target/oci); pushing is
//! `cargo xtask publish`. The scan and sign stages do not exist yet, and it says so instead of
//! pretending.

use xshell::Shell;

use crate::{build, image};

#[derive(clap::Args)]
pub struct Args {
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    eprintln!("release plan:");
    eprintln!("  build   every node binary for every target in cross/targets.toml (release, verified)");
    eprintln!("  image   every image of images/*.toml for every target -> target/oci/layout + oci-archive.tar");
    eprintln!("  scan    not implemented yet");
    eprintln!("  sign    not implemented yet");
    eprintln!("  (push the layout with `cargo xtask publish --registry HOST[:PORT]/REPO`)");
    if args.dry_run {
        return Ok(());
    }
    let manifest =
        build::run(sh, build::Args { arches: vec![], release: true, bins: vec![], target_dir: None, out_dir: None })?;
    let out = image::run(image::Args::default())?;
    eprintln!(
        "release: built {} targets, {} images in {} ({}); no scan or signature yet (not implemented)",
        manifest.targets.len(),
        out.images.len(),
        out.layout_dir.display(),
        out.archive.display()
    );
    Ok(())
}
