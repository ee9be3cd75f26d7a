//! Trivy: its JSON report (`SchemaVersion` 2: `Results[].Vulnerabilities[]` and `.Secrets[]`),
//! parsed by us into findings, and the process edge that runs it. Only `VulnerabilityID`,
//! `PkgName`, `InstalledVersion` and `Severity` are always present in a report; everything else
//! is optional here too.
//!
//! Trivy runs with `--config trivy.yaml` (so its DB and cache settings apply) but with every
//! severity, no ignore file and exit code 0: the report is complete and xtask decides (`policy`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::policy::{Finding, Kind, Policy, Scanner, Severity};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub schema_version: u32,
    #[serde(default)]
    pub results: Vec<ResultEntry>,
    #[serde(default)]
    pub trivy: Option<TrivyInfo>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrivyInfo {
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultEntry {
    pub target: String,
    #[serde(default)]
    pub vulnerabilities: Option<Vec<Vulnerability>>,
    #[serde(default)]
    pub secrets: Option<Vec<Secret>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    pub vulnerability_id: String,
    pub pkg_name: String,
    #[serde(default)]
    pub pkg_path: Option<String>,
    #[serde(default)]
    pub pkg_identifier: Option<PkgIdentifier>,
    pub installed_version: String,
    #[serde(default)]
    pub fixed_version: Option<String>,
    pub severity: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, rename = "PrimaryURL")]
    pub primary_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PkgIdentifier {
    #[serde(default, rename = "PURL")]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Secret {
    #[serde(rename = "RuleID")]
    pub rule_id: String,
    #[serde(default)]
    pub category: String,
    pub severity: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub start_line: u64,
}

pub fn parse_report(bytes: &[u8]) -> anyhow::Result<Report> {
    let r: Report = serde_json::from_slice(bytes).context("not a Trivy JSON report")?;
    if r.schema_version != 2 {
        bail!("Trivy report SchemaVersion {} (this gate reads 2)", r.schema_version);
    }
    Ok(r)
}

/// The findings of one platform image's report.
pub fn findings(report: &Report, platform: &str, image: &str) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    for r in &report.results {
        for v in r.vulnerabilities.iter().flatten() {
            let severity = Severity::parse(&v.severity)
                .with_context(|| format!("{}: {} in {}", image, v.vulnerability_id, r.target))?;
            out.push(Finding {
                platform: platform.into(),
                image: image.into(),
                target: v.pkg_path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| r.target.clone()),
                package: v.pkg_name.clone(),
                installed: v.installed_version.clone(),
                fixed: v.fixed_version.clone().filter(|f| !f.is_empty()),
                id: v.vulnerability_id.clone(),
                aliases: vec![],
                scanner: Scanner::Trivy,
                kind: Kind::Vulnerability,
                severity,
                cvss: None,
                title: v.title.clone().unwrap_or_default(),
                url: v.primary_url.clone(),
                purl: v.pkg_identifier.as_ref().and_then(|p| p.purl.clone()),
            });
        }
        for s in r.secrets.iter().flatten() {
            out.push(Finding {
                platform: platform.into(),
                image: image.into(),
                target: r.target.clone(),
                package: s.category.clone(),
                installed: format!("line {}", s.start_line),
                fixed: None,
                id: s.rule_id.clone(),
                aliases: vec![],
                scanner: Scanner::Trivy,
                kind: Kind::Secret,
                severity: Severity::parse(&s.severity).with_context(|| format!("{image}: secret {}", s.rule_id))?,
                cvss: None,
                title: s.title.clone(),
                url: None,
                purl: None,
            });
        }
    }
    Ok(out)
}

/// Scanner and database versions (`trivy version --format json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Versions {
    pub scanner: String,
    pub db: String,
}

pub fn parse_versions(bytes: &[u8]) -> anyhow::Result<Versions> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("`trivy version --format json` is not JSON")?;
    let scanner = v["Version"].as_str().context("`trivy version`: no Version")?.to_string();
    let db = match &v["VulnerabilityDB"] {
        serde_json::Value::Null => "none downloaded yet".to_string(),
        d => format!(
            "v{} updated {}",
            d["Version"].as_u64().unwrap_or(0),
            d["UpdatedAt"].as_str().unwrap_or("at an unknown time")
        ),
    };
    Ok(Versions { scanner, db })
}

/// The arguments of one scan: `input` is `LAYOUT:REF` (Trivy picks the top-level index.json entry).
pub fn scan_args(
    policy: &Policy,
    config: &Path,
    input: &str,
    output: &Path,
    ignorefile: &Path,
    extra: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "image".into(),
        "--config".into(),
        config.display().to_string(),
        "--input".into(),
        input.into(),
        "--format".into(),
        "json".into(),
        "--output".into(),
        output.display().to_string(),
        "--exit-code".into(),
        "0".into(),
        "--severity".into(),
        "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL".into(),
        "--ignore-unfixed=false".into(),
        "--ignorefile".into(),
        ignorefile.display().to_string(),
        "--scanners".into(),
        policy.scanners.join(","),
        "--timeout".into(),
        policy.timeout.clone(),
        "--quiet".into(),
    ];
    a.extend(extra.iter().cloned());
    a
}

