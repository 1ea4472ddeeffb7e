//! The audit's outputs: a summary on the terminal, a Markdown report, the full result as JSON,
//! and OCSF 1.3 Detection Findings (one per factor with host-dependent content), following the
//! conventions of the daemon's OCSF records (`crate::output::ocsf`).

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use serde::Serialize;
use serde_json::{json, Value};

use super::{
    diff::{FieldDiff, Kind, RequestDiff},
    isolate::RunUser,
    plan::Plan,
    runner::{Outcome, Status},
    sensor::Looked,
    verdict::{headline, Evaluation, FactorResult, Verdict},
};

pub const SCHEMA: &str = "aiwatch.audit.v1";

/// One run, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub index: usize,
    pub label: String,
    pub root_pid: Option<u32>,
    #[serde(flatten)]
    pub status: Status,
    pub duration_ms: u64,
    pub api_calls: usize,
    /// `POST /v1/messages?beta=true → anthropic.messages 200 [https:443, sni api.anthropic.com]`
    pub requests: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub killed: Vec<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looked: Option<Looked>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditResult {
    pub schema: &'static str,
    pub command: Vec<String>,
    pub resolved: String,
    pub user: RunUser,
    pub host: String,
    pub started: String,
    pub duration_ms: u64,
    pub jobs: usize,
    pub timeout_s: u64,
    pub baseline_runs: usize,
    pub sensor: String,
    pub verdict: Verdict,
    pub exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_problem: Option<String>,
    pub factors: Vec<FactorResult>,
    pub runs: Vec<RunReport>,
}

pub struct Inputs<'a> {
    pub command: &'a [String],
    pub resolved: &'a Path,
    pub user: &'a RunUser,
    pub plan: &'a Plan,
    pub jobs: usize,
    pub started_wall: std::time::SystemTime,
    pub duration: Duration,
    pub sensor: String,
    pub eval: Evaluation,
    pub outcomes: &'a [Outcome],
    pub looked: &'a BTreeMap<usize, Looked>,
    pub code: u8,
}

fn request_line(r: &super::mock::Recorded) -> String {
    let mut via = vec![r.listener.clone()];
    if let Some(s) = &r.tls_sni {
        via.push(format!("sni {s}"));
    }
    if let Some(p) = &r.proxy {
        via.push(format!("proxy {p}"));
    }
    let path: String = r.path.chars().take(120).collect();
    format!("{} {} → {} {} [{}]", r.method, path, r.api, r.status, via.join(", "))
}

impl AuditResult {
    pub fn new(i: Inputs<'_>) -> Self {
        let runs = i
            .outcomes
            .iter()
            .map(|o| RunReport {
                index: o.index,
                label: o.label.clone(),
                root_pid: o.root_pid,
                status: o.status.clone(),
                duration_ms: o.duration_ms,
                api_calls: o.llm_calls(),
                requests: o.requests.iter().map(request_line).collect(),
                killed: o.killed.clone(),
                stderr_tail: o.stderr_tail.clone(),
                stdout_tail: o.stdout_tail.chars().take(500).collect(),
                looked: i.looked.get(&o.index).cloned(),
            })
            .collect();
        Self {
            schema: SCHEMA,
            command: i.command.to_vec(),
            resolved: i.resolved.display().to_string(),
            user: i.user.clone(),
            host: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            started: humantime::format_rfc3339_seconds(i.started_wall).to_string(),
            duration_ms: i.duration.as_millis() as u64,
            jobs: i.jobs,
            timeout_s: i.plan.timeout.as_secs(),
            baseline_runs: i
                .outcomes
                .iter()
                .filter(|o| o.spec.as_ref().is_some_and(|s| s.variant.is_none()))
                .count(),
            sensor: i.sensor,
            verdict: i.eval.verdict(),
            exit_code: i.code,
            baseline_problem: i.eval.baseline_problem,
            factors: i.eval.factors,
            runs,
        }
    }

