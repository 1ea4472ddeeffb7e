//! The load, scan and soak results as report sections, target rows and JSON.

use super::{
    load::{Soak, Throughput, RATES},
    num, quote,
    scan::{Scan, EXTRA},
    verdict,
};

pub struct Loads {
    /// Counted, then JSON to a file.
    pub throughput: [Throughput; 2],
    pub scan: Scan,
    pub soak: Soak,
}

const MIB: f64 = 1024.0;
/// Soak samples before this many seconds at load are warm-up (allocator pools, queues).
pub const WARMUP_S: u64 = 60;

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / MIB))
}

impl Loads {
    fn growth_kib(&self) -> Option<i64> {
        Some(self.soak.rss_end()? as i64 - self.soak.rss_at(WARMUP_S)? as i64)
    }

    pub fn targets(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for (t, want) in self.throughput.iter().zip([200_000u64, 50_000]) {
            let best = t.best_lossless();
            let what = match t.output {
                super::load::Output::Counted => "events only counted",
                super::load::Output::JsonFile => "JSON to a file",
            };
            let ok = best.is_some_and(|b| b >= want);
            let why = if ok {
                String::new()
            } else {
                "The daemon's per-event work (path resolution, category match, record) and the generator \
                 share two cores; see Throughput for where events were lost."
                    .into()
            };
            rows.push(format!(
                "| ≥ {want} events/s with zero loss, {what} | {} | {} | {why} |",
                best.map_or("no lossless step".into(), |b| format!("{b}/s lossless{}", stop_note(t))),
                verdict(ok)
            ));
        }
        let max = self.soak.rss_max();
        rows.push(format!(
            "| RSS ≤ 64 MiB at {} events/s | max {:.1} MiB over the soak | {} | |",
            self.soak.rate,
            max as f64 / MIB,
            verdict(max > 0 && max as f64 <= 64.0 * MIB)
        ));
        let growth = self.growth_kib();
        rows.push(format!(
            "| < 1 MiB RSS growth over the soak | {} (from {} at {WARMUP_S} s to {} at {} s) | {} | |",
            growth.map_or("n/a".into(), |g| format!("{:+.2} MiB", g as f64 / MIB)),
            mib(self.soak.rss_at(WARMUP_S)),
            mib(self.soak.rss_end()),
            self.soak.rss.last().map_or(0, |(t, _)| *t),
            verdict(growth.is_some_and(|g| (g as f64) < MIB))
        ));
        let p99 = self.soak.percentile_us(99.0);
        rows.push(format!(
            "| detection latency p99 ≤ 20 ms | p99 {} (p50 {}; {} findings under load) | {} | |",
            ms(p99),
            ms(self.soak.percentile_us(50.0)),
            self.soak.latencies_us.len(),
            verdict(p99.is_some_and(|p| p <= 20_000))
        ));
        rows
    }

    pub fn sections(&self) -> String {
        let mut out = String::from(
            "## Throughput\n\n\
             A tracked generator (the driver running as the configured assistant, two threads) opens and\n\
             closes `/etc/localtime` at each rate for 2 s, paced against the clock. Rates step up until a step\n\
             loses events. Received is what the daemon decoded (`aiwatch_events_total{kind=\"file\"}`) when only\n\
             counting (`--format none`), and the fingerprint records found in the output file with JSON to a\n\
             file; drops are the daemon's counters (ring buffer full, stash full, undecodable; sink queue full\n\
             and write errors). Every step is checked: generated = received + drops. Daemon CPU is its user +\n\
             system time over the step (all threads) divided by the events generated.\n\n",
        );
        for t in &self.throughput {
            out += &format!(
                "### {}\n\n| rate/s | generated | achieved/s | received | kernel drops | sink drops | accounted exactly | lossless | daemon CPU µs/event |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
                match t.output {
                    super::load::Output::Counted => "Events only counted (`--format none`)",
                    super::load::Output::JsonFile => "JSON to a file (`--format json --output FILE`)",
                }
            );
            for s in &t.steps {
                out += &format!(
                    "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} |\n",
                    s.rate,
                    s.generated,
                    s.achieved,
                    s.received,
                    s.kernel_drops,
                    s.sink_drops,
                    yes(s.exact()),
                    yes(s.lossless()),
                    s.daemon_cpu_us
                );
            }
            out += &format!(
                "\nHighest lossless rate: {}.{}\n\n",
                t.best_lossless().map_or("none".into(), |b| format!("{b}/s")),
                t.stopped
                    .as_ref()
                    .map_or(format!(" Every rate up to {} was tried.", RATES[RATES.len() - 1]), |w| format!(
                        " Stopped: {w}."
                    ))
            );
        }
        let s = &self.soak;
        out += &format!(
            "## Soak: memory under load and detection latency\n\n\
             The generator runs at {} watched reads/s for {} s with JSON records rendered to /dev/null; the\n\
             daemon's RSS is sampled every 5 s. Once a second a new session (the driver in `finding` mode)\n\
             reads `/etc/localtime` and `/etc/machine-id` and sends an HTTP request naming api.anthropic.com to a\n\
             loopback listener, so the default rule fires while the load runs. Detection latency is the\n\
             daemon's own measure (kernel timestamp of the event that completed the finding to the finding's\n\
             emission, `latency_us` in its log; also the `aiwatch_detection_latency_seconds` histogram).\n\n\
             - Load: {} generated, {} received, {} dropped ({}).\n\
             - RSS: {} at {WARMUP_S} s, {} at the end, median {:.1} MiB, max {:.1} MiB; growth after warm-up {}.\n\
             - Detection latency over {} findings ({} sessions, {} counted by the daemon): p50 {}, p99 {}, max {}.\n\n",
            s.rate,
            s.seconds,
            s.generated,
            s.received,
            s.drops,
            if s.generated == s.received + s.drops { "accounted exactly" } else { "NOT accounted exactly" },
            mib(s.rss_at(WARMUP_S)),
            mib(s.rss_end()),
            s.rss_median() / MIB,
            s.rss_max() as f64 / MIB,
            self.growth_kib().map_or("n/a".into(), |g| format!("{:+.2} MiB", g as f64 / MIB)),
            s.latencies_us.len(),
            s.sessions,
            s.findings,
            ms(s.percentile_us(50.0)),
            ms(s.percentile_us(99.0)),
            ms(s.latencies_us.iter().max().copied()),
        );
        let sc = &self.scan;
        out += &format!(
            "## Start-up /proc scan\n\n\
             The daemon logs how long its first /proc pass took and how many processes /proc listed. Median of\n\
             3 starts each: {} processes in {:.0} µs; with {EXTRA} more untracked processes, {} in {:.0} µs\n\
             (+{:.0} µs per 1,000 processes); with {EXTRA} more that descend from a tracked assistant, {} in\n\
             {:.0} µs (+{:.0} µs per 1,000 processes; these are also added to the kernel's tracked map).\n",
            sc.base.0,
            sc.base.1,
            sc.untracked.0,
            sc.untracked.1,
            sc.per_thousand(sc.untracked),
            sc.tracked.0,
            sc.tracked.1,
            sc.per_thousand(sc.tracked),
        );
        out
    }

