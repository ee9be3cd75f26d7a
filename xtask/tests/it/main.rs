//! Integration tests of `cargo xtask` — one binary for the release toolkit. They run the real
//! xtask binary with private target and output directories, so a developer's own artifacts are
//! never touched.

mod build;
mod gate;
mod image;
mod keyless;
mod publish;
mod sign;
mod sigstore_rs;
mod support;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `xtask ARGS` from the workspace root, panicking with its output on failure.
pub fn xtask(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).current_dir(root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "xtask {args:?} failed:\n{text}");
    text
}

/// `xtask ARGS --json`: asserts success and parses stdout, which must be the one JSON document
/// (progress goes to stderr).
pub fn xtask_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).arg("--json").current_dir(root()).output().unwrap();
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "xtask {args:?} --json failed:\n{o}{e}");
    serde_json::from_str(&o).unwrap_or_else(|err| panic!("xtask {args:?} --json printed no JSON ({err}):\n{o}"))
}

pub fn sh(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).current_dir(root()).output().unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
