//! The gate's policy and its decisions, as plain functions over data: `trivy.yaml` (severity,
//! ignore-unfixed, scanners, exit code, timeout) is the policy, `.trivyignore.yaml` holds the
//! waivers (Trivy's format; here every waiver must carry a `statement` and an `expired_at`, and an
//! expired one fails the gate), and `evaluate` decides every finding of both scanners.
//!
//! Trivy findings pass the severity and ignore-unfixed filters of the policy. RustSec findings
//! (our own dependency tree, fixed by a Cargo.lock bump) fail whatever their severity: a
//! vulnerability or an `unsound` advisory fails, `unmaintained` and `notice` warn. A waiver
//! silences a finding of either scanner by id or alias, optionally narrowed by `purls`/`paths`.

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] =
        [Severity::Unknown, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    pub fn parse(s: &str) -> anyhow::Result<Severity> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "UNKNOWN" => Severity::Unknown,
            "LOW" => Severity::Low,
            "MEDIUM" => Severity::Medium,
            "HIGH" => Severity::High,
            "CRITICAL" => Severity::Critical,
            other => bail!("unknown severity {other:?} (want UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL)"),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// What the gate enforces (from `trivy.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Severities that fail the gate (Trivy findings).
    pub severities: BTreeSet<Severity>,
    pub ignore_unfixed: bool,
    /// Trivy's scanners (`vuln`, `secret`, ...).
    pub scanners: Vec<String>,
    /// 0: report only (the gate never fails); anything else: the gate fails on a failing finding.
    pub exit_code: i32,
    /// Trivy's `--timeout` (e.g. `10m`).
    pub timeout: String,
}

/// `trivy.yaml`: the keys the gate reads (Trivy's own names; everything else is Trivy's business).
pub fn parse_policy(text: &str) -> anyhow::Result<Policy> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).context("parsing the policy YAML")?;
    let list = |v: Option<&serde_yaml::Value>, key: &str| -> anyhow::Result<Option<Vec<String>>> {
        Ok(match v {
            None | Some(serde_yaml::Value::Null) => None,
            Some(serde_yaml::Value::String(s)) => Some(s.split(',').map(|x| x.trim().to_string()).collect()),
            Some(serde_yaml::Value::Sequence(items)) => Some(
                items
                    .iter()
                    .map(|i| i.as_str().map(String::from).with_context(|| format!("{key}: {i:?} is not a string")))
                    .collect::<anyhow::Result<_>>()?,
            ),
            Some(other) => bail!("{key}: want a list or a comma-separated string, not {other:?}"),
        })
    };
    let severities = match list(v.get("severity"), "severity")? {
        Some(s) => s.iter().map(|x| Severity::parse(x)).collect::<anyhow::Result<BTreeSet<_>>>()?,
        None => Severity::ALL.into_iter().collect(),
    };
    if severities.is_empty() {
        bail!("severity: the list is empty");
    }
    let ignore_unfixed = match v.get("vulnerability").and_then(|x| x.get("ignore-unfixed")) {
        None => false,
        Some(b) => b.as_bool().context("vulnerability.ignore-unfixed: want true or false")?,
    };
    let scanners =
        list(v.get("scan").and_then(|s| s.get("scanners")), "scan.scanners")?.unwrap_or_else(|| vec!["vuln".into()]);
    for s in &scanners {
        if !["vuln", "secret", "misconfig", "license"].contains(&s.as_str()) {
            bail!("scan.scanners: unknown scanner {s:?}");
        }
    }
    let exit_code = match v.get("exit-code") {
        None => 0,
        Some(n) => n.as_i64().context("exit-code: want a number")? as i32,
    };
    let timeout = match v.get("timeout") {
        None => "5m".to_string(),
        Some(t) => t.as_str().context("timeout: want a duration such as 10m")?.to_string(),
    };
    Ok(Policy { severities, ignore_unfixed, scanners, exit_code, timeout })
}

/// One entry of `.trivyignore.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiver {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// `YYYY-MM-DD` (or an RFC 3339 time, of which the date counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

#[derive(Deserialize)]
struct WaiverFile {
    #[serde(default)]
    vulnerabilities: Vec<Waiver>,
    #[serde(default)]
    secrets: Vec<Waiver>,
}