    pub fn json(&self) -> String {
        let tp: Vec<String> = self
            .throughput
            .iter()
            .map(|t| {
                let steps: Vec<String> = t
                    .steps
                    .iter()
                    .map(|s| {
                        format!(
                            "{{\"rate\":{},\"generated\":{},\"achieved\":{},\"received\":{},\"kernel_drops\":{},\"sink_drops\":{},\"exact\":{},\"lossless\":{},\"daemon_cpu_us_per_event\":{}}}",
                            s.rate, s.generated, num(s.achieved), s.received, s.kernel_drops, s.sink_drops, s.exact(), s.lossless(), num(s.daemon_cpu_us)
                        )
                    })
                    .collect();
                format!(
                    "\"{}\":{{\"best_lossless\":{},\"stopped\":{},\"steps\":[{}]}}",
                    t.output.name(),
                    t.best_lossless().map_or("null".into(), |b| b.to_string()),
                    t.stopped.as_deref().map_or("null".into(), quote),
                    steps.join(",")
                )
            })
            .collect();
        let s = &self.soak;
        let opt = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
        let sc = &self.scan;
        format!(
            "\"throughput\":{{{}}},\"soak\":{{\"seconds\":{},\"rate\":{},\"generated\":{},\"received\":{},\"drops\":{},\"rss_kib\":[{}],\"rss_growth_kib\":{},\"latency_us\":{{\"count\":{},\"p50\":{},\"p99\":{},\"max\":{}}},\"sessions\":{},\"findings\":{}}},\"scan\":{{\"base\":{{\"processes\":{},\"us\":{}}},\"untracked\":{{\"processes\":{},\"us\":{},\"us_per_1000\":{}}},\"tracked\":{{\"processes\":{},\"us\":{},\"us_per_1000\":{}}}}}",
            tp.join(","),
            s.seconds,
            s.rate,
            s.generated,
            s.received,
            s.drops,
            s.rss.iter().map(|(t, r)| format!("[{t},{r}]")).collect::<Vec<_>>().join(","),
            self.growth_kib().map_or("null".into(), |g| g.to_string()),
            s.latencies_us.len(),
            opt(s.percentile_us(50.0)),
            opt(s.percentile_us(99.0)),
            opt(s.latencies_us.iter().max().copied()),
            s.sessions,
            s.findings,
            sc.base.0,
            num(sc.base.1),
            sc.untracked.0,
            num(sc.untracked.1),
            num(sc.per_thousand(sc.untracked)),
            sc.tracked.0,
            num(sc.tracked.1),
            num(sc.per_thousand(sc.tracked)),
        )
    }
}

fn stop_note(t: &Throughput) -> String {
    t.stopped.as_ref().map_or(String::new(), |w| format!(" ({w})"))
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("n/a".into(), |u| format!("{:.2} ms", u as f64 / 1000.0))
}
