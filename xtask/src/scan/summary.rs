//! The gate's Markdown summary (printed, and appended to `$GITHUB_STEP_SUMMARY` in CI): verdict,
//! scanner and database versions, what was scanned, and one row per finding naming platform,
//! package, installed and fixed version, advisory and decision.

use std::fmt::Write as _;

use super::Gate;
use super::policy::Decision;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(gate: &Gate) -> String {
    let v = &gate.verdict;
    let mut s = String::new();
    let verdict = match (v.passed, v.enforced) {
        (true, _) => "PASSED",
        (false, true) => "FAILED",
        (false, false) => "FAILED (report only: exit-code 0 in the policy)",
    };
    let _ = writeln!(s, "## Release gate: {verdict}\n");
    let _ = writeln!(s, "| scanner | status |\n|---|---|");
    match &gate.trivy {
        super::TrivyStatus::Scanned(ver) => {
            let _ = writeln!(s, "| Trivy | {} (vulnerability DB {}) |", cell(&ver.scanner), cell(&ver.db));
        }
        super::TrivyStatus::NotScanned { reason: why } => {
            let _ = writeln!(s, "| Trivy | **NOT SCANNED**: {} |", cell(why));
        }
    }
    let _ = writeln!(s, "| RustSec | {} advisories, {} |", gate.rustsec_advisories, cell(&gate.rustsec_db));
    if !gate.rustsec_skipped.is_empty() {
        let _ = writeln!(
            s,
            "| RustSec | {} advisories skipped (unreadable): {} |",
            gate.rustsec_skipped.len(),
            cell(&gate.rustsec_skipped.join("; "))
        );
    }
    if !gate.rustsec_notes.is_empty() {
        let _ = writeln!(s, "| RustSec | read past: {} |", cell(&gate.rustsec_notes.join("; ")));
    }
    let p = &gate.policy;
    let sev: Vec<&str> = p.severities.iter().map(|x| x.as_str()).collect();
    let _ = writeln!(
        s,
        "\nPolicy `{}`: fail on {}{}, exit-code {}; waivers `{}` ({}).\n",
        gate.policy_file,
        sev.join(", "),
        if p.ignore_unfixed { " (unfixed ignored)" } else { "" },
        p.exit_code,
        gate.waivers_file,
        gate.waivers
    );
    let _ = writeln!(
        s,
        "### Images\n\n| platform | image | manifest | binaries (with dependency list) |\n|---|---|---|---|"
    );
    for i in &gate.images {
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {} ({}) |",
            i.platform,
            i.image,
            crate::image::short(&i.digest),
            i.binaries,
            i.with_deps
        );
    }
    let _ = writeln!(s, "\n### Findings\n");
    if v.findings.is_empty() {
        let _ = writeln!(s, "None.");
    } else {
        let _ = writeln!(
            s,
            "| gate | platform | package | installed | fixed | advisory | severity | scanner | where |\n|---|---|---|---|---|---|---|---|---|"
        );
        for e in &v.findings {
            let f = &e.finding;
            let gate_cell = match &e.decision {
                Decision::Fail => "**FAIL**".to_string(),
                Decision::Waived { statement, expires } => format!("waived until {expires}: {}", cell(statement)),
                d => d.label().to_string(),
            };
            let id = match &f.url {
                Some(u) => format!("[{}]({u})", f.id),
                None => f.id.clone(),
            };
            let _ = writeln!(
                s,
                "| {gate_cell} | {} | {} | {} | {} | {id} | {} | {} | {} |",
                f.platform,
                cell(&f.package),
                cell(&f.installed),
                cell(f.fixed.as_deref().unwrap_or("-")),
                f.severity.as_str(),
                serde_json::to_value(f.scanner).unwrap().as_str().unwrap(),
                cell(&f.target)
            );
        }
    }
    let problems: Vec<&String> = v.errors.iter().chain(&v.waiver_errors).collect();
    if !problems.is_empty() {
        let _ = writeln!(s, "\n### Problems\n");
        for p in problems {
            let _ = writeln!(s, "- {}", cell(p));
        }
    }
    if !v.unused_waivers.is_empty() {
        let _ = writeln!(s, "\nWaivers that matched nothing (remove them?): {}.", v.unused_waivers.join(", "));
    }
    s
}
