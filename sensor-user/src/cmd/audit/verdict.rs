//! From runs to verdicts: each variant's requests against the baseline runs' (noise learned from
//! those), then per factor `no effect`, `host-dependent content` (with the evidence) or
//! `inconclusive` (with the reason).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    diff::{self, DayWindow, Flat, Kind, RequestDiff},
    plan::{FactorKind, Plan},
    runner::{Outcome, Status},
    sensor::Looked,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NoEffect,
    HostDependentContent,
    Inconclusive,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::NoEffect => "no effect",
            Verdict::HostDependentContent => "host-dependent content",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One variant's result.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub value: String,
    /// Index of its run in the audit's run list.
    pub run: usize,
    /// Why it could not be judged (it failed, or never called the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<String>,
    pub kinds: BTreeSet<Kind>,
    /// Differences that are findings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<RequestDiff>,
    /// Requests it sent less often than every baseline run (noted, not findings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// Variants that differ from the baseline in the same way.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub values: Vec<String>,
    pub kinds: BTreeSet<Kind>,
    /// The differences of the group's first value.
    pub findings: Vec<RequestDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FactorResult {
    pub name: String,
    pub verdict: Verdict,
    pub kinds: BTreeSet<Kind>,
    /// One line for the report: what it read, and what changed under which values.
    pub summary: String,
    pub groups: Vec<Group>,
    pub no_effect: Vec<String>,
    pub inconclusive: Vec<(String, String)>,
    /// From the sensor: variables and files of this factor the assistant read, in any run.
    pub reads_variables: Vec<String>,
    pub reads_files: Vec<String>,
    pub variants: Vec<VariantResult>,
}

/// Why the baseline cannot be used, if it cannot.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_problem: Option<String>,
    pub factors: Vec<FactorResult>,
}

impl Evaluation {
    pub fn verdict(&self) -> Verdict {
        if self.factors.iter().any(|f| f.verdict == Verdict::HostDependentContent) {
            Verdict::HostDependentContent
        } else if self.baseline_problem.is_some()
            || self.factors.iter().any(|f| f.verdict == Verdict::Inconclusive)
        {
            Verdict::Inconclusive
        } else {
            Verdict::NoEffect
        }
    }

    pub fn any_difference(&self) -> bool {
        self.factors.iter().any(|f| f.variants.iter().any(|v| !v.findings.is_empty()))
    }
}

