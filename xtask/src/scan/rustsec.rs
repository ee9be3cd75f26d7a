//! The RustSec advisory database matched against the dependency lists embedded in our binaries
//! (`.dep-v0`). Parsing is the `rustsec` crate's (`rustsec::Advisory`, front matter, `[versions]`,
//! `[affected]`, CVSS vectors); this module owns loading a directory one advisory at a time (an
//! advisory the crate cannot parse is reported and skipped, never fatal), the advisory's kind and
//! severity as the gate sees them, and the matching of crates.io packages on a platform.
//!
//! A version is affected unless it matches a `patched` or an `unaffected` requirement; withdrawn
//! advisories are skipped; `[affected] arch`/`os` limit an advisory to those platforms. Only
//! crates.io packages are matched (local and git packages are ours or not in the database).
//! Where the database comes from (fetch, snapshot, its commit and date) is `scan::advisory_db`'s.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use rustsec::Advisory;

use super::policy::{Finding, Kind, Scanner, Severity};
use crate::auditable::DepList;

/// The gate's kind for an advisory: an `informational` value the gate does not know (RustSec may
/// add kinds) is a notice that warns, named in its title, not an error.
pub fn kind(a: &Advisory) -> Kind {
    match &a.metadata.informational {
        None => Kind::Vulnerability,
        Some(rustsec::advisory::Informational::Unsound) => Kind::Unsound,
        Some(rustsec::advisory::Informational::Unmaintained) => Kind::Unmaintained,
        Some(_) => Kind::Notice,
    }
}

/// The severity from the advisory's CVSS vector (v3.0, v3.1 or v4.0); none is UNKNOWN.
pub fn severity(a: &Advisory) -> Severity {
    match a.metadata.cvss.as_ref().map(|c| c.severity()) {
        None | Some(rustsec::advisory::Severity::None) => Severity::Unknown,
        Some(rustsec::advisory::Severity::Low) => Severity::Low,
        Some(rustsec::advisory::Severity::Medium) => Severity::Medium,
        Some(rustsec::advisory::Severity::High) => Severity::High,
        Some(rustsec::advisory::Severity::Critical) => Severity::Critical,
    }
}

/// `9.8 CVSS:3.1/AV:N/...`: the base score and the vector, for the reports.
pub fn cvss(a: &Advisory) -> Option<String> {
    a.metadata.cvss.as_ref().map(|c| format!("{:.1} {c}", c.score()))
}

/// The patched requirements, for the report's "fixed" column.
pub fn fixed(a: &Advisory) -> Option<String> {
    let list: Vec<String> = a.versions.patched().iter().map(|r| r.to_string()).collect();
    (!list.is_empty()).then(|| list.join(" or "))
}

/// Whether it concerns a platform (RustSec's arch names: x86_64, aarch64, powerpc64, s390x, arm).
pub fn applies_to(a: &Advisory, arch: &str, os: &str) -> bool {
    let Some(affected) = &a.affected else { return true };
    (affected.arch.is_empty() || affected.arch.iter().any(|x| x.as_str() == arch))
        && (affected.os.is_empty() || affected.os.iter().any(|o| o.as_str() == os))
}

/// The fields of an advisory file the rustsec crate reads; anything else it ignores in silence.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "advisory",
        &[
            "id",
            "package",
            "title",
            "description",
            "date",
            "aliases",
            "related",
            "collection",
            "categories",
            "keywords",
            "cvss",
            "informational",
            "references",
            "source",
            "url",
            "withdrawn",
            "license",
            "expect-deleted",
        ],
    ),
    ("versions", &["patched", "unaffected"]),
    ("affected", &["arch", "os", "functions"]),
];

/// Fields of an advisory's front matter that the parser does not know (a newer database format):
/// `[table] key` each. A file without front matter has none (the parser reports it).
pub fn unknown_fields(text: &str) -> Vec<String> {
    let Ok(parts) = rustsec::advisory::Parts::parse(text) else { return vec![] };
    let Ok(toml::Value::Table(top)) = toml::from_str::<toml::Value>(parts.front_matter) else { return vec![] };
    let mut out = Vec::new();
    for (k, v) in &top {
        match (KNOWN.iter().find(|(t, _)| t == k), v) {
            (Some((table, keys)), toml::Value::Table(inner)) => {
                out.extend(inner.keys().filter(|x| !keys.contains(&x.as_str())).map(|x| format!("[{table}] {x}")));
            }
            // Format v4 may leave out the `[advisory]` header: its keys sit at the top.
            (None, _) if KNOWN[0].1.contains(&k.as_str()) => {}
            _ => out.push(k.clone()),
        }
    }
    out
}

