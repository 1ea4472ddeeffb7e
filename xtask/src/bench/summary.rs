//! The load, scan and soak results as report sections and target rows, computed from this run's
//! numbers.

use super::{
    load::{Output, Soak, Throughput, FINDING_EVERY, GEN_THREADS, RATES, RSS_EVERY, STEP_MS},
    report::{judged, row},
    scan::{Scan, RUNS},
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

fn growth(kib: Option<i64>) -> String {
    kib.map_or("n/a".into(), |g| format!("{:+.2} MiB", g as f64 / MIB))
}

impl Loads {
    /// RSS growth over the soak after the warm-up (None if the soak was shorter).
    pub fn growth_kib(&self) -> Option<i64> {
        self.soak.growth_kib()
    }

    pub fn targets(&self) -> Vec<String> {
        let mut rows: Vec<String> = self
            .throughput
            .iter()
            .zip([500_000u64, 250_000])
            .map(|(t, want)| throughput_target(t, want))
            .collect();
        let s = &self.soak;
        let max = s.rss_max();
        rows.push(row(
            &format!("RSS ≤ 64 MiB at {} events/s", s.rate),
            &format!("max {:.1} MiB over the soak", max as f64 / MIB),
            (max > 0).then_some(max as f64 <= 64.0 * MIB),
            "",
        ));
        let g = self.growth_kib();
        let notes = if g.is_none() {
            format!("The soak ({} s) ended before the warm-up did.", s.seconds)
        } else {
            String::new()
        };
        rows.push(row(
            "< 1 MiB RSS growth over the soak",
            &format!(
                "{} (from {} at {WARMUP_S} s to {} at {} s)",
                growth(g),
                mib(s.rss_at(WARMUP_S)),
                mib(s.rss_end()),
                s.rss.last().map_or(0, |(t, _)| *t)
            ),
            g.map(|g| (g as f64) < MIB),
            &notes,
        ));
        let p99 = s.percentile_us(99.0);
        rows.push(row(
            "detection latency p99 ≤ 10 ms",
            &format!(
                "p99 {} (p50 {}; {} findings under load)",
                ms(p99),
                ms(s.percentile_us(50.0)),
                s.latencies_us.len()
            ),
            p99.map(|p| p <= 10_000),
            "",
        ));
        let sc = &self.scan;
        let (untracked, tracked) = (sc.cpu_per_thousand(1) / 1000.0, sc.cpu_per_thousand(2) / 1000.0);
        rows.push(row(
            "start-up /proc scan ≤ 20 ms CPU per 1,000 processes",
            &format!("{untracked:.1} ms per 1,000 untracked processes"),
            untracked.is_finite().then_some(untracked <= 20.0),
            &format!(
                "{tracked:.1} ms per 1,000 processes of a session (also classified, placed in sessions \
                 and added to the kernel's map); see Start-up /proc scan and docs/perf-daemon.md."
            ),
        ));
        rows
    }

    pub fn sections(&self) -> String {
        let mut out = format!(
            "## Throughput\n\n\
             A tracked generator (the driver running as the configured assistant, {GEN_THREADS} threads) opens\n\
             and closes `/etc/localtime` at each rate for {:.1} s, paced against the clock (sleeping when ahead). Rates step up until a\n\
             step loses events. Received is what the daemon decoded (`aiwatch_events_total{{kind=\"file\"}}`) when\n\
             only counting (`--format none`), and the fingerprint records found in the output file with JSON to a\n\
             file; drops are the daemon's counters (ring buffer full or three quarters full, where batched\n\
             events are shed to keep room for process and connection records; stash full, undecodable; sink\n\
             queue full and write errors). Every step is checked: generated = received + drops. Daemon CPU is its user +\n\
             system time over the step (all threads) divided by the events generated.\n\n",
            STEP_MS as f64 / 1000.0
        );
        for t in &self.throughput {
            out += &throughput_section(t);
        }
        out += &soak_section(&self.soak);
        out += &scan_section(&self.scan);
        out
    }
}

pub fn soak_section(s: &Soak) -> String {
    format!(
            "## Soak: memory under load and detection latency\n\n\
             The generator runs at {} watched reads/s for {} s with JSON records rendered to /dev/null; the\n\
             daemon's RSS is sampled every {} s. Meanwhile, {:.1} s after the previous one ended, a new session\n\
             (the driver in `finding` mode) reads `/etc/localtime` and `/etc/machine-id` and sends an HTTP\n\
             request naming api.anthropic.com to a loopback listener, so the default rule fires while the load\n\
             runs. Detection latency is the daemon's own measure (kernel timestamp of the event that completed\n\
             the finding to the finding's emission, `latency_us` in its log; also the\n\
             `aiwatch_detection_latency_seconds` histogram).\n\n\
             - Load: {} generated, {} received, {} dropped ({}).\n\
             - RSS: {} at {WARMUP_S} s, {} at the end, median {:.1} MiB, max {:.1} MiB; growth after warm-up {}.\n\
             - Detection latency over {} findings ({} sessions, {} counted by the daemon): p50 {}, p99 {}, max {}.\n\n",
            s.rate,
            s.seconds,
            RSS_EVERY,
            FINDING_EVERY.as_secs_f64(),
            s.generated,
            s.received,
            s.drops,
            if s.generated == s.received + s.drops { "accounted exactly" } else { "NOT accounted exactly" },
            mib(s.rss_at(WARMUP_S)),
            mib(s.rss_end()),
            s.rss_median() / MIB,
            s.rss_max() as f64 / MIB,
            growth(s.growth_kib()),
            s.latencies_us.len(),
            s.sessions,
            s.findings,
            ms(s.percentile_us(50.0)),
            ms(s.percentile_us(99.0)),
            ms(s.latencies_us.iter().max().copied()),
        )
}

fn what(output: Output) -> &'static str {
    match output {
        Output::Counted => "events only counted",
        Output::JsonFile => "JSON to a file",
    }
}

