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
mod dist;
mod elf;
mod github_release;
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
    Build {
        #[command(flatten)]
        args: build::Args,
        /// Print the binaries as JSON on stdout (release.json's `binaries` shape).
        #[arg(long)]
        json: bool,
    },
    /// Print the targets of cross/targets.toml (`--json` for the CI matrix).
    Targets {
        #[arg(long)]
        json: bool,
        /// Install the pinned compiler of each target (rustup toolchains, Debian's cross toolchain).
        #[arg(long)]
        install_toolchains: bool,
        /// Only these architectures (with --install-toolchains; repeatable).
        #[arg(long = "arch")]
        arches: Vec<String>,
    },
    /// Assemble the multi-arch OCI images (layout + oci-archive) from the build manifest, verified.
    Image {
        #[command(flatten)]
        args: image::Args,
        /// Print the images as JSON on stdout (release.json's `images` shape, with layout and archive).
        #[arg(long)]
        json: bool,
    },
    /// Push the OCI layout to a registry (HOST[:PORT]/REPO) and print digest-pinned references.
    Publish {
        #[command(flatten)]
        args: publish::Args,
        /// Print the registry and every tag with its digest and pinned reference as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The release gate: Trivy (when installed) and RustSec over every platform image of the layout.
    Scan(scan::Args),
    /// Write a cosign key pair (cosign.key encrypted with COSIGN_PASSWORD, cosign.pub).
    Keygen(sign::KeygenArgs),
    /// Sign every index and platform manifest of the layout (cosign format) and attest their SBOMs.
    Sign(sign::SignArgs),
    /// Verify the signatures, attestations and digests of oci:DIR[:REF] or HOST[:PORT]/REPO:TAG.
    Verify {
        #[command(flatten)]
        args: sign::VerifyArgs,
        /// Print every verified reference (digest, manifests, signatures, attestations) as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The release pipeline (build → image → scan → sign → publish → verify).
    Release(release::Args),
    /// Publish a release's dist/ (checked against its signed SHA256SUMS) as a GitHub Release.
    GithubRelease(github_release::Args),
    /// Build the CRI tests' sandbox image (target/cri/pause.oci.tar; `test` builds it too).
    PauseImage,
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

/// A command's `--json` result: one canonical JSON document on stdout (progress stays on stderr).
fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    print!("{}", report::canonical_json(serde_json::to_value(v)?));
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project::root());
    match cli.command {
        Cmd::Test(a) => test::run(&sh, a),
        Cmd::Bench(a) => bench::run(&sh, a),
        Cmd::Build { args, json } => {
            let m = build::run(&sh, &args.resolve())?;
            if json {
                print_json(&serde_json::json!({ "binaries": record::binaries(&m, "") }))?;
            }
            Ok(())
        }
        Cmd::Targets { json, install_toolchains, arches } => {
            let all = targets::load(&project::root())?;
            if install_toolchains {
                let chosen = targets::select(&all, &arches)?;
                for (arch, compiler) in toolchain::install(&sh, &project::root(), &chosen)? {
                    eprintln!("  {arch:<8} {compiler}");
                }
                return Ok(());
            }
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for t in all {
                    println!("{:<8} {:<32} {:<14} {}", t.arch, t.triple, t.platform, t.rustc);
                }
            }
            Ok(())
        }
        Cmd::Image { args, json } => {
            let out = image::run(&args.resolve())?;
            if json {
                print_json(&serde_json::json!({
                    "layout": out.layout_dir,
                    "archive": out.archive,
                    "images": record::images(&out.images, &|_| None, &|_| None),
                }))?;
            }
            Ok(())
        }
        Cmd::Publish { args, json } => {
            let p = publish::run(&args.resolve()?)?;
            if json {
                print_json(&p)?;
            } else {
                eprintln!("pinned references:");
                for t in &p.tags {
                    println!("{}", t.pinned);
                }
            }
            Ok(())
        }
        Cmd::Scan(a) => scan::run(&a.resolve()?).map(|_| ()),
        Cmd::Keygen(a) => sign::keygen(a),
        Cmd::Sign(a) => sign::run_sign(&a.resolve()?).map(|_| ()),
        Cmd::Verify { args, json } => {
            let checked = sign::run_verify(&args.resolve()?)?;
            if json {
                print_json(&serde_json::json!({ "verified": checked }))?;
            }
            Ok(())
        }
        Cmd::Release(a) => release::run(&sh, a),
        Cmd::GithubRelease(a) => github_release::run(a),
        Cmd::PauseImage => image::pause::build(&sh, &project::root()).map(drop),
    }
}