/// Where Trivy is: `--trivy PATH` (must exist), else `trivy` on PATH, else none.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--trivy {}: no such file", p.display());
        }
        return Ok(Some(p.to_path_buf()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::split_paths(&path).map(|d| d.join("trivy")).find(|p| p.is_file()))
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.trim().lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub fn versions(trivy: &Path) -> anyhow::Result<Versions> {
    let out = Command::new(trivy)
        .args(["version", "--format", "json"])
        .output()
        .with_context(|| format!("running {} version", trivy.display()))?;
    if !out.status.success() {
        bail!("{} version exited with {}: {}", trivy.display(), out.status, tail(&out.stderr));
    }
    parse_versions(&out.stdout).with_context(|| format!("{} version", trivy.display()))
}

/// Runs one scan; the raw report is left at `output`. A non-zero exit (we ask for 0) is a broken
/// scan, and so is a report that does not parse.
pub fn scan(trivy: &Path, args: &[String], output: &Path) -> anyhow::Result<Report> {
    let _ = std::fs::remove_file(output);
    let out = Command::new(trivy).args(args).output().with_context(|| format!("running {}", trivy.display()))?;
    if !out.status.success() {
        bail!("trivy exited with {}: {}", out.status, tail(&out.stderr));
    }
    let bytes = std::fs::read(output).with_context(|| format!("trivy wrote no report to {}", output.display()))?;
    parse_report(&bytes).with_context(|| format!("the Trivy report {}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = include_str!("../../tests/fixtures/trivy/report-arm64.json");

    #[test]
    fn a_real_schema_report_gives_one_finding_per_vulnerability_and_secret() {
        let r = parse_report(REPORT.as_bytes()).unwrap();
        assert_eq!(r.trivy.as_ref().unwrap().version, "0.62.1");
        let f = findings(&r, "linux/arm64", "thick-1.0.0-linux-arm64").unwrap();
        let got: Vec<(&str, &str, &str, Option<&str>, &str)> = f
            .iter()
            .map(|f| (f.id.as_str(), f.package.as_str(), f.installed.as_str(), f.fixed.as_deref(), f.severity.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("CVE-2021-25900", "smallvec", "1.6.0", Some("1.6.1"), "CRITICAL"),
                ("GHSA-xxxx-unfixed", "libc", "0.2.100", None, "HIGH"),
                ("CVE-2024-0001", "time", "0.1.43", Some("0.2.23"), "MEDIUM"),
                ("aws-access-key-id", "AWS", "line 3", None, "CRITICAL"),
            ]
        );
        assert_eq!(f[0].target, "usr/src/multus-cni/bin/passthru");
        assert_eq!(f[0].purl.as_deref(), Some("pkg:cargo/smallvec@1.6.0"));
        assert_eq!(f[3].target, "etc/creds");
    }

    #[test]
    fn wrong_schema_and_garbage_are_refused() {
        assert!(parse_report(br#"{"SchemaVersion":1}"#).unwrap_err().to_string().contains("SchemaVersion 1"));
        assert!(parse_report(b"\x00garbage").is_err());
        assert!(parse_report(br#"{"SchemaVersion":2,"Results":[{"Target":"x","Vulnerabilities":null}]}"#).is_ok());
        let bad = r#"{"SchemaVersion":2,"Results":[{"Target":"x","Vulnerabilities":[{"VulnerabilityID":"C","PkgName":"p","InstalledVersion":"1","Severity":"SEVERE"}]}]}"#;
        assert!(findings(&parse_report(bad.as_bytes()).unwrap(), "p", "i").is_err());
    }

    #[test]
    fn versions_and_arguments() {
        let v = parse_versions(
            br#"{"Version":"0.62.1","VulnerabilityDB":{"Version":2,"NextUpdate":"2026-01-02T00:00:00Z","UpdatedAt":"2026-01-01T06:00:00Z","DownloadedAt":"2026-01-01T07:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(v, Versions { scanner: "0.62.1".into(), db: "v2 updated 2026-01-01T06:00:00Z".into() });
        assert_eq!(parse_versions(br#"{"Version":"0.1.0"}"#).unwrap().db, "none downloaded yet");
        let p = super::super::policy::parse_policy(include_str!("../../../trivy.yaml")).unwrap();
        let a = scan_args(
            &p,
            Path::new("trivy.yaml"),
            "L:thick-1-linux-arm64",
            Path::new("o.json"),
            Path::new("e"),
            &["--skip-db-update".into()],
        );
        assert_eq!(
            a.join(" "),
            "image --config trivy.yaml --input L:thick-1-linux-arm64 --format json --output o.json --exit-code 0 \
             --severity UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL --ignore-unfixed=false --ignorefile e --scanners vuln,secret \
             --timeout 10m --quiet --skip-db-update"
        );
    }
}
