//! The gate's findings as SARIF 2.1.0 for GitHub code scanning: one run per scanner (its own
//! `automationDetails.id`), one rule per advisory, one result per finding and platform. Waived
//! findings carry their waiver as an external suppression with the statement; RustSec findings
//! point at `Cargo.lock` (where the vulnerable version is pinned), Trivy's at the file in the image.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Gate;
use super::policy::{Decision, Evaluated, Scanner, Severity};

fn security_severity(s: Severity) -> Option<&'static str> {
    match s {
        Severity::Critical => Some("9.5"),
        Severity::High => Some("8.0"),
        Severity::Medium => Some("5.5"),
        Severity::Low => Some("2.0"),
        Severity::Unknown => None,
    }
}

fn level(d: &Decision) -> &'static str {
    match d {
        Decision::Fail => "error",
        Decision::Warn => "warning",
        _ => "note",
    }
}

fn run(gate: &Gate, scanner: Scanner) -> Value {
    let findings: Vec<&Evaluated> = gate.verdict.findings.iter().filter(|e| e.finding.scanner == scanner).collect();
    let mut rules: BTreeMap<&str, Value> = BTreeMap::new();
    for e in &findings {
        let f = &e.finding;
        rules.entry(f.id.as_str()).or_insert_with(|| {
            let mut props = json!({"tags": ["security", serde_json::to_value(f.kind).unwrap()]});
            if let Some(s) = security_severity(f.severity) {
                props["security-severity"] = json!(s);
            }
            let mut r = json!({
                "id": f.id,
                "name": f.id,
                "shortDescription": {"text": if f.title.is_empty() { f.id.clone() } else { f.title.clone() }},
                "properties": props,
            });
            if let Some(u) = &f.url {
                r["helpUri"] = json!(u);
            }
            r
        });
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, k)| (*k, i)).collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|e| {
            let f = &e.finding;
            let uri = if scanner == Scanner::Rustsec { "Cargo.lock".to_string() } else { f.target.clone() };
            let mut r = json!({
                "ruleId": f.id,
                "ruleIndex": index[f.id.as_str()],
                "level": level(&e.decision),
                "message": {"text": format!(
                    "{} {} {} in {} ({}, {}): {}; fixed in {}; gate: {}",
                    f.package, f.installed, f.id, f.target, f.platform, f.image,
                    if f.title.is_empty() { "no title" } else { &f.title },
                    f.fixed.as_deref().unwrap_or("no release"), e.decision.label()
                )},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": 1}}}],
                "properties": {"platform": f.platform, "image": f.image, "package": f.package,
                               "installedVersion": f.installed, "severity": f.severity.as_str()},
            });
            if let Decision::Waived { statement, expires } = &e.decision {
                r["suppressions"] =
                    json!([{"kind": "external", "justification": format!("{statement} (waiver expires {expires})")}]);
            }
            r
        })
        .collect();
    let (name, version, uri) = match scanner {
        Scanner::Trivy => (
            "Trivy".to_string(),
            gate.trivy.version().unwrap_or("not run").to_string(),
            "https://github.com/aquasecurity/trivy",
        ),
        Scanner::Rustsec => ("RustSec (cargo xtask scan)".to_string(), gate.rustsec_db.clone(), "https://rustsec.org"),
    };
    json!({
        "tool": {"driver": {"name": name, "version": version, "informationUri": uri, "rules": rules.into_values().collect::<Vec<_>>()}},
        "automationDetails": {"id": format!("release-gate/{}/", serde_json::to_value(scanner).unwrap().as_str().unwrap())},
        "results": results,
    })
}

pub fn render(gate: &Gate) -> String {
    let doc = json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [run(gate, Scanner::Trivy), run(gate, Scanner::Rustsec)],
    });
    crate::report::canonical_json(doc)
}
