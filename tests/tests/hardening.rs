//! Hardening against the watched: evasion, secrets, forged output. (The daemon's own
//! robustness is in `daemon.rs`.) Needs root; run through `cargo xtask test`.

use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use integration_tests::*;
use serde_json::Value;

fn read_by<'a>(pid: u32, path: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |r| r["type"] == "fingerprint_read" && r["process"]["pid"] == pid && r["resolved_path"] == path
}

fn in_session<'a>(root: u32, path: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |r| r["type"] == "fingerprint_read" && r["session"]["root_pid"] == root && r["resolved_path"] == path
}

// ---- Evasion -------------------------------------------------------------------------------

#[test]
fn renaming_the_process_after_exec_changes_nothing() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("comm"));
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &["comm=bash", "openat=/etc/localtime"]);
    let r = sensor.wait_for("read after rename", read_by(root, "/etc/localtime"));
    assert_eq!(r["process"]["comm"], "bash");
    assert_eq!(r["reader"], "assistant");
    assert_eq!(r["session"]["assistant"], "test-agent");
}

#[test]
fn started_through_a_symlink() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("start"));
    let plain = probe_as(&dir, "plain-program");
    // A symlink named like the assistant to a file named otherwise.
    let link = dir.path(AGENT);
    std::os::unix::fs::symlink(&plain, &link).unwrap();
    let root = run(&link, &["openat=/etc/hostname"]);
    let r = sensor.wait_for("symlink start", read_by(root, "/etc/hostname"));
    assert_eq!(r["reader"], "assistant");
}

#[test]
fn started_as_a_shebang_script_through_env() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("shebang"));
    let agent = probe_as(&dir, AGENT);
    // An innocently named script whose interpreter is the assistant, found through env(1).
    let script = dir.path("build-helper.sh");
    std::fs::write(&script, format!("#!/usr/bin/env -S {} openat=/etc/localtime\n", agent.display()))
        .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = run(&script, &[]);
    let r = sensor.wait_for("read by the script's interpreter", read_by(root, "/etc/localtime"));
    assert_eq!(r["session"]["assistant"], "test-agent");
    assert_eq!(r["reader"], "assistant");
}

#[test]
fn memfd_exec_keeps_the_assistant_name_in_argv0() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("memfd"));
    let agent = probe_as(&dir, AGENT);
    // The agent re-executes itself from a memfd (argv[0] = its own path).
    let root = run(&agent, &["memfd=openat=/etc/timezone"]);
    let r = sensor.wait_for("read by the memfd image", in_session(root, "/etc/timezone"));
    // /memfd:… while it runs; the kernel's name once it is gone: /dev/fd/N after fexecve,
    // /proc/self/fd/N where fsprobe had to exec that path (see its memfd action).
    let exe = r["process"]["exe"].as_str().unwrap();
    let names = ["/memfd:", "/dev/fd/", "/proc/self/fd/"];
    assert!(names.iter().any(|n| exe.starts_with(n)), "{r}");
    assert_eq!(r["session"]["assistant"], "test-agent");
}

#[test]
fn threads_forks_vforks_daemons_and_shells_are_attributed() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("children"));
    let agent = probe_as(&dir, AGENT);
    let (daemon_pid, daemon_parent) = (dir.path("daemon.pid"), dir.path("daemon.ppid"));
    let daemon = format!(
        "daemon=pid={}|ppid={}|openat=/etc/resolv.conf",
        daemon_pid.display(),
        daemon_parent.display()
    );
    let root = run(
        &agent,
        &[
            "thread=openat=/etc/localtime",
            "vfork=/etc/hostname",
            &daemon,
            "child=openat2=/etc/machine-id",
            "sh=cat /etc/timezone > /dev/null",
        ],
    );
    let t = sensor.wait_for("thread read", read_by(root, "/etc/localtime"));
    assert_ne!(t["process"]["tid"], t["process"]["pid"], "read from a non-main thread");
    assert_eq!(t["reader"], "assistant");
    for path in ["/etc/hostname", "/etc/resolv.conf", "/etc/machine-id", "/etc/timezone"] {
        let r = sensor.wait_for(path, in_session(root, path));
        assert_eq!(r["reader"], "descendant", "{r}");
    }
    // The double-forked daemon was re-parented away from the session and still belongs to it.
    let d = sensor.wait_for("daemon", in_session(root, "/etc/resolv.conf"));
    let read_id = |p: &std::path::Path| -> u32 {
        let end = deadline(Duration::from_secs(5));
        loop {
            if let Some(id) = std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok()) {
                return id;
            }
            assert!(Instant::now() < end, "{} not written", p.display());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let (pid, parent_at_read) = (read_id(&daemon_pid), read_id(&daemon_parent));
    assert_eq!(d["process"]["pid"], pid, "{d}");
    // Its parent when it read was outside the session (init or a subreaper), not the middle
    // process the record names as the parent it was forked from.
    assert_ne!(parent_at_read, root);
    assert_ne!(d["process"]["ppid"], root, "{d}");
    assert_ne!(d["process"]["ppid"], parent_at_read, "{d}");
}

