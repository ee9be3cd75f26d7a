//! `cargo xtask bench [NAME]...`: the benchmarks. Each measures its baseline in the same run and
//! prints a ratio; nothing here asserts on time.
//!
//! - `cni`: the CNI core benchmarks (`benches/cni.rs`, release profile).
//! - `thick`: shim + daemon against the thin plugin (`benches/thick.rs`): one pod's ADD+DEL, a
//!   burst of a hundred pods (pods/s), the daemon's RSS idle and at its peak.
//! - `cri`: pod sandboxes through containerd's CRI with multus (thin, thick) against containerd
//!   with the bare cluster network (`benches/cri.rs`): RunPodSandbox p50/p99 and pods per second,
//!   ratios against bare, on the shipped static amd64 builds.
//! - `build`: cold and warm release build of the node binaries per target, each cold build in a
//!   fresh directory; ratios against the amd64 cold build of the same run.
//! - `profile`: the release profile's choices on amd64: the shipped one (one codegen unit, fat LTO,
//!   `opt-level = "s"`) against faster-to-build ones (16 codegen units with thin or no LTO;
//!   `opt-level = 3`), each with its cold build time, binary sizes and the CNI bench's thin-plugin
//!   ratio on its own `multus`.
//! - `image`: image assembly from target/release-artifacts (layers, configs, manifests, indexes,
//!   in memory) in MB/s of layer data, against `tar | gzip -6` of the same files staged in a
//!   directory, in the same run; and the compressed size of each image per platform.
//! - `release`: `cargo xtask release` (every target, local layout) cold (fresh cargo target
//!   directory and output) and warm (one source file of the library touched), per phase, against
//!   the ~36 min cold release the issue measured and its goals (cold under 15 min, warm under 3),
//!   with the binary sizes of the run and the CNI bench (thin plugin against bare bridge, on the
//!   release's own amd64 `multus`) beside them, so no speed-up is bought with a slower plugin.
//! - `size`: each node binary as shipped (amd64, static, stripped) against its goal and against
//!   `passthru` (the floor: std and static glibc), and where its bytes come from, per crate, from
//!   the same build with symbols kept (`size`).

use std::time::{Duration, Instant};

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::build;

#[derive(clap::Args)]
pub struct Args {
    /// Benchmarks to run: cni, thick, cri, build, profile, image, size, release (default: all but
    /// profile and release, the long ones).
    names: Vec<String>,
}

const ALL: &[&str] = &["cni", "thick", "cri", "build", "profile", "image", "size", "release"];

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    for n in &args.names {
        if !ALL.contains(&n.as_str()) {
            bail!("unknown benchmark {n:?}; known: {ALL:?}");
        }
    }
    let wanted =
        |n: &str| (args.names.is_empty() && !["release", "profile"].contains(&n)) || args.names.iter().any(|a| a == n);
    let (cni, thick, cri) = (wanted("cni"), wanted("thick"), wanted("cri"));
    if cni || thick || cri {
        cmd!(sh, "bash scripts/install-test-deps.sh").run()?;
        // Time the binaries that ship (static, release, verified), not cargo's host build.
        let root = crate::project::root();
        let out = root.join("target/bench-artifacts");
        let mut bins = vec!["multus".to_string()];
        if thick {
            bins.extend(["multus-shim".into(), "multus-daemon".into()]);
        }
        if cri {
            // Every node binary: install_multus and thin_entrypoint set the node up as the
            // DaemonSets do.
            bins.clear();
        }
        build::run(
            sh,
            &build::Options {
                arches: vec!["amd64".into()],
                release: true,
                bins,
                target_dir: root.join("target/xbuild"),
                out_dir: out.clone(),
            },
        )?;
        let dir = out.join("linux-amd64");
        let multus = dir.join("multus");
        if cni {
            cmd!(sh, "cargo bench --locked --bench cni").env("MULTUS_BENCH_BIN", &multus).run()?;
        }
        if thick {
            cmd!(sh, "cargo bench --locked --bench thick")
                .env("MULTUS_BENCH_BIN", &multus)
                .env("MULTUS_BENCH_SHIM", dir.join("multus-shim"))
                .env("MULTUS_BENCH_DAEMON", dir.join("multus-daemon"))
                .run()?;
        }
        if cri {
            let pause = crate::image::pause::build(sh, &root)?;
            cmd!(sh, "cargo bench --locked --bench cri")
                .env("MULTUS_BENCH_BIN_DIR", &dir)
                .env("MULTUS_TEST_PAUSE_IMAGE", pause)
                .run()?;
        }
    }
    if wanted("build") {
        build_times(sh)?;
    }
    if wanted("profile") {
        profile_choices(sh)?;
    }
    if wanted("image") {
        image_throughput(sh)?;
    }
    if wanted("size") {
        sizes(sh)?;
    }
    if wanted("release") {
        release_times(sh)?;
    }
    Ok(())
}

