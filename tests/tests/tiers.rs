//! Tiered findings (issue 15 item 3): the ordinary pattern is none, a signature of the running
//! version is a high one (reloaded on SIGHUP), and the learned baseline flags a category its
//! assistant and version do not read, across a restart. The relay finding is in correlate.rs.
//! Needs root; run through `cargo xtask test`. Each test has assistants of its own: every
//! daemon of this binary follows the agents its config names.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use integration_tests::{net::*, *};
use serde_json::Value;

/// A plain HTTP request naming the Anthropic API, sent to `addr`.
fn api_call(dir: &TempDir, addr: std::net::SocketAddr) -> String {
    let req = dir.path("request.http");
    std::fs::write(
        &req,
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    format!("tcp={addr},@{}", req.display())
}

fn findings(records: &[Value], root: u32) -> Vec<Value> {
    records.iter().filter(|r| r["type"] == "finding" && r["session"]["root_pid"] == root).cloned().collect()
}

/// Waits for the session's end, then returns its findings.
fn findings_at_end(sensor: &Sensor, root: u32) -> Vec<Value> {
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    findings(&sensor.records(), root)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs `agent` with `actions`, given `ANTHROPIC_BASE_URL=url`.
fn run_given(agent: &Path, url: &str, actions: &[&str]) -> u32 {
    let mut cmd = Command::new(agent);
    cmd.args(actions)
        .env("ANTHROPIC_BASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = spawn_cmd(&mut cmd);
    assert!(g.wait(Duration::from_secs(60)).expect("test program finished").success());
    g.pid()
}

/// Two assistants read the timezone and their environment (the zone file, `TZ`, the proxy and
/// locale variables, `/etc/environment`), then call their API, one of them through the gateway
/// it was given: what every assistant does. No finding of any tier; their profiles (the final
/// `session_rollup`) hold what they read and called.
#[test]
fn two_assistants_behaving_normally_yield_profiles_and_no_finding() {
    let config = "[[assistants]]\nname = \"tier-normal-a\"\nexe = [\"aiwatch-tier-na\"]\n\
                  [[assistants]]\nname = \"tier-normal-b\"\nexe = [\"aiwatch-tier-nb\"]\n";
    let (sensor, dir) = (Sensor::start(config), TempDir::new("tier-normal"));
    let api = http_server(None, "127.0.0.1:0");
    let call = api_call(&dir, api.addr);
    let ordinary = [
        "getenv=TZ",
        "openat=/etc/localtime",
        "getenv=HTTPS_PROXY",
        "getenv=LANG",
        "access=/etc/environment",
    ];
    // The ordinary reads, then `last`.
    let then =
        |last: &str| ordinary.iter().map(|s| s.to_string()).chain([last.to_string()]).collect::<Vec<_>>();
    let (to_api, bare) = (then(&call), then(&format!("tcp={}", api.addr)));
    let a = run(&probe_as(&dir, "aiwatch-tier-na"), &strs(&to_api));
    let gateway = format!("http://{}", api.addr);
    let b = run_given(&probe_as(&dir, "aiwatch-tier-nb"), &gateway, &strs(&to_api));
    for (root, class) in [(a, "llm_api"), (b, "llm_api")] {
        let open = sensor
            .wait_for("connection", |r| r["type"] == "connection_open" && r["session"]["root_pid"] == root);
        assert_eq!(open["fingerprint"]["destination_class"], class, "{open}");
        let cats = open["fingerprint"]["categories"].as_array().unwrap().clone();
        assert!(cats.contains(&"timezone".into()) && cats.contains(&"proxy_config".into()), "{open}");
        assert_eq!(findings_at_end(&sensor, root), Vec::<Value>::new(), "session {root}");
        // What they did is in their profile instead: the final rollup names the reads and the API.
        let profile = sensor.wait_for("profile", |r| {
            r["type"] == "session_rollup" && r["final"] == true && r["session"]["root_pid"] == root
        });
        let read = |cat: &str| {
            profile["artifacts"].as_array().unwrap().iter().any(|a| {
                a["categories"].as_array().is_some_and(|c| c.contains(&cat.into()))
                    && a["readers"][0]["reader"] == "assistant"
            })
        };
        assert!(read("timezone") && read("proxy_config"), "{profile}");
        let egress = profile["egress"].as_array().unwrap();
        assert!(egress.iter().any(|e| e["class"] == class && e["connections"] == 1), "{profile}");
    }
    // A bare connection to the gateway it was given (its address, no request): `base_url`, but
    // the session read nothing of the host's identity, so the relay rule has nothing to say.
    let c = run_given(&probe_as(&dir, "aiwatch-tier-nb"), &gateway, &strs(&bare));
    let open =
        sensor.wait_for("connection", |r| r["type"] == "connection_open" && r["session"]["root_pid"] == c);
    assert_eq!(open["fingerprint"]["destination_class"], "base_url", "{open}");
    assert_eq!(findings_at_end(&sensor, c), Vec::<Value>::new());
}

fn signature_file(range: &str) -> String {
    format!(
        "[[signature]]\nid = \"tier-tz-date\"\nassistant = \"tier-sig\"\nversions = \"{range}\"\n\
         description = \"puts the zone into its request dates\"\nwhen.categories = [\"timezone\"]\n\
         when.destinations = [\"llm_api\"]\n"
    )
}

/// An installed copy of the test agent whose package.json says `version`.
fn installed(dir: &TempDir, version: &str) -> std::path::PathBuf {
    std::fs::write(dir.path("package.json"), format!("{{\"name\":\"tier-sig\",\"version\":\"{version}\"}}"))
        .unwrap();
    probe_as(dir, "aiwatch-tier-sig")
}

/// A signature for versions 1.0.30 to 1.0.39 that read the timezone and call the API: a high
/// finding for 1.0.35, none for 1.0.40. A bad file on SIGHUP keeps the signatures in force and
/// is counted; a good one applies.
#[test]
fn a_signature_of_the_running_version_is_a_high_finding_and_reloads_on_sighup() {
    let dir = TempDir::new("tier-sig");
    let sigs = dir.path("signatures.toml");
    std::fs::write(&sigs, signature_file(">=1.0.30, <1.0.40")).unwrap();
    let config = format!(
        "[[assistants]]\nname = \"tier-sig\"\nexe = [\"aiwatch-tier-sig\"]\n[detection]\nstate_dir = \"{}\"\n\
         baseline_learning_sessions = 1000000\nsignatures = \"{}\"\n",
        dir.path("state").display(),
        sigs.display()
    );
    let sensor = Sensor::start(&config);
    let (old_dir, new_dir) = (TempDir::new("tier-sig-1035"), TempDir::new("tier-sig-1040"));
    let (old, new) = (installed(&old_dir, "1.0.35"), installed(&new_dir, "1.0.40"));
    let api = http_server(None, "127.0.0.1:0");
    let call = api_call(&dir, api.addr);
    let session = |agent: &Path| run(agent, &["openat=/etc/localtime", &call]);

    let root = session(&old);
    let f =
        sensor.wait_for("signature finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    assert_eq!(
        (&f["finding"]["rule"], &f["finding"]["severity"]),
        (&"signature".into(), &"high".into()),
        "{f}"
    );
    assert_eq!(f["finding"]["signature"], "tier-tz-date");
    assert_eq!(f["finding"]["assistant_version"], "1.0.35");
    assert_eq!(f["finding"]["description"], "puts the zone into its request dates");
    assert_eq!(findings_at_end(&sensor, session(&new)), Vec::<Value>::new(), "1.0.40 is outside the range");

    // A bad file: logged, counted, the signature in force stays.
    std::fs::write(&sigs, signature_file("~1.0")).unwrap();
    let hup = || unsafe { libc::kill(sensor.pid() as i32, libc::SIGHUP) }; // SAFETY: our child.
    hup();
    let end = deadline(Duration::from_secs(10));
    while !sensor.log().contains("signature file reload failed") {
        assert!(std::time::Instant::now() < end, "no reload error:\n{}", sensor.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sensor.log().contains("signature[0]") && sensor.log().contains("versions"), "{}", sensor.log());
    // The counter follows within a second (the gauges' tick).
    let end = deadline(Duration::from_secs(10));
    while sensor.metric(r#"aiwatch_detection_state_errors_total{file="signatures"}"#) != Some(1.0) {
        assert!(std::time::Instant::now() < end, "reload error not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let root = session(&old);
    sensor.wait_for("finding with the old file", |r| {
        r["type"] == "finding" && r["session"]["root_pid"] == root
    });

    // A good file applies: now 1.0.40 is affected.
    std::fs::write(&sigs, signature_file(">=1.0.40")).unwrap();
    hup();
    let end = deadline(Duration::from_secs(10));
    while !sensor.log().contains("signature file reloaded") {
        assert!(std::time::Instant::now() < end, "no reload:\n{}", sensor.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let root = session(&new);
    let f =
        sensor.wait_for("finding for 1.0.40", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    assert_eq!(f["finding"]["assistant_version"], "1.0.40");
    assert_eq!(findings_at_end(&sensor, session(&old)), Vec::<Value>::new(), "1.0.35 no longer affected");
}

/// Two sessions teach the baseline that this assistant reads the timezone; after a restart
/// (the state file) a session that also reads the machine id is a medium finding naming it,
/// and one that does not is none.
#[test]
fn the_baseline_flags_a_new_category_after_learning_and_survives_a_restart() {
    let dir = TempDir::new("tier-base");
    let config = format!(
        "[[assistants]]\nname = \"tier-base\"\nexe = [\"aiwatch-tier-base\"]\n[detection]\nstate_dir = \"{}\"\n\
         baseline_learning_sessions = 2\n",
        dir.path("state").display()
    );
    let agent = probe_as(&dir, "aiwatch-tier-base");
    let api = http_server(None, "127.0.0.1:0");
    let call = api_call(&dir, api.addr);
    let first = Sensor::start(&config);
    for _ in 0..2 {
        let root = run(&agent, &["openat=/etc/localtime", &call]);
        assert_eq!(findings_at_end(&first, root), Vec::<Value>::new(), "learning");
    }
    first.stop();
    let state = std::fs::read_to_string(dir.path("state/baseline.json")).expect("baseline state file");
    assert!(state.contains("tier-base"), "{state}");

    let second = Sensor::start(&config);
    let usual = run(&agent, &["openat=/etc/localtime", &call]);
    assert_eq!(findings_at_end(&second, usual), Vec::<Value>::new(), "what it usually reads");
    let root = run(&agent, &["openat=/etc/localtime", "openat=/etc/machine-id", &call]);
    let f =
        second.wait_for("baseline finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    assert_eq!(
        (&f["finding"]["rule"], &f["finding"]["severity"]),
        (&"baseline_new_category".into(), &"medium".into())
    );
    assert_eq!(f["finding"]["new_categories"], serde_json::json!(["host_identity"]), "{f}");
    assert_eq!(f["finding"]["evidence"][0]["artifact"], "/etc/machine-id");
}
