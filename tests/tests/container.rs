//! The container image, run the way the DaemonSet runs it (its arguments, the host's PID
//! namespace, its capabilities and no others, its host mounts, not privileged, read-only root):
//! it must see a host process's file reads with paths as the host sees them, its getenv calls
//! through the host's libc, and its egress. Needs root, podman and debootstrap (test packages);
//! the image is built by `cargo xtask image` (root filesystem and layers cached).

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::{kube::daemonset, net::sink_server, *};

const IMAGE: &str = "localhost/aiwatch:test";

/// The image with the binary under test (debootstrap's root filesystem, the imported base and
/// podman's layers are cached: only a changed binary makes a new layer).
fn build_image() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO"))
        .args(["xtask", "image", "--tag", IMAGE, "--binary"])
        .arg(aiwatch_bin().canonicalize().expect("the aiwatch binary"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo xtask image");
    assert!(out.status.success(), "cargo xtask image: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("image ready in {:.1} s", started.elapsed().as_secs_f64());
}

/// The container podman started, removed by ID when dropped (the test failed or not).
struct Container(PathBuf);

impl Drop for Container {
    fn drop(&mut self) {
        if let Ok(id) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("podman").args(["rm", "--force", "--time", "2", id.trim()]).output();
        }
    }
}

/// `podman run` with what the DaemonSet declares; the config map's file at `etc`, the endpoint on
/// `addr` (the pod IP's stand-in: the container shares the host's network only so the test can
/// read the metrics; the sensor's probes do not depend on it).
fn podman_run(cidfile: &std::path::Path, etc: &std::path::Path, addr: &str) -> Command {
    let ds = daemonset();
    assert!(ds.host_pid && !ds.privileged);
    let mut cmd = Command::new("podman");
    cmd.args(["run", "--rm", "--cidfile"]).arg(cidfile);
    // This machine's quirks, not the DaemonSet's: crun refuses hybrid cgroups (runc does not),
    // and without CAP_SYS_RESOURCE podman's default open-files limit (above ours) cannot be set:
    // ours is kept, and podman's lower process limit.
    cmd.args(["--runtime", "runc", "--ulimit=nproc=32768:32768"]);
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0 && l.rlim_max != libc::RLIM_INFINITY {
        cmd.arg(format!("--ulimit=nofile={}:{}", l.rlim_cur, l.rlim_max));
    }
    cmd.args(["--pid=host", "--network=host", "--user=0", "--read-only", "--cap-drop=all"]);
    cmd.args(["--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges"]);
    for cap in &ds.caps {
        cmd.arg(format!("--cap-add=CAP_{cap}"));
    }
    for (host, at, ro) in &ds.host_mounts {
        // The learned baseline's state directory is the test's own, not this host's.
        let host = if host == "/var/lib/aiwatch" {
            let state = etc.with_file_name("state");
            std::fs::create_dir_all(&state).expect("state dir");
            state.display().to_string()
        } else {
            host.clone()
        };
        cmd.arg("-v").arg(format!("{host}:{at}{}", if *ro { ":ro" } else { "" }));
    }
    cmd.arg("-v").arg(format!("{}:/etc/aiwatch:ro", etc.display()));
    cmd.arg(IMAGE);
    for a in &ds.args {
        cmd.arg(a.replace("$(POD_IP):9464", addr));
    }
    cmd.args(["--format", "json"]);
    cmd
}

/// The DaemonSet mounts the host's tracefs and cannot mount one itself (no `CAP_SYS_ADMIN`): on
/// a node it is mounted by systemd; a fresh machine here has it unmounted.
fn host_tracefs() {
    if !std::path::Path::new("/sys/kernel/tracing/uprobe_events").exists() {
        let ok = Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]).status();
        assert!(ok.is_ok_and(|s| s.success()), "cannot mount tracefs");
    }
}

