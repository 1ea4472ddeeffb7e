//! The daemon itself under pressure: least privilege, start-up on a fresh machine, reload,
//! restart, a probe refused, overload. Needs root; run through `cargo xtask test`.

use std::{
    os::unix::fs::PermissionsExt,
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::{net::*, observe::rss_kib, *};
use serde_json::Value;

fn read_by<'a>(pid: u32, path: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |r| r["type"] == "fingerprint_read" && r["process"]["pid"] == pid && r["resolved_path"] == path
}

fn in_session<'a>(root: u32, path: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |r| r["type"] == "fingerprint_read" && r["session"]["root_pid"] == root && r["resolved_path"] == path
}

fn cap_names(hex: &str) -> Vec<String> {
    let out = Command::new("capsh").arg(format!("--decode={hex}")).output().expect("capsh");
    let s = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<String> =
        s.split_once('=').map(|(_, c)| c.trim().split(',').map(String::from).collect()).unwrap_or_default();
    v.sort();
    v
}

fn status_field(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix(field)).unwrap_or("").trim().to_string()
}

#[test]
fn capabilities_not_needed_at_run_time_are_dropped_in_every_thread() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("caps"));
    let pid = sensor.pid();
    let mut want = vec!["cap_bpf", "cap_dac_read_search", "cap_perfmon", "cap_sys_ptrace"];
    // Per-session getenv probes need CAP_SYS_ADMIN at run time where the kernel restricts perf
    // events to it (Debian's perf_event_paranoid 3).
    let paranoid: i32 = std::fs::read_to_string(PARANOID).unwrap().trim().parse().unwrap();
    if paranoid > 2 {
        want.push("cap_sys_admin");
        want.sort();
    }
    // Capabilities are per thread: every task of the daemon (runtime workers, the sink writer,
    // the getenv worker) must have dropped them.
    let check_every_task = |when: &str| {
        let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert!(tasks.len() >= 4, "{when}: only {} tasks: {tasks:?}", tasks.len());
        for tid in &tasks {
            let status =
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
            let field =
                |f: &str| status.lines().find_map(|l| l.strip_prefix(f)).unwrap_or("").trim().to_string();
            assert_eq!(cap_names(&field("CapEff:")), want, "{when}: task {tid} ({})", field("Name:"));
            assert_eq!(field("CapPrm:"), field("CapEff:"), "{when}: task {tid}");
            assert_eq!(field("NoNewPrivs:"), "1", "{when}: task {tid}");
        }
    };
    check_every_task("after start-up");
    // Still fully working, also after a reload: file reads, and getenv probes attached after
    // the drop.
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let end = deadline(Duration::from_secs(10));
    while !sensor.log().contains("config reloaded") {
        assert!(Instant::now() < end, "no reload:\n{}", sensor.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &["sleep=200", "child=getenv=TZ;openat=/etc/localtime"]);
    sensor.wait_for("read", in_session(root, "/etc/localtime"));
    sensor.wait_for("getenv", |r| {
        r["type"] == "env_read" && r["session"]["root_pid"] == root && r["variable"] == "TZ"
    });
    check_every_task("after a reload and a session");
}

const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

/// Whether the running kernel is older than `major.minor`.
fn kernel_before(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap(), parts.next().unwrap()) < (major, minor)
}

/// Puts `kernel.perf_event_paranoid` back on drop.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(PARANOID, &self.0);
    }
}

