//! The layering of ARCHITECTURE.md, enforced (rust-analyzer's `tidy.rs` idea): every `crate::`
//! path in a module's non-test code must name a part that module may depend on. A forbidden edge
//! fails `cargo test --lib`, which runs without root.
//!
//! Parts and what each may use besides itself and the low-level modules (`logging`, `files`,
//! `golang`, `build_info`, `prelude`), which every part may use and which use nothing of the crate (but
//! `build_info` reads its `-version` flag with `golang::parse_bool`, and the modules the libc-free
//! shim shares name `alloc`'s types through `prelude`):
//! - `cni`: nothing else — the CNI core knows nothing of Multus, Kubernetes or namespaces' users;
//! - `netns`: `cni` (its error type);
//! - `multus`: `cni`, `netns` — Kubernetes only through `multus::kube::Cluster`;
//! - `k8s`: `cni`, `multus`;
//! - `confgen`: `cni` (versions; its errors convert into `cni::Error`);
//! - `thick`: `cni`, `multus`, `netns`, and for the daemon's start-up `k8s` (its caches) and
//!   `confgen` (primary selection and file installation, for its config manager);
//! - `multicall`: `k8s` (the tools it starts by name);
//! - `bin/`: anything.
//!
//! Test modules (from the first `#[cfg(test)]` of a file on) and comments are not looked at.

use std::collections::BTreeSet;
use std::path::Path;

/// Used by every part; they use nothing of the crate.
const LOW_LEVEL: &[&str] = &["logging", "files", "golang", "build_info", "prelude"];

/// (part, the parts it may use besides [`LOW_LEVEL`]).
const RULES: &[(&str, &[&str])] = &[
    ("logging", &["prelude"]),
    ("files", &[]),
    ("golang", &["prelude"]),
    ("build_info", &["golang", "prelude"]),
    ("prelude", &[]),
    ("cni", &[]),
    ("netns", &["cni"]),
    ("multus", &["cni", "netns"]),
    ("k8s", &["cni", "multus"]),
    ("confgen", &["cni"]),
    ("thick", &["cni", "multus", "netns", "k8s", "confgen"]),
    ("multicall", &["k8s"]),
];

/// The parts a source text uses through `crate::` paths, outside comments and test modules.
fn used_parts(source: &str) -> BTreeSet<String> {
    let mut parts = BTreeSet::new();
    for line in source.lines().take_while(|l| !l.trim_start().starts_with("#[cfg(test)]")) {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                parts.insert(name);
            }
        }
    }
    parts
}

/// Every forbidden edge of `part` in `source`, as `part -> used`.
fn violations(part: &str, source: &str) -> Vec<String> {
    let allowed = RULES.iter().find(|(p, _)| *p == part).map(|(_, a)| *a);
    let Some(allowed) = allowed else { return vec![format!("{part} is not in tidy's RULES")] };
    used_parts(source)
        .into_iter()
        .filter(|u| u != part && !allowed.contains(&u.as_str()))
        // The low-level modules are free for everyone but themselves.
        .filter(|u| LOW_LEVEL.contains(&part) || !LOW_LEVEL.contains(&u.as_str()))
        .map(|u| format!("{part} -> {u}"))
        .collect()
}

/// The part a file under `src/` belongs to (`None` for the binaries and the crate roots: `core/`
/// is the `multus-core` crate's root, whose modules are the low-level ones, `cni`, `confgen` and
/// the shim's side of `thick`; the compiler keeps them from reaching the rest).
fn part_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "bin" | "core" | "lib.rs" | "tidy.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_layering_holds() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        if let Some(part) = part_of(rel) {
            let text = std::fs::read_to_string(f).unwrap();
            found.extend(violations(&part, &text).into_iter().map(|v| format!("{}: {v}", rel.display())));
        }
    }
    assert!(found.is_empty(), "imports across the layering of ARCHITECTURE.md:\n{}", found.join("\n"));
    assert!(files.len() > 40, "tidy read only {} files", files.len());
}

#[test]
fn a_forbidden_edge_is_reported() {
    let source = "use crate::cni::Error;\nuse crate::k8s::cluster::ApiCluster; // not allowed\n// crate::thick in a comment\n\
                  #[cfg(test)]\nmod tests { use crate::thick::api; }\n";
    assert_eq!(violations("multus", source), vec!["multus -> k8s"]);
    assert_eq!(violations("cni", "fn f() { crate::multus::ops::add(); }"), vec!["cni -> multus"]);
    assert!(violations("k8s", source).is_empty());
    assert_eq!(violations("newpart", ""), vec!["newpart is not in tidy's RULES"]);
    assert!(violations("thick", "use crate::golang::Fields; use crate::files::write_atomic;").is_empty());
    assert_eq!(violations("golang", "use crate::cni::Error;"), vec!["golang -> cni"]);
    assert_eq!(violations("files", "crate::logging::error(\"x\");"), vec!["files -> logging"]);
}