#[test]
fn openat2_resolve_flags_are_reported() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("openat2"));
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &["openat2=/etc/localtime"]);
    let r = sensor.wait_for("openat2", read_by(root, "/etc/localtime"));
    assert_eq!(r["syscall"], "openat2");
    assert_eq!(r["resolve_flags"], 2, "RESOLVE_NO_MAGICLINKS");
}

// ---- Secrets and least privilege ---------------------------------------------------------

#[test]
fn secrets_in_argv_never_leave_the_host() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("argv"));
    let agent = probe_as(&dir, AGENT);
    let secret = "sk-ant-api03-Zq8vN2xLkP4rT6wY9bC1dF3gH5jK7mQ0";
    let bearer = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.abcdefghijklmnop";
    let root = run(
        &agent,
        &["openat=/etc/localtime", "--api-key", secret, &format!("Authorization: Bearer {bearer}")],
    );
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    let start =
        sensor.wait_for("start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == root);
    let argv: Vec<&str> =
        start["process"]["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(argv[2..], ["--api-key", "[REDACTED]", "Authorization: [REDACTED]"]);
    let records: String = sensor.records().iter().map(|r| r.to_string()).collect();
    let metrics = sensor.scrape();
    let log = sensor.stop();
    for (what, text) in [("records", records), ("metrics", metrics), ("log", log)] {
        assert!(
            !text.contains("Zq8vN2xLkP4rT6wY9bC1dF3gH5jK7mQ0") && !text.contains("c2VjcmV0LXRva2Vu"),
            "secret in {what}"
        );
    }
}

#[test]
fn secrets_with_slashes_in_shell_strings_fragments_paths_and_cut_urls_never_leave_the_host() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("argv2"));
    let agent = probe_as(&dir, AGENT);
    // Each planted secret, and the part of it that must appear nowhere.
    let long_password = "Q7".repeat(150);
    let cut = format!("http://bob:{long_password}@proxy.example:3128");
    let planted: [(&str, &str); 7] = [
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "K7MDENG"),
        (
            "sh=: curl -u alice:Pw0rdInSh -H 'Authorization: Bearer TokInSh123' https://h.example/",
            "Pw0rdInSh",
        ),
        (
            "sh=: curl -u alice:Pw0rdInSh -H 'Authorization: Bearer TokInSh123' https://h.example/",
            "TokInSh123",
        ),
        ("https://app.example/callback#access_token=FragTok987", "FragTok987"),
        (
            "https://hooks.slack.com/services/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",
            "Xk9pQ2rT7vW3yZ1aB4cD6eF8",
        ),
        (&cut, "Q7Q7Q7"),
        ("http://carol:pQ7/zzSecret@proxy.example:3128/", "zzSecret"),
    ];
    let mut args = vec!["openat=/etc/localtime", "aws", "configure", "set", "aws_secret_access_key"];
    for (arg, _) in planted {
        if !args.contains(&arg) {
            args.push(arg);
        }
    }
    let root = run(&agent, &args);
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    let start =
        sensor.wait_for("start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == root);
    // The arguments were reported (scrubbed), not dropped.
    let argv = start["process"]["argv"].as_array().unwrap();
    assert_eq!(argv.len(), args.len() + 1, "{start}");
    assert!(
        argv.iter().any(|a| a == "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/[REDACTED]"),
        "{start}"
    );
    let shell = sensor.wait_for("the shell's exec", |r| {
        r["type"] == "process_exec"
            && r["session"]["root_pid"] == root
            && r["process"]["argv"][0] == "/bin/sh"
    });
    assert!(shell["process"]["argv"][2].as_str().unwrap().starts_with(": curl -u [REDACTED]"), "{shell}");
    let records: String = sensor.records().iter().map(|r| r.to_string()).collect();
    let metrics = sensor.scrape();
    let log = sensor.stop();
    for (what, text) in [("records", records), ("metrics", metrics), ("log", log)] {
        for (_, secret) in planted {
            assert!(!text.contains(secret), "{secret} in {what}");
        }
    }
}

#[test]
fn process_names_arguments_and_paths_cannot_forge_human_output_lines() {
    let dir = TempDir::new("escape");
    let out = dir.path("human.log");
    let sensor = Sensor::start_with(AGENT_CONFIG, &["--format", "human", "--output", out.to_str().unwrap()]);
    let agent = probe_as(&dir, AGENT);
    // A name that clears the screen and starts a line, an argument that retitles the terminal.
    let root = run(
        &agent,
        &[
            "\x1b]0;owned\x07\nFAKE session start",
            "child=comm=\x1b[2J\nFAKE;openat=/etc/hosts",
            "openat=/etc/localtime",
        ],
    );
    let end = deadline(Duration::from_secs(15));
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().any(|l| l.contains("/etc/hosts") && l.contains(&format!("[{root}]"))) {
            break text;
        }
        assert!(Instant::now() < end, "no human line for the child's read:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = sensor.stop();
    assert!(!text.contains('\x1b') && !log.contains('\x1b'), "{text:?}\n{log:?}");
    assert!(text.lines().all(|l| !l.starts_with("FAKE")), "{text}");
    assert!(text.contains("\\u{1b}[2J\\u{a}FAKE"), "{text}");
    assert!(text.contains("\\u{1b}]0;owned\\u{7}\\u{a}FAKE session start"), "{text}");
}