/// Size goals of issue 20 (bytes, amd64, as shipped).
const SIZE_GOALS: &[(&str, u64)] = &[("multus", 5_000_000), ("multus-shim", 1_500_000)];
/// Crates listed per binary.
const TOP_CRATES: usize = 14;

fn sizes(sh: &Shell) -> anyhow::Result<()> {
    let root = crate::project::root();
    let build = |target: &str, out: &str| -> anyhow::Result<build::Manifest> {
        build::run(
            sh,
            &build::Options {
                arches: vec!["amd64".into()],
                release: true,
                bins: vec![],
                target_dir: root.join(target),
                out_dir: root.join(out),
            },
        )
    };
    // What ships, then the same build with its symbol table kept (a separate target dir, so the
    // shipped build stays cached).
    let shipped = build("target/xbuild", "target/bench-artifacts")?;
    let symbols = {
        let _keep = sh.push_env("CARGO_PROFILE_RELEASE_STRIP", "none");
        build("target/bench-size", "target/bench-size-artifacts")?
    };
    let shipped = &shipped.targets[0];
    let floor = shipped.binaries.iter().find(|b| b.name == "passthru").map_or(0, |b| b.size);
    println!("bench size (amd64, static, release profile; bytes as shipped):");
    println!("  {:<16} {:>10} {:>12} {:>10} {:>8}", "binary", "bytes", "over floor", "goal", "ratio");
    for b in &shipped.binaries {
        let goal = SIZE_GOALS.iter().find(|(n, _)| *n == b.name).map(|g| g.1);
        println!(
            "  {:<16} {:>10} {:>12} {:>10} {:>8}",
            b.name,
            b.size,
            b.size.saturating_sub(floor),
            goal.map_or("-".into(), |g| g.to_string()),
            goal.map_or("-".into(), |g| format!("{:.2}", b.size as f64 / g as f64)),
        );
    }
    println!("  (floor = passthru: std, the CNI skeleton and static glibc; ratio = bytes / goal)");
    let dir = root.join("target/bench-size-artifacts");
    for b in &symbols.targets[0].binaries {
        let bytes = std::fs::read(dir.join(&b.path))?;
        let loaded: Vec<(String, usize)> = crate::elf::sections(&bytes)?
            .into_iter()
            .filter(|s| s.alloc && s.size >= 4096)
            .map(|s| (s.name, s.size))
            .collect();
        let rows = crate::size::by_crate(&crate::elf::symbols(&bytes)?);
        let total: u64 = rows.iter().map(|r| r.1 + r.2).sum();
        println!("\n  {}: loaded sections {}", b.name, {
            let parts: Vec<String> = loaded.iter().map(|(n, s)| format!("{n} {}K", s / 1024)).collect();
            parts.join(", ")
        });
        println!("  {:<28} {:>10} {:>10} {:>7}", "crate", "code", "data", "share");
        for (name, code, data) in rows.iter().take(TOP_CRATES) {
            println!(
                "  {:<28} {:>10} {:>10} {:>6.1}%",
                name,
                code,
                data,
                100.0 * (code + data) as f64 / total.max(1) as f64
            );
        }
        let rest: u64 = rows.iter().skip(TOP_CRATES).map(|r| r.1 + r.2).sum();
        println!(
            "  {:<28} {:>21} {:>6.1}%",
            format!("{} more crates", rows.len().saturating_sub(TOP_CRATES)),
            rest,
            100.0 * rest as f64 / total.max(1) as f64
        );
    }
    Ok(())
}

/// Repetitions of each side of the image benchmark (the mean is reported).
const IMAGE_REPS: u32 = 5;

