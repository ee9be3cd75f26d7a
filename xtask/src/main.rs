//! `cargo xtask`: the project's automation. One clap command per subcommand module; every command
//! runs from the workspace root through one `xshell::Shell` and ends with a short summary.
//!
//! This file is the command line only: each command's clap `Args` are resolved into its typed
//! `Options` (defaults decided, flags checked) and handed to the module's `run`. Commands call one
//! another with `Options` built field by field, never through clap structs. Shared helpers live in
//! `project` (repository facts) and `report` (phase timings, canonical JSON).

mod auditable;
mod bench;
mod build;
mod elf;
mod image;
mod inventory;
mod outcome;
mod project;
mod publish;
mod record;
mod registry;
mod release;
mod report;
mod sbom;
mod scan;
mod sign;
mod size;
mod targets;
mod test;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xshell::Shell;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "multus build, test and release automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install test dependencies when missing, then fmt check, clippy and every test suite.
    Test(test::Args),
    /// Run the benchmarks and print ratios against baselines measured in the same run.
    Bench(bench::Args),
    /// Cross-compile every node binary for the targets in cross/targets.toml, verified.
    Build(build::Args),
    /// Print the targets of cross/targets.toml (`--json` for the CI matrix).
    Targets {
        #[arg(long)]
        json: bool,
    },
    /// Assemble the multi-arch OCI images (layout + oci-archive) from the build manifest, verified.
    Image(image::Args),
    /// Push the OCI layout to a registry (HOST[:PORT]/REPO) and print digest-pinned references.
    Publish(publish::Args),
    /// The release gate: Trivy (when installed) and RustSec over every platform image of the layout.
    Scan(scan::Args),
    /// Write a cosign key pair (cosign.key encrypted with COSIGN_PASSWORD, cosign.pub).
    Keygen(sign::KeygenArgs),
    /// Sign every index and platform manifest of the layout (cosign format) and attest their SBOMs.
    Sign(sign::SignArgs),
    /// Verify the signatures, attestations and digests of oci:DIR[:REF] or HOST[:PORT]/REPO:TAG.
    Verify(sign::VerifyArgs),
    /// The release pipeline (build → image → scan → sign → publish → verify).
    Release(release::Args),
}

/// Exit codes: see `outcome` (0 ok, 1 tool or infrastructure, 2 usage, 3 gate, 4 verification,
/// 5 refused).
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::from(outcome::exit_code(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project::root());
    match cli.command {
        Cmd::Test(a) => test::run(&sh, a),
        Cmd::Bench(a) => bench::run(&sh, a),
        Cmd::Build(a) => build::run(&sh, &a.resolve()).map(|_| ()),
        Cmd::Targets { json } => {
            let all = targets::load(&project::root())?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for t in all {
                    println!("{:<8} {:<32} {}", t.arch, t.triple, t.platform);
                }
            }
            Ok(())
        }
        Cmd::Image(a) => image::run(&a.resolve()).map(|_| ()),
        Cmd::Publish(a) => publish::run(&a.resolve()?),
        Cmd::Scan(a) => scan::run(&a.resolve()?).map(|_| ()),
        Cmd::Keygen(a) => sign::keygen(a),
        Cmd::Sign(a) => sign::run_sign(&a.resolve()?).map(|_| ()),
        Cmd::Verify(a) => sign::run_verify(&a.resolve()?).map(|_| ()),
        Cmd::Release(a) => release::run(&sh, a),
    }
}