/// The advisories, by package, and the files that could not be read as one.
#[derive(Debug, Clone, Default)]
pub struct Db {
    pub by_package: BTreeMap<String, Vec<Advisory>>,
    pub count: usize,
    /// `path: error` of every advisory file the crate could not parse (reported, skipped).
    pub skipped: Vec<String>,
    /// `ID: unknown field [table] key` of advisories read with fields the parser ignored (reported).
    pub notes: Vec<String>,
    /// The newest advisory date (`YYYY-MM-DD`): the database is at least that recent.
    pub newest: Option<String>,
}

impl Db {
    pub fn from_advisories(advisories: Vec<Advisory>) -> Db {
        let mut by_package: BTreeMap<String, Vec<Advisory>> = BTreeMap::new();
        let count = advisories.len();
        let newest = advisories.iter().map(|a| a.metadata.date.as_str().to_string()).max();
        for a in advisories {
            by_package.entry(a.metadata.package.as_str().to_string()).or_default().push(a);
        }
        Db { by_package, count, skipped: vec![], notes: vec![], newest }
    }
}

/// Reads `DIR/crates/*/*.md`, one advisory at a time. A missing directory is an error that says
/// how to get one.
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
    let (mut skipped, mut notes) = (Vec::new(), Vec::new());
    let mut pkgs: Vec<_> = std::fs::read_dir(&crates)
        .with_context(|| format!("reading {}", crates.display()))?
        .collect::<Result<_, _>>()?;
    pkgs.sort_by_key(|e| e.file_name());
    for pkg in pkgs {
        if !pkg.file_type()?.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(pkg.path())?.collect::<Result<_, _>>()?;
        files.sort_by_key(|e| e.file_name());
        for f in files.into_iter().filter(|f| f.path().extension().is_some_and(|e| e == "md")) {
            if Advisory::is_draft(&f.path()) {
                continue;
            }
            match Advisory::load_file(f.path()) {
                Ok(a) => {
                    let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                    let unknown = unknown_fields(&text);
                    if !unknown.is_empty() {
                        notes.push(format!("{}: unknown fields {} (ignored)", a.id().as_str(), unknown.join(", ")));
                    }
                    advisories.push(a);
                }
                Err(e) => skipped.push(format!("{}: {}", f.path().display(), error_chain(&e))),
            }
        }
    }
    if advisories.is_empty() {
        bail!("the RustSec advisory database at {} has no advisories", dir.display());
    }
    let mut db = Db::from_advisories(advisories);
    db.skipped = skipped;
    db.notes = notes;
    Ok(db)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s.lines().next().unwrap_or_default().to_string()
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
        let v = rustsec::Version::parse(&p.version)
            .with_context(|| format!("{}: {} has version {:?}", site.target, p.name, p.version))?;
        for a in advs
            .iter()
            .filter(|a| !a.withdrawn() && a.versions.is_vulnerable(&v) && applies_to(a, rust_arch(site.arch), site.os))
        {
            let id = a.id().as_str().to_string();
            let title = match &a.metadata.informational {
                Some(i @ rustsec::advisory::Informational::Other(_)) => {
                    format!("[informational: {}] {}", i.as_str(), a.title())
                }
                _ => a.title().to_string(),
            };
            out.push(Finding {
                platform: site.platform.into(),
                image: site.image.into(),
                target: site.target.into(),
                package: p.name.clone(),
                installed: p.version.clone(),
                fixed: fixed(a),
                aliases: a.metadata.aliases.iter().map(|x| x.as_str().to_string()).collect(),
                scanner: Scanner::Rustsec,
                kind: kind(a),
                severity: severity(a),
                cvss: cvss(a),
                title,
                url: Some(format!("https://rustsec.org/advisories/{id}.html")),
                purl: Some(format!("pkg:cargo/{}@{}", p.name, p.version)),
                id,
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
        aliases = [\"CVE-2021-25900\"]\ndate = \"2021-01-08\"\n\
        cvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\"\n\n[versions]\n\
        patched = [\"^0.6.14\", \">= 1.6.1\"]\nunaffected = [\"< 0.6.3\"]\n```\n\n# Buffer overflow in SmallVec::insert_many\n\nText.\n";

    fn parse(text: &str) -> Advisory {
        text.parse().unwrap()
    }

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

    fn affected(a: &Advisory, v: &str) -> bool {
        a.versions.is_vulnerable(&rustsec::Version::parse(v).unwrap())
    }

    #[test]
    fn patched_and_unaffected_ranges_and_the_cvss_severity() {
        let a = parse(SMALLVEC);
        assert_eq!(a.title(), "Buffer overflow in SmallVec::insert_many");
        assert!(affected(&a, "1.6.0") && affected(&a, "1.0.0") && affected(&a, "0.6.13") && affected(&a, "0.6.3"));
        assert!(!affected(&a, "1.6.1") && !affected(&a, "2.0.0") && !affected(&a, "0.6.14") && !affected(&a, "0.6.2"));
        assert_eq!(fixed(&a).as_deref(), Some("^0.6.14 or >=1.6.1"));
        assert_eq!(severity(&a), Severity::Critical);
        assert_eq!(cvss(&a).as_deref(), Some("9.8 CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"));
        let medium = SMALLVEC.replace("C:H/I:H/A:H", "C:L/I:L/A:N");
        assert_eq!(severity(&parse(&medium)), Severity::Medium);
        let v4 = SMALLVEC.replace(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        );
        assert_eq!(severity(&parse(&v4)), Severity::Critical);
        let none = SMALLVEC.replace("cvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\"\n", "");
        assert_eq!((severity(&parse(&none)), cvss(&parse(&none))), (Severity::Unknown, None));
    }

    #[test]
    fn informational_withdrawn_and_platforms() {
        let unsound = SMALLVEC.replace("date =", "informational = \"unsound\"\ndate =");
        assert_eq!(kind(&parse(&unsound)), Kind::Unsound);
        let withdrawn = SMALLVEC.replace("date =", "withdrawn = \"2022-01-01\"\ndate =");
        let db = Db::from_advisories(vec![parse(&withdrawn)]);
        let deps = DepList { packages: vec![dep("smallvec", "1.6.0", "crates.io")] };
        assert!(matches(&db, &deps, &site()).unwrap().is_empty());
        let x86 = SMALLVEC.replace("[versions]", "[affected]\narch = [\"x86_64\"]\n\n[versions]");
        let a = parse(&x86);
        assert!(applies_to(&a, "x86_64", "linux") && !applies_to(&a, rust_arch("arm64"), "linux"));
        assert!(applies_to(&a, rust_arch("amd64"), "linux"));
        // A kind RustSec may add later warns, and says what it is.
        let gossip = SMALLVEC.replace("date =", "informational = \"gossip\"\ndate =");
        let db = Db::from_advisories(vec![parse(&gossip)]);
        let f = matches(&db, &deps, &site()).unwrap();
        assert_eq!(f[0].kind, Kind::Notice);
        assert!(f[0].title.starts_with("[informational: gossip] "), "{}", f[0].title);
    }

    #[test]
    fn only_crates_io_packages_on_matching_platforms_are_reported() {
        let db = Db::from_advisories(vec![parse(SMALLVEC)]);
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
            (f[0].id.as_str(), f[0].installed.as_str(), f[0].kind, f[0].severity),
            ("RUSTSEC-2021-0003", "1.6.0", Kind::Vulnerability, Severity::Critical)
        );
        assert_eq!(f[0].aliases, ["CVE-2021-25900"]);
        assert_eq!(f[0].purl.as_deref(), Some("pkg:cargo/smallvec@1.6.0"));
    }

    #[test]
    fn an_advisory_the_crate_cannot_read_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("crates/smallvec");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("RUSTSEC-2021-0003.md"), SMALLVEC).unwrap();
        std::fs::write(pkg.join("RUSTSEC-2099-0001.md"), SMALLVEC.replace("CVSS:3.1/", "CVSS:9.9/")).unwrap();
        std::fs::write(pkg.join("RUSTSEC-0000-0000.md"), "draft").unwrap();
        // A field the parser does not know yet is read past, and said.
        let newer =
            SMALLVEC.replace("RUSTSEC-2021-0003", "RUSTSEC-2099-0002").replace("date =", "exploited = true\ndate =");
        std::fs::write(pkg.join("RUSTSEC-2099-0002.md"), newer).unwrap();
        let db = load(dir.path()).unwrap();
        assert_eq!(db.count, 2);
        assert_eq!(db.notes, ["RUSTSEC-2099-0002: unknown fields [advisory] exploited (ignored)"]);
        assert_eq!(db.skipped.len(), 1, "{:?}", db.skipped);
        assert!(db.skipped[0].contains("RUSTSEC-2099-0001.md: "), "{:?}", db.skipped);
        assert_eq!(db.newest.as_deref(), Some("2021-01-08"));
        assert!(load(&dir.path().join("nope")).unwrap_err().to_string().contains("--rustsec-db"));
    }

    #[test]
    fn the_shipped_snapshot_parses_whole_with_cvss_severities() {
        let db = load(&super::super::advisory_db::shared_snapshot().unwrap()).unwrap();
        assert!(db.count > 1000, "{}", db.count);
        assert!(db.skipped.is_empty(), "{:?}", db.skipped);
        assert!(db.notes.is_empty(), "the parser knows every field of the snapshot: {:?}", db.notes);
        let with_cvss = db.by_package.values().flatten().filter(|a| severity(a) != Severity::Unknown).count();
        assert!(with_cvss > 300, "{with_cvss}");
    }
}