fn image_throughput(sh: &Shell) -> anyhow::Result<()> {
    use crate::image;

    let root = crate::project::root();
    let manifest_path = root.join("target/release-artifacts/manifest.json");
    let manifest = image::read_manifest(&manifest_path)?;
    let specs = image::select_specs(&root.join("images"), &[])?;
    let meta = image::Meta {
        version: manifest.version.clone(),
        commit: manifest.commit.clone(),
        source_date_epoch: manifest.source_date_epoch,
        source: image::workspace_repository(&root)?,
    };
    let dir = manifest_path.parent().expect("manifest has a parent").to_path_buf();
    let debian_arch = image::debian_packages(&root, &manifest, &specs)?;

    // The baseline's input: the same files at the same paths, one directory per image and platform.
    let stage = root.join("target/bench-image");
    let _ = std::fs::remove_dir_all(&stage);
    let mut staged = Vec::new();
    for s in &specs {
        for t in &manifest.targets {
            let built = t.binaries.iter().map(|b| (b.name.clone(), (b.path.clone(), b.sha256.clone()))).collect();
            let plan = s.plan(&t.platform, &built)?;
            let d = stage.join(&s.name).join(t.platform.replace('/', "-"));
            for l in &plan.layers {
                for (p, mode) in &l.dirs {
                    std::fs::create_dir_all(d.join(&p[1..]))?;
                    std::fs::set_permissions(d.join(&p[1..]), std::os::unix::fs::PermissionsExt::from_mode(*mode))?;
                }
                for (p, target) in &l.links {
                    std::fs::create_dir_all(d.join(&p[1..]).parent().expect("absolute path"))?;
                    std::os::unix::fs::symlink(target, d.join(&p[1..]))?;
                }
                for f in &l.files {
                    let src = image::source_path(&root, &dir, &debian_arch, &t.platform, &f.source);
                    let dst = d.join(&f.path[1..]);
                    std::fs::create_dir_all(dst.parent().expect("absolute path"))?;
                    std::fs::copy(&src, &dst)?;
                    std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(f.mode))?;
                }
            }
            staged.push((s.name.clone(), t.platform.clone(), d));
        }
    }

    // Ours: everything `cargo xtask image` computes, in memory (reads, tar, gzip, digests, JSON).
    let mut images = image::assemble(&root, &manifest, &dir, &specs, &meta, true)?; // warm the page cache
    let start = Instant::now();
    for _ in 0..IMAGE_REPS {
        images = image::assemble(&root, &manifest, &dir, &specs, &meta, true)?;
    }
    let ours = start.elapsed().as_secs_f64() / f64::from(IMAGE_REPS);
    let layer_bytes: u64 = images.iter().map(|i| i.tar_bytes()).sum();
    let all_layers: Vec<&str> =
        images.iter().flat_map(|i| &i.platforms).flat_map(|p| &p.layers).map(|l| l.diff_id.as_str()).collect();
    let distinct: std::collections::BTreeSet<&str> = all_layers.iter().copied().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Baseline: GNU tar | gzip -6 of each staged directory, same run.
    let sde = meta.source_date_epoch.to_string();
    let mut baseline_sizes = Vec::new();
    let start = Instant::now();
    for _ in 0..IMAGE_REPS {
        baseline_sizes.clear();
        for (_, _, d) in &staged {
            let out = cmd!(
                sh,
                "bash -c 'tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$1 -C \"$2\" -cf - . | gzip -n -6 | wc -c' _ {sde} {d}"
            )
            .read()?;
            baseline_sizes.push(out.trim().parse::<u64>()?);
        }
    }
    let baseline = start.elapsed().as_secs_f64() / f64::from(IMAGE_REPS);
    let _ = std::fs::remove_dir_all(&stage);

    let mb = layer_bytes as f64 / 1e6;
    println!(
        "bench image ({} images x {} platforms, {:.2} MB of layer data, mean of {IMAGE_REPS}):",
        specs.len(),
        manifest.targets.len(),
        mb
    );
    println!(
        "  ({} layers, {} distinct: each distinct layer is compressed once, on up to {threads} threads; \
         the baseline compresses every image and platform, one gzip at a time)",
        all_layers.len(),
        distinct.len()
    );
    println!("  {:<34} {:>9} {:>9} {:>12}", "", "s", "MB/s", "vs baseline");
    println!("  {:<34} {:>9.3} {:>9.1} {:>12.2}", "cargo xtask image (in memory)", ours, mb / ours, baseline / ours);
    println!("  {:<34} {:>9.3} {:>9.1} {:>12.2}", "tar | gzip -6 (baseline)", baseline, mb / baseline, 1.0);
    println!("  compressed size per image and platform (bytes; layers only / with config+manifest):");
    println!("  {:<12} {:<14} {:>10} {:>10} {:>14}", "image", "platform", "layers", "total", "tar|gzip -6");
    let mut i = 0;
    for img in &images {
        for p in &img.platforms {
            let layers: u64 = p.layers.iter().map(|l| l.blob.descriptor.size).sum();
            let total = layers + p.config.descriptor.size + p.manifest.descriptor.size;
            println!(
                "  {:<12} {:<14} {:>10} {:>10} {:>14}",
                img.name,
                p.platform.slug(),
                layers,
                total,
                baseline_sizes[i]
            );
            i += 1;
        }
    }
    Ok(())
}

