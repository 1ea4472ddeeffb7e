//! The syslog output against a real rsyslog (issue 15, item 6): native and OCSF records over
//! TCP, UDP and TLS arrive parsed as RFC 5424 (app-name, msgid, severity, the JSON record as the
//! message, equal to what the daemon wrote on stdout), and a receiver restarted while records
//! are produced loses none silently. Needs root and rsyslog (`rsyslog`, `rsyslog-gnutls`); run
//! through `cargo xtask test`.

use std::{
    collections::HashSet,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use integration_tests::{net::http_server, *};
use serde_json::Value;

/// One message as rsyslog parsed it (the template in [`Rsyslog::config`]).
#[derive(Debug)]
struct Received {
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    severity: u8,
    facility: u8,
    version: String,
    msg: Value,
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Tcp,
    Udp,
    Tls,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Tls => "tls",
        }
    }
}

/// An rsyslogd in the foreground with its own config, work directory and pid file, writing
/// what it receives to `out.log`. Stopped by PID on drop.
struct Rsyslog {
    proc: Option<Guard>,
    dir: TempDir,
    port: u16,
    transport: Transport,
}

impl Rsyslog {
    fn start(transport: Transport, port: u16) -> Self {
        let dir = TempDir::new("rsyslog");
        std::fs::create_dir_all(dir.path("work")).expect("work dir");
        if transport == Transport::Tls {
            write_certs(&dir);
        }
        std::fs::write(dir.path("rsyslog.conf"), Self::config(&dir, transport, port)).expect("rsyslog.conf");
        let mut r = Self { proc: None, dir, port, transport };
        r.run();
        r
    }

