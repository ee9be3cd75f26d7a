//! The RustSec advisory database (github.com/rustsec/advisory-db, a local checkout or snapshot)
//! matched against the dependency lists embedded in our binaries (`.dep-v0`). Advisories are
//! Markdown files with a TOML front matter (`[advisory]` id/package/informational/withdrawn/
//! aliases, `[versions]` patched/unaffected semver requirements, `[affected]` arch/os).
//!
//! A version is affected unless it matches a `patched` or an `unaffected` requirement; withdrawn
//! advisories are skipped; `[affected] arch`/`os` limit an advisory to those platforms. Only
//! crates.io packages are matched (local and git packages are ours or not in the database).
//! Parsing and matching are plain functions; `load` reads the directory.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::policy::{Finding, Kind, Scanner, Severity};
use crate::auditable::DepList;

#[derive(Debug, Clone, PartialEq)]
pub struct Advisory {
    pub id: String,
    pub package: String,
    pub aliases: Vec<String>,
    pub informational: Option<String>,
    pub withdrawn: bool,
    pub title: String,
    pub url: Option<String>,
    pub patched: Vec<semver::VersionReq>,
    pub unaffected: Vec<semver::VersionReq>,
    pub arch: Vec<String>,
    pub os: Vec<String>,
}

#[derive(Deserialize)]
struct Front {
    advisory: FrontAdvisory,
    #[serde(default)]
    versions: FrontVersions,
    #[serde(default)]
    affected: Option<FrontAffected>,
}

#[derive(Deserialize)]
struct FrontAdvisory {
    id: String,
    package: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    withdrawn: Option<toml::Value>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize, Default)]
struct FrontVersions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

#[derive(Deserialize)]
struct FrontAffected {
    #[serde(default)]
    arch: Vec<String>,
    #[serde(default)]
    os: Vec<String>,
}

fn reqs(list: &[String], what: &str) -> anyhow::Result<Vec<semver::VersionReq>> {
    list.iter().map(|r| semver::VersionReq::parse(r).with_context(|| format!("{what} requirement {r:?}"))).collect()
}

/// One advisory file: the ```toml front matter, then Markdown whose first `# ` heading is the title.
pub fn parse_advisory(text: &str) -> anyhow::Result<Advisory> {
    let body = text.trim_start().strip_prefix("```toml").context("no ```toml front matter")?;
    let (front, rest) = body.split_once("\n```").context("unterminated ```toml front matter")?;
    let f: Front = toml::from_str(front).context("front matter")?;
    let title = f
        .advisory
        .title
        .clone()
        .or_else(|| rest.lines().find_map(|l| l.strip_prefix("# ")).map(|t| t.trim().to_string()));
    let affected = f.affected.unwrap_or(FrontAffected { arch: vec![], os: vec![] });
    Ok(Advisory {
        patched: reqs(&f.versions.patched, "patched").with_context(|| f.advisory.id.clone())?,
        unaffected: reqs(&f.versions.unaffected, "unaffected").with_context(|| f.advisory.id.clone())?,
        id: f.advisory.id,
        package: f.advisory.package,
        aliases: f.advisory.aliases,
        informational: f.advisory.informational.map(|i| i.trim().to_string()),
        withdrawn: f.advisory.withdrawn.is_some(),
        title: title.unwrap_or_default(),
        url: f.advisory.url,
        arch: affected.arch,
        os: affected.os,
    })
}

impl Advisory {
    pub fn affects(&self, v: &semver::Version) -> bool {
        !self.withdrawn && !self.patched.iter().chain(&self.unaffected).any(|r| r.matches(v))
    }

    /// Whether it concerns a platform (RustSec's arch names: x86_64, aarch64, powerpc64, s390x, ...).
    pub fn applies_to(&self, arch: &str, os: &str) -> bool {
        (self.arch.is_empty() || self.arch.iter().any(|a| a == arch))
            && (self.os.is_empty() || self.os.iter().any(|o| o == os))
    }

    pub fn kind(&self) -> anyhow::Result<Kind> {
        Ok(match self.informational.as_deref() {
            None => Kind::Vulnerability,
            Some("unsound") => Kind::Unsound,
            Some("unmaintained") => Kind::Unmaintained,
            Some("notice") => Kind::Notice,
            Some(other) => bail!("{}: unknown informational kind {other:?}", self.id),
        })
    }

