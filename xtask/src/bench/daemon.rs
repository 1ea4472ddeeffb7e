//! The processes a benchmark starts: children stopped and reaped on drop, pinned to a CPU, the
//! daemon started and waited for, its `/metrics` read. What is read of them (log fields, memory,
//! CPU time, the metrics text) is the test harness's [`super::observe`].

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::observe::{log_field, metrics_body, parse_metrics};

/// A child asked to end (SIGTERM) when dropped, then reaped; killed if it has not ended within
/// 10 s.
pub struct Stopper(pub Child);

impl Stopper {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        reap(&mut self.0, Duration::from_secs(10));
    }
}

/// Waits up to `within` for a child asked to end, then kills it (by its PID, through `Child`).
pub fn reap(child: &mut Child, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` on `cpu` only (and what it forks), when the machine has more than one CPU.
pub fn pin(cmd: &mut Command, cpu: usize) -> &mut Command {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) <= cpu {
        return cmd;
    }
    // SAFETY: sched_setaffinity on the child itself, between fork and exec; no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Starts `aiwatch run ARGS --config CFG` (on `cpu`, if given) with its log in `log`; returns
/// once it watches, with the milliseconds it took to attach every probe.
pub fn start_aiwatch(
    bin: &Path,
    cfg: &Path,
    log: &Path,
    args: &[&str],
    cpu: Option<usize>,
) -> anyhow::Result<(Stopper, u64)> {
    let mut cmd = Command::new(bin);
    if let Some(cpu) = cpu {
        pin(&mut cmd, cpu);
    }
    let child = cmd
        .arg("run")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting aiwatch")?;
    let mut s = Stopper(child);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("probes attached")) {
            let ms = log_field(line, "elapsed_ms").unwrap_or(0);
            if text.contains("watching") {
                return Ok((s, ms));
            }
        }
        if let Ok(Some(status)) = s.0.try_wait() {
            bail!("aiwatch exited ({status}):\n{text}");
        }
        if Instant::now() > end {
            bail!("aiwatch did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `/metrics` into `series -> value`.
pub fn scrape(addr: SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    let body =
        metrics_body(addr, Duration::from_secs(10)).with_context(|| format!("reading {addr}/metrics"))?;
    Ok(parse_metrics(&body))
}

/// Sum of every series whose name starts with `prefix`.
pub fn sum(m: &BTreeMap<String, f64>, prefix: &str) -> u64 {
    m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_by_prefix() {
        let m = parse_metrics("# TYPE x counter\nx{outcome=\"a\"} 3\nx{outcome=\"b\"} 4\nxy 1.5\n");
        assert_eq!(sum(&m, "x{"), 7);
        assert_eq!(sum(&m, "x"), 8);
    }
}