fn usable(o: &Outcome) -> Result<(), String> {
    if o.llm_calls() > 0 {
        return Ok(());
    }
    let other = if o.requests.is_empty() {
        "it sent no request at all".to_string()
    } else {
        let paths: BTreeSet<String> =
            o.requests.iter().map(|r| format!("{} {}", r.method, r.path)).take(5).collect();
        format!(
            "its {} request(s) were none a model call ({})",
            o.requests.len(),
            paths.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(format!("never called the API: {other}; {}{}", o.status.describe(), stderr_note(o)))
}

fn stderr_note(o: &Outcome) -> String {
    let tail: String = o
        .stderr_tail
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ");
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", tail.chars().take(300).collect::<String>())
    }
}

/// A variant's findings with its own value written as `⟨value⟩`, for grouping.
fn signature(findings: &[RequestDiff], tokens: &[String]) -> String {
    let mut s = serde_json::to_string(findings).unwrap_or_default();
    let mut toks: Vec<&String> = tokens.iter().collect();
    toks.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in toks {
        s = s.replace(t.as_str(), "⟨value⟩");
    }
    s
}

/// Compares every variant with the baseline runs and judges each factor.
pub fn evaluate(plan: &Plan, outcomes: &[Outcome], looked: &BTreeMap<usize, Looked>) -> Evaluation {
    let window = DayWindow::around(
        outcomes.iter().map(|o| o.started).min().unwrap_or(std::time::SystemTime::now()),
        outcomes.iter().map(|o| o.ended).max().unwrap_or(std::time::SystemTime::now()),
    );
    let baselines: Vec<&Outcome> =
        outcomes.iter().filter(|o| o.spec.as_ref().is_some_and(|s| s.variant.is_none())).collect();
    let good: Vec<&Outcome> = baselines.iter().copied().filter(|o| usable(o).is_ok()).collect();
    let baseline_problem = if good.len() < 2 {
        let why: Vec<String> =
            baselines.iter().filter_map(|o| usable(o).err().map(|e| format!("{}: {e}", o.label))).collect();
        Some(format!(
            "fewer than two baseline runs called the API, so nothing can be compared ({})",
            if why.is_empty() { "no baseline run".to_string() } else { why.join("; ") }
        ))
    } else {
        None
    };
    let bflat: Vec<Vec<Flat>> = good.iter().map(|o| o.requests.iter().map(diff::flatten).collect()).collect();
    let baseline_ok = good.iter().all(|o| o.status.ok());
    let mut factors = Vec::new();
    for (fi, f) in plan.factors.iter().enumerate() {
        let mut variants = Vec::new();
        for o in outcomes {
            let Some(spec) = &o.spec else { continue };
            let Some(v) = spec.variant.as_ref().filter(|v| v.factor == Some(fi)) else { continue };
            let mut r = VariantResult {
                value: v.value.clone(),
                run: o.index,
                inconclusive: None,
                kinds: BTreeSet::new(),
                findings: Vec::new(),
                missing: Vec::new(),
            };
            if let Some(p) = &baseline_problem {
                r.inconclusive = Some(format!("the baseline is unusable: {p}"));
                variants.push(r);
                continue;
            }
            if let Err(e) = usable(o) {
                r.inconclusive = Some(e);
                variants.push(r);
                continue;
            }
            if baseline_ok && !o.status.ok() {
                r.inconclusive = Some(format!(
                    "it failed under this value ({}) where the baseline runs succeeded{}",
                    o.status.describe(),
                    stderr_note(o)
                ));
            }
            let vflat: Vec<Flat> = o.requests.iter().map(diff::flatten).collect();
            for d in diff::compare_run(&bflat, &vflat, &spec.tokens, window) {
                if d.is_finding() {
                    r.kinds.extend(d.fields.iter().flat_map(|f| f.kinds.iter().copied()));
                    if d.fields.is_empty() {
                        r.kinds.insert(Kind::Content);
                    }
                    r.findings.push(d);
                } else if let Some(p) = &d.presence {
                    r.missing.push(format!("{} ({p})", d.request));
                }
            }
            variants.push(r);
        }
        let mut result = judge(f.name.clone(), &f.kind, variants, outcomes, looked);
        // No variant was run or judged: nothing was shown, so never `no effect`.
        if result.verdict == Verdict::NoEffect && result.no_effect.is_empty() {
            result.verdict = Verdict::Inconclusive;
            result.summary = match &baseline_problem {
                Some(_) => "not judged: the baseline is unusable (see above)".to_string(),
                None => "not judged: no variant of this factor was run".to_string(),
            };
        }
        factors.push(result);
    }
    Evaluation { baseline_problem, factors }
}

fn judge(
    name: String,
    kind: &FactorKind,
    variants: Vec<VariantResult>,
    outcomes: &[Outcome],
    looked: &BTreeMap<usize, Looked>,
) -> FactorResult {
    let tokens_of = |run: usize| -> Vec<String> {
        outcomes
            .iter()
            .find(|o| o.index == run)
            .and_then(|o| o.spec.as_ref())
            .map(|s| s.tokens.clone())
            .unwrap_or_default()
    };
    let mut groups: Vec<(String, Group)> = Vec::new();
    let mut no_effect = Vec::new();
    let mut inconclusive = Vec::new();
    let mut kinds = BTreeSet::new();
    for v in &variants {
        if let Some(why) = &v.inconclusive {
            inconclusive.push((v.value.clone(), why.clone()));
        }
        if v.findings.is_empty() {
            if v.inconclusive.is_none() {
                no_effect.push(v.value.clone());
            }
            continue;
        }
        kinds.extend(v.kinds.iter().copied());
        let sig = signature(&v.findings, &tokens_of(v.run));
        match groups.iter_mut().find(|(s, _)| *s == sig) {
            Some((_, g)) => g.values.push(v.value.clone()),
            None => groups.push((
                sig,
                Group { values: vec![v.value.clone()], kinds: v.kinds.clone(), findings: v.findings.clone() },
            )),
        }
    }
    let groups: Vec<Group> = groups.into_iter().map(|(_, g)| g).collect();
    let verdict = if !groups.is_empty() {
        Verdict::HostDependentContent
    } else if !inconclusive.is_empty() {
        Verdict::Inconclusive
    } else {
        Verdict::NoEffect
    };
    let (reads_variables, reads_files) = factor_reads(kind, looked);
    let summary = summarize(
        &name,
        verdict,
        &reads_variables,
        &reads_files,
        &groups,
        &no_effect,
        &inconclusive,
        looked.is_empty(),
    );
    FactorResult {
        name,
        verdict,
        kinds,
        summary,
        groups,
        no_effect,
        inconclusive,
        reads_variables,
        reads_files,
        variants,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "value"
    } else {
        "values"
    }
}

/// What the sensor saw the assistant read for this factor, in any run of the audit: variable
/// names and files.
fn factor_reads(kind: &FactorKind, looked: &BTreeMap<usize, Looked>) -> (Vec<String>, Vec<String>) {
    let kind_name = match kind {
        FactorKind::Timezone => "timezone",
        FactorKind::BaseUrl { .. } => "base_url",
        FactorKind::Proxy { .. } => "proxy",
        FactorKind::Locale { .. } => "locale",
        FactorKind::Hostname => "hostname",
        FactorKind::Custom { .. } => "custom",
    };
    let mut vars = BTreeSet::new();
    let mut files = BTreeSet::new();
    for l in looked.values() {
        let (v, f) = match kind {
            FactorKind::Custom { variable, file } => (
                l.env_reads
                    .iter()
                    .filter(|(k, _)| Some(*k) == variable.as_ref())
                    .map(|(k, s)| format!("{k}{}", if *s { " (set)" } else { " (unset)" }))
                    .collect(),
                l.files
                    .values()
                    .flatten()
                    .filter(|p| file.as_ref().is_some_and(|f| p.starts_with(f.trim_start_matches('~'))))
                    .cloned()
                    .collect(),
            ),
            _ => l.for_factor(kind_name),
        };
        // The set/unset state differs between baseline and variants: keep the names once.
        vars.extend(v.into_iter().map(|s: String| s.split(" (").next().unwrap_or(&s).to_string()));
        files.extend(f);
    }
    let reads_variables: Vec<String> = vars.into_iter().collect();
    let reads_files: Vec<String> = files.into_iter().take(12).collect();
    (reads_variables, reads_files)
}

/// The first finding of a group, said in a few words.
pub fn headline(g: &Group) -> String {
    for d in &g.findings {
        if let Some(p) = &d.presence {
            if d.fields.is_empty() {
                return format!("{} {}", d.request, p.split(':').next().unwrap_or(p));
            }
        }
        if let Some(f) = d.fields.first() {
            if !f.disclosed.is_empty() {
                return format!("{} {}: tells `{}`", d.request, f.field, f.disclosed.join("`, `"));
            }
            if let Some(h) = f.hunks.first() {
                let what = match &h.note {
                    Some(n) if n.starts_with("date format") => {
                        n.replace("date format ", "date format `").replace(" → ", "` → `") + "`"
                    }
                    _ => {
                        let cps: Vec<String> = h
                            .chars
                            .iter()
                            .take(3)
                            .map(|c| match (c.removed.first(), c.inserted.first()) {
                                (Some(a), Some(b)) => {
                                    format!("{} {} where {} {} was", b.code, b.name, a.code, a.name)
                                }
                                (None, Some(b)) => format!("{} {} inserted", b.code, b.name),
                                (Some(a), None) => format!("{} {} removed", a.code, a.name),
                                _ => String::new(),
                            })
                            .collect();
                        if h.kind == Kind::Content {
                            format!("`{}` → `{}`", shorten(&h.removed), shorten(&h.inserted))
                        } else {
                            cps.join("; ")
                        }
                    }
                };
                return format!("{} {}: {what}", d.request, f.field);
            }
            return format!("{} {} {}", d.request, f.field, f.change);
        }
    }
    String::new()
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    name: &str,
    verdict: Verdict,
    vars: &[String],
    files: &[String],
    groups: &[Group],
    no_effect: &[String],
    inconclusive: &[(String, String)],
    no_sensor: bool,
) -> String {
    let mut s = String::new();
    if no_sensor {
        s.push_str("(sensor off) ");
    } else if vars.is_empty() && files.is_empty() {
        s.push_str(&format!("reads nothing the sensor ties to {name}; "));
    } else {
        let mut what: Vec<String> = vars.iter().map(|v| format!("`{v}`")).collect();
        what.extend(files.iter().take(4).map(|f| format!("`{f}`")));
        if files.len() > 4 {
            what.push(format!("{} more files", files.len() - 4));
        }
        s.push_str(&format!("reads {}; ", what.join(", ")));
    }
    match verdict {
        Verdict::NoEffect => s.push_str(&format!(
            "no request changed under any of {} {}",
            no_effect.len(),
            plural(no_effect.len())
        )),
        Verdict::Inconclusive => s.push_str(&format!(
            "{} of {} values could not be judged ({})",
            inconclusive.len(),
            inconclusive.len() + no_effect.len(),
            inconclusive.first().map(|(v, why)| format!("{v}: {}", shorten(why))).unwrap_or_default()
        )),
        Verdict::HostDependentContent => {
            let parts: Vec<String> = groups
                .iter()
                .take(3)
                .map(|g| {
                    let vals = if g.values.len() > 3 {
                        format!("{}, … ({} values)", g.values[..3].join(", "), g.values.len())
                    } else {
                        g.values.join(", ")
                    };
                    let kinds: Vec<&str> = g.kinds.iter().map(|k| k.name()).collect();
                    format!("under {vals} [{}] {}", kinds.join(", "), headline(g))
                })
                .collect();
            s.push_str(&parts.join("; "));
            if groups.len() > 3 {
                s.push_str(&format!("; and {} more groups", groups.len() - 3));
            }
            if !no_effect.is_empty() {
                s.push_str(&format!(
                    "; no change under {} other {}",
                    no_effect.len(),
                    plural(no_effect.len())
                ));
            }
        }
    }
    s
}

/// Exit statuses of `aiwatch audit`.
pub mod exit {
    /// Every factor: no effect.
    pub const NO_EFFECT: u8 = 0;
    /// Host-dependent content under at least one factor.
    pub const HOST_DEPENDENT: u8 = 1;
    /// The audit could not run (bad plan, command not found, not root, …).
    pub const ERROR: u8 = 2;
    /// Nothing host-dependent found, but something could not be judged.
    pub const INCONCLUSIVE: u8 = 3;
}

impl Status {
    /// Not the run's fault: the command could not be started at all.
    pub fn not_started(&self) -> Option<&str> {
        match self {
            Status::NotStarted { error } => Some(error),
            _ => None,
        }
    }
}