fn throughput_target(t: &Throughput, want: u64) -> String {
    let best = t.best_lossless();
    // A step counts at the rate it reached: the stepper accepts a step 10 % short of its rate.
    let ok = t.steps.iter().any(|s| s.lossless() && s.rate >= want && s.achieved >= 0.9 * want as f64);
    // Where it lost events, in this run's figures.
    let mut notes = match t.steps.iter().find(|s| !s.lossless()) {
        Some(s) if !ok => format!(
            "At {}/s: {} generated, {} received, {} kernel and {} sink drops; daemon CPU {:.2} µs per event (see Throughput). ",
            s.rate, s.generated, s.received, s.kernel_drops, s.sink_drops, s.daemon_cpu_us
        ),
        _ => String::new(),
    };
    if !ok {
        notes += &capacity(t);
    }
    let stop = t.stopped.as_ref().map_or(String::new(), |w| format!(" ({w})"));
    row(
        &format!("≥ {want} events/s with zero loss, {}", what(t.output)),
        &best.map_or("no lossless step".into(), |b| format!("{b}/s lossless{stop}")),
        judged(&[], || ok),
        &notes,
    )
}

/// What bounds a run that missed its rate, from its own figures: the most the generator reached,
/// and the rate the daemon's CPU per event (median over the lossless steps) allows on one CPU.
fn capacity(t: &Throughput) -> String {
    let reached = t.steps.iter().map(|s| s.achieved).fold(0.0f64, f64::max);
    let mut per: Vec<f64> =
        t.steps.iter().filter(|s| s.lossless() && s.daemon_cpu_us > 0.0).map(|s| s.daemon_cpu_us).collect();
    let us = super::median(&mut per);
    let one_cpu = if us.is_finite() {
        format!(
            " At the lossless steps' median daemon CPU of {us:.2} µs per event, one whole CPU would handle {:.0}/s.",
            1e6 / us
        )
    } else {
        String::new()
    };
    format!("The generator reached at most {reached:.0}/s (tracked open+close on the other CPU).{one_cpu}")
}

pub fn throughput_section(t: &Throughput) -> String {
    let mut out = format!(
        "### {}\n\n| rate/s | generated | achieved/s | received | kernel drops | sink drops | accounted exactly | lossless | daemon CPU µs/event |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        match t.output {
            Output::Counted => "Events only counted (`--format none`)",
            Output::JsonFile => "JSON to a file, every record (`--format json --detail all --output FILE`)",
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
    let tried = match &t.stopped {
        Some(w) => format!(" Stopped: {w}."),
        None => format!(" Every rate up to {} was tried.", RATES[RATES.len() - 1]),
    };
    out + &format!(
        "\nHighest lossless rate: {}.{tried}\n\n",
        t.best_lossless().map_or("none".into(), |b| format!("{b}/s"))
    )
}

pub fn scan_section(sc: &Scan) -> String {
    let extra = sc.extra;
    format!(
        "## Start-up /proc scan\n\n\
         The daemon logs how long its first /proc pass took and how many processes /proc listed. Median of\n\
         {RUNS} starts each: {} processes in {:.0} µs; with {extra} more untracked processes, {} in {:.0} µs\n\
         (+{:.0} µs per 1,000 processes); with {extra} more that descend from a tracked assistant, {} in\n\
         {:.0} µs (+{:.0} µs per 1,000 processes; these are also added to the kernel's tracked map).\n\n\
         The CPU time of the pass (the daemon's thread; the wall time above also counts waits for a CPU on a\n\
         busy machine): {:.0} µs; {:.0} µs with the untracked processes (+{:.0} µs per 1,000); {:.0} µs with\n\
         the tracked ones (+{:.0} µs per 1,000).\n",
        sc.base.0,
        sc.base.1,
        sc.untracked.0,
        sc.untracked.1,
        sc.per_thousand(sc.untracked),
        sc.tracked.0,
        sc.tracked.1,
        sc.per_thousand(sc.tracked),
        sc.cpu[0],
        sc.cpu[1],
        sc.cpu_per_thousand(1),
        sc.cpu[2],
        sc.cpu_per_thousand(2),
    )
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