    fn config(dir: &TempDir, transport: Transport, port: u16) -> String {
        let d = |n: &str| dir.path(n).display().to_string();
        let tls_global = format!(
            " defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
            d("ca.pem"),
            d("server.pem"),
            d("server.key")
        );
        let (global, input) = match transport {
            Transport::Tcp => (String::new(), format!("module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")")),
            Transport::Udp => (String::new(), format!("module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")")),
            Transport::Tls => (
                tls_global,
                format!(
                    "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")"
                ),
            ),
        };
        format!(
            r#"global(workDirectory="{work}" maxMessageSize="256k"{global})
{input}
template(name="fields" type="list") {{
  property(name="hostname") constant(value="\t")
  property(name="app-name") constant(value="\t")
  property(name="procid") constant(value="\t")
  property(name="msgid") constant(value="\t")
  property(name="syslogseverity") constant(value="\t")
  property(name="syslogfacility") constant(value="\t")
  property(name="protocol-version") constant(value="\t")
  property(name="msg") constant(value="\n")
}}
if $inputname == "imtcp" or $inputname == "imudp" then {{
  action(type="omfile" file="{out}" template="fields")
}}
"#,
            work = d("work"),
            out = d("out.log"),
        )
    }

    /// Starts rsyslogd and waits until it listens.
    fn run(&mut self) {
        let _ = std::fs::remove_file(self.dir.path("rsyslogd.pid"));
        let child = spawn_cmd(
            Command::new("rsyslogd")
                .arg("-n")
                .arg("-f")
                .arg(self.dir.path("rsyslog.conf"))
                .arg("-i")
                .arg(self.dir.path("rsyslogd.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.path("stderr")).expect("stderr file")),
        );
        self.proc = Some(child);
        let end = deadline(Duration::from_secs(15));
        while !listening(self.transport != Transport::Udp, self.port) {
            let exited = self.proc.as_mut().and_then(|g| g.0.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < end,
                "rsyslogd did not start ({exited:?}):\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `signal` by PID, and wait for the exit.
    fn stop(&mut self, signal: i32) {
        let mut g = self.proc.take().expect("rsyslogd running");
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(g.pid() as i32, signal) };
        assert!(g.wait(Duration::from_secs(10)).is_some(), "rsyslogd did not stop");
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path("stderr")).unwrap_or_default()
    }

    fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.dir.path("out.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(8, '\t').collect();
                assert_eq!(f.len(), 8, "rsyslog line: {l}");
                Received {
                    hostname: f[0].into(),
                    app_name: f[1].into(),
                    procid: f[2].into(),
                    msgid: f[3].into(),
                    severity: f[4].parse().expect("severity"),
                    facility: f[5].parse().expect("facility"),
                    version: f[6].into(),
                    msg: serde_json::from_str(f[7])
                        .unwrap_or_else(|e| panic!("message is not JSON ({e}): {l}")),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived (panics after 20 s).
    fn wait_n(&self, n: usize) -> Vec<Received> {
        let end = deadline(Duration::from_secs(20));
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < end,
                "rsyslog received {} of {n} messages:\n{}",
                got.len(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(g) = self.proc.take() {
            // SAFETY: signalling our own child by PID; the Guard reaps (or kills) it.
            unsafe { libc::kill(g.pid() as i32, libc::SIGTERM) };
            let mut g = g;
            g.wait(Duration::from_secs(5));
        }
    }
}

/// Whether something listens on 127.0.0.1:`port` (TCP) or has it bound (UDP).
fn listening(tcp: bool, port: u16) -> bool {
    let table =
        std::fs::read_to_string(if tcp { "/proc/net/tcp" } else { "/proc/net/udp" }).unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&local.as_str()) && (!tcp || f.get(3) == Some(&"0A"))
    })
}

/// A throwaway CA, and a certificate for `localhost` it signed, for rsyslog's gtls driver.
fn write_certs(dir: &TempDir) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "aiwatch test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    server.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = server.signed_by(&key, &Issuer::from_params(&ca, &ca_key)).expect("server certificate");
    std::fs::write(dir.path("ca.pem"), ca_cert.pem()).expect("ca.pem");
    std::fs::write(dir.path("server.pem"), cert.pem()).expect("server.pem");
    std::fs::write(dir.path("server.key"), key.serialize_pem()).expect("server.key");
}

/// A finding rule of the test's own (the built-in one needs a relay): the workload's timezone
/// read, then the API, is a high finding.
const RULE: &str = "[[rules]]\nname = \"syslog_tz_then_api\"\nseverity = \"high\"\n\
    descendant_severity = \"high\"\ngroups = [[\"timezone\"]]\nmin_groups = 1\n\
    destinations = [\"llm_api\"]\nwindow_seconds = 60\n";

/// The daemon's config: the test agent, a finding rule, and the syslog output to `rsyslog` in
/// `format`.
fn config(rsyslog: &Rsyslog, format: &str, extra: &str) -> String {
    let tls = match rsyslog.transport {
        Transport::Tls => {
            format!("ca_file = \"{}\"\nserver_name = \"localhost\"\n", rsyslog.dir.path("ca.pem").display())
        }
        _ => String::new(),
    };
    format!(
        "{AGENT_CONFIG}{RULE}\n[output.syslog]\naddress = \"127.0.0.1:{}\"\ntransport = \"{}\"\nformat = \"{format}\"\n{tls}{extra}",
        rsyslog.port,
        rsyslog.transport.name()
    )
}

/// Fingerprint reads then an API call: a session with reads, connections and a finding.
fn workload(dir: &TempDir, api: std::net::SocketAddr) -> u32 {
    let req = dir.path("request.http");
    std::fs::write(
        &req,
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .expect("request");
    let agent = probe_as(dir, AGENT);
    run(
        &agent,
        &["openat=/etc/localtime", "access=/etc/environment", &format!("tcp={api},@{}", req.display())],
    )
}

/// Native kinds of OCSF records, for their MSGID: kept under `unmapped`, or by class.
fn ocsf_kind(r: &Value) -> Option<&str> {
    if let Some(t) = r["unmapped"]["aiwatch"]["type"].as_str() {
        return Some(t);
    }
    Some(match (r["class_uid"].as_u64()?, r["activity_id"].as_u64()?) {
        (2004, _) => "finding",
        (1001, _) => "fingerprint_read",
        (4003, _) => "dns_lookup",
        (4001, 1) => "connection_open",
        (4001, 2) => "connection_close",
        _ => return None,
    })
}

/// Every record the daemon wrote on stdout arrived, in order, parsed as RFC 5424.
fn check_delivery(transport: Transport, format: &str) {
    let rsyslog = Rsyslog::start(transport, free_port());
    let schema = if format == "ocsf" { "ocsf" } else { "native" };
    let sensor = Sensor::start_with(&config(&rsyslog, format, ""), &["--schema", schema]);
    let dir = TempDir::new("syslog");
    let api = http_server(None, "127.0.0.1:0");
    let root = workload(&dir, api.addr);
    let ended = |r: &Value| match format {
        "ocsf" => r["class_uid"] == 1007 && r["activity_id"] == 2 && r["process"]["pid"] == root,
        _ => r["type"] == "session_end" && r["session"]["root_pid"] == root,
    };
    sensor.wait_for("the session's end", ended);
    sensor.wait_n(1, "a finding", |r| r["type"] == "finding" || r["class_uid"] == 2004);
    let records = sensor.records();
    let got = rsyslog.wait_n(records.len());
    let log = sensor.stop();

    // Records after the snapshot (none expected) would only add messages at the end.
    assert!(got.len() >= records.len(), "one message per record");
    let host = records[0]["host"].clone();
    for (rec, m) in records.iter().zip(&got) {
        assert_eq!(&m.msg, rec, "the message is the record as the JSON sink wrote it");
        assert_eq!((m.app_name.as_str(), m.version.as_str(), m.facility), ("aiwatch", "1", 16), "{m:?}");
        assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
        let finding = m.msgid == "finding";
        assert_eq!(
            m.severity,
            if finding { 3 } else { 6 },
            "high finding = error, others informational: {m:?}"
        );
        match format {
            "ocsf" => {
                if let Some(kind) = ocsf_kind(rec) {
                    assert_eq!(m.msgid, kind, "{m:?}");
                }
            }
            _ => {
                assert_eq!(rec["type"], m.msgid.as_str(), "{m:?}");
                assert_eq!(host, m.hostname.as_str(), "{m:?}");
            }
        }
    }
    assert!(got.iter().any(|m| m.msgid == "finding"), "a finding arrived");
    assert!(log.contains("connected to the syslog receiver"), "{log}");
}

#[test]
fn native_records_over_tcp() {
    check_delivery(Transport::Tcp, "native");
}

#[test]
fn ocsf_records_over_udp() {
    check_delivery(Transport::Udp, "ocsf");
}

#[test]
fn native_and_ocsf_records_over_tls() {
    check_delivery(Transport::Tls, "native");
    check_delivery(Transport::Tls, "ocsf");
}

/// Sessions started one after another until `stop` is set.
fn producer(dir: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    let agent = dir.join(AGENT);
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            run(&agent, &["openat=/etc/localtime", "stat=/etc/hostname", "getenv=TZ"]);
            n += 1;
            std::thread::sleep(Duration::from_millis(30));
        }
        n
    })
}

fn metric(sensor: &Sensor, series: &str) -> f64 {
    sensor.metric(series).unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// rsyslog stopped with `signal` and started again (by PID) while sessions run: the daemon
/// reconnects, and every record is received or counted as dropped. A SIGKILLed rsyslogd loses
/// what it had not read from its socket: what the daemon sends again covers it.
fn check_restart(transport: Transport, signal: i32) {
    let mut rsyslog = Rsyslog::start(transport, free_port());
    let sensor = Sensor::start(&config(&rsyslog, "native", ""));
    let dir = TempDir::new("syslog-restart");
    probe_as(&dir, AGENT);
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = producer(&dir.0, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    rsyslog.stop(signal);
    let down_at = sensor.records().len();
    std::thread::sleep(Duration::from_secs(1));
    rsyslog.run();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let n = sessions.join().expect("producer");
    assert!(n > 10, "{n} sessions");
    // Everything produced so far has been queued; wait until it is sent (or dropped).
    let end = deadline(Duration::from_secs(20));
    let produced = loop {
        std::thread::sleep(Duration::from_millis(300));
        let records = sensor.records();
        let sent =
            metric(&sensor, "aiwatch_syslog_sent_total") - metric(&sensor, "aiwatch_syslog_resent_total");
        let dropped: f64 = ["queue_full", "oversize", "send_error", "shutdown", "serialize"]
            .iter()
            .map(|r| metric(&sensor, &format!("aiwatch_syslog_dropped_total{{reason=\"{r}\"}}")))
            .sum();
        if sent + dropped >= records.len() as f64 || Instant::now() > end {
            break records;
        }
    };
    assert!(metric(&sensor, "aiwatch_syslog_connections_total{result=\"ok\"}") >= 2.0, "reconnected");
    assert_eq!(metric(&sensor, "aiwatch_syslog_connected"), 1.0);
    let dropped: f64 = ["queue_full", "oversize", "send_error", "shutdown", "serialize"]
        .iter()
        .map(|r| metric(&sensor, &format!("aiwatch_syslog_dropped_total{{reason=\"{r}\"}}")))
        .sum();
    std::thread::sleep(Duration::from_millis(500));
    let received: HashSet<String> = rsyslog.received().iter().map(|m| m.msg.to_string()).collect();
    let missing: Vec<&Value> = produced.iter().filter(|r| !received.contains(&r.to_string())).collect();
    assert!(
        missing.len() as f64 <= dropped,
        "{} records neither received nor counted as dropped ({dropped} dropped, {} produced, {} before the stop), e.g. {}\nlog:\n{}",
        missing.len(),
        produced.len(),
        down_at,
        missing.first().map(|v| v.to_string()).unwrap_or_default(),
        sensor.log()
    );
    eprintln!(
        "restart: {} records, {} received, {dropped} dropped, {} resent",
        produced.len(),
        produced.iter().filter(|r| received.contains(&r.to_string())).count(),
        metric(&sensor, "aiwatch_syslog_resent_total")
    );
    // Records produced while rsyslog was down reached the restarted one.
    assert!(
        produced[down_at..].iter().any(|r| received.contains(&r.to_string())),
        "records after the restart"
    );
    let log = sensor.stop();
    assert!(log.contains("lost the syslog receiver"), "{log}");
}

#[test]
fn tcp_receiver_restart_loses_nothing_silently() {
    check_restart(Transport::Tcp, libc::SIGTERM);
}

#[test]
fn tcp_receiver_killed_loses_nothing_silently() {
    check_restart(Transport::Tcp, libc::SIGKILL);
}

#[test]
fn tls_receiver_restart_loses_nothing_silently() {
    check_restart(Transport::Tls, libc::SIGTERM);
}

#[test]
fn bad_config_is_refused_with_the_field() {
    let dir = TempDir::new("syslog-config");
    let cfg = dir.path("c.toml");
    std::fs::write(&cfg, "[output.syslog]\naddress = \"127.0.0.1:6514\"\ntransport = \"tls\"\n")
        .expect("config");
    let out =
        Command::new(aiwatch_bin()).arg("config").arg("--config").arg(&cfg).output().expect("aiwatch config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("output.syslog.ca_file"), "{err}");
}