#[test]
fn runs_as_a_non_root_user_with_only_its_capabilities() {
    // tracefs must be mounted (a root run does it); a non-root sensor without CAP_SYS_ADMIN
    // cannot mount it.
    assert!(Command::new(aiwatch_bin()).args(["check"]).output().unwrap().status.success());
    let dir = TempDir::new("nonroot");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path("aiwatch");
    std::fs::copy(aiwatch_bin(), &bin).unwrap();
    let setpriv = |caps: &str| -> Vec<String> {
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            .into_iter()
            .map(String::from)
            .chain([format!("--inh-caps={caps}"), format!("--ambient-caps={caps}")])
            .collect()
    };
    let check_as = |wrapper: &[String]| {
        let out = Command::new(&wrapper[0]).args(&wrapper[1..]).arg(&bin).arg("check").output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut caps = "+bpf,+perfmon,+sys_ptrace,+dac_read_search,+dac_override".to_string();
    // Before Linux 5.11 BPF maps count against RLIMIT_MEMLOCK, which only CAP_SYS_RESOURCE
    // raises: without it the sensor must say so, and with it run.
    if kernel_before(5, 11) {
        let (ok, text) = check_as(&setpriv(&caps));
        assert!(!ok && text.contains("RLIMIT_MEMLOCK"), "{text}");
        caps += ",+sys_resource";
    }
    let wrapper = setpriv(&caps);
    // Debian's kernels default to perf_event_paranoid 3, which they read as "perf events only
    // with CAP_SYS_ADMIN": the sensor must say so, and run once an admin sets 2 (docs/deployment.md).
    let paranoid = std::fs::read_to_string(PARANOID).unwrap().trim().to_string();
    let _restore = (paranoid.parse::<i32>().unwrap() > 2).then(|| {
        let (ok, text) = check_as(&wrapper);
        assert!(!ok && text.contains("perf_event_paranoid is"), "{text}");
        std::fs::write(PARANOID, "2").unwrap();
        Restore(paranoid)
    });
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let sensor = Sensor::start_as(AGENT_CONFIG, &wrapper, &bin, &[]);
    assert_eq!(status_field(sensor.pid(), "Uid:").split_whitespace().next(), Some("65534"));
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &["sleep=200", "openat=/etc/localtime", "child=getenv=TZ"]);
    sensor.wait_for("read seen by a non-root sensor", read_by(root, "/etc/localtime"));
    sensor.wait_for("getenv", |r| r["type"] == "env_read" && r["session"]["root_pid"] == root);
    assert_eq!(
        cap_names(&status_field(sensor.pid(), "CapEff:")),
        ["cap_bpf", "cap_dac_read_search", "cap_perfmon", "cap_sys_ptrace"]
    );
}

#[test]
fn metrics_bind_loopback_by_default() {
    // No listen setting, in a network namespace of its own (so the default port is free): the
    // daemon's only listening socket is 127.0.0.1:9464.
    let dir = TempDir::new("loopback");
    let cfg = dir.path("config.toml");
    std::fs::write(&cfg, AGENT_CONFIG).unwrap();
    let log = std::fs::File::create(dir.path("log")).unwrap();
    let script = r#"ip link set lo up && exec "$0" run --config "$1""#;
    let mut daemon = spawn_cmd(
        Command::new("unshare")
            .args(["--net", "--", "sh", "-c", script])
            .arg(aiwatch_bin())
            .arg(&cfg)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log),
    );
    let pid = daemon.pid();
    let end = deadline(Duration::from_secs(30));
    let listening = loop {
        let found = listening_sockets(pid);
        if !found.is_empty() {
            break found;
        }
        let text = std::fs::read_to_string(dir.path("log")).unwrap_or_default();
        assert!(
            Instant::now() < end && daemon.wait(Duration::ZERO).is_none(),
            "no listening socket:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(listening, ["127.0.0.1:9464"]);
    // Signals are handled once it watches.
    while !std::fs::read_to_string(dir.path("log")).unwrap_or_default().contains("watching") {
        assert!(Instant::now() < end, "did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = daemon.wait(Duration::from_secs(10));
    let text = std::fs::read_to_string(dir.path("log")).unwrap_or_default();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{text}");
}

/// The TCP sockets process `pid` listens on, as `address:port`, from its network namespace's
/// `/proc/<pid>/net/tcp{,6}` matched against its open socket inodes.
fn listening_sockets(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for cols in text.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" || !inodes.iter().any(|i| i == cols[9]) {
                continue;
            }
            let Some((addr, port)) = cols[1].split_once(':') else { continue };
            let port = u16::from_str_radix(port, 16).unwrap();
            let addr = match addr.len() {
                8 => {
                    std::net::Ipv4Addr::from(u32::from_str_radix(addr, 16).unwrap().swap_bytes()).to_string()
                }
                _ => format!("[{addr}]"),
            };
            out.push(format!("{addr}:{port}"));
        }
    }
    out
}

