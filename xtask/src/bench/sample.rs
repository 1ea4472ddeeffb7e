//! A run with made-up figures, for the tests of what a run writes.

use std::time::Duration;

use super::{
    load::{Output, Soak as SoakRun, Step, Throughput},
    overhead::{Overhead, CONDITIONS, WORKLOADS},
    scan::Scan,
    summary::Loads,
    Machine, Run,
};

/// A run with every part filled in, one condition skipped.
pub fn sample() -> Run {
    let mut overhead = Overhead::new(1);
    for (w, _) in WORKLOADS {
        overhead.push("none", w, 100.0);
        overhead.push_cpu("none", w, 90.0);
        for c in CONDITIONS.iter().filter(|c| **c != "auditd_watch") {
            overhead.push(c, w, 150.0);
            overhead.push_cpu(c, w, 120.0);
        }
        for c in ["aiwatch_untracked", "aiwatch_tracked"] {
            overhead.push_programs(c, w, 210.5, 4.0);
        }
    }
    overhead.attach_ms = vec![150.0, 160.0];
    overhead.rss_idle_kib = vec![29_000.0, 29_100.0];
    overhead.skipped.insert("auditd_watch", "auditd did not start".into());
    let step = |rate, lost| Step {
        rate,
        generated: rate * 2,
        achieved: rate as f64 - 0.5,
        received: rate * 2 - lost,
        kernel_drops: lost,
        sink_drops: 0,
        daemon_cpu_us: 2.346,
    };
    let throughput = |output| Throughput {
        output,
        steps: vec![step(25_000, 0), step(50_000, 7)],
        stopped: Some("events lost at 50000/s".into()),
    };
    let soak = SoakRun {
        seconds: 30,
        rate: 50_000,
        rss: vec![(0, 29_000), (30, 29_500)],
        generated: 1_500_000,
        received: 1_500_000,
        drops: 0,
        latencies_us: vec![2_000, 9_000],
        sessions: 30,
        findings: 30,
    };
    let scan = Scan {
        extra: 1000,
        base: (120, 900.0),
        untracked: (1120, 5_900.0),
        tracked: (1120, 9_900.0),
        cpu: [800.0, 3_800.0, 5_800.0],
    };
    Run {
        machine: Machine {
            kernel: "6.18 x86_64".into(),
            cpus: 2,
            cpu: "AMD EPYC".into(),
            memory: "MemTotal: 1 kB".into(),
        },
        overhead,
        loads: Loads { throughput: [throughput(Output::Counted), throughput(Output::JsonFile)], scan, soak },
        took: Duration::from_secs(99),
        bpftrace: Some("bpftrace v0.17.0".into()),
        commit: "abc1234".into(),
    }
}
