//! bench/results.json: what a run measured, for tools and dashboards. Its keys and structure are
//! stable (readers depend on them); a key-set test compares them with the committed file.
//! Fractional figures are rounded to two decimals; a figure that was not measured is null.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::{
    load::{Step, Throughput},
    overhead::{expected, Overhead, CONDITIONS, NONE, PEERS, WORKLOADS},
    scan::Scan,
    Machine, Run,
};

#[derive(Serialize)]
pub struct Results<'a> {
    machine: &'a Machine,
    /// The commit measured.
    commit: &'a str,
    pairs: usize,
    seconds: u64,
    attach_ms_median: Option<f64>,
    rss_idle_kib_median: Option<f64>,
    skipped: &'a BTreeMap<&'static str, String>,
    overhead: Vec<OverheadRow>,
    /// By output: `counted`, `json_file`.
    throughput: Named<Rates<'a>>,
    soak: Soak<'a>,
    scan: ScanJson,
    /// What each peer was shown to observe, by peer (`bpftrace_filter`, `auditd_watch`).
    peer_records: Named<Vec<PeerRecords>>,
}

/// What one peer was shown to observe of one workload over the rounds: auditd's syscall records
/// with the bench's key, bpftrace's program runs.
#[derive(Serialize)]
struct PeerRecords {
    workload: &'static str,
    /// The peer watches what the workload does: its figure counts only if `every_op`.
    expected: bool,
    rounds: usize,
    operations: u64,
    records: u64,
    /// auditd: records the kernel lost meanwhile.
    lost: u64,
    /// Rounds whose records could not be counted.
    uncounted_rounds: usize,
    min_per_op: Option<f64>,
    /// At least one record per operation in every round (null: nothing counted).
    every_op: Option<bool>,
}

fn peer_records(o: &Overhead) -> Named<Vec<PeerRecords>> {
    Named(
        PEERS
            .iter()
            .map(|p| {
                let rows = WORKLOADS
                    .iter()
                    .map(|(w, _)| {
                        let s = o.observed(p, w);
                        PeerRecords {
                            workload: w,
                            expected: expected(p, w),
                            rounds: s.rounds,
                            operations: s.ops,
                            records: s.records,
                            lost: s.lost,
                            uncounted_rounds: s.uncounted,
                            min_per_op: s.min_per_op.and_then(num),
                            every_op: s.every_op(),
                        }
                    })
                    .collect();
                (*p, rows)
            })
            .collect(),
    )
}

/// Serialized as a map, in this order.
struct Named<T>(Vec<(&'static str, T)>);

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct OverheadRow {
    workload: &'static str,
    none_ns: Option<f64>,
    /// The driver's CPU time per operation with no sensor (its own and its reaped children's).
    none_cpu_ns: Option<f64>,
    /// One entry per condition, keyed by its name.
    #[serde(flatten)]
    conditions: Named<Condition>,
}

#[derive(Serialize)]
struct Condition {
    median_ns: Option<f64>,
    min_ns: Option<f64>,
    max_ns: Option<f64>,
    ratio: Option<f64>,
    added_ns: Option<f64>,
    /// The driver's CPU time per operation, and what the condition added to it (medians).
    cpu_median_ns: Option<f64>,
    cpu_added_ns: Option<f64>,
    /// aiwatch's BPF programs per operation (kernel statistics, a separate run); null for the
    /// other conditions.
    program_ns_per_op: Option<f64>,
    program_runs_per_op: Option<f64>,
}

#[derive(Serialize)]
struct Rates<'a> {
    best_lossless: Option<u64>,
    stopped: Option<&'a str>,
    steps: Vec<StepJson>,
}

#[derive(Serialize)]
struct StepJson {
    rate: u64,
    generated: u64,
    achieved: Option<f64>,
    received: u64,
    kernel_drops: u64,
    sink_drops: u64,
    exact: bool,
    lossless: bool,
    daemon_cpu_us_per_event: Option<f64>,
}

#[derive(Serialize)]
struct Soak<'a> {
    seconds: u64,
    rate: u64,
    generated: u64,
    received: u64,
    drops: u64,
    /// [seconds since the load started, KiB].
    rss_kib: &'a [(u64, u64)],
    rss_growth_kib: Option<i64>,
    latency_us: Latency,
    sessions: u64,
    findings: u64,
}