#[test]
fn image_run_as_the_daemonset_sees_host_processes() {
    host_tracefs();
    build_image();
    let dir = TempDir::new("container");
    let etc = dir.path("etc");
    std::fs::create_dir_all(&etc).unwrap();
    // The ConfigMap's setting that makes paths resolve in each process's root, and the test's agent.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml");
    let shipped = std::fs::read_to_string(file).expect("daemonset.yaml");
    assert!(
        shipped.contains("    [sensor]\n") && shipped.contains("    process_roots = true\n"),
        "the ConfigMap's [sensor]"
    );
    std::fs::write(etc.join("config.toml"), format!("[sensor]\nprocess_roots = true\n{AGENT_CONFIG}"))
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cidfile = dir.path("cid");
    let _container = Container(cidfile.clone());
    let sensor =
        Sensor::launch(podman_run(&cidfile, &etc, &addr), addr.parse().unwrap(), TempDir::new("ctr"));

    // Host-only paths: a symlink to a zone file and a symlinked directory, in the host's /tmp
    // (not in the image), both with absolute targets that must be followed in the host's root.
    let (zone, zi) = (dir.path("localtime"), dir.path("zi"));
    std::os::unix::fs::symlink("/usr/share/zoneinfo/Europe/Paris", &zone).unwrap();
    std::os::unix::fs::symlink("/usr/share/zoneinfo", &zi).unwrap();
    let server = sink_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let gate = dir.path("go");
    let zi_tokyo = format!("{}/Asia/Tokyo", zi.display());
    let mut g = spawn_cmd(
        Command::new(&agent)
            .args([
                format!("waitfile={}", gate.display()),
                format!("openat={}", zone.display()),
                format!("openat={zi_tokyo}"),
                "getenv=TZ".to_string(),
                format!("tcp={},hello", server.addr),
            ])
            .env("TZ", "Europe/Paris"),
    );
    let root = g.pid();
    sensor.wait_for("session start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == root);
    wait_getenv_attached(&sensor);
    std::fs::write(&gate, "").unwrap();
    assert!(g.wait(Duration::from_secs(30)).is_some_and(|s| s.success()), "the agent failed");

    let read = sensor.wait_for("the zone link", |r| {
        r["type"] == "fingerprint_read" && r["process"]["pid"] == root && r["path"] == zone.to_str().unwrap()
    });
    assert_eq!(read["category"], "timezone", "{read}");
    assert_eq!(read["target_path"], "/usr/share/zoneinfo/Europe/Paris", "{read}");
    let read = sensor.wait_for("the zone through a symlinked directory", |r| {
        r["type"] == "fingerprint_read" && r["process"]["pid"] == root && r["path"] == zi_tokyo.as_str()
    });
    assert_eq!(read["resolved_path"], "/usr/share/zoneinfo/Asia/Tokyo", "{read}");
    let env = sensor.wait_for("getenv TZ through the host's libc", |r| {
        r["type"] == "env_read" && r["process"]["pid"] == root && r["variable"] == "TZ"
    });
    assert_eq!(env["set"], true, "{env}");
    let open = sensor.wait_for("the connection", |r| {
        r["type"] == "connection_open"
            && r["session"]["root_pid"] == root
            && r["connection"]["remote_port"] == server.addr.port()
    });
    assert_eq!(open["connection"]["remote_addr"], "127.0.0.1", "{open}");
    let log = sensor.stop();
    assert!(!log.contains("cannot probe a session's libc"), "{log}");
}

/// The probes of every session started so far are attached (as in env.rs): the agent's getenv
/// runs after its perf events exist.
fn wait_getenv_attached(sensor: &Sensor) {
    let end = deadline(Duration::from_secs(30));
    loop {
        let text = sensor.scrape();
        let m = observe::parse_metrics(&text);
        let sum = |name: &str| -> f64 {
            m.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(_, v)| v).sum()
        };
        let attached = sum("aiwatch_getenv_attach_seconds_count") + sum("aiwatch_getenv_attach_errors_total");
        if attached >= sum("aiwatch_sessions_started_total") && attached > 0.0 {
            return;
        }
        assert!(Instant::now() < end, "getenv probes not attached:\n{text}\n{}", sensor.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
