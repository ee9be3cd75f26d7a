//! `cargo xtask scan`, the release gate.
//!
//! RustSec, for real: a copy of the shared test build whose amd64 `passthru` carries a dependency
//! list (injected into `.dep-v0` with objcopy, as `xtask build` embeds it; read back by
//! `rust-audit-info`, the cargo-auditable project's reader, so Trivy and `cargo audit bin` would
//! see the same) naming smallvec 1.6.0, which RUSTSEC-2021-0003 in the shared snapshot covers.
//! The gate refuses the image and names the advisory; a waiver with a statement and a future
//! expiry lets it through; an expired waiver fails again.
//!
//! Trivy cannot be installed on our machines. Its report handling is tested with fixture reports
//! in Trivy's real JSON schema (`SchemaVersion` 2, `Results[].Vulnerabilities[]`), and the process
//! plumbing (arguments, exit codes, a missing binary, garbage output) with a stand-in `trivy`
//! executable (a shell script that records its arguments and plays back a fixture) — not the
//! real scanner.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::root;
use crate::support::{Tmp, built, layout, refs, run, sha256, xtask_result};

/// `xtask scan` of `layout` with reports into `out`; (success, output).
fn scan(layout: &Path, out: &Path, extra: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let mut args = vec!["scan", "--layout", layout.to_str().unwrap(), "--out-dir", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    xtask_result(&args, envs)
}

/// PATH without any trivy (the machines have none, but be sure).
const NO_TRIVY_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A copy of the shared build whose amd64 passthru also "depends on" smallvec 1.6.0.
fn vulnerable_build(tmp: &Tmp) -> PathBuf {
    let out = tmp.join("build");
    let (ok, _, e) = run("cp", &["-a", built().to_str().unwrap(), out.to_str().unwrap()], &[]);
    assert!(ok, "{e}");
    let bin = out.join("linux-amd64/passthru");
    let section = tmp.join("dep-v0");
    let (ok, _, e) = run(
        "x86_64-linux-gnu-objcopy",
        &["--dump-section", &format!(".dep-v0={}", section.display()), bin.to_str().unwrap(), &tmp.s("scratch")],
        &[],
    );
    assert!(ok, "objcopy --dump-section: {e}");
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(std::fs::read(&section).unwrap().as_slice()).read_to_end(&mut json).unwrap();
    let mut list: Value = serde_json::from_slice(&json).unwrap();
    let pkgs = list["packages"].as_array_mut().unwrap();
    let n = pkgs.len();
    pkgs.push(serde_json::json!({"name": "smallvec", "version": "1.6.0", "source": "crates.io"}));
    for p in pkgs.iter_mut().filter(|p| p["root"] == true) {
        p["dependencies"].as_array_mut().unwrap().push(n.into());
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(7));
    z.write_all(&serde_json::to_vec(&list).unwrap()).unwrap();
    std::fs::write(&section, z.finish().unwrap()).unwrap();
    let (ok, _, e) = run(
        "x86_64-linux-gnu-objcopy",
        &["--update-section", &format!(".dep-v0={}", section.display()), bin.to_str().unwrap()],
        &[],
    );
    assert!(ok, "objcopy --update-section: {e}");
    // The manifest must agree with the new bytes (image re-checks every binary's sha256).
    let bytes = std::fs::read(&bin).unwrap();
    let mpath = out.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for b in m["targets"][0]["binaries"].as_array_mut().unwrap().iter_mut().filter(|b| b["name"] == "passthru") {
        b["sha256"] = sha256(&bytes).trim_start_matches("sha256:").into();
        b["size"] = bytes.len().into();
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    // An independent reader sees smallvec 1.6.0 in the binary.
    let audit = root().join("target/tools/bin/rust-audit-info");
    let (ok, o, e) = run(audit.to_str().unwrap(), &[bin.to_str().unwrap()], &[]);
    assert!(ok, "rust-audit-info: {e}");
    let seen: Value = serde_json::from_str(&o).unwrap();
    assert!(
        seen["packages"].as_array().unwrap().iter().any(|p| p["name"] == "smallvec" && p["version"] == "1.6.0"),
        "{o}"
    );
    out
}

fn waivers(tmp: &Tmp, expires: &str) -> PathBuf {
    let p = tmp.join(&format!("waivers-{expires}.yaml"));
    std::fs::write(
        &p,
        format!(
            "vulnerabilities:\n  - id: CVE-2021-25900\n    statement: the test injects this dependency; nothing calls it\n    \
             expired_at: {expires}\n    purls: [\"pkg:cargo/smallvec@1.6.0\"]\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn the_rustsec_gate_refuses_a_binary_with_a_vulnerable_dependency_and_names_the_advisory() {
    let tmp = Tmp::new("rustsec");
    let build = vulnerable_build(&tmp);
    let (ok, out) = xtask_result(
        &["image", "--manifest", build.join("manifest.json").to_str().unwrap(), "--out-dir", &tmp.s("oci")],
        &[],
    );
    assert!(ok, "{out}");
    let layout = tmp.join("oci/layout");
    let envs = [("PATH", NO_TRIVY_PATH)];

    let (ok, out) = scan(&layout, &tmp.join("scan"), &["--today", "2026-01-01"], &envs);
    assert!(!ok, "{out}");
    assert!(out.contains("the release gate failed: RUSTSEC-2021-0003 (smallvec 1.6.0 in usr/src/multus-cni/bin/passthru on linux/amd64)"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 3, "a failed gate exits 3");
    assert!(out.contains("NOT SCANNED BY TRIVY"), "{out}");
    let report: Value = serde_json::from_slice(&std::fs::read(tmp.join("scan/report.json")).unwrap()).unwrap();
    let failing: Vec<&Value> =
        report["verdict"]["findings"].as_array().unwrap().iter().filter(|f| f["decision"] == "fail").collect();
    // Every image (thick, thin and their -debug variants) ships that binary on amd64; arm64's is untouched.
    assert_eq!(failing.len(), 4, "{failing:?}");
    for f in failing {
        assert_eq!(
            (f["id"].as_str(), f["platform"].as_str(), f["package"].as_str()),
            (Some("RUSTSEC-2021-0003"), Some("linux/amd64"), Some("smallvec"))
        );
        assert_eq!(
            (f["installed"].as_str(), f["fixed"].as_str()),
            (Some("1.6.0"), Some(">=0.6.14, <1.0.0 or >=1.6.1"))
        );
        // The severity is the advisory's CVSS vector's, through the rustsec crate.
        assert_eq!(f["severity"], "CRITICAL");
        assert_eq!(f["cvss"], "9.8 CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H");
    }
    crate::support::assert_schema_valid("sarif-2.1.0", &[&tmp.join("scan/gate.sarif")]);
    let sarif: Value = serde_json::from_slice(&std::fs::read(tmp.join("scan/gate.sarif")).unwrap()).unwrap();
    assert_eq!(sarif["runs"][1]["results"][0]["ruleId"], "RUSTSEC-2021-0003");
    assert_eq!(sarif["runs"][1]["results"][0]["level"], "error");
    let md = std::fs::read_to_string(tmp.join("scan/summary.md")).unwrap();
    assert!(
        md.contains("| **FAIL** | linux/amd64 | smallvec | 1.6.0 | >=0.6.14, <1.0.0 or >=1.6.1 | [RUSTSEC-2021-0003]"),
        "{md}"
    );

    // Waived by its CVE alias until a later date: passes, and the summary carries the statement.
    let w = waivers(&tmp, "2026-06-30");
    let (ok, out) =
        scan(&layout, &tmp.join("scan2"), &["--today", "2026-01-01", "--waivers", w.to_str().unwrap()], &envs);
    assert!(ok, "{out}");
    assert!(out.contains("waived until 2026-06-30: the test injects this dependency"), "{out}");
    // The same waiver once it has expired fails the gate.
    let (ok, out) =
        scan(&layout, &tmp.join("scan3"), &["--today", "2026-07-01", "--waivers", w.to_str().unwrap()], &envs);
    assert!(!ok && out.contains("waiver CVE-2021-25900: expired on 2026-06-30"), "{out}");

    // The real build passes, and a missing database is a clear error.
    let (ok, out) = scan(layout_clean(), &tmp.join("scan4"), &[], &envs);
    assert!(ok && out.contains("## Release gate: PASSED"), "{out}");
    let (ok, out) = scan(layout_clean(), &tmp.join("scan5"), &["--rustsec-db", &tmp.s("nowhere")], &envs);
    assert!(!ok && out.contains("the RustSec advisory database is not at"), "{out}");
}

fn layout_clean() -> &'static Path {
    layout()
}

/// A stand-in `trivy`: records its arguments, answers `version`, and for `image` writes the
/// report named by $FAKE_TRIVY_REPORT to `--output` (or garbage), exiting $FAKE_TRIVY_EXIT.
fn stand_in(tmp: &Tmp) -> PathBuf {
    let p = tmp.join("bin/trivy");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        r#"#!/bin/sh
echo "$*" >> "$FAKE_TRIVY_LOG"
if [ "$1" = version ]; then
  echo '{"Version":"0.62.1","VulnerabilityDB":{"Version":2,"UpdatedAt":"2026-01-01T06:00:00Z"}}'
  exit 0
fi
out=""
prev=""
for a in "$@"; do
  [ "$prev" = "--output" ] && out="$a"
  prev="$a"
done
if [ -n "$FAKE_TRIVY_GARBAGE" ]; then echo "<html>rate limited</html>" > "$out"; exit 0; fi
[ "${FAKE_TRIVY_EXIT:-0}" = 0 ] || { echo "FATAL: DB error: failed to download vulnerability DB" >&2; exit "$FAKE_TRIVY_EXIT"; }
cp "$FAKE_TRIVY_REPORT" "$out"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn trivy_reports_and_process_plumbing_with_a_stand_in_executable() {
    let layout = layout();
    let tmp = Tmp::new("trivy");
    let trivy = stand_in(&tmp);
    let fixture = root().join("xtask/tests/fixtures/trivy/report-arm64.json");
    let clean = tmp.join("clean.json");
    std::fs::write(&clean, r#"{"SchemaVersion":2,"ArtifactName":"x","ArtifactType":"container_image","Results":[{"Target":"usr/src/multus-cni/bin/passthru","Class":"lang-pkgs","Type":"rustbinary"}],"Trivy":{"Version":"0.62.1"}}"#).unwrap();
    let log = tmp.join("args.log");
    let summary = tmp.join("step-summary.md");
    let on_path = format!("{}:{NO_TRIVY_PATH}", trivy.parent().unwrap().display());
    let env = |report: &Path, extra: &[(&'static str, &'static str)]| -> Vec<(String, String)> {
        let mut e = vec![
            ("PATH".to_string(), on_path.clone()),
            ("FAKE_TRIVY_LOG".to_string(), log.display().to_string()),
            ("FAKE_TRIVY_REPORT".to_string(), report.display().to_string()),
            ("GITHUB_STEP_SUMMARY".to_string(), summary.display().to_string()),
        ];
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        e
    };
    let go = |out: &str, envs: &[(String, String)], extra: &[&str]| {
        let e: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        scan(layout, &tmp.join(out), &[&["--today", "2026-01-01"], extra].concat(), &e)
    };

    // A clean report on every platform image: passes, scanner and DB versions recorded.
    let (ok, out) = go("clean", &env(&clean, &[]), &["--trivy-arg=--skip-db-update"]);
    assert!(ok, "{out}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let platform_refs: Vec<String> =
        refs(layout).into_iter().filter(|(_, d)| d.get("platform").is_some()).map(|(r, _)| r).collect();
    assert_eq!(platform_refs.len(), 12, "two images and their -debug variants, three platforms each");
    for r in &platform_refs {
        let line = calls
            .lines()
            .find(|l| l.contains(&format!("--input {}:{r} ", layout.display())))
            .unwrap_or_else(|| panic!("{r} not scanned: {calls}"));
        for must in [
            "image --config ",
            "--format json",
            "--exit-code 0",
            "--severity UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL",
            "--ignore-unfixed=false",
            "--scanners vuln,secret",
            "--timeout 10m",
            "--skip-db-update",
        ] {
            assert!(line.contains(must), "{must} missing in {line}");
        }
        assert!(tmp.join(&format!("clean/trivy/{r}.json")).exists(), "raw report of {r}");
    }
    let report: Value = serde_json::from_slice(&std::fs::read(tmp.join("clean/report.json")).unwrap()).unwrap();
    assert_eq!(
        report["trivy"],
        serde_json::json!({"status": "scanned", "scanner": "0.62.1", "db": "v2 updated 2026-01-01T06:00:00Z"})
    );
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("| Trivy | 0.62.1 (vulnerability DB v2 updated 2026-01-01T06:00:00Z) |")
    );

    // The fixture report (a CRITICAL with a fix): fails, naming advisory, platform, package, versions.
    let (ok, out) = go("vuln", &env(&fixture, &[]), &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("CVE-2021-25900 (smallvec 1.6.0 in usr/src/multus-cni/bin/passthru on linux/amd64)"), "{out}");
    assert!(out.contains("| **FAIL** | linux/arm64 | smallvec | 1.6.0 | 1.6.1 | [CVE-2021-25900]"), "{out}");
    assert!(
        out.contains("| unfixed (ignored) | linux/amd64 | libc | 0.2.100 | - | GHSA-xxxx-unfixed | HIGH | trivy |"),
        "{out}"
    );

    // Exit codes, garbage and a missing scanner.
    let (ok, out) = go("exit", &env(&clean, &[("FAKE_TRIVY_EXIT", "2")]), &[]);
    assert!(!ok && out.contains("trivy exited with exit status: 2: FATAL: DB error"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 1, "a broken tool exits 1");
    let (ok, out) = go("garbage", &env(&clean, &[("FAKE_TRIVY_GARBAGE", "1")]), &[]);
    assert!(!ok && out.contains("not a Trivy JSON report"), "{out}");
    let (ok, out) = go("explicit", &env(&clean, &[]), &["--trivy", &tmp.s("nope/trivy")]);
    assert!(!ok && out.contains("no such file"), "{out}");
    let none = [("PATH".to_string(), NO_TRIVY_PATH.to_string())];
    let (ok, out) = go("missing", &none, &[]);
    assert!(ok && out.contains("NOT SCANNED BY TRIVY: trivy is not installed"), "{out}");
    let (ok, out) = go("missing-required", &none, &["--require-trivy"]);
    assert!(!ok && out.contains("NOT SCANNED by Trivy, and this run publishes: failing closed"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 5, "refused");
    let (ok, out) = crate::support::xtask_result(&["scan", "--no-such-flag"], &[]);
    assert!(!ok && out.contains("--no-such-flag"), "{out}");
    assert_eq!(crate::support::last_exit_code(), 2, "usage");
}

/// The golden documents the unit tests compare against come from the code they check; the
/// official schemas judge them independently (and so every rendering that matches them).
#[test]
fn golden_sbom_and_sarif_follow_their_schemas() {
    let golden = root().join("xtask/tests/golden");
    crate::support::assert_schema_valid("cyclonedx-1.5", &[&golden.join("sbom.cdx.json")]);
    crate::support::assert_schema_valid("sarif-2.1.0", &[&golden.join("gate.sarif")]);
    // The judge is not blind: a document with a value the schema forbids is refused.
    let tmp = Tmp::new("schemas");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(golden.join("gate.sarif")).unwrap()).unwrap();
    doc["version"] = Value::from("2.0.0");
    std::fs::write(tmp.join("bad.sarif"), doc.to_string()).unwrap();
    let bad = tmp.join("bad.sarif");
    let result = std::panic::catch_unwind(|| crate::support::assert_schema_valid("sarif-2.1.0", &[&bad]));
    assert!(result.is_err(), "a SARIF version 2.0.0 document passed the schema check");
}

/// A fresh copy of the working tree (what a clone holds) in a directory without `../shared`,
/// offline (the fetch URL points nowhere and CARGO_HOME is empty, so there is no earlier fetch
/// either): `release` without `--rustsec-db` stops and says how to get a database; with
/// `--rustsec-db` pointing at a snapshot it releases into the local layout (from the shared
/// prebuilt binaries) and records the snapshot's commit.
#[test]
fn a_fresh_clone_without_the_shared_snapshot_asks_for_rustsec_db_then_releases_with_it() {
    let tmp = Tmp::new("fresh-clone");
    let clone = tmp.join("elsewhere/repo");
    std::fs::create_dir_all(&clone).unwrap();
    let copy = format!(
        "git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - \
         | tar -xf - -C {}",
        clone.display()
    );
    let (ok, _, e) = run("sh", &["-c", &copy], &[]);
    assert!(ok, "{e}");
    // The Debian packages of the -debug variants come from this checkout's cache (no download):
    // the shared layout fetched them.
    crate::support::layout();
    assert!(root().join("target/debian-packages").is_dir());
    std::fs::create_dir_all(clone.join("target")).unwrap();
    std::os::unix::fs::symlink(root().join("target/debian-packages"), clone.join("target/debian-packages")).unwrap();
    // The clone's own xtask (its project root is the clone), built once per run and kept.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fresh-clone-target");
    let manifest = clone.join("xtask/Cargo.toml");
    let (ok, _, e) = run(
        "cargo",
        &["build", "--offline", "--locked", "--quiet", "--manifest-path", manifest.to_str().unwrap()],
        &[("CARGO_TARGET_DIR", target.to_str().unwrap())],
    );
    assert!(ok, "{e}");
    let snapshot = root().join("../shared/data/rustsec-advisory-db");
    let offline = |args: &[&str]| -> (bool, String, i32) {
        let out = std::process::Command::new(target.join("debug/xtask"))
            .args(args)
            .current_dir(&clone)
            .env_remove("MULTUS_RUSTSEC_DB")
            .env("CARGO_HOME", tmp.join("empty-cargo-home"))
            .env("MULTUS_RUSTSEC_DB_URL", format!("file://{}/no-such-repository", tmp.0.display()))
            .env("PATH", NO_TRIVY_PATH)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text, out.status.code().unwrap_or(-1))
    };
    let out_dir = tmp.s("out");
    let base = ["release", "--prebuilt", built().to_str().unwrap(), "--arch", "amd64", "--out-dir", &out_dir];
    let (ok, out, code) = offline(&base);
    assert!(!ok && code == 1, "{code}: {out}");
    assert!(out.contains("no RustSec advisory database") && out.contains("pass --rustsec-db DIR"), "{out}");
    assert!(!tmp.join("out/oci").exists(), "stopped before the images");

    let (ok, out, _) = offline(&[&base[..], &["--rustsec-db", snapshot.to_str().unwrap()]].concat());
    assert!(ok, "{out}");
    let record: Value = serde_json::from_slice(&std::fs::read(tmp.join("out/release.json")).unwrap()).unwrap();
    let commit = record["scan"]["rustsecDbCommit"].as_str().unwrap().to_string();
    assert!(std::fs::read_to_string(snapshot.join("SNAPSHOT.md")).unwrap().contains(&commit), "{commit}");
    assert_eq!(record["scan"]["passed"], true);
}
