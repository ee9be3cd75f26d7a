//! `cargo xtask test`: installs what the tests need (Debian packages, as root), then runs the
//! fmt check, clippy with warnings as errors, every test suite, and the library's unit tests on
//! the 32-bit target under qemu-user, printing phase timings.

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

/// xtask's own workspace (its lockfile, its build in target/xtask, as the `cargo xtask` alias).
const XTASK: [&str; 4] = ["--manifest-path", "xtask/Cargo.toml", "--target-dir", "target/xtask"];
/// The libc-free shim's workspace (its build in target/shim, where the tests' support builds it).
const SHIM: [&str; 4] = ["--manifest-path", "shim/Cargo.toml", "--target-dir", "target/shim"];

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
        phases.run("cargo fmt --check", || {
            cmd!(sh, "cargo fmt --all -- --check").run().context("formatting differs")?;
            cmd!(sh, "cargo fmt --all --manifest-path xtask/Cargo.toml -- --check")
                .run()
                .context("formatting differs (xtask)")?;
            cmd!(sh, "cargo fmt --all --manifest-path shim/Cargo.toml -- --check")
                .run()
                .context("formatting differs (shim)")
        })?;
        phases.run("cargo clippy", || {
            cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings")
                .run()
                .context("clippy found problems")?;
            cmd!(sh, "cargo clippy {XTASK...} --all-targets --locked -- -D warnings")
                .run()
                .context("clippy found problems (xtask)")?;
            cmd!(sh, "cargo clippy {SHIM...} --all-targets --locked -- -D warnings")
                .run()
                .context("clippy found problems (shim)")
        })?;
    }
    let filter: Vec<String> = args.filter.iter().cloned().collect();
    let filter = filter.as_slice();
    // The release gate's tests use the shared snapshot of the advisory database, never a fetch.
    if std::env::var_os("MULTUS_RUSTSEC_DB").is_none()
        && let Some(snapshot) = crate::scan::advisory_db::shared_snapshot()
    {
        sh.set_var("MULTUS_RUSTSEC_DB", snapshot);
    }
    // The CRI tests' sandbox image (tests/cri), built by our own image code and imported into
    // the tests' containerd.
    phases.run("build the CRI pause image", || {
        let archive = crate::image::pause::build(sh, &crate::project::root())?;
        sh.set_var("MULTUS_TEST_PAUSE_IMAGE", archive);
        Ok(())
    })?;
    phases.run("build tests", || {
        // The shim the thick suites run, built once here rather than by each test binary.
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        cmd!(sh, "cargo build {SHIM...} --locked --release --bin multus-shim --target {triple}")
            .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static\x1f-Crelocation-model=static")
            .run()
            .context("shim build failed")?;
        let shim = crate::project::root().join("target/shim").join(&triple).join("release/multus-shim");
        sh.set_var("MULTUS_TEST_SHIM", shim);
        cmd!(sh, "cargo test {SHIM...} --locked --lib --no-run").run().context("test build failed (shim)")?;
        cmd!(sh, "cargo test --workspace --locked --no-run").run().context("test build failed")?;
        cmd!(sh, "cargo test {XTASK...} --locked --no-run").run().context("test build failed (xtask)")
    })?;
    phases.run("cargo test", || {
        cmd!(sh, "cargo test --workspace --locked -- {filter...}").run().context("tests failed")?;
        cmd!(sh, "cargo test {XTASK...} --locked -- {filter...}").run().context("tests failed (xtask)")?;
        cmd!(sh, "cargo test {SHIM...} --locked --lib -- {filter...}").run().context("tests failed (shim)")
    })?;
    phases.run("unit tests on 32-bit targets (qemu-user)", || narrow_unit_tests(sh, &args.filter))?;
    Ok(())
}

/// The libraries' unit tests (`multus`, `multus-core`, and the libc-free shim's) built for every 32-bit target (arm/v7) with its toolchain (Debian's
/// rustc 1.85, the MSRV) and run under qemu-user: the one platform where `usize` and `time_t` are
/// 32 bits wide, which the amd64 and arm64 suites cannot show. They found a chunk-size check that
/// said "malformed" instead of "too long" there.
fn narrow_unit_tests(sh: &Shell, filter: &Option<String>) -> anyhow::Result<()> {
    let root = crate::project::root();
    let all = crate::targets::load(&root)?;
    for t in all.iter().filter(|t| t.elf_class == 32) {
        let tc = crate::toolchain::for_target(sh, &root, t)?;
        crate::toolchain::ensure_binutils(sh, &root, std::slice::from_ref(t))?;
        let key = t.env_key();
        let mut flags = "-C target-feature=+crt-static".to_string();
        let triple = &t.triple;
        if let crate::toolchain::Toolchain::Debian { sysroot, .. } = &tc {
            flags = format!("{flags} --sysroot {}", sysroot.join("usr").display());
        }
        // The libraries, then the libc-free shim, whose system calls this runs on 32-bit ARM.
        let shim_manifest = root.join("shim/Cargo.toml");
        let suites = [
            cmd!(sh, "cargo test --locked --package multus --package multus-core --lib --target {triple}"),
            cmd!(sh, "cargo test --locked --manifest-path {shim_manifest} --lib --target {triple}"),
        ];
        for suite in suites {
            let mut c = suite
                .env("CARGO_TARGET_DIR", root.join("target/narrow-unit-tests"))
                .env(format!("CARGO_TARGET_{key}_LINKER"), t.linker())
                .env(format!("CARGO_TARGET_{key}_RUNNER"), &t.qemu);
            match &tc {
                crate::toolchain::Toolchain::Debian { .. } => c = c.env("RUSTC", crate::toolchain::DEBIAN_RUSTC),
                crate::toolchain::Toolchain::Rustup { name, .. } => {
                    c = c.env_remove("RUSTC");
                    if let Some(n) = name {
                        c = c.env("RUSTUP_TOOLCHAIN", n);
                    }
                }
            }
            eprintln!("==> unit tests for {} ({}) under {}", t.platform, tc.describe(), t.qemu);
            c.env(format!("CARGO_TARGET_{key}_RUSTFLAGS"), &flags)
                .args(["--", "--test-threads=2"])
                .args(filter)
                .run()
                .with_context(|| format!("unit tests failed on {}", t.platform))?;
        }
    }
    Ok(())
}