#[test]
fn config_writable_by_others_is_refused() {
    let dir = TempDir::new("perm");
    let cfg = dir.path("aiwatch.toml");
    std::fs::write(&cfg, "").unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(aiwatch_bin()).args(["--config", cfg.to_str().unwrap(), "run"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing config file") && err.contains("mode 0666"), "{err}");
}

// ---- Lifecycle -------------------------------------------------------------------------------

#[test]
fn daemons_started_together_on_an_unmounted_tracefs_all_start() {
    // A private mount namespace where tracefs is not mounted (nor debugfs, whose tracing
    // directory would mount it on access): several daemons started at once in it all try to
    // mount it, and someone else's mount must count as success for each.
    let ns = TempDir::new("tracefs-ns");
    let ready = ns.path("ready");
    let script = format!(
        "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; \
         touch {}; exec sleep 600",
        ready.display()
    );
    let holder = spawn_cmd(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", &script])
            .stdin(std::process::Stdio::null()),
    );
    let end = deadline(Duration::from_secs(10));
    while !ready.exists() {
        assert!(Instant::now() < end, "the mount namespace was not set up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mountinfo = format!("/proc/{}/mountinfo", holder.pid());
    let tracefs_mounts = || {
        let text = std::fs::read_to_string(&mountinfo).unwrap();
        text.lines().filter(|l| l.contains(" - tracefs ")).count()
    };
    assert_eq!(tracefs_mounts(), 0, "tracefs still mounted in the test's namespace");
    let enter = format!("--mount=/proc/{}/ns/mnt", holder.pid());
    let wrapper = ["nsenter", enter.as_str(), "--"];
    let sensors: Vec<Sensor> = std::thread::scope(|s| {
        let started: Vec<_> = (0..6)
            .map(|_| s.spawn(|| Sensor::start_as(AGENT_CONFIG, &wrapper, &aiwatch_bin(), &[])))
            .collect();
        started.into_iter().map(|t| t.join().expect("a daemon failed to start")).collect()
    });
    assert!(tracefs_mounts() >= 1);
    // And they sense: each sees the same read.
    let dir = TempDir::new("tracefs-ns-agent");
    let root = run(&probe_as(&dir, AGENT), &["openat=/etc/localtime"]);
    for s in &sensors {
        s.wait_for("read seen by every daemon", read_by(root, "/etc/localtime"));
    }
    for s in sensors {
        s.stop();
    }
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_old_one_on_an_invalid_one() {
    let dir = TempDir::new("reload");
    let cfg_dir = TempDir::new("reload-cfg");
    let sensor = Sensor::start(AGENT_CONFIG);
    let cfg = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("config.toml"))
        .find(|p| {
            std::fs::read_to_string("/proc/".to_string() + &sensor.pid().to_string() + "/cmdline")
                .unwrap_or_default()
                .contains(p.to_str().unwrap())
        })
        .expect("the sensor's config file");
    let other = probe_as(&dir, "aiwatch-other-agent");
    let before = run(&other, &["openat=/etc/localtime"]);
    // A valid config naming the other agent.
    std::fs::write(
        &cfg,
        format!("{AGENT_CONFIG}[[assistants]]\nname = \"other\"\nexe = [\"aiwatch-other-agent\"]\n"),
    )
    .unwrap();
    let hup = |pid: u32| unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    hup(sensor.pid());
    let end = deadline(Duration::from_secs(10));
    while !sensor.log().contains("config reloaded") {
        assert!(Instant::now() < end, "no reload:\n{}", sensor.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = run(&other, &["openat=/etc/localtime"]);
    let r = sensor.wait_for("newly configured assistant", read_by(after, "/etc/localtime"));
    assert_eq!(r["session"]["assistant"], "other");
    assert!(sensor.records().iter().all(|r| r["process"]["pid"] != before), "not tracked before the reload");
    // An invalid one: logged, and the configuration in force stays.
    std::fs::write(&cfg, "[[assistants]]\nname = \"broken\"\nexe = [\"a/b\"]\n").unwrap();
    hup(sensor.pid());
    let end = deadline(Duration::from_secs(10));
    while !sensor.log().contains("config reload failed") {
        assert!(Instant::now() < end, "no failure logged:\n{}", sensor.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = run(&other, &["openat=/etc/hostname"]);
    sensor.wait_for("still tracked with the old config", read_by(again, "/etc/hostname"));
    drop(cfg_dir);
}

#[test]
fn a_probe_that_cannot_attach_leaves_the_others_running_and_shows() {
    let failing = [("AIWATCH_FAIL_ATTACH", "files_enter_statx")];
    let sensor = Sensor::start_env(AGENT_CONFIG, &[], &aiwatch_bin(), &[], &failing);
    assert!(
        sensor.log().contains("probe not attached") && sensor.log().contains("files_enter_statx"),
        "{}",
        sensor.log()
    );
    let dir = TempDir::new("probe-fault");
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &["statx=/etc/hostname", "openat=/etc/localtime"]);
    sensor.wait_for("other probes still report", read_by(root, "/etc/localtime"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!sensor.records().iter().any(|r| r["process"]["pid"] == root && r["syscall"] == "statx"));
    let m = sensor.scrape();
    assert!(
        m.contains(r#"aiwatch_probe_attached{hook="tracepoint/syscalls/sys_enter_statx",program="files_enter_statx"} 0"#),
        "{m}"
    );
    assert!(m.contains(r#"aiwatch_probe_attached{hook="tracepoint/syscalls/sys_enter_openat",program="files_enter_openat"} 1"#));
    // `aiwatch check` shows it too; an optional probe does not make the host unready.
    let out = Command::new(aiwatch_bin()).args(["check", "--json"]).envs(failing).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = report["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == "files_enter_statx")
        .unwrap()
        .clone();
    assert_eq!(row["ok"], false);
    assert!(row["error"].as_str().unwrap().contains("AIWATCH_FAIL_ATTACH"));
    assert_eq!(report["ready"], true);
    // A required one does make it unready, and `run` refuses to start without it.
    let required = [("AIWATCH_FAIL_ATTACH", "process_enter_sched_exec")];
    let out = Command::new(aiwatch_bin()).args(["check"]).envs(required).output().unwrap();
    assert!(!out.status.success());
    let out = Command::new(aiwatch_bin()).args(["run", "--no-metrics"]).envs(required).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("required probes failed to attach"));
}

#[test]
fn restart_while_assistants_run_rebuilds_their_sessions() {
    let dir = TempDir::new("restart");
    let agent = probe_as(&dir, AGENT);
    let go = dir.path("go");
    let child_pid = dir.path("child.pid");
    let first = Sensor::start(AGENT_CONFIG);
    let mut running = spawn(
        &agent,
        &[&format!("child=pid={};waitfile={};openat=/etc/hosts", child_pid.display(), go.display())],
    );
    first.wait_for("session", |r| r["type"] == "session_start" && r["session"]["root_pid"] == running.pid());
    while !child_pid.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = first.stop();
    assert!(log.contains("stopped"));
    let second = Sensor::start(AGENT_CONFIG);
    let s = second.wait_for("rebuilt session", |r| {
        r["type"] == "session_start" && r["session"]["root_pid"] == running.pid()
    });
    assert_eq!(s["found_by"], "scan");
    std::fs::write(&go, "").unwrap();
    let child: u32 = std::fs::read_to_string(&child_pid).unwrap().trim().parse().unwrap();
    let r = second.wait_for("descendant after restart", read_by(child, "/etc/hosts"));
    assert_eq!(r["reader"], "descendant");
    assert!(running.wait(Duration::from_secs(10)).is_some());
}

// ---- Overload ------------------------------------------------------------------------------

#[test]
fn overload_is_counted_bounded_and_recovered_from() {
    // Its own assistant name, so the other tests' sensors do not follow the flood; and a small
    // ring buffer, so a fast reader overflows it. Not the smallest (64 KiB): its three quarters,
    // 48 KiB, hold about 110 file records after an exec's, fewer than a session's start-up makes
    // (this agent's: about 200) before the daemon's next drain, so the finding session below
    // would see its own reads shed, storm or not.
    let dir = TempDir::new("overload");
    let config = "[[assistants]]\nname = \"storm\"\nexe = [\"aiwatch-storm-agent\"]\n[sensor]\nring_buffer_bytes = 262144\n";
    // Records go to a file: the flood is the sensor's to handle, not this test's memory.
    let out = dir.path("events.jsonl");
    let small = Sensor::start_with(config, &["--output", out.to_str().unwrap()]);
    let agent = probe_as(&dir, "aiwatch-storm-agent");
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = small.metric(r#"aiwatch_kernel_map_entries{map="tracked"}"#).unwrap_or(0.0);
    let forks = || small.metric(r#"aiwatch_events_total{kind="fork"}"#).unwrap_or(0.0);
    let forks_before = forks();
    // 30 s of watched reads as fast as one process can, and 10,000 short-lived tracked
    // processes at the same time. The daemon is stopped for the first 2 s of it, so the ring
    // overflows however fast this CPU runs the reader against the writers (under emulation the
    // two share one host thread).
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(small.pid() as i32, libc::SIGSTOP) };
    let mut spinner = spawn(&agent, &["spin=30000,/etc/localtime"]);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: as above.
    unsafe { libc::kill(small.pid() as i32, libc::SIGCONT) };
    let storm = run(&agent, &["storm=10000"]);
    let mut peak_rss = 0;
    while spinner.wait(Duration::from_millis(500)).is_none() {
        peak_rss = peak_rss.max(rss_kib(small.pid()));
    }
    std::thread::sleep(Duration::from_millis(2500));
    // The reads past three quarters of the ring are left out and counted (the rest of the ring
    // is for the storm's process records).
    let shed = small.metric(r#"aiwatch_kernel_events_total{outcome="ringbuf_shed"}"#).unwrap();
    assert!(shed > 0.0, "a 64 KiB ring buffer must shed reads under this load");
    assert!(peak_rss < 64 * 1024, "daemon RSS peaked at {peak_rss} KiB");
    let entries = small.metric(r#"aiwatch_kernel_map_entries{map="tracked"}"#).unwrap();
    assert!(entries <= baseline, "tracked map back to {entries}, baseline {baseline}");
    // The storm's children were tracked (their forks reached the daemon, at least one batch of
    // 50 of them despite the full ring), so the map's return to baseline means something.
    let storm_forks = forks() - forks_before;
    assert!(storm_forks >= 50.0, "{storm_forks} forks seen from the storm of pid {storm}");
    // Findings work again once the storm is over (the relay rule: the host's identity, then
    // the base URL the session was given).
    let api = http_server(None, "127.0.0.1:0");
    let req = dir.path("req.http");
    std::fs::write(&req, "GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n").unwrap();
    let mut cmd = Command::new(&agent);
    cmd.args([
        "openat=/etc/localtime",
        "openat=/etc/machine-id",
        &format!("tcp={},@{}", api.addr, req.display()),
    ])
    .env("ANTHROPIC_BASE_URL", format!("http://{}", api.addr))
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let shed_m = r#"aiwatch_kernel_events_total{outcome="ringbuf_shed"}"#;
    let shed_before = small.metric(shed_m).unwrap_or(0.0);
    let mut g = spawn_cmd(&mut cmd);
    assert!(g.wait(Duration::from_secs(60)).expect("finding session finished").success());
    let root = g.pid();
    let want = format!("\"root_pid\":{root},");
    let end = deadline(Duration::from_secs(30));
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().rev().take(5000).any(|l| l.contains("\"type\":\"finding\"") && l.contains(&want)) {
            break;
        }
        if Instant::now() >= end {
            let session: Vec<&str> = text.lines().filter(|l| l.contains(&want)).collect();
            let log = small.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let counters = small.scrape();
            let counters: Vec<&str> = counters
                .lines()
                .filter(|l| l.starts_with("aiwatch_kernel_") || l.starts_with("aiwatch_events_total"))
                .collect();
            let shed = small.metric(shed_m).unwrap_or(0.0) - shed_before;
            panic!(
                "no finding after the storm ({shed} records shed since the session started); the session's records:\n{}\nthe daemon's last log lines:\n{}\nits counters:\n{}",
                session.join("\n"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                counters.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = small.stop();
    assert!(log.contains("stopped"));
}
