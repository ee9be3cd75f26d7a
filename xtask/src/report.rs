//! How commands report: phase timings ([`Phases`]) and JSON documents written the same way from
//! every build of xtask ([`canonical_json`]), with the golden-file comparison of the unit tests.

use std::time::{Duration, Instant};

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

    /// (phase, duration) in the order they ran.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.done.iter().map(|(n, d, _)| (n.clone(), *d)).collect()
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

/// Writes `path` whole or not at all: a temporary file beside it, then a rename.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let name = path.file_name().with_context(|| format!("{}: no file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
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
    let path = crate::project::root().join("xtask/tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(want == actual, "{} differs from what was produced:\n{actual}", path.display());
}