    /// The lowest patched version named by a `>= x` requirement, for the report's "fixed" column.
    pub fn fixed(&self) -> Option<String> {
        let list: Vec<String> = self.patched.iter().map(|r| r.to_string()).collect();
        (!list.is_empty()).then(|| list.join(" or "))
    }
}

/// The database: advisories by package, and where it came from.
#[derive(Debug, Clone, Default)]
pub struct Db {
    pub by_package: BTreeMap<String, Vec<Advisory>>,
    pub count: usize,
    /// `DIR (commit C)` when the snapshot or checkout says which commit it is.
    pub source: String,
}

impl Db {
    pub fn from_advisories(advisories: Vec<Advisory>, source: String) -> Db {
        let mut by_package: BTreeMap<String, Vec<Advisory>> = BTreeMap::new();
        let count = advisories.len();
        for a in advisories {
            by_package.entry(a.package.clone()).or_default().push(a);
        }
        Db { by_package, count, source }
    }
}

/// The commit a snapshot's SNAPSHOT.md names (the first 40-hex word).
pub fn snapshot_commit(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(String::from)
}

/// Reads `DIR/crates/*/*.md`. A missing directory is an error that says how to get one.
pub fn load(dir: &Path) -> anyhow::Result<Db> {
    let crates = dir.join("crates");
    if !crates.is_dir() {
        bail!(
            "the RustSec advisory database is not at {} (no crates/ directory): clone \
             https://github.com/rustsec/advisory-db there, or pass --rustsec-db DIR (or set MULTUS_RUSTSEC_DB)",
            dir.display()
        );
    }
    let mut advisories = Vec::new();
    let mut pkgs: Vec<_> = std::fs::read_dir(&crates)?.collect::<Result<_, _>>()?;
    pkgs.sort_by_key(|e| e.file_name());
    for pkg in pkgs {
        if !pkg.file_type()?.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(pkg.path())?.collect::<Result<_, _>>()?;
        files.sort_by_key(|e| e.file_name());
        for f in files.into_iter().filter(|f| f.path().extension().is_some_and(|e| e == "md")) {
            let text = std::fs::read_to_string(f.path())?;
            advisories.push(parse_advisory(&text).with_context(|| format!("advisory {}", f.path().display()))?);
        }
    }
    if advisories.is_empty() {
        bail!("the RustSec advisory database at {} has no advisories", dir.display());
    }
    let commit =
        std::fs::read_to_string(dir.join("SNAPSHOT.md")).ok().as_deref().and_then(snapshot_commit).or_else(|| {
            std::process::Command::new("git")
                .args(["-C", &dir.display().to_string(), "rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        });
    let source = match commit {
        Some(c) => format!("{} (commit {c})", dir.display()),
        None => dir.display().to_string(),
    };
    Ok(Db::from_advisories(advisories, source))
}

/// RustSec's name for an OCI architecture.
pub fn rust_arch(oci_arch: &str) -> &str {
    match oci_arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "ppc64le" | "ppc64" => "powerpc64",
        "386" => "x86",
        other => other,
    }
}

/// Where a dependency list sits: platform, image ref, file in the image.
#[derive(Debug, Clone)]
pub struct Site<'a> {
    pub platform: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
    pub image: &'a str,
    pub target: &'a str,
}

/// Every advisory that covers a crates.io package of `deps` on the site's platform.
pub fn matches(db: &Db, deps: &DepList, site: &Site) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    for p in deps.packages.iter().filter(|p| p.source == "crates.io") {
        let Some(advs) = db.by_package.get(&p.name) else { continue };
        let v = semver::Version::parse(&p.version)
            .with_context(|| format!("{}: {} has version {:?}", site.target, p.name, p.version))?;
        for a in advs.iter().filter(|a| a.affects(&v) && a.applies_to(rust_arch(site.arch), site.os)) {
            out.push(Finding {
                platform: site.platform.into(),
                image: site.image.into(),
                target: site.target.into(),
                package: p.name.clone(),
                installed: p.version.clone(),
                fixed: a.fixed(),
                id: a.id.clone(),
                aliases: a.aliases.clone(),
                scanner: Scanner::Rustsec,
                kind: a.kind()?,
                severity: Severity::Unknown,
                title: a.title.clone(),
                url: Some(format!("https://rustsec.org/advisories/{}.html", a.id)),
                purl: Some(format!("pkg:cargo/{}@{}", p.name, p.version)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auditable::DepPackage;

    const SMALLVEC: &str = "```toml\n[advisory]\nid = \"RUSTSEC-2021-0003\"\npackage = \"smallvec\"\n\
        aliases = [\"CVE-2021-25900\"]\ndate = \"2021-01-08\"\n\n[versions]\n\
        patched = [\"^0.6.14\", \">= 1.6.1\"]\nunaffected = [\"< 0.6.3\"]\n```\n\n# Buffer overflow in SmallVec::insert_many\n\nText.\n";

    fn dep(name: &str, version: &str, source: &str) -> DepPackage {
        DepPackage {
            name: name.into(),
            version: version.into(),
            source: source.into(),
            kind: "runtime".into(),
            dependencies: vec![],
            root: false,
        }
    }

    fn site() -> Site<'static> {
        Site { platform: "linux/arm64", os: "linux", arch: "arm64", image: "thick-1-linux-arm64", target: "usr/bin/x" }
    }

    #[test]
    fn patched_and_unaffected_ranges() {
        let a = parse_advisory(SMALLVEC).unwrap();
        assert_eq!(a.title, "Buffer overflow in SmallVec::insert_many");
        let affected = |v: &str| a.affects(&semver::Version::parse(v).unwrap());
        assert!(affected("1.6.0") && affected("1.0.0") && affected("0.6.13") && affected("0.6.3"));
        assert!(!affected("1.6.1") && !affected("2.0.0") && !affected("0.6.14") && !affected("0.6.2"));
        assert_eq!(a.fixed().as_deref(), Some("^0.6.14 or >=1.6.1"));
    }

    #[test]
    fn informational_withdrawn_and_platforms() {
        let unsound = SMALLVEC.replace("date =", "informational = \"unsound\"\ndate =");
        assert_eq!(parse_advisory(&unsound).unwrap().kind().unwrap(), Kind::Unsound);
        let withdrawn = SMALLVEC.replace("date =", "withdrawn = \"2022-01-01\"\ndate =");
        assert!(!parse_advisory(&withdrawn).unwrap().affects(&semver::Version::new(1, 6, 0)));
        let x86 = SMALLVEC.replace("[versions]", "[affected]\narch = [\"x86_64\"]\n\n[versions]");
        let a = parse_advisory(&x86).unwrap();
        assert!(a.applies_to("x86_64", "linux") && !a.applies_to(rust_arch("arm64"), "linux"));
        let bad = SMALLVEC.replace("date =", "informational = \"gossip\"\ndate =");
        assert!(parse_advisory(&bad).unwrap().kind().is_err());
        assert!(parse_advisory("# no front matter").is_err());
    }

    #[test]
    fn only_crates_io_packages_on_matching_platforms_are_reported() {
        let db = Db::from_advisories(vec![parse_advisory(SMALLVEC).unwrap()], "test".into());
        let deps = DepList {
            packages: vec![
                dep("smallvec", "1.6.0", "crates.io"),
                dep("smallvec", "1.6.1", "crates.io"),
                dep("smallvec", "1.0.0", "git"),
                dep("serde", "1.0.0", "crates.io"),
            ],
        };
        let f = matches(&db, &deps, &site()).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].id.as_str(), f[0].installed.as_str(), f[0].kind),
            ("RUSTSEC-2021-0003", "1.6.0", Kind::Vulnerability)
        );
        assert_eq!(f[0].purl.as_deref(), Some("pkg:cargo/smallvec@1.6.0"));
    }

    #[test]
    fn the_shipped_snapshot_parses_whole_and_names_its_commit() {
        let dir = super::super::default_rustsec_db();
        let db = load(&dir).unwrap();
        assert!(db.count > 1000, "{}", db.count);
        assert!(db.source.contains("commit "), "{}", db.source);
        assert!(load(&dir.join("nope")).unwrap_err().to_string().contains("--rustsec-db"));
    }
}
