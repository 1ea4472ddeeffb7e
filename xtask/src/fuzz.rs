//! `cargo xtask fuzz`: the cargo-fuzz targets under `fuzz/` (kernel event decoding, ClientHello,
//! HTTP head, DNS, netlink, config, secret scrubbing), each for a bounded time, with the
//! committed seed corpora.

use std::process::Command;

use anyhow::{bail, Context as _};

use crate::{display, root, setup};

const TARGETS: [&str; 7] = [
    "kernel_event",
    "tls_client_hello",
    "http_request",
    "dns_message",
    "netlink_request",
    "config",
    "redact",
];

/// `cargo fuzz run` each target (or only `only`) for `seconds`, new inputs kept under target/
/// (the committed seed corpus stays as it is).
pub fn run(seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    let dir = root().join("fuzz");
    let targets: Vec<&str> = TARGETS.iter().copied().filter(|t| only.is_none_or(|o| o == *t)).collect();
    if targets.is_empty() {
        bail!("no fuzz target named {:?}; targets: {}", only.unwrap_or(""), TARGETS.join(", "));
    }
    for t in targets {
        let work = root().join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&work)?;
        let mut c = Command::new("cargo");
        c.current_dir(&dir)
            .env("PATH", setup::path_with_cargo_bin())
            // The parsers do not need the eBPF object; skip building it with sanitizers.
            .env("AYA_BUILD_SKIP", "1")
            .args(["+nightly", "fuzz", "run", t])
            .arg(&work)
            .arg(dir.join("corpus").join(t))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ]);
        eprintln!("xtask: $ {}", display(&c));
        let status = c.status().context("cannot run cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target {t} failed ({status}); the crashing input is under fuzz/artifacts/{t}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_target_in_fuzz_targets_is_run() {
        let mut found: Vec<String> = std::fs::read_dir(super::root().join("fuzz/fuzz_targets"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".rs").map(str::to_string))
            .collect();
        found.sort();
        let mut ours: Vec<&str> = super::TARGETS.to_vec();
        ours.sort_unstable();
        assert_eq!(found, ours);
    }
}