/// `.trivyignore.yaml`: the `vulnerabilities` and `secrets` lists (an empty file is no waivers).
pub fn parse_waivers(text: &str) -> anyhow::Result<Vec<Waiver>> {
    if text.trim().is_empty() || text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Ok(vec![]);
    }
    let f: WaiverFile = serde_yaml::from_str(text).context("parsing the waiver YAML")?;
    let mut all = f.vulnerabilities;
    all.extend(f.secrets);
    for w in &all {
        if let Some(e) = &w.expired_at {
            date_of(e).with_context(|| format!("waiver {}: expired_at {e:?}", w.id))?;
        }
    }
    Ok(all)
}

/// The `YYYY-MM-DD` part of a date or RFC 3339 time, checked.
pub fn date_of(s: &str) -> anyhow::Result<&str> {
    let d = s.get(..10).context("want YYYY-MM-DD")?;
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let rest_ok = s.len() == 10 || matches!(s.as_bytes()[10], b'T' | b't' | b' ');
    if !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10) && rest_ok) {
        bail!("want YYYY-MM-DD");
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scanner {
    Trivy,
    Rustsec,
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Vulnerability,
    Unsound,
    Unmaintained,
    Notice,
    Secret,
}

/// One finding of either scanner in one platform image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub platform: String,
    /// The image's ref name in the layout.
    pub image: String,
    /// Where in the image: the file (a binary for RustSec) or Trivy's target.
    pub target: String,
    pub package: String,
    pub installed: String,
    pub id: String,
    pub fixed: Option<String>,
    pub aliases: Vec<String>,
    pub scanner: Scanner,
    pub kind: Kind,
    pub severity: Severity,
    /// RustSec's CVSS base score and vector (`9.8 CVSS:3.1/...`), when the advisory has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss: Option<String>,
    pub title: String,
    pub url: Option<String>,
    pub purl: Option<String>,
}

/// What the gate made of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    Fail,
    Waived { statement: String, expires: String },
    Warn,
    BelowSeverity,
    UnfixedIgnored,
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Fail => "FAIL",
            Decision::Waived { .. } => "waived",
            Decision::Warn => "warn",
            Decision::BelowSeverity => "below severity",
            Decision::UnfixedIgnored => "unfixed (ignored)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluated {
    #[serde(flatten)]
    pub finding: Finding,
    #[serde(flatten)]
    pub decision: Decision,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub findings: Vec<Evaluated>,
    /// Waivers that break the rules (no statement, no expiry, expired): each fails the gate.
    pub waiver_errors: Vec<String>,
    /// Waivers that matched nothing (reported, harmless).
    pub unused_waivers: Vec<String>,
    /// Other reasons the gate fails (binaries without a dependency list, ...).
    pub errors: Vec<String>,
    pub passed: bool,
    /// false when the policy's exit-code is 0 (report only).
    pub enforced: bool,
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else { return false };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

fn waiver_matches(w: &Waiver, f: &Finding) -> bool {
    (w.id == f.id || f.aliases.contains(&w.id))
        && (w.purls.is_empty() || f.purl.as_ref().is_some_and(|p| w.purls.contains(p)))
        && (w.paths.is_empty()
            || w.paths.iter().any(|p| glob(p.trim_start_matches('/'), f.target.trim_start_matches('/'))))
}