fn build_times(sh: &Shell) -> anyhow::Result<()> {
    let root = crate::project::root();
    let targets = crate::targets::load(&root)?;
    let mut rows: Vec<(String, String, Duration, Duration)> = Vec::new();
    for t in &targets {
        let base = root.join("target/bench-build").join(&t.arch);
        let _ = std::fs::remove_dir_all(&base);
        let args = build::Options {
            arches: vec![t.arch.clone()],
            release: true,
            bins: vec![],
            target_dir: base.join("target"),
            out_dir: base.join("out"),
        };
        let start = Instant::now();
        let m = build::run(sh, &args)?;
        let cold = start.elapsed();
        // Warm: one source file of the library changed, everything else cached.
        cmd!(sh, "touch src/lib.rs").run()?;
        let start = Instant::now();
        build::run(sh, &args)?;
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

/// Release-profile variants (name, CARGO_PROFILE_RELEASE_* overrides); the first is what ships.
const PROFILES: &[(&str, &[(&str, &str)])] = &[
    ("shipped: cu=1 fat s", &[]),
    ("cu=16 thin-lto s", &[("CODEGEN_UNITS", "16"), ("LTO", "thin")]),
    ("cu=16 no-lto s", &[("CODEGEN_UNITS", "16"), ("LTO", "off")]),
    ("cu=1 fat opt=3", &[("OPT_LEVEL", "3")]),
];

fn profile_choices(sh: &Shell) -> anyhow::Result<()> {
    let root = crate::project::root();
    let bins: Vec<String> = ["multus", "multus-daemon", "multus-shim"].map(String::from).to_vec();
    let mut rows = Vec::new();
    for (name, overrides) in PROFILES {
        let base = root.join("target/bench-profile");
        let _ = std::fs::remove_dir_all(&base);
        let mut guards = Vec::new();
        for (k, v) in *overrides {
            guards.push(sh.push_env(format!("CARGO_PROFILE_RELEASE_{k}"), v));
        }
        let start = Instant::now();
        let m = build::run(
            sh,
            &build::Options {
                arches: vec!["amd64".into()],
                release: true,
                bins: bins.clone(),
                target_dir: base.join("target"),
                out_dir: base.join("out"),
            },
        )?;
        let cold = start.elapsed();
        drop(guards);
        let size = |n: &str| m.targets[0].binaries.iter().find(|b| b.name == n).map_or(0, |b| b.size);
        let multus = base.join("out/linux-amd64/multus");
        let out = cmd!(sh, "cargo bench --locked --bench cni -- thin_multus_vs_bridge")
            .env("MULTUS_BENCH_BIN", &multus)
            .env("MULTUS_BENCH_ROUNDS", std::env::var("MULTUS_BENCH_ROUNDS").unwrap_or_else(|_| "41".into()))
            .read()?;
        let ratio = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("ratio measured/by-hand"))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        rows.push((*name, cold, size("multus"), size("multus-daemon"), size("multus-shim"), ratio));
        let _ = std::fs::remove_dir_all(&base);
    }
    println!("bench build, release-profile choices (amd64; multus, multus-daemon, multus-shim; cold build):");
    println!(
        "  {:<20} {:>8} {:>10} {:>10} {:>10} {:>12}",
        "profile", "cold s", "multus", "daemon", "shim", "thin/bridge"
    );
    for (name, cold, m, d, sh_, r) in &rows {
        println!("  {:<20} {:>8.1} {:>10} {:>10} {:>10} {:>12}", name, cold.as_secs_f64(), m, d, sh_, r);
    }
    println!("  (thin/bridge: `bench cni` thin_multus_vs_bridge on that build's multus, ratio of the means)");
    Ok(())
}

/// The cold all-targets release the issue measured on this machine before the work (seconds),
/// and the goals.
const RELEASE_BEFORE_S: f64 = 36.0 * 60.0;
const RELEASE_COLD_GOAL_S: f64 = 15.0 * 60.0;
const RELEASE_WARM_GOAL_S: f64 = 3.0 * 60.0;

fn release_times(sh: &Shell) -> anyhow::Result<()> {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: crate::release::Args,
    }
    let root = crate::project::root();
    let base = root.join("target/bench-release");
    let _ = std::fs::remove_dir_all(&base);
    let (target, out) = (base.join("target"), base.join("out"));
    let mut argv = vec!["release".to_string(), "--target-dir".into(), target.display().to_string()];
    argv.extend(["--out-dir".into(), out.display().to_string()]);
    // A benchmark stays off the network: the snapshot beside the repository, when there is one,
    // instead of fetching the advisory database.
    if let Some(db) = crate::scan::advisory_db::shared_snapshot() {
        argv.extend(["--rustsec-db".to_string(), db.display().to_string()]);
    }
    let mut runs = Vec::new();
    for (label, touch) in [("cold", false), ("warm", true)] {
        if touch {
            cmd!(sh, "touch src/lib.rs").run()?;
        }
        eprintln!("==> bench release: {label} run");
        let start = Instant::now();
        let phases = crate::release::run_timed(sh, Cli::try_parse_from(&argv)?.args)?;
        runs.push((label, start.elapsed(), phases));
    }
    let manifest = crate::image::read_manifest(&out.join("release-artifacts/manifest.json"))?;
    println!("bench release (every target of cross/targets.toml, local layout, 2 cores):");
    println!("  {:<24} {:>9} {:>9}", "phase", "cold s", "warm s");
    let names: Vec<&String> = runs[0].2.iter().map(|(n, _)| n).collect();
    for n in names {
        let at = |i: usize| runs[i].2.iter().find(|(m, _)| m == n).map_or(0.0, |(_, d)| d.as_secs_f64());
        println!("  {:<24} {:>9.1} {:>9.1}", n, at(0), at(1));
    }
    let (cold, warm) = (runs[0].1.as_secs_f64(), runs[1].1.as_secs_f64());
    println!("  {:<24} {:>9.1} {:>9.1}", "total (incl. checks)", cold, warm);
    println!(
        "  cold: {:.2} of the {:.0} s measured before (goal <= {:.2}: {:.0} s); warm: {:.2} of the {:.0} s goal",
        cold / RELEASE_BEFORE_S,
        RELEASE_BEFORE_S,
        RELEASE_COLD_GOAL_S / RELEASE_BEFORE_S,
        RELEASE_COLD_GOAL_S,
        warm / RELEASE_WARM_GOAL_S,
        RELEASE_WARM_GOAL_S
    );
    println!("  binary sizes (bytes):");
    for t in &manifest.targets {
        let sizes: Vec<String> = t.binaries.iter().map(|b| format!("{} {}", b.name, b.size)).collect();
        println!("    {:<14} {:<16} {}", t.platform, t.toolchain, sizes.join(", "));
    }
    // The plugin this release ships, timed against the bare bridge plugin in the same run.
    let multus = out.join("release-artifacts/linux-amd64/multus");
    cmd!(sh, "bash scripts/install-test-deps.sh").run()?;
    let rounds = std::env::var("MULTUS_BENCH_ROUNDS").unwrap_or_else(|_| "41".into());
    cmd!(sh, "cargo bench --locked --bench cni")
        .env("MULTUS_BENCH_BIN", &multus)
        .env("MULTUS_BENCH_ROUNDS", rounds)
        .run()?;
    Ok(())
}
