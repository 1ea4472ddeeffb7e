//! Whether this run agrees with the previous one: the bench/results.json a run is about to
//! replace is read first, and the report says, figure by figure, whether the two runs' ranges
//! over the rounds overlap (issue 18: a run repeated must agree within the spread it reports).

use serde_json::Value;

use super::overhead::WORKLOADS;

/// The conditions whose overhead figures are compared: aiwatch's own.
const COMPARED: [&str; 2] = ["aiwatch_untracked", "aiwatch_tracked"];

/// One overhead figure in both runs.
#[derive(Debug, PartialEq)]
pub struct Figure {
    pub workload: String,
    pub condition: &'static str,
    /// (median, min, max) ns/op.
    pub before: (f64, f64, f64),
    pub now: (f64, f64, f64),
    pub added_before: f64,
    pub added_now: f64,
}

impl Figure {
    /// The two runs' ranges over their rounds overlap.
    pub fn agrees(&self) -> bool {
        self.before.1 <= self.now.2 && self.now.1 <= self.before.2
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn range(c: &Value) -> Option<(f64, f64, f64)> {
    Some((number(&c["median_ns"])?, number(&c["min_ns"])?, number(&c["max_ns"])?))
}

/// The overhead figures both results hold.
pub fn figures(before: &Value, now: &Value) -> Vec<Figure> {
    let row = |v: &Value, w: &str| {
        v["overhead"].as_array().and_then(|rows| rows.iter().find(|r| r["workload"] == w)).cloned()
    };
    let mut out = Vec::new();
    for (w, _) in WORKLOADS {
        let (Some(b), Some(n)) = (row(before, w), row(now, w)) else { continue };
        for c in COMPARED {
            let (Some(rb), Some(rn)) = (range(&b[c]), range(&n[c])) else { continue };
            let (Some(ab), Some(an)) = (number(&b[c]["added_ns"]), number(&n[c]["added_ns"])) else {
                continue;
            };
            out.push(Figure {
                workload: w.to_string(),
                condition: c,
                before: rb,
                now: rn,
                added_before: ab,
                added_now: an,
            });
        }
    }
    out
}

/// Single figures of the load parts, side by side (no spread to judge them by).
fn loads(before: &Value, now: &Value) -> Vec<(&'static str, String, String)> {
    let show = |v: &Value| match v {
        Value::Null => "n/a".to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    let paths: [(&str, &[&str]); 7] = [
        ("all probes attached (ms, median)", &["attach_ms_median"]),
        ("idle RSS (KiB, median)", &["rss_idle_kib_median"]),
        ("lossless events/s, counted", &["throughput", "counted", "best_lossless"]),
        ("lossless events/s, JSON to a file", &["throughput", "json_file", "best_lossless"]),
        ("scan CPU µs per 1,000 untracked processes", &["scan", "untracked", "cpu_us_per_1000"]),
        ("scan CPU µs per 1,000 tracked processes", &["scan", "tracked", "cpu_us_per_1000"]),
        ("soak detection latency p99 (µs)", &["soak", "latency_us", "p99"]),
    ];
    paths
        .iter()
        .map(|(what, path)| {
            let at = |v: &Value| path.iter().fold(v.clone(), |v, k| v[*k].clone());
            (*what, show(&at(before)), show(&at(now)))
        })
        .collect()
}

/// The report's section comparing this run (`now`) with the results it replaces (`before`).
pub fn section(before: Option<&Value>, now: &Value) -> String {
    let mut out = String::from("## Agreement with the previous run\n\n");
    let Some(before) = before else {
        return out + "No earlier bench/results.json was found: nothing to compare with.\n\n";
    };
    let who = |v: &Value| {
        format!(
            "commit {}, {} rounds, {} CPUs, kernel {}",
            v["commit"].as_str().unwrap_or("unknown"),
            v["pairs"],
            v["machine"]["cpus"].as_str().unwrap_or("?"),
            v["machine"]["kernel"].as_str().unwrap_or("?"),
        )
    };
    let figs = figures(before, now);
    let agreeing = figs.iter().filter(|f| f.agrees()).count();
    out += &format!(
        "The results this run replaces ({}) against this run ({}). An overhead figure agrees when the \
         two runs' ranges over their rounds (min–max ns/op) overlap. **{agreeing} of {} aiwatch \
         figures agree.**\n\n\
         | workload | condition | before: median (min–max), added | now: median (min–max), added | agree |\n\
         | --- | --- | --- | --- | --- |\n",
        who(before),
        who(now),
        figs.len()
    );
    for f in &figs {
        out += &format!(
            "| {} | {} | {:.0} ({:.0}–{:.0}), {:+.0} | {:.0} ({:.0}–{:.0}), {:+.0} | {} |\n",
            f.workload,
            f.condition,
            f.before.0,
            f.before.1,
            f.before.2,
            f.added_before,
            f.now.0,
            f.now.1,
            f.now.2,
            f.added_now,
            if f.agrees() { "yes" } else { "**no**" }
        );
    }
    out += "\nSingle figures of the other parts (one measurement each per run):\n\n\
            | figure | before | now |\n| --- | --- | --- |\n";
    for (what, b, n) in loads(before, now) {
        out += &format!("| {what} | {b} | {n} |\n");
    }
    out + "\n"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn results(commit: &str, tracked: (f64, f64, f64)) -> Value {
        json!({
            "commit": commit, "pairs": 3, "machine": {"cpus": "2", "kernel": "6.18"},
            "attach_ms_median": 120.0,
            "overhead": [{
                "workload": "getenv", "none_ns": 100.0,
                "aiwatch_untracked": {"median_ns": 101.0, "min_ns": 99.0, "max_ns": 103.0, "added_ns": 1.0},
                "aiwatch_tracked": {"median_ns": tracked.0, "min_ns": tracked.1, "max_ns": tracked.2,
                                    "added_ns": tracked.0 - 100.0},
            }],
        })
    }

    #[test]
    fn figures_agree_when_their_ranges_overlap() {
        let before = results("a", (600.0, 550.0, 650.0));
        let same = figures(&before, &results("b", (640.0, 620.0, 700.0)));
        assert_eq!(same.len(), 2);
        assert!(same.iter().all(Figure::agrees));
        let apart = figures(&before, &results("b", (900.0, 700.0, 950.0)));
        assert_eq!(apart.iter().map(Figure::agrees).collect::<Vec<_>>(), [true, false]);
        let md = section(Some(&before), &results("b", (900.0, 700.0, 950.0)));
        assert!(md.contains("**1 of 2 aiwatch figures agree.**"), "{md}");
        assert!(
            md.contains("| getenv | aiwatch_tracked | 600 (550–650), +500 | 900 (700–950), +800 | **no** |")
        );
        assert!(md.contains("commit a, 3 rounds"));
        assert!(md.contains("| all probes attached (ms, median) | 120.0 | 120.0 |"));
        assert!(md.contains("| lossless events/s, counted | n/a | n/a |"));
    }

    #[test]
    fn no_previous_results_is_said_so() {
        assert!(section(None, &results("b", (1.0, 1.0, 1.0))).contains("nothing to compare with"));
    }
}
