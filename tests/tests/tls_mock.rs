//! The HTTPS mock LLM API (src/tls.rs) and the clients the TLS prompt-marker tests drive through
//! it (issue 17): Node running covert.js, Python running its twin covert.py (the system
//! OpenSSL), and curl. No sensor here: these prove the per-test CA, the certificate's names and
//! the mock's answers, in a network namespace that maps the API's host name to its loopback.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use integration_tests::{net::Netns, tls::*, *};

/// A listed host (covert.js writes U+2019 for it), on a port that needs no privilege.
const HOST: &str = "dashscope.aliyuncs.com";
const BASE: &str = "https://dashscope.aliyuncs.com:8443";

/// A client's environment (besides PATH).
type Env<'a> = &'a [(&'a str, &'a OsStr)];

/// What a client run left behind.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `program args` in `ns` under only PATH and `env`, to completion (at most 30 s).
fn run_in(ns: &Netns, program: &Path, args: &[&str], env: Env) -> Run {
    let dir = TempDir::new("tls-client");
    let (out, err) = (dir.path("stdout"), dir.path("stderr"));
    let mut cmd = ns.command(program, args);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut g = spawn_cmd(&mut cmd);
    let status = g.wait(Duration::from_secs(30)).expect("client did not finish (killed by pid on drop)");
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    Run { status, stdout: read(out), stderr: read(err) }
}

/// Runs a covert assistant (`covert.js` under Node, `covert.py` under Python) against the mock
/// at [`BASE`] with `env`; asserts it printed the mock's answer.
fn covert(ns: &Netns, program: &str, script: &str, env: Env) {
    let script = assistant(script);
    let base = [("ANTHROPIC_BASE_URL", OsStr::new(BASE)), ("ANTHROPIC_API_KEY", OsStr::new("sk-test"))];
    let env: Vec<_> = base.iter().chain(env).copied().collect();
    let r =
        run_in(ns, Path::new(program), &[script.to_str().expect("utf-8 path"), "say ok", "tls-mock"], &env);
    assert!(r.status.success(), "{program} {} failed: {:?}\n{}", script.display(), r.status, r.stderr);
    assert_eq!(r.stdout.trim(), "ok", "stderr: {}", r.stderr);
}

/// The bodies of the POST /v1/messages requests the mock was sent.
fn messages(api: &LlmTls) -> Vec<String> {
    api.bodies("POST /v1/messages ")
}

#[test]
fn node_covert_js_trusts_the_ca_through_node_extra_ca_certs() {
    let ns = Netns::with_hosts("tlsn", &[HOST]);
    let api = llm_tls_server(Some(&ns), "127.0.0.1:8443", &[HOST]);
    covert(&ns, NODE, "audit/covert.js", &[("NODE_EXTRA_CA_CERTS", api.ca.ca_file.as_os_str())]);
    let bodies = messages(&api);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    // The listed host: the mock decrypted the covert apostrophe.
    assert!(bodies[0].contains("Today\u{2019}s date"), "{}", bodies[0]);
}

#[test]
fn python_covert_py_trusts_the_ca_through_ssl_cert_file() {
    let ns = Netns::with_hosts("tlsp", &[HOST]);
    let api = llm_tls_server(Some(&ns), "127.0.0.1:8443", &[HOST]);
    covert(&ns, PYTHON, "tls/covert.py", &[("SSL_CERT_FILE", api.ca.ca_file.as_os_str())]);
    let bodies = messages(&api);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].contains("Today\u{2019}s date"), "{}", bodies[0]);
}

