//! `cargo xtask`: the project's automation. One clap command per subcommand module; every command
//! runs from the workspace root through one `xshell::Shell` and ends with a short summary.

mod auditable;
mod bench;
mod build;
mod elf;
mod image;
mod inventory;
mod publish;
mod registry;
mod release;
mod sbom;
mod scan;
mod sign;
mod targets;
mod test;
mod toolchain;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match cli.command {
        Cmd::Test(a) => test::run(&sh, a),
        Cmd::Bench(a) => bench::run(&sh, a),
        Cmd::Build(a) => build::run(&sh, a).map(|_| ()),
        Cmd::Targets { json } => {
            let all = targets::load(&project_root())?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for t in all {
                    println!("{:<8} {:<32} {}", t.arch, t.triple, t.platform);
                }
            }
            Ok(())
        }
        Cmd::Image(a) => image::run(a).map(|_| ()),
        Cmd::Publish(a) => publish::run(a),
        Cmd::Scan(a) => scan::run(a).map(|_| ()),
        Cmd::Keygen(a) => sign::keygen(a),
        Cmd::Sign(a) => sign::run_sign(a).map(|_| ()),
        Cmd::Verify(a) => sign::run_verify(a).map(|_| ()),
        Cmd::Release(a) => release::run(&sh, a),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

/// The binaries of the root package (what ships to nodes), from `cargo metadata`.
pub fn node_binaries() -> anyhow::Result<Vec<String>> {
    let meta = cargo_metadata::MetadataCommand::new().current_dir(project_root()).no_deps().exec()?;
    let pkg = meta
        .packages
        .iter()
        .find(|p| p.name.as_str() == "multus")
        .ok_or_else(|| anyhow::anyhow!("no multus package"))?;
    let mut bins: Vec<String> =
        pkg.targets.iter().filter(|t| t.kind.iter().any(|k| k.to_string() == "bin")).map(|t| t.name.clone()).collect();
    bins.sort();
    Ok(bins)
}

/// Records how long each phase of a command took and prints them at the end.
#[derive(Default)]
pub struct Phases {
    done: Vec<(String, Duration, bool)>,
}

impl Phases {
    /// Runs one phase, printing its start and end as plain lines (readable in CI logs).
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        eprintln!("==> {name}");
        let start = Instant::now();
        let r = f();
        let took = start.elapsed();
        eprintln!("<== {name}: {} in {:.1}s", if r.is_ok() { "ok" } else { "FAILED" }, took.as_secs_f64());
        self.done.push((name.to_string(), took, r.is_ok()));
        r
    }

    pub fn summary(&self) -> String {
        let mut s = String::from("phase timings:\n");
        let total: Duration = self.done.iter().map(|(_, d, _)| *d).sum();
        for (name, d, ok) in &self.done {
            s.push_str(&format!("  {:<28} {:>8.1}s  {}\n", name, d.as_secs_f64(), if *ok { "ok" } else { "FAILED" }));
        }
        s.push_str(&format!("  {:<28} {:>8.1}s\n", "total", total.as_secs_f64()));
        s
    }
}

/// Pretty JSON with every object's keys sorted, whatever serde_json's `preserve_order` feature is
/// (the root package turns it on, so workspace builds unify it into ours): documents built with
/// `json!` come out the same from `cargo test -p xtask` and `cargo test --workspace`.
pub fn canonical_json(mut v: serde_json::Value) -> String {
    v.sort_all_objects();
    serde_json::to_string_pretty(&v).expect("JSON values serialise") + "\n"
}

/// Compares a produced document with its golden file in xtask/tests/golden (UPDATE_GOLDEN=1
/// rewrites the file). Wire formats are compared whole.
#[cfg(test)]
pub fn golden(name: &str, actual: &str) {
    let path = project_root().join("xtask/tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(want == actual, "{} differs from what was produced:\n{actual}", path.display());
}