#[derive(Serialize)]
struct Latency {
    count: usize,
    p50: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
}

#[derive(Serialize)]
struct ScanJson {
    base: ScanPoint,
    untracked: ScanPoint,
    tracked: ScanPoint,
}

#[derive(Serialize)]
struct ScanPoint {
    processes: u64,
    us: Option<f64>,
    /// Not for the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    us_per_1000: Option<Option<f64>>,
    /// CPU time of the pass (the daemon's thread).
    cpu_us: Option<f64>,
    /// Not for the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_1000: Option<Option<f64>>,
}

/// `x` to two decimals; None (null) when it is not a number.
fn num(x: f64) -> Option<f64> {
    x.is_finite().then(|| (x * 100.0).round() / 100.0)
}

impl<'a> Results<'a> {
    pub fn of(run: &'a Run) -> Self {
        let o = &run.overhead;
        let loads = &run.loads;
        Results {
            machine: &run.machine,
            commit: &run.commit,
            pairs: o.pairs,
            seconds: run.took.as_secs(),
            attach_ms_median: num(super::median(&mut o.attach_ms.clone())),
            rss_idle_kib_median: num(super::median(&mut o.rss_idle_kib.clone())),
            skipped: &o.skipped,
            overhead: WORKLOADS
                .iter()
                .map(|(w, _)| {
                    let base = o.none(w);
                    let conditions = CONDITIONS
                        .iter()
                        .map(|c| {
                            let s = o.stats(c, w);
                            let cond = Condition {
                                median_ns: num(s.median),
                                min_ns: num(s.min),
                                max_ns: num(s.max),
                                ratio: num(s.median / base),
                                added_ns: num(s.median - base),
                                cpu_median_ns: num(o.cpu_stats(c, w).median),
                                cpu_added_ns: num(o.cpu_added(c, w)),
                                program_ns_per_op: num(o.programs(c, w).0),
                                program_runs_per_op: num(o.programs(c, w).1),
                            };
                            (*c, cond)
                        })
                        .collect();
                    OverheadRow {
                        workload: w,
                        none_ns: num(base),
                        none_cpu_ns: num(o.cpu_stats(NONE, w).median),
                        conditions: Named(conditions),
                    }
                })
                .collect(),
            throughput: Named(loads.throughput.iter().map(|t| (t.output.name(), rates(t))).collect()),
            soak: soak(run),
            scan: scan(&loads.scan),
            peer_records: peer_records(o),
        }
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)? + "\n")
    }
}

fn rates(t: &Throughput) -> Rates<'_> {
    Rates {
        best_lossless: t.best_lossless(),
        stopped: t.stopped.as_deref(),
        steps: t.steps.iter().map(step).collect(),
    }
}

fn step(s: &Step) -> StepJson {
    StepJson {
        rate: s.rate,
        generated: s.generated,
        achieved: num(s.achieved),
        received: s.received,
        kernel_drops: s.kernel_drops,
        sink_drops: s.sink_drops,
        exact: s.exact(),
        lossless: s.lossless(),
        daemon_cpu_us_per_event: num(s.daemon_cpu_us),
    }
}

fn soak(run: &Run) -> Soak<'_> {
    let s = &run.loads.soak;
    Soak {
        seconds: s.seconds,
        rate: s.rate,
        generated: s.generated,
        received: s.received,
        drops: s.drops,
        rss_kib: &s.rss,
        rss_growth_kib: run.loads.growth_kib(),
        latency_us: Latency {
            count: s.latencies_us.len(),
            p50: s.percentile_us(50.0),
            p99: s.percentile_us(99.0),
            max: s.latencies_us.iter().max().copied(),
        },
        sessions: s.sessions,
        findings: s.findings,
    }
}

