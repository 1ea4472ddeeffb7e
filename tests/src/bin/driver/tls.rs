//! The TLS workloads: a client and a server OpenSSL connection joined by an in-memory BIO pair
//! in one process, using the system's libssl (loaded at run time, as a runtime that links it
//! would), so `SSL_write` is the libssl function aiwatch probes. No socket: the cost measured is
//! OpenSSL's and the probes', not the network's.

use std::{
    ffi::{c_char, c_int, c_void, CString},
    process::Command,
};

type Ptr = *mut c_void;

/// The libssl functions used, resolved with dlsym.
struct Ssl {
    client_method: unsafe extern "C" fn() -> Ptr,
    server_method: unsafe extern "C" fn() -> Ptr,
    ctx_new: unsafe extern "C" fn(Ptr) -> Ptr,
    use_cert: unsafe extern "C" fn(Ptr, *const c_char, c_int) -> c_int,
    use_key: unsafe extern "C" fn(Ptr, *const c_char, c_int) -> c_int,
    new: unsafe extern "C" fn(Ptr) -> Ptr,
    set_bio: unsafe extern "C" fn(Ptr, Ptr, Ptr),
    connect_state: unsafe extern "C" fn(Ptr),
    accept_state: unsafe extern "C" fn(Ptr),
    handshake: unsafe extern "C" fn(Ptr) -> c_int,
    write: unsafe extern "C" fn(Ptr, *const c_void, c_int) -> c_int,
    read: unsafe extern "C" fn(Ptr, *mut c_void, c_int) -> c_int,
    bio_pair: unsafe extern "C" fn(*mut Ptr, usize, *mut Ptr, usize) -> c_int,
}

const SSL_FILETYPE_PEM: c_int = 1;
/// Each BIO's buffer: room for the records of one 16 KiB write and more.
const BIO_PAIR_SIZE: usize = 1 << 20;

fn sym<T>(lib: Ptr, name: &str) -> Result<T, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: a handle from dlopen and a NUL-terminated name.
    let p = unsafe { libc::dlsym(lib, c.as_ptr()) };
    if p.is_null() {
        return Err(format!("libssl has no {name}"));
    }
    // SAFETY: `T` is the C signature of `name` (a function pointer, the size of a pointer).
    Ok(unsafe { std::mem::transmute_copy(&p) })
}

impl Ssl {
    fn load() -> Result<Self, String> {
        let name = CString::new("libssl.so.3").map_err(|e| e.to_string())?;
        // SAFETY: dlopen of a system library by name.
        let lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if lib.is_null() {
            return Err("cannot load libssl.so.3".into());
        }
        Ok(Self {
            client_method: sym(lib, "TLS_client_method")?,
            server_method: sym(lib, "TLS_server_method")?,
            ctx_new: sym(lib, "SSL_CTX_new")?,
            use_cert: sym(lib, "SSL_CTX_use_certificate_file")?,
            use_key: sym(lib, "SSL_CTX_use_PrivateKey_file")?,
            new: sym(lib, "SSL_new")?,
            set_bio: sym(lib, "SSL_set_bio")?,
            connect_state: sym(lib, "SSL_set_connect_state")?,
            accept_state: sym(lib, "SSL_set_accept_state")?,
            handshake: sym(lib, "SSL_do_handshake")?,
            write: sym(lib, "SSL_write")?,
            read: sym(lib, "SSL_read")?,
            bio_pair: sym(lib, "BIO_new_bio_pair")?,
        })
    }
}

/// A connected client/server pair.
pub struct Pair {
    ssl: Ssl,
    client: Ptr,
    server: Ptr,
    sink: Vec<u8>,
}

/// A throwaway certificate and key for the server side, made with the `openssl` tool.
fn cert() -> Result<(CString, CString), String> {
    let dir = std::env::temp_dir().join(format!("aiwatch-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (key, crt) = (dir.join("key.pem"), dir.join("cert.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=bench", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("openssl req: {e}"))?;
    if !ok.success() {
        return Err("openssl req failed".into());
    }
    let c = |p: &std::path::Path| CString::new(p.to_string_lossy().as_bytes()).map_err(|e| e.to_string());
    Ok((c(&crt)?, c(&key)?))
}

impl Pair {
    pub fn new() -> Result<Self, String> {
        let ssl = Ssl::load()?;
        let (crt, key) = cert()?;
        // SAFETY (all calls): OpenSSL's documented API, on objects created here, checked for NULL.
        let (client, server) = unsafe {
            let cctx = (ssl.ctx_new)((ssl.client_method)());
            let sctx = (ssl.ctx_new)((ssl.server_method)());
            if cctx.is_null() || sctx.is_null() {
                return Err("SSL_CTX_new failed".into());
            }
            if (ssl.use_cert)(sctx, crt.as_ptr(), SSL_FILETYPE_PEM) != 1
                || (ssl.use_key)(sctx, key.as_ptr(), SSL_FILETYPE_PEM) != 1
            {
                return Err("cannot load the server certificate".into());
            }
            // Read into the context: the files are not needed after.
            if let Some(dir) = std::path::Path::new(crt.to_str().unwrap_or("")).parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
            let (client, server) = ((ssl.new)(cctx), (ssl.new)(sctx));
            let (mut b1, mut b2) = (std::ptr::null_mut(), std::ptr::null_mut());
            if client.is_null()
                || server.is_null()
                || (ssl.bio_pair)(&mut b1, BIO_PAIR_SIZE, &mut b2, BIO_PAIR_SIZE) != 1
            {
                return Err("SSL_new or BIO_new_bio_pair failed".into());
            }
            (ssl.set_bio)(client, b1, b1);
            (ssl.set_bio)(server, b2, b2);
            (ssl.connect_state)(client);
            (ssl.accept_state)(server);
            let mut done = false;
            for _ in 0..100 {
                let c = (ssl.handshake)(client);
                let s = (ssl.handshake)(server);
                if c == 1 && s == 1 {
                    done = true;
                    break;
                }
            }
            if !done {
                return Err("the in-memory handshake did not complete".into());
            }
            (client, server)
        };
        Ok(Self { ssl, client, server, sink: vec![0u8; 1 << 16] })
    }

    /// Writes `buf` on the client in `SSL_write` calls of at most `chunk` bytes, and reads it
    /// all on the server.
    pub fn send(&mut self, buf: &[u8], chunk: usize) -> Result<(), String> {
        for part in buf.chunks(chunk) {
            // SAFETY: a live connection and a buffer of `part.len()` bytes.
            let n = unsafe { (self.ssl.write)(self.client, part.as_ptr().cast(), part.len() as c_int) };
            if n != part.len() as c_int {
                return Err(format!("SSL_write returned {n}"));
            }
            let mut left = part.len();
            while left > 0 {
                // SAFETY: as above, into `sink`.
                let r = unsafe {
                    (self.ssl.read)(self.server, self.sink.as_mut_ptr().cast(), self.sink.len() as c_int)
                };
                if r <= 0 {
                    return Err(format!("SSL_read returned {r}"));
                }
                left = left.saturating_sub(r as usize);
            }
        }
        Ok(())
    }
}

/// An HTTP request with a JSON body of `body` bytes, as an assistant sends its API.
pub fn request(body: usize) -> Vec<u8> {
    let text = "x".repeat(body.saturating_sub(14));
    let json = format!("{{\"system\":\"{text}\"}}");
    let mut out = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: api.bench.invalid\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        json.len()
    )
    .into_bytes();
    out.extend(json.as_bytes());
    out
}