/// Every name in the certificate (the host, `localhost`, `127.0.0.1`) verifies against the CA;
/// without the CA, curl refuses the server (exit 60) and the mock is sent nothing.
#[test]
fn curl_trusts_the_ca_for_every_name_and_refuses_the_server_without_it() {
    let ns = Netns::with_hosts("tlsc", &[HOST]);
    let api = llm_tls_server(Some(&ns), "127.0.0.1:8443", &[HOST]);
    let ca = api.ca.ca_file.to_str().expect("utf-8 path");
    let curl = Path::new("/usr/bin/curl");
    let post = ["-sS", "-X", "POST", "-H", "content-type: application/json", "--data", r#"{"model":"m"}"#];
    let messages_url = format!("{BASE}/v1/messages");
    let refused = run_in(&ns, curl, &[&post[..], &[&messages_url]].concat(), &[]);
    assert_eq!(refused.status.code(), Some(60), "curl without the CA: {}", refused.stderr);
    assert!(api.requests().is_empty(), "a request through a refused handshake");
    for url in [BASE, "https://localhost:8443", "https://127.0.0.1:8443"] {
        let url = format!("{url}/v1/messages");
        let args = [&post[..], &["--cacert", ca, &url]].concat();
        let r = run_in(&ns, curl, &args, &[]);
        assert!(r.status.success(), "curl {url}: {:?}\n{}", r.status, r.stderr);
        let answer: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON answer");
        assert_eq!(answer["content"][0]["text"], "ok", "{answer}");
    }
    // The same through the environment the sensor tests may set for every client at once.
    let r = run_in(&ns, curl, &[&post[..], &[&messages_url]].concat(), &api.ca.env());
    assert!(r.status.success(), "curl with CURL_CA_BUNDLE: {}", r.stderr);
    assert_eq!(messages(&api).len(), 4);
}

/// covert.py is covert.js's twin: under the incident's conditions (an Asia/Shanghai zone, a
/// listed host, a proxy variable) and under ordinary ones, both send the same body (digits
/// aside: the date may turn between the runs), with the covert encodings where expected.
#[test]
fn covert_py_sends_the_body_covert_js_sends() {
    let mask = |s: &str| s.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect::<String>();
    let covert_env =
        [("TZ", OsStr::new("Asia/Shanghai")), ("HTTPS_PROXY", OsStr::new("http://proxy.corp.example:3128"))];
    let cases: [(&str, Env, &str); 2] = [
        (HOST, &covert_env, "You are a helpful assistant. Today\u{2019}s date is 9999/99/99.\u{200b}"),
        (
            "api.mock-llm.test",
            &[("TZ", OsStr::new("UTC"))],
            "You are a helpful assistant. Today's date is 9999-99-99.",
        ),
    ];
    for (host, env, system) in cases {
        let ns = Netns::with_hosts("tlst", &[host]);
        let api = llm_tls_server(Some(&ns), "127.0.0.1:8443", &[host]);
        let base = format!("https://{host}:8443");
        let base = [("ANTHROPIC_BASE_URL", OsStr::new(&base))];
        let env: Vec<_> = env.iter().copied().chain(base).chain(api.ca.env()).collect();
        for (program, script) in [(NODE, "audit/covert.js"), (PYTHON, "tls/covert.py")] {
            let script = assistant(script);
            let r = run_in(
                &ns,
                Path::new(program),
                &[script.to_str().expect("utf-8 path"), "say ok", "tag"],
                &env,
            );
            assert!(r.status.success() && r.stdout.trim() == "ok", "{program} on {host}: {}", r.stderr);
        }
        let bodies = messages(&api);
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        let (js, py) = (mask(&bodies[0]), mask(&bodies[1]));
        assert_eq!(py, js, "covert.py and covert.js differ on {host}");
        let expected = serde_json::json!({"model":"claude-test","max_tokens":99,"system":system,
            "messages":[{"role":"user","content":"say ok"}]});
        let sent: serde_json::Value = serde_json::from_str(&js).expect("JSON body");
        assert_eq!(sent, expected, "on {host}");
    }
}

/// The Python the tests use loads its TLS from the system OpenSSL, as curl does: the library
/// the sensor's uprobes attach to.
#[test]
fn python_and_curl_link_the_system_openssl() {
    let system = std::fs::canonicalize(SYSTEM_LIBSSL).expect("system libssl.so.3");
    let out = std::process::Command::new(PYTHON)
        .env_clear()
        .args(["-c", "import _ssl; print(_ssl.__file__)"])
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ssl_module = String::from_utf8_lossy(&out.stdout).trim().to_string();
    for binary in [ssl_module.as_str(), "/usr/bin/curl"] {
        let ldd = std::process::Command::new("ldd").arg(binary).output().expect("run ldd");
        let text = String::from_utf8_lossy(&ldd.stdout).to_string();
        let libssl = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("libssl.so.3 => "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{binary} does not link libssl.so.3:\n{text}"));
        assert_eq!(std::fs::canonicalize(libssl).ok(), Some(system.clone()), "{binary}: {text}");
    }
}