fn scan(sc: &Scan) -> ScanJson {
    let point = |(processes, us): (u64, f64), i: usize| ScanPoint {
        processes,
        us: num(us),
        us_per_1000: (i > 0).then(|| num(sc.per_thousand((processes, us)))),
        cpu_us: num(sc.cpu[i]),
        cpu_us_per_1000: (i > 0).then(|| num(sc.cpu_per_thousand(i))),
    };
    ScanJson { base: point(sc.base, 0), untracked: point(sc.untracked, 1), tracked: point(sc.tracked, 2) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::{super::sample::sample, *};

    /// Every key path (`a.b[].c`) and the kind of value there; what is under `skipped` (keyed by
    /// condition) is left out, and a null matches any kind.
    fn shape(v: &Value, path: &str, out: &mut BTreeMap<String, &'static str>) {
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !path.is_empty() {
            out.entry(path.to_string())
                .and_modify(|k| {
                    if *k == "null" {
                        *k = kind
                    }
                })
                .or_insert(kind);
        }
        match v {
            Value::Object(m) if path != ".skipped" => {
                for (k, x) in m {
                    shape(x, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| shape(x, &format!("{path}[]"), out)),
            _ => {}
        }
    }

    fn shape_of(v: &Value) -> BTreeMap<String, &'static str> {
        let mut out = BTreeMap::new();
        shape(v, "", &mut out);
        out
    }

    #[test]
    fn keys_match_the_committed_results() {
        let run = sample();
        let ours: Value = serde_json::from_str(&Results::of(&run).to_json().unwrap()).unwrap();
        let committed = std::fs::read_to_string(crate::root().join("bench/results.json")).unwrap();
        let committed: Value = serde_json::from_str(&committed).unwrap();
        let (ours, theirs) = (shape_of(&ours), shape_of(&committed));
        let keys = |m: &BTreeMap<String, &str>| m.keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(keys(&ours), keys(&theirs), "key paths differ");
        for (path, kind) in &ours {
            let theirs = theirs[path];
            assert!(
                *kind == theirs || *kind == "null" || theirs == "null",
                "{path}: {kind} here, {theirs} in bench/results.json"
            );
        }
        // Spot checks of the structure.
        assert!(ours.contains_key(".overhead[].aiwatch_tracked.added_ns"));
        assert!(ours.contains_key(".throughput.json_file.steps[].daemon_cpu_us_per_event"));
        assert!(!ours.contains_key(".scan.base.us_per_1000"));
    }

    #[test]
    fn figures_are_rounded_and_missing_ones_null() {
        let run = sample();
        let v: Value = serde_json::from_str(&Results::of(&run).to_json().unwrap()).unwrap();
        assert_eq!(v["machine"]["cpus"], "2");
        assert_eq!(v["pairs"], 1);
        assert_eq!(v["seconds"], 99);
        assert_eq!(v["attach_ms_median"], 155.0);
        let open = &v["overhead"][0];
        assert_eq!(open["workload"], "open_watched");
        assert_eq!(open["aiwatch_untracked"]["ratio"], 1.5);
        assert_eq!(open["aiwatch_untracked"]["added_ns"], 50.0);
        assert_eq!(open["none_cpu_ns"], 90.0);
        assert_eq!(open["aiwatch_tracked"]["cpu_added_ns"], 30.0);
        assert_eq!(open["aiwatch_tracked"]["program_ns_per_op"], 210.5);
        assert_eq!(open["aiwatch_tracked"]["program_runs_per_op"], 4.0);
        assert_eq!(open["bpftrace_filter"]["program_ns_per_op"], Value::Null);
        assert_eq!(open["auditd_watch"]["median_ns"], Value::Null);
        assert_eq!(v["skipped"]["auditd_watch"], "auditd did not start");
        let steps = &v["throughput"]["counted"]["steps"];
        assert_eq!(steps[0]["daemon_cpu_us_per_event"], 2.35);
        assert_eq!(steps[1]["lossless"], false);
        assert_eq!(v["throughput"]["counted"]["best_lossless"], 25_000);
        assert_eq!(v["soak"]["rss_kib"][1], serde_json::json!([30, 29_500]));
        assert_eq!(v["scan"]["untracked"]["us_per_1000"], 5_000.0);
        // Condition keys keep the order of CONDITIONS, as before.
        let text = Results::of(&run).to_json().unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\":{{")).unwrap();
        assert!(
            at("aiwatch_untracked") < at("aiwatch_tracked") && at("bpftrace_filter") < at("auditd_watch")
        );
    }
}
