//! The mock LLM API over HTTPS, for tests of what assistants send through a TLS library: a
//! throwaway CA of the test's own, a certificate it signed for the API's host names, and the
//! plain mock's answers ([`crate::net::llm_server_with_work`]) behind `rustls`. The clients that
//! talk to it (Node, Python, curl) trust the CA through the file [`TlsCa::ca_file`] names, and
//! nothing else changes for them: same host names, same paths, same answers.

use std::{
    ffi::OsStr,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    ServerConfig, ServerConnection, StreamOwned,
};

use crate::{
    net::{accept_loop, serve_llm, spawn_server, Netns, Server},
    TempDir,
};

/// The Python the tests run `covert.py` with: the distribution's, whose `_ssl` module links the
/// system OpenSSL (/lib/x86_64-linux-gnu/libssl.so.3), so its TLS writes are `SSL_write` calls
/// in that library. A real interpreter, not a pyenv shim (which needs HOME and PYENV_* to find
/// one, and is not there under a clean environment).
pub const PYTHON: &str = "/usr/bin/python3";

/// Node, with OpenSSL built into the binary (NodeSource builds export `SSL_write` themselves).
pub const NODE: &str = "/usr/bin/node";

/// The system OpenSSL that curl and [`PYTHON`] load.
pub const SYSTEM_LIBSSL: &str = "/lib/x86_64-linux-gnu/libssl.so.3";

/// A test assistant script under tests/assistants (`audit/covert.js`, `tls/covert.py`).
pub fn assistant(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assistants").join(rel)
}

/// A per-test CA: its certificate, as PEM in a file removed when this is dropped.
pub struct TlsCa {
    /// The CA certificate (PEM): `NODE_EXTRA_CA_CERTS`, `curl --cacert`, `SSL_CERT_FILE`.
    pub ca_file: PathBuf,
    _dir: TempDir,
}

impl TlsCa {
    /// Environment under which Node (`NODE_EXTRA_CA_CERTS`, added to its own roots), OpenSSL
    /// clients such as covert.py (`SSL_CERT_FILE`, instead of the system's roots) and curl
    /// (`CURL_CA_BUNDLE`) trust this CA.
    pub fn env(&self) -> [(&'static str, &OsStr); 3] {
        let f = self.ca_file.as_os_str();
        [("NODE_EXTRA_CA_CERTS", f), ("SSL_CERT_FILE", f), ("CURL_CA_BUNDLE", f)]
    }
}

/// The HTTPS mock: its server (stopped on drop), its CA, and the requests it was sent.
pub struct LlmTls {
    // Declared first: dropped (stopped) before the CA's directory goes.
    pub server: Server,
    pub ca: TlsCa,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl LlmTls {
    /// Every request decrypted so far (head and body, as received), oldest first.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("requests").clone()
    }

    /// The bodies of the requests whose request line starts with `start` (e.g.
    /// `"POST /v1/messages "`), as text.
    pub fn bodies(&self, start: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(start.as_bytes()))
            .map(|r| {
                let end = r.windows(4).position(|w| w == b"\r\n\r\n").map_or(r.len(), |p| p + 4);
                String::from_utf8_lossy(&r[end..]).into_owned()
            })
            .collect()
    }
}

/// [`crate::net::llm_server`] over HTTPS on `bind` (in `netns` if given), with a certificate
/// for `hosts`, `localhost` and `127.0.0.1` signed by a CA made for this server alone.
pub fn llm_tls_server(netns: Option<&Netns>, bind: &str, hosts: &[&str]) -> LlmTls {
    llm_tls_server_with_work(netns, bind, hosts, &[])
}

/// [`crate::net::llm_server_with_work`] over HTTPS, as [`llm_tls_server`].
pub fn llm_tls_server_with_work(
    netns: Option<&Netns>,
    bind: &str,
    hosts: &[&str],
    work: &'static [&'static str],
) -> LlmTls {
    let (config, ca) = certify(hosts);
    let config = Arc::new(config);
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let server = spawn_server(netns, bind, false, move |sock, stop| {
        accept_loop(sock, stop, |tcp| {
            let Ok(conn) = ServerConnection::new(config.clone()) else { return };
            // The handshake happens in the first read; a client that refuses the certificate
            // ends it there (an error, then an empty request that is answered into the void).
            let mut tls = StreamOwned::new(conn, tcp);
            let request = serve_llm(&mut tls, work);
            tls.conn.send_close_notify();
            let _ = tls.flush();
            if !request.is_empty() {
                log.lock().expect("requests").push(request);
            }
        })
    });
    LlmTls { server, ca, received }
}

/// A CA and a server certificate it signed for `hosts` (+ `localhost`, `127.0.0.1`, the latter
/// an IP address SAN): the server's config, and the CA's PEM written to a temp file.
fn certify(hosts: &[&str]) -> (ServerConfig, TlsCa) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "aiwatch test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

    let mut names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    let key = KeyPair::generate().expect("server key");
    // `new` makes an IP address SAN of "127.0.0.1" and DNS SANs of the rest.
    let mut leaf = CertificateParams::new(names).expect("server params");
    leaf.distinguished_name.push(DnType::CommonName, hosts.first().copied().unwrap_or("localhost"));
    let cert = leaf.signed_by(&key, &Issuer::from_params(&ca, &ca_key)).expect("server certificate");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server certificate and key");
    // HTTP/1.1 only, as the plain mock: a client offering h2 (curl) falls back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let dir = TempDir::new("tls-ca");
    let ca_file = dir.path("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write ca.pem");
    (config, TlsCa { ca_file, _dir: dir })
}
