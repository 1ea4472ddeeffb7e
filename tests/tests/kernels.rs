//! What differs between kernels: `aiwatch check` and `aiwatch run` agree on what loads and
//! attaches, and thread-group exit is exact on every exit path the loader can choose.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_tests::*;
use serde_json::Value;

fn check_json(env: &[(&str, &str)]) -> (bool, Value) {
    let out = Command::new(aiwatch_bin())
        .args(["check", "--json"])
        .envs(env.iter().copied())
        .output()
        .expect("run aiwatch check");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("check --json is not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.success(), report["ready"] == true, "exit status and `ready` disagree");
    (out.status.success(), report)
}

/// (program, hook) pairs check attached, without the check-only ones `run` never attaches.
fn attached_by_check(report: &Value) -> BTreeSet<(String, String)> {
    report["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .filter(|p| p["ok"] == true && p["usage"] != "check-only")
        .map(|p| (p["program"].as_str().unwrap().to_string(), p["hook"].as_str().unwrap().to_string()))
        .collect()
}

/// (program, hook) pairs the running daemon reports attached in `aiwatch_probe_attached`.
fn attached_by_run(sensor: &Sensor) -> BTreeSet<(String, String)> {
    sensor
        .scrape()
        .lines()
        .filter_map(|l| l.strip_prefix("aiwatch_probe_attached{"))
        .filter(|l| l.ends_with("} 1"))
        .map(|l| {
            let label = |name: &str| {
                let start = l.find(&format!("{name}=\"")).expect("label") + name.len() + 2;
                l[start..start + l[start..].find('"').expect("end of label")].to_string()
            };
            (label("program"), label("hook"))
        })
        .collect()
}

/// The exit program the daemon logged it uses.
fn exit_program_of_run(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("kernel-dependent path") && l.contains("thread-group exit"))
        .unwrap_or_else(|| panic!("no exit path in the log:\n{log}"));
    let at = line.find("program=").expect("program field") + "program=".len();
    line[at..].split_whitespace().next().unwrap().to_string()
}

fn exit_program_of_check(report: &Value) -> String {
    let job = report["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .find(|p| p["job"] == "thread-group exit")
        .expect("thread-group exit path");
    job["program"].as_str().expect("a program does the job").to_string()
}

#[test]
fn check_and_run_attach_the_same_programs_and_choose_the_same_paths() {
    let (ready, report) = check_json(&[]);
    assert!(ready, "check says this kernel cannot run the sensor:\n{report:#}");
    let sensor = Sensor::start(AGENT_CONFIG);
    // Gauges are set once every probe has been tried, before "watching".
    let by_run = attached_by_run(&sensor);
    let by_check = attached_by_check(&report);
    // Uprobe hooks name the trace event, which carries the daemon's pid: compare programs only.
    let tp = |s: &BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        s.iter().filter(|(_, h)| h.starts_with("tracepoint/")).cloned().collect()
    };
    assert_eq!(tp(&by_check), tp(&by_run), "check and run attach different tracepoints");
    let progs =
        |s: &BTreeSet<(String, String)>| -> BTreeSet<String> { s.iter().map(|(p, _)| p.clone()).collect() };
    assert_eq!(progs(&by_check), progs(&by_run), "check and run attach different programs");
    assert!(by_run.iter().any(|(p, _)| p == "env_enter_getenv"), "getenv probes not attached: {by_run:?}");
    assert_eq!(exit_program_of_check(&report), exit_program_of_run(&sensor.log()));
    sensor.stop();
}

#[test]
fn check_and_run_both_refuse_when_a_required_program_cannot_attach() {
    let env = [("AIWATCH_FAIL_ATTACH", "files_exit_syscall")];
    let (ready, report) = check_json(&env);
    assert!(!ready, "check is ready although a required program failed:\n{report:#}");
    let dir = TempDir::new("refuse");
    let cfg = dir.path("config.toml");
    std::fs::write(&cfg, AGENT_CONFIG).unwrap();
    let mut run = spawn_cmd(
        Command::new(aiwatch_bin())
            .args(["run", "--no-metrics", "--format", "none", "--config"])
            .arg(&cfg)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let status = run.wait(Duration::from_secs(60)).expect("run refuses and exits");
    assert!(!status.success(), "run started although check said not ready");
}

/// Waits until `pid`'s leader thread is a zombie while the process lives on.
fn wait_zombie_leader(pid: u32) {
    let end = deadline(Duration::from_secs(15));
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()).unwrap_or_default();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
        if state == Some('Z') && threads >= 1 {
            return;
        }
        assert!(Instant::now() < end, "leader of {pid} did not exit alone (state {state:?})");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The leader thread exits first: the process stays tracked (a later read by its other thread
/// is reported in its session, which does not end), and it ends when the last thread exits.
fn zombie_leader(env: &[(&str, &str)]) {
    let sensor = Sensor::start_env(AGENT_CONFIG, &[], &aiwatch_bin(), &[], env);
    let dir = TempDir::new("zombie");
    let agent = probe_as(&dir, AGENT);
    let (go, end) = (dir.path("go"), dir.path("end"));
    let actions = format!(
        "leader_exit=waitfile={}|openat=/etc/hosts|waitfile={}|openat=/etc/machine-id",
        go.display(),
        end.display()
    );
    let mut g = spawn(&agent, &[actions.as_str()]);
    let pid = g.pid();
    wait_zombie_leader(pid);
    // Time for an exit the kernel wrongly sent at the leader's exit to reach the records.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, "").unwrap();
    let hosts = sensor.wait_for("read after the leader exited", read_of(pid, "/etc/hosts"));
    assert_eq!(hosts["session"]["root_pid"], pid);
    assert_eq!(hosts["reader"], "assistant");
    let ended = |r: &Value| r["type"] == "session_end" && r["session"]["root_pid"] == pid;
    assert!(!sensor.records().iter().any(ended), "session ended when only the leader had exited");
    std::fs::write(&end, "").unwrap();
    let status = g.wait(Duration::from_secs(30)).expect("process ends");
    assert!(status.success(), "{status}");
    sensor.wait_for("last read", read_of(pid, "/etc/machine-id"));
    sensor.wait_for("session end at the last thread's exit", ended);
    sensor.stop();
}

#[test]
fn zombie_leader_keeps_tracking_until_the_last_thread_exits() {
    zombie_leader(&[]);
}

/// The live-thread-count path (kernels before 6.16), forced on kernels that have `group_dead`:
/// the loader passes over a job's program that cannot attach.
#[test]
fn zombie_leader_on_the_live_thread_count_path() {
    let env = [("AIWATCH_FAIL_ATTACH", "process_enter_sched_exit")];
    let (ready, report) = check_json(&env);
    assert!(ready, "{report:#}");
    assert_eq!(exit_program_of_check(&report), "process_enter_sched_exit_live");
    zombie_leader(&env);
}
