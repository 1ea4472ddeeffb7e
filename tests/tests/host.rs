//! Host identity asked for without a file, and local sockets (issue 14, item 14): `uname(2)`
//! (Node's `os.hostname()`), `SIOCETHTOOL`, and `AF_UNIX` connects with their path, reported
//! for tracked processes only. Needs root; run through `cargo xtask test`.

use std::{os::linux::net::SocketAddrExt, os::unix::net::UnixListener, time::Duration};

use integration_tests::*;
use serde_json::Value;

fn of(r: &Value, kind: &str, pid: u32) -> bool {
    r["type"] == kind && r["process"]["pid"] == pid
}

/// Nothing of `kind` from `pid` (an untracked process), once the tracked one's record is in.
fn nothing_from(sensor: &Sensor, kind: &str, pid: u32) {
    std::thread::sleep(Duration::from_millis(300));
    let leaked: Vec<Value> = sensor.records().into_iter().filter(|r| of(r, kind, pid)).collect();
    assert!(leaked.is_empty(), "untracked process reported: {leaked:?}");
}

#[test]
fn uname_of_a_tracked_process_is_a_host_identity_read() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("uname"));
    let plain = run(&probe_as(&dir, "plain-program"), &["uname=x"]);
    let root = run(&probe_as(&dir, AGENT), &["uname=x"]);
    let r = sensor.wait_for("the uname record", |r| of(r, "host_query", root));
    assert_eq!(r["request"], "uname", "{r}");
    assert_eq!(r["category"], "host_identity", "{r}");
    assert_eq!(r["session"]["root_pid"], root);
    nothing_from(&sensor, "host_query", plain);
}

#[test]
fn siocethtool_is_an_interface_query_that_can_return_the_mac() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("ethtool"));
    let root = run(&probe_as(&dir, AGENT), &["ethtool=lo"]);
    let r = sensor.wait_for("the SIOCETHTOOL record", |r| {
        of(r, "interface_query", root) && r["request"] == "SIOCETHTOOL"
    });
    assert_eq!(r["method"], "ioctl", "{r}");
    assert_eq!(r["interface"], "lo", "{r}");
    assert_eq!(r["categories"], serde_json::json!(["network_config", "host_identity"]), "{r}");
}

#[test]
fn unix_connects_of_a_tracked_process_are_reported_with_their_path() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("unix"));
    let path = dir.path("proxy.sock");
    let _listener = UnixListener::bind(&path).expect("bind a unix socket");
    let name = format!("aiwatch-test-{}", std::process::id());
    let abstract_addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _abstract = UnixListener::bind_addr(&abstract_addr).expect("bind an abstract socket");
    let missing = dir.path("missing.sock");
    let actions = [
        format!("unix_connect={}", path.display()),
        format!("unix_connect=@{name}"),
        format!("unix_connect={}", missing.display()),
    ];
    let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
    let plain = run(&probe_as(&dir, "plain-program"), &actions);
    let root = run(&probe_as(&dir, AGENT), &actions);
    let records = sensor.wait_n(3, "the unix connects", |r| of(r, "unix_connect", root));
    let by_path = |p: &str| records.iter().find(|r| r["path"] == p);
    let file = by_path(&path.display().to_string()).unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(file["result"], 0, "{file}");
    let abs = by_path(&format!("@{name}")).unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(abs["result"], 0, "{abs}");
    let failed = by_path(&missing.display().to_string()).unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(failed["result"], -i64::from(libc::ENOENT), "{failed}");
    nothing_from(&sensor, "unix_connect", plain);
}
