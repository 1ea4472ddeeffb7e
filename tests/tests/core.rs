//! The core sensor against the real kernel: tracked sessions and fingerprint file reads.
//! Needs root; run through `cargo xtask test`.

use std::time::Duration;

use integration_tests::*;
use serde_json::Value;

fn agent_sensor() -> (Sensor, TempDir) {
    (Sensor::start(AGENT_CONFIG), TempDir::new("agent"))
}

#[test]
fn assistant_reads_of_each_category_are_reported_with_their_fields() {
    let (sensor, dir) = agent_sensor();
    let agent = probe_as(&dir, AGENT);
    let cases = [
        ("openat=/etc/localtime", "/etc/localtime", "timezone", "openat"),
        ("stat=/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/UTC", "timezone", "newfstatat"),
        ("openat=/etc/resolv.conf", "/etc/resolv.conf", "network_config", "openat"),
        ("readlink=/sys/class/net/lo", "/sys/class/net/lo", "network_config", "readlink"),
        ("access=/etc/environment", "/etc/environment", "proxy_config", "access"),
        ("open=/etc/machine-id", "/etc/machine-id", "host_identity", "open"),
        ("statx=/etc/hostname", "/etc/hostname", "host_identity", "statx"),
        ("faccessat2=/etc/default/locale", "/etc/default/locale", "locale", "faccessat2"),
        ("openat2=/etc/locale.conf", "/etc/locale.conf", "locale", "openat2"),
        ("lstat=/etc/timezone", "/etc/timezone", "timezone", "newlstat"),
    ];
    let actions: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let pid = run(&agent, &actions);
    let start =
        sensor.wait_for("session start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == pid);
    assert_eq!(start["session"]["assistant"], "test-agent");
    assert_eq!(start["found_by"], "exec");
    for (_, path, category, syscall) in cases {
        let r = sensor.wait_for(path, read_of(pid, path));
        assert_eq!(r["schema"], "aiwatch.v1");
        assert_eq!(r["category"], category, "{r}");
        assert_eq!(r["syscall"], syscall, "{r}");
        assert_eq!(r["path"], path);
        assert_eq!(r["reader"], "assistant");
        assert_eq!(r["session"]["assistant"], "test-agent");
        assert_eq!(r["session"]["root_pid"], pid);
        assert_eq!(r["session"]["id"], start["session"]["id"]);
        assert_eq!(r["process"]["tid"], pid);
        assert_eq!(r["process"]["ppid"], std::process::id());
        assert_eq!(r["process"]["uid"], 0);
        assert_eq!(r["process"]["exe"], agent.to_str().unwrap());
        assert_eq!(r["process"]["argv"][0], agent.to_str().unwrap());
        assert_eq!(r["process"]["argv"].as_array().unwrap().len(), cases.len() + 1);
        assert!(r["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(r["time"].as_str().is_some_and(|t| t.starts_with("20") && t.ends_with('Z')));
        // The result is the syscall's: success with a value, or a named errno.
        let exists = std::fs::symlink_metadata(path).is_ok();
        assert_eq!(r["success"], exists, "{r}");
        if exists {
            assert!(r["result"].as_i64().unwrap() >= 0);
        } else {
            assert_eq!(r["result"], -2);
            assert_eq!(r["errno"], "ENOENT");
        }
    }
    // /etc/localtime is a symlink into zoneinfo: the target is reported too.
    let lt = sensor.wait_for("localtime", read_of(pid, "/etc/localtime"));
    if let Ok(t) = std::fs::canonicalize("/etc/localtime") {
        assert_eq!(lt["target_path"], t.to_str().unwrap());
    }
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == pid);
}

#[test]
fn child_and_grandchild_are_descendants_of_the_same_session() {
    let (sensor, dir) = agent_sensor();
    let agent = probe_as(&dir, AGENT);
    let pidfile = dir.path("grandchild.pid");
    let child = format!("child=openat=/etc/resolv.conf;child=pid={}|openat=/etc/hosts", pidfile.display());
    let pid = run(&agent, &["openat=/etc/localtime", &child]);
    let gc_pid: u32 = std::fs::read_to_string(&pidfile).expect("grandchild ran").trim().parse().unwrap();

    let own = sensor.wait_for("assistant's read", read_of(pid, "/etc/localtime"));
    assert_eq!(own["reader"], "assistant");
    let c = sensor.wait_for("child's read", |r| {
        r["type"] == "fingerprint_read"
            && r["resolved_path"] == "/etc/resolv.conf"
            && r["session"]["root_pid"] == pid
    });
    assert_eq!(c["reader"], "descendant");
    assert_ne!(c["process"]["pid"], pid);
    assert_eq!(c["process"]["ppid"], pid);
    assert_eq!(c["session"]["id"], own["session"]["id"]);
    let g = sensor.wait_for("grandchild's read", read_of(gc_pid, "/etc/hosts"));
    assert_eq!(g["reader"], "descendant");
    assert_eq!(g["session"]["root_pid"], pid);
    assert_eq!(g["session"]["id"], own["session"]["id"]);
    assert_eq!(g["process"]["ppid"], c["process"]["pid"]);
    assert_eq!(g["category"], "network_config");
}

#[test]
fn untracked_process_reading_the_same_files_produces_nothing() {
    let (sensor, dir) = agent_sensor();
    let plain = probe_as(&dir, "plain-program");
    let agent = probe_as(&dir, AGENT);
    let reads =
        ["openat=/etc/localtime", "openat=/etc/resolv.conf", "open=/etc/machine-id", "stat=/etc/hostname"];
    let untracked = run(&plain, &reads);
    // A tracked run afterwards proves the sensor saw events in that time.
    let tracked = run(&agent, &reads);
    sensor.wait_n(reads.len(), "tracked reads", |r| {
        r["type"] == "fingerprint_read" && r["process"]["pid"] == tracked
    });
    std::thread::sleep(Duration::from_millis(200));
    let leaked: Vec<Value> = sensor
        .records()
        .into_iter()
        .filter(|r| r["process"]["pid"] == untracked || r["session"]["root_pid"] == untracked)
        .collect();
    assert!(leaked.is_empty(), "untracked process reported: {leaked:?}");
}

#[test]
fn reads_made_right_after_exec_are_attributed() {
    let (sensor, dir) = agent_sensor();
    let agent = probe_as(&dir, AGENT);
    // Each process reads as its first action and exits at once, long before user space could
    // classify it after the fact: only in-kernel tracking from exec catches all of them.
    let pids: Vec<u32> = (0..20).map(|_| run(&agent, &["openat=/etc/localtime"])).collect();
    for pid in pids {
        let r = sensor.wait_for("read right after exec", read_of(pid, "/etc/localtime"));
        assert_eq!(r["reader"], "assistant");
    }
}

#[test]
fn relative_and_obfuscated_paths_resolve_to_the_watched_file() {
    let (sensor, dir) = agent_sensor();
    let agent = probe_as(&dir, AGENT);
    let link = dir.path("etclink");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let via_link = format!("openat={}/resolv.conf", link.display());
    let up = format!("openat={}/../../../etc/hosts", dir.0.display());
    let pid = run(
        &agent,
        &[
            "chdir=/etc",
            "openat=localtime",
            "openat=./timezone",
            "dirat=/etc,machine-id",
            "openat=//etc///./hostname",
            "openat=/proc/self/root/etc/nsswitch.conf",
            &via_link,
            &up,
            "chdir=/usr/share",
            "openat=zoneinfo/UTC",
        ],
    );
    let expect = [
        ("localtime", "/etc/localtime"),
        ("./timezone", "/etc/timezone"),
        ("machine-id", "/etc/machine-id"),
        ("//etc///./hostname", "/etc/hostname"),
        ("/proc/self/root/etc/nsswitch.conf", "/etc/nsswitch.conf"),
        (via_link.trim_start_matches("openat="), "/etc/resolv.conf"),
        (up.trim_start_matches("openat="), "/etc/hosts"),
        ("zoneinfo/UTC", "/usr/share/zoneinfo/UTC"),
    ];
    for (raw, resolved) in expect {
        let r = sensor.wait_for(resolved, |r| {
            r["type"] == "fingerprint_read" && r["process"]["pid"] == pid && r["path"] == raw
        });
        assert_eq!(r["resolved_path"], resolved, "{r}");
    }
    let d = sensor.wait_for("dirfd read", |r| r["process"]["pid"] == pid && r["path"] == "machine-id");
    assert!(d["dirfd"].as_i64().is_some_and(|fd| fd >= 0), "{d}");
    // A shell the assistant spawns, reading relative to its own cwd, then gone.
    let pid = run(&agent, &["sh=cd /etc && cat timezone >/dev/null"]);
    let r = sensor.wait_for("shell's cat", |r| {
        r["type"] == "fingerprint_read" && r["session"]["root_pid"] == pid && r["path"] == "timezone"
    });
    assert_eq!(r["resolved_path"], "/etc/timezone");
    assert_eq!(r["reader"], "descendant");
    assert_eq!(r["process"]["comm"], "cat");
}

#[test]
fn paths_through_the_readers_own_fds_resolve_to_the_watched_file() {
    let (sensor, dir) = agent_sensor();
    let agent = probe_as(&dir, AGENT);
    // fd 50 is /etc in the probe (dup2'd there, so the daemon learns it from /proc: the probe
    // stays a moment); the daemon has no such fd of its own.
    let pid = run(
        &agent,
        &[
            "openfd=/etc,50",
            "openat=/proc/self/fd/50/localtime",
            "openat=/dev/fd/50/hostname",
            "openat=/proc/thread-self/fd/50/hosts",
            "sleep=1000",
        ],
    );
    for (raw, resolved) in [
        ("/proc/self/fd/50/localtime", "/etc/localtime"),
        ("/dev/fd/50/hostname", "/etc/hostname"),
        ("/proc/thread-self/fd/50/hosts", "/etc/hosts"),
    ] {
        let r = sensor.wait_for(resolved, |r| {
            r["type"] == "fingerprint_read" && r["process"]["pid"] == pid && r["path"] == raw
        });
        assert_eq!(r["resolved_path"], resolved, "{r}");
    }
}

#[test]
fn processes_running_before_start_are_found_by_the_scan() {
    let dir = TempDir::new("scan");
    let agent = probe_as(&dir, AGENT);
    let go = dir.path("go");
    let child_pid = dir.path("child.pid");
    let wait = format!("waitfile={}", go.display());
    let child = format!("child=pid={};{wait};openat=/etc/hosts", child_pid.display());
    let mut running = spawn(&agent, &[&child, "openat=/etc/localtime"]);
    // Wait until the child exists, so both are there before the sensor starts.
    for _ in 0..500 {
        if child_pid.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let child: u32 = std::fs::read_to_string(&child_pid).expect("child started").trim().parse().unwrap();
    let sensor = Sensor::start(AGENT_CONFIG);
    let start = sensor.wait_for("scanned session", |r| {
        r["type"] == "session_start" && r["session"]["root_pid"] == running.pid()
    });
    assert_eq!(start["found_by"], "scan");
    assert_eq!(start["session"]["assistant"], "test-agent");
    std::fs::write(&go, "").unwrap();
    let r = sensor.wait_for("scanned child's read", read_of(child, "/etc/hosts"));
    assert_eq!(r["reader"], "descendant");
    assert_eq!(r["session"]["root_pid"], running.pid());
    let r = sensor.wait_for("scanned assistant's read", read_of(running.pid(), "/etc/localtime"));
    assert_eq!(r["reader"], "assistant");
    assert!(running.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn metrics_count_reads_sessions_and_kernel_drops() {
    let (sensor, dir) = agent_sensor();
    let agent = probe_as(&dir, AGENT);
    let pid =
        run(&agent, &["openat=/etc/localtime", "openat=/etc/localtime", "child=openat=/etc/resolv.conf"]);
    sensor.wait_n(2, "reads", read_of(pid, "/etc/localtime"));
    sensor.wait_for("child read", |r| {
        r["session"]["root_pid"] == pid && r["resolved_path"] == "/etc/resolv.conf"
    });
    // Kernel counters are refreshed every second.
    std::thread::sleep(Duration::from_millis(1200));
    let m = sensor.scrape();
    let value = |series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{m}"))
    };
    assert!(
        value(
            r#"aiwatch_fingerprint_reads_total{assistant="test-agent",category="timezone",reader="assistant"}"#
        ) >= 2.0
    );
    assert!(
        value(
            r#"aiwatch_fingerprint_reads_total{assistant="test-agent",category="network_config",reader="descendant"}"#
        ) >= 1.0
    );
    assert!(value(r#"aiwatch_sessions_started_total{assistant="test-agent"}"#) >= 1.0);
    assert!(value(r#"aiwatch_kernel_events_total{outcome="emitted"}"#) >= 3.0);
    assert_eq!(value(r#"aiwatch_kernel_events_total{outcome="ringbuf_full"}"#), 0.0);
    assert!(value(r#"aiwatch_events_total{kind="file"}"#) >= 3.0);
    assert_eq!(
        value(
            r#"aiwatch_probe_attached{hook="tracepoint/sched/sched_process_exec",program="process_enter_sched_exec"}"#
        ),
        1.0
    );
    assert!(m.contains("# TYPE aiwatch_tracked_processes gauge"));
    assert!(m.contains("# TYPE aiwatch_fingerprint_reads_total counter"));
    let log = sensor.stop();
    assert!(log.contains("SIGTERM: stopping") && log.contains("stopped"), "{log}");
}

#[test]
fn format_none_writes_no_records_and_still_counts_them() {
    let sensor = Sensor::start_with(AGENT_CONFIG, &["--format", "none"]);
    let dir = TempDir::new("agent");
    let agent = probe_as(&dir, AGENT);
    run(&agent, &["openat=/etc/localtime", "openat=/etc/localtime"]);
    // Session start, two reads, session end: produced and counted, never written.
    let end = deadline(Duration::from_secs(15));
    while sensor.metric("aiwatch_records_total").unwrap_or(0.0) < 4.0 {
        assert!(std::time::Instant::now() < end, "records not counted:\n{}", sensor.scrape());
        std::thread::sleep(Duration::from_millis(50));
    }
    let reads =
        r#"aiwatch_fingerprint_reads_total{assistant="test-agent",category="timezone",reader="assistant"}"#;
    assert!(sensor.metric(reads).unwrap_or(0.0) >= 2.0, "{}", sensor.scrape());
    assert_eq!(sensor.metric("aiwatch_records_written_total"), Some(0.0));
    assert_eq!(sensor.metric("aiwatch_sink_dropped_total"), Some(0.0));
    assert!(sensor.records().is_empty(), "{:?}", sensor.records());
    sensor.stop();
}

#[test]
fn kernel_diagnostics_reach_the_log_only_when_asked() {
    let dir = TempDir::new("diag");
    let agent = probe_as(&dir, AGENT);
    // A path longer than the 256 bytes the kernel copies.
    let long = format!("/etc/{}", "x".repeat(300));
    let action = format!("openat={long}");
    let quiet = Sensor::start(AGENT_CONFIG);
    let loud = Sensor::start_with(AGENT_CONFIG, &["--kernel-log-level", "debug", "--log-level", "info"]);
    let root = run(&agent, &[&action, "openat=/etc/localtime"]);
    for s in [&quiet, &loud] {
        s.wait_for("later read", |r| r["process"]["pid"] == root && r["resolved_path"] == "/etc/localtime");
    }
    let end = deadline(Duration::from_secs(10));
    while !loud.log().contains("path truncated at 256 bytes") {
        assert!(std::time::Instant::now() < end, "no kernel diagnostic in the log:\n{}", loud.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!quiet.log().contains("path truncated"), "diagnostics are quiet by default");
    // Counted either way.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(quiet.metric(r#"aiwatch_kernel_events_total{outcome="path_truncated"}"#).unwrap() >= 1.0);
}

#[test]
fn int80_syscalls_of_a_tracked_process_are_reported_and_an_untracked_ones_are_not() {
    int80_reported_by("compat_enter_raw_syscall", &[]);
}

/// The same through the classic tracepoint, which the loader falls back to where the raw one
/// cannot attach.
#[test]
fn int80_syscalls_are_reported_through_the_classic_tracepoint_too() {
    int80_reported_by("compat_enter_syscall", &[("AIWATCH_FAIL_ATTACH", "compat_enter_raw_syscall")]);
}

fn int80_reported_by(program: &str, env: &[(&str, &str)]) {
    // An assistant of each test's own: both tests run at once, and each daemon would count the
    // other's agent too.
    let name = format!("int80-{}", program.trim_start_matches("compat_enter_"));
    let exe = format!("aiwatch-{name}");
    let config = format!("[[assistants]]\nname = \"{name}\"\nexe = [\"{exe}\"]\n");
    let sensor = Sensor::start_env(&config, &[], &aiwatch_bin(), &[], env);
    let dir = TempDir::new("int80");
    let path = sensor
        .log()
        .lines()
        .find(|l| l.contains("kernel-dependent path") && l.contains("32-bit"))
        .map(str::to_string);
    assert!(path.as_deref().is_some_and(|l| l.contains(&format!("program={program} "))), "{path:?}");
    let plain = probe_as(&dir, "plain-program");
    let agent = probe_as(&dir, &exe);
    let port = free_port();
    let (connect, socketcall) =
        (format!("int80=connect,127.0.0.1:{port}"), format!("int80=socketcall,127.0.0.1:{port}"));
    // getpid 500 times: reported once. Each open and connect is reported.
    let actions = [
        "int80=nr,20,500",
        "int80=open,/etc/localtime",
        "int80=open,/etc/localtime",
        connect.as_str(),
        socketcall.as_str(),
    ];
    let untracked = run(&plain, &actions);
    let pid = run(&agent, &actions);
    let compat = |r: &Value| r["type"] == "compat_syscall" && r["process"]["pid"] == pid;
    let opens = sensor.wait_n(2, "int $0x80 opens", |r| compat(r) && r["syscall"] == "open");
    for r in &opens {
        assert_eq!(r["abi"], "i386");
        assert_eq!(r["number"], 5);
        assert_eq!(r["path"], "/etc/localtime", "{r}");
        assert_eq!(r["resolved_path"], "/etc/localtime");
        assert_eq!(r["categories"], serde_json::json!(["timezone"]));
        assert_eq!(r["reader"], "assistant");
        // The kernel's view: the low 32 bits of the register, not the garbage above them.
        assert!(r["args"][0].as_u64().unwrap() < 1 << 32, "{r}");
    }
    let address = format!("127.0.0.1:{port}");
    let c = sensor.wait_for("int $0x80 connect", |r| compat(r) && r["syscall"] == "connect");
    assert_eq!(c["address"], address.as_str(), "{c}");
    let s = sensor.wait_for("socketcall connect", |r| compat(r) && r["syscall"] == "socketcall");
    assert_eq!((&s["socketcall"], &s["address"]), (&Value::from("connect"), &Value::from(address)), "{s}");
    // The getpid loop: one record, the rest counted.
    let getpids = sensor.records().into_iter().filter(|r| compat(r) && r["number"] == 20).count();
    assert_eq!(getpids, 1);
    let end = deadline(Duration::from_secs(5));
    let repeated = r#"aiwatch_kernel_events_total{outcome="compat_repeated"}"#;
    while sensor.metric(repeated).unwrap_or(0.0) < 499.0 {
        assert!(std::time::Instant::now() < end, "{repeated} = {:?}", sensor.metric(repeated));
        std::thread::sleep(Duration::from_millis(100));
    }
    let leaked: Vec<Value> =
        sensor.records().into_iter().filter(|r| r["process"]["pid"] == untracked).collect();
    assert!(leaked.is_empty(), "untracked process reported: {leaked:?}");
    assert_eq!(
        sensor.metric(&format!(
            r#"aiwatch_compat_syscalls_total{{abi="i386",assistant="{name}",reader="assistant"}}"#
        )),
        Some(5.0)
    );
}