/// Decides every finding (see the module doc). `today` is `YYYY-MM-DD`; `errors` are failures
/// found before evaluation (they fail the gate too).
pub fn evaluate(
    findings: &[Finding],
    policy: &Policy,
    waivers: &[Waiver],
    today: &str,
    errors: Vec<String>,
) -> Verdict {
    let mut waiver_errors = Vec::new();
    let mut valid: Vec<&Waiver> = Vec::new();
    for w in waivers {
        let statement = w.statement.as_deref().map(str::trim).unwrap_or("");
        match (statement.is_empty(), w.expired_at.as_deref().and_then(|e| date_of(e).ok())) {
            (true, _) => waiver_errors.push(format!("waiver {}: no statement (say why it is safe to ship)", w.id)),
            (_, None) => waiver_errors.push(format!("waiver {}: no expired_at (every waiver expires)", w.id)),
            (false, Some(e)) if e <= today => {
                waiver_errors.push(format!("waiver {}: expired on {e} (renew it with a new statement or fix it)", w.id))
            }
            _ => valid.push(w),
        }
    }
    let mut used = BTreeSet::new();
    let mut sorted = findings.to_vec();
    sorted.sort();
    sorted.dedup();
    let evaluated: Vec<Evaluated> = sorted
        .into_iter()
        .map(|f| {
            let waiver = valid.iter().find(|w| waiver_matches(w, &f));
            let decision = if let Some(w) = waiver {
                used.insert(w.id.clone());
                Decision::Waived {
                    statement: w.statement.clone().unwrap_or_default().trim().to_string(),
                    expires: w.expired_at.as_deref().and_then(|e| date_of(e).ok()).unwrap_or("").to_string(),
                }
            } else if matches!(f.kind, Kind::Unmaintained | Kind::Notice) {
                Decision::Warn
            } else if f.scanner == Scanner::Rustsec {
                Decision::Fail
            } else if !policy.severities.contains(&f.severity) {
                Decision::BelowSeverity
            } else if policy.ignore_unfixed && f.fixed.as_deref().unwrap_or("").is_empty() {
                Decision::UnfixedIgnored
            } else {
                Decision::Fail
            };
            Evaluated { finding: f, decision }
        })
        .collect();
    let unused_waivers = valid
        .iter()
        .filter(|w| !used.contains(&w.id))
        .map(|w| w.id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let passed =
        errors.is_empty() && waiver_errors.is_empty() && evaluated.iter().all(|e| e.decision != Decision::Fail);
    Verdict { findings: evaluated, waiver_errors, unused_waivers, errors, passed, enforced: policy.exit_code != 0 }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn finding(scanner: Scanner, id: &str, severity: Severity, fixed: Option<&str>) -> Finding {
        Finding {
            platform: "linux/arm64".into(),
            image: "thick-1.0.0-linux-arm64".into(),
            target: "usr/src/multus-cni/bin/passthru".into(),
            package: "smallvec".into(),
            installed: "1.6.0".into(),
            fixed: fixed.map(String::from),
            id: id.into(),
            aliases: vec!["CVE-2021-25900".into()],
            scanner,
            kind: Kind::Vulnerability,
            severity,
            cvss: None,
            title: "buffer overflow".into(),
            url: None,
            purl: Some("pkg:cargo/smallvec@1.6.0".into()),
        }
    }

    fn policy() -> Policy {
        parse_policy(include_str!("../../../trivy.yaml")).unwrap()
    }

    #[test]
    fn the_shipped_policy_and_waivers_parse() {
        let p = policy();
        assert_eq!(p.severities, BTreeSet::from([Severity::High, Severity::Critical]));
        assert!(p.ignore_unfixed && p.exit_code == 1);
        assert_eq!(p.scanners, ["vuln", "secret"]);
        let w = parse_waivers(include_str!("../../../.trivyignore.yaml")).unwrap();
        let v = evaluate(&[], &p, &w, "2026-01-01", vec![]);
        assert!(v.waiver_errors.is_empty(), "{:?}", v.waiver_errors);
    }

    #[test]
    fn policy_forms() {
        let p = parse_policy("severity: CRITICAL,HIGH\nexit-code: 0\nscan:\n  scanners: [vuln]\n").unwrap();
        assert_eq!(p.severities.len(), 2);
        assert_eq!((p.exit_code, p.ignore_unfixed, p.timeout.as_str()), (0, false, "5m"));
        assert!(parse_policy("severity: [SEVERE]").unwrap_err().to_string().contains("SEVERE"));
        assert!(parse_policy("scan: {scanners: [viruses]}").is_err());
        assert!(parse_policy("vulnerability: {ignore-unfixed: sometimes}").is_err());
        assert_eq!(parse_policy("").unwrap().severities.len(), 5);
    }

    #[test]
    fn decisions() {
        let p = policy();
        let f = [
            finding(Scanner::Trivy, "CVE-1", Severity::Critical, Some("1.6.1")),
            finding(Scanner::Trivy, "CVE-2", Severity::Medium, Some("1.6.1")),
            finding(Scanner::Trivy, "CVE-3", Severity::High, None),
            finding(Scanner::Rustsec, "RUSTSEC-2021-0003", Severity::Unknown, None),
            Finding {
                kind: Kind::Unmaintained,
                ..finding(Scanner::Rustsec, "RUSTSEC-2024-0001", Severity::Unknown, None)
            },
        ];
        let v = evaluate(&f, &p, &[], "2026-01-01", vec![]);
        let got: Vec<(&str, &str)> = v.findings.iter().map(|e| (e.finding.id.as_str(), e.decision.label())).collect();
        assert_eq!(
            got,
            [
                ("CVE-1", "FAIL"),
                ("CVE-2", "below severity"),
                ("CVE-3", "unfixed (ignored)"),
                ("RUSTSEC-2021-0003", "FAIL"),
                ("RUSTSEC-2024-0001", "warn"),
            ]
        );
        assert!(!v.passed && v.enforced);
    }

    #[test]
    fn waivers_need_a_statement_and_an_expiry_and_expire() {
        let p = policy();
        let f = [finding(Scanner::Rustsec, "RUSTSEC-2021-0003", Severity::Unknown, None)];
        let w = |statement: Option<&str>, exp: Option<&str>, id: &str| Waiver {
            id: id.into(),
            statement: statement.map(String::from),
            expired_at: exp.map(String::from),
            purls: vec![],
            paths: vec![],
        };
        // By alias, valid: waived, passes.
        let v = evaluate(
            &f,
            &p,
            &[w(Some("not reachable: we never call insert_many"), Some("2026-06-30"), "CVE-2021-25900")],
            "2026-01-01",
            vec![],
        );
        assert!(v.passed, "{v:?}");
        assert_eq!(v.findings[0].decision.label(), "waived");
        // Expired (on the day itself): the finding fails and so does the waiver.
        let v = evaluate(&f, &p, &[w(Some("x"), Some("2026-01-01"), "RUSTSEC-2021-0003")], "2026-01-01", vec![]);
        assert!(!v.passed && v.findings[0].decision == Decision::Fail);
        assert_eq!(
            v.waiver_errors,
            ["waiver RUSTSEC-2021-0003: expired on 2026-01-01 (renew it with a new statement or fix it)"]
        );
        // No statement, no expiry: refused even when they match nothing.
        let v = evaluate(&[], &p, &[w(None, Some("2027-01-01"), "A"), w(Some("x"), None, "B")], "2026-01-01", vec![]);
        assert_eq!(v.waiver_errors.len(), 2);
        assert!(!v.passed);
        // Narrowed by purl and path.
        let mut narrow = w(Some("x"), Some("2027-01-01"), "RUSTSEC-2021-0003");
        narrow.purls = vec!["pkg:cargo/smallvec@1.6.1".into()];
        assert!(!evaluate(&f, &p, std::slice::from_ref(&narrow), "2026-01-01", vec![]).passed);
        narrow.purls = vec!["pkg:cargo/smallvec@1.6.0".into()];
        narrow.paths = vec!["/usr/src/multus-cni/bin/*".into()];
        let v = evaluate(&f, &p, &[narrow], "2026-01-01", vec![]);
        assert!(v.passed && v.unused_waivers.is_empty());
        // Errors found earlier fail the gate; exit-code 0 only reports.
        let v = evaluate(&[], &p, &[], "2026-01-01", vec!["x: no .dep-v0".into()]);
        assert!(!v.passed);
        let report_only = Policy { exit_code: 0, ..p };
        assert!(!evaluate(&f, &report_only, &[], "2026-01-01", vec![]).enforced);
    }

    #[test]
    fn waiver_file_format() {
        let text = "vulnerabilities:\n  - id: CVE-1\n    statement: ok\n    expired_at: 2026-02-03\n    purls: [\"pkg:cargo/a@1.0.0\"]\nsecrets:\n  - id: aws-access-key-id\n    paths: [\"etc/*\"]\n";
        let w = parse_waivers(text).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].expired_at.as_deref(), Some("2026-02-03"));
        assert!(parse_waivers("vulnerabilities:\n  - id: X\n    expired_at: soon\n").is_err());
        assert!(parse_waivers("# nothing\n").unwrap().is_empty());
        assert!(glob("a*c", "abbc") && glob("*", "") && !glob("a*c", "abd"));
    }
}