    fn command_line(&self) -> String {
        self.command
            .iter()
            .map(|a| if a.contains([' ', '"', '\'']) || a.is_empty() { format!("{a:?}") } else { a.clone() })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn secs(ms: u64) -> String {
    if ms >= 60_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn kinds(k: &std::collections::BTreeSet<Kind>) -> String {
    k.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

fn user_line(u: &RunUser) -> String {
    format!("{} (uid {}, gid {}; {})", u.name, u.uid, u.gid, u.source)
}

/// The summary printed on the terminal.
pub fn terminal(r: &AuditResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "aiwatch audit: {}", r.command_line());
    let _ = writeln!(
        s,
        "  {} runs ({} baseline) as {}, {} at a time, in {}; sensor: {}",
        r.runs.len(),
        r.baseline_runs,
        user_line(&r.user),
        r.jobs,
        secs(r.duration_ms),
        r.sensor
    );
    if let Some(p) = &r.baseline_problem {
        let _ = writeln!(s, "\n  Baseline unusable: {p}");
    }
    let _ = writeln!(s);
    let w = r.factors.iter().map(|f| f.name.len()).max().unwrap_or(6).max(6);
    for f in &r.factors {
        let k = if f.kinds.is_empty() { String::new() } else { format!(" [{}]", kinds(&f.kinds)) };
        let _ = writeln!(s, "  {:w$}  {}{k}", f.name, f.verdict.text().to_uppercase());
        let _ = writeln!(s, "  {:w$}  {}", "", f.summary);
    }
    let _ = writeln!(s, "\nVerdict: {} (exit status {})", r.verdict.text(), r.exit_code);
    s
}

fn md_code(s: &str) -> String {
    let s = s.replace('\n', "\\n");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

fn md_field(out: &mut String, f: &FieldDiff) {
    let disclosed = if f.disclosed.is_empty() {
        String::new()
    } else {
        format!(" — tells {}", f.disclosed.iter().map(|d| md_code(d)).collect::<Vec<_>>().join(", "))
    };
    let _ = writeln!(out, "- field {} ({}, {}){disclosed}", md_code(&f.field), f.change, kinds(&f.kinds));
    if f.hunks.is_empty() {
        if let Some(b) = &f.baseline {
            let _ = writeln!(out, "  - baseline: {}", md_code(b));
        }
        if let Some(v) = &f.variant {
            let _ = writeln!(out, "  - variant: {}", md_code(v));
        }
    }
    for h in f.hunks.iter().take(6) {
        let note = h.note.as_ref().map(|n| format!(" — {n}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  - {}: {} → {}{note}, in {}",
            h.kind.name(),
            md_code(&h.removed),
            md_code(&h.inserted),
            md_code(&format!("…{}[{}]{}…", h.before, h.inserted, h.after))
        );
        for c in h.chars.iter().take(6) {
            let side = |cps: &[super::diff::CodePoint]| {
                cps.iter()
                    .map(|c| format!("{} {} {}", md_code(&c.shown), c.code, c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let line = match c.op {
                "insert" => format!("inserted {}", side(&c.inserted)),
                "delete" => format!("removed {}", side(&c.removed)),
                _ => format!("{} where {} was", side(&c.inserted), side(&c.removed)),
            };
            let _ = writeln!(out, "    - {line}");
        }
    }
    if f.hunks.len() > 6 {
        let _ = writeln!(out, "  - … {} more changes", f.hunks.len() - 6);
    }
}

fn md_request(out: &mut String, d: &RequestDiff) {
    let what = if d.llm_call { " (model call)" } else { "" };
    match &d.presence {
        Some(p) => {
            let _ = writeln!(out, "\n**{}**{what}: {p}", md_code(&d.request));
        }
        None => {
            let _ = writeln!(out, "\n**{}**{what}:", md_code(&d.request));
        }
    }
    for f in d.fields.iter().take(12) {
        md_field(out, f);
    }
    if d.fields.len() > 12 {
        let _ = writeln!(out, "- … {} more fields", d.fields.len() - 12);
    }
}

/// The Markdown report.
pub fn markdown(r: &AuditResult) -> String {
    let mut s = String::new();
    md_header(&mut s, r);
    for f in &r.factors {
        md_factor(&mut s, f);
    }
    let _ = writeln!(
        s,
        "## Runs\n\n| # | run | status | API calls | requests | time |\n|---|---|---|---|---|---|"
    );
    for run in &r.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            run.index,
            run.label,
            run.status.describe(),
            run.api_calls,
            run.requests.len(),
            secs(run.duration_ms)
        );
    }
    s
}

/// The title, the verdict, what ran how, and the table of factors.
fn md_header(s: &mut String, r: &AuditResult) {
    let _ = writeln!(s, "# aiwatch audit: {}\n", md_code(&r.command_line()));
    let _ = writeln!(s, "**Verdict: {}** (exit status {})\n", r.verdict.text(), r.exit_code);
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| command | {} |", md_code(&r.resolved));
    let _ = writeln!(s, "| run as | {} |", user_line(&r.user));
    let _ = writeln!(s, "| host | {} |", md_code(&r.host));
    let _ = writeln!(s, "| started | {} |", r.started);
    let _ = writeln!(
        s,
        "| runs | {} ({} baseline), {} at a time, timeout {} s, {} |",
        r.runs.len(),
        r.baseline_runs,
        r.jobs,
        r.timeout_s,
        secs(r.duration_ms)
    );
    let _ = writeln!(s, "| sensor | {} |", r.sensor);
    if let Some(p) = &r.baseline_problem {
        let _ = writeln!(s, "\n> **Baseline unusable:** {p}");
    }
    let _ = writeln!(
        s,
        "\n## Factors\n\n| factor | verdict | kinds | values | what it read |\n|---|---|---|---|---|"
    );
    for f in &r.factors {
        let mut read: Vec<String> = f.reads_variables.iter().map(|v| md_code(v)).collect();
        read.extend(f.reads_files.iter().take(5).map(|v| md_code(v)));
        let _ = writeln!(
            s,
            "| {} | **{}** | {} | {} | {} |",
            f.name,
            f.verdict.text(),
            kinds(&f.kinds),
            f.variants.len(),
            if read.is_empty() { "—".into() } else { read.join(", ") }
        );
    }
}

/// One factor: each group of values with its findings, what could not be judged, what did not
/// change, requests sent less often.
fn md_factor(s: &mut String, f: &FactorResult) {
    let _ = writeln!(s, "\n## {}: {}\n", f.name, f.verdict.text());
    let _ = writeln!(s, "{}\n", f.summary);
    for g in &f.groups {
        let _ = writeln!(
            s,
            "### Under {} ({})\n\n{}",
            g.values.iter().map(|v| md_code(v)).collect::<Vec<_>>().join(", "),
            kinds(&g.kinds),
            headline(g)
        );
        for d in g.findings.iter().take(10) {
            md_request(s, d);
        }
        if g.findings.len() > 10 {
            let _ = writeln!(s, "\n… {} more requests differ", g.findings.len() - 10);
        }
        let _ = writeln!(s);
    }
    if !f.inconclusive.is_empty() {
        let _ = writeln!(s, "Could not be judged:\n");
        for (v, why) in &f.inconclusive {
            let _ = writeln!(s, "- {}: {}", md_code(v), why.replace('\n', " "));
        }
        let _ = writeln!(s);
    }
    if !f.no_effect.is_empty() {
        let values: Vec<String> = f.no_effect.iter().map(|v| md_code(v)).collect();
        let _ = writeln!(s, "No difference from the baseline under: {}\n", values.join(", "));
    }
    let missing: Vec<String> = f
        .variants
        .iter()
        .filter(|v| !v.missing.is_empty())
        .map(|v| format!("{}: {}", md_code(&v.value), v.missing.join("; ")))
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(s, "Requests sent less often than in the baseline (not findings):\n");
        for m in missing.iter().take(8) {
            let _ = writeln!(s, "- {m}");
        }
        let _ = writeln!(s);
    }
}

/// OCSF 1.3 Detection Findings (2004), one per factor with host-dependent content.
pub fn ocsf(r: &AuditResult) -> Vec<Value> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    r.factors
        .iter()
        .filter(|f| f.verdict == Verdict::HostDependentContent)
        .map(|f| {
            // Covert encoding is worse than an overt disclosure; other content changes least.
            let (severity_id, severity) = if f.kinds.contains(&Kind::Encoding) {
                (4, "High")
            } else if f.kinds.contains(&Kind::Disclosure) {
                (3, "Medium")
            } else {
                (2, "Low")
            };
            let evidences: Vec<Value> = f
                .groups
                .iter()
                .map(|g| {
                    json!({ "data": { "factor": f.name, "values": g.values, "kinds": g.kinds,
                                      "summary": headline(g), "requests": g.findings.iter().map(|d| &d.request).collect::<Vec<_>>() } })
                })
                .collect();
            let mut v = json!({
                "category_uid": 2, "category_name": "Findings",
                "class_uid": 2004, "class_name": "Detection Finding",
                "activity_id": 1, "activity_name": "Create",
                "type_uid": 200401, "type_name": "Detection Finding: Create",
                "severity_id": severity_id, "severity": severity,
                "status_id": 1, "status": "New",
                "time": now_ms,
                "metadata": {
                    "version": crate::output::ocsf::VERSION,
                    "product": { "name": "aiwatch", "vendor_name": "aiwatch", "version": env!("CARGO_PKG_VERSION") },
                    "log_name": SCHEMA,
                    "original_time": r.started,
                },
                "device": { "hostname": r.host, "type_id": 0 },
                "finding_info": {
                    "uid": format!("aiwatch-audit-{}-{}", r.started, f.name),
                    "title": format!("Host-dependent content: {}", f.name),
                    "desc": f.summary,
                    "types": ["Host Fingerprinting", if f.kinds.contains(&Kind::Encoding) { "Covert Channel" } else { "Information Disclosure" }],
                    "analytic": { "name": "aiwatch audit", "type_id": 1, "type": "Rule" },
                },
                "evidences": evidences,
                "actor": { "process": { "cmd_line": r.command_line(), "file": { "path": r.resolved,
                            "name": r.resolved.rsplit('/').next().unwrap_or(""), "type_id": 1 },
                            "user": { "uid": r.user.uid.to_string(), "name": r.user.name } } },
                "unmapped": { "aiwatch": { "type": "audit_finding", "factor": f.name, "kinds": f.kinds,
                               "verdict": f.verdict, "reads_variables": f.reads_variables, "reads_files": f.reads_files,
                               "exit_code": r.exit_code } },
            });
            if let Some(m) = v.as_object_mut() {
                m.retain(|_, x| !x.is_null());
            }
            v
        })
        .collect()
}
