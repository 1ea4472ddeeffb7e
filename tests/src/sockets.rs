//! Socket tricks for `fsprobe sock=…`: ways a process reuses or closes a socket's fd, or passes
//! connect() an address the kernel side cannot read at entry. Each returns 0 or `-errno`.
//!
//!   sock=udp2,A,B          one UDP socket connected to A, sends; connected to B, sends
//!   sock=retry,A,B         one TCP socket: connect to A (refused), then to B, send, close
//!   sock=dup2,A,WAIT       TCP connect to A, send; dup2 /dev/null onto it; wait for WAIT
//!   sock=close_range,A,WAIT  the same, closed by close_range(fd, fd, 0)
//!   sock=exec,A,WAIT       TCP connect (close-on-exec) to A, send; exec `fsprobe waitfile=WAIT`
//!   sock=unfaulted,A       TCP connect to A with the address in a file mapping never touched
//!   sock=badaddr           TCP connect with an address pointer nothing is mapped at (EFAULT)
//!   sock=sendto,A,B,C      one unconnected UDP socket: datagrams to A (five), B, C, A
//!   sock=fake53,A          TCP connect to A; a ClientHello sent with sendto() to port 53
//!   sock=hold,N,WAIT       N UDP sockets created (never connected), held until WAIT exists
//!   sock=connect_headers,P,N  CONNECT api.openai.com:443 through proxy P, the head written a
//!                          header at a time (N headers), then a ClientHello for api.openai.com

use std::{net::SocketAddrV4, os::fd::AsRawFd};

fn sockaddr(a: &str) -> Result<libc::sockaddr_in, String> {
    let a: SocketAddrV4 = a.parse().map_err(|_| format!("{a:?} is not IPv4:PORT"))?;
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = a.port().to_be();
    sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    Ok(sa)
}

fn ret(r: i64) -> i64 {
    if r < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(1))
    } else {
        r
    }
}

fn socket(kind: i32) -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::socket(libc::AF_INET, kind, 0) }
}

fn connect(fd: i32, sa: *const libc::sockaddr_in) -> i64 {
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: `sa` points at a sockaddr_in (or at a mapping of one).
    ret(unsafe { libc::connect(fd, sa.cast(), len) } as i64)
}

fn send(fd: i32, data: &[u8]) -> i64 {
    // SAFETY: a valid buffer.
    ret(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), 0) } as i64)
}

fn wait_for(path: &str) {
    for _ in 0..6000 {
        if std::path::Path::new(path).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A connected TCP socket to `a` that has sent a request head.
fn connected(a: &str) -> Result<i32, String> {
    let fd = socket(libc::SOCK_STREAM);
    let r = connect(fd, &sockaddr(a)?);
    if r < 0 {
        return Err(format!("connect {a}: {r}"));
    }
    send(fd, b"GET / HTTP/1.1\r\nHost: reused.example\r\n\r\n");
    Ok(fd)
}

/// [`connected`], at fd `at` or the next free one above: the socket is made low, moved up
/// unconnected and adopted by its connect.
fn connected_at(a: &str, at: i32) -> Result<i32, String> {
    let low = socket(libc::SOCK_STREAM);
    // SAFETY: our own fds.
    let fd = unsafe { libc::fcntl(low, libc::F_DUPFD, at) };
    unsafe { libc::close(low) };
    let r = connect(fd, &sockaddr(a)?);
    if r < 0 {
        return Err(format!("connect {a}: {r}"));
    }
    send(fd, b"GET / HTTP/1.1\r\nHost: reused.example\r\n\r\n");
    Ok(fd)
}

/// Argument `i` of a `sock=` action.
fn at<'a>(parts: &[&'a str], i: usize) -> Result<&'a str, String> {
    parts.get(i).copied().ok_or_else(|| format!("sock={}: argument {i} missing", parts.join(",")))
}

pub fn act(arg: &str) -> Result<i64, String> {
    let parts: Vec<&str> = arg.split(',').collect();
    match parts[0] {
        "udp2" => sock_udp2(&parts),
        "retry" => sock_retry(&parts),
        "dup2" | "close_range" | "close" | "close_high" => sock_closed_without_close(&parts),
        "exec" => sock_exec_cloexec(&parts),
        "unfaulted" => sock_unfaulted(&parts),
        "badaddr" => sock_badaddr(&parts),
        "sendto" => sock_sendto(&parts),
        "fake53" => sock_fake53(&parts),
        "hold" => sock_hold(&parts),
        "connect_headers" => connect_headers(at(&parts, 1)?, at(&parts, 2)?),
        other => Err(format!("sock={other}: unknown")),
    }
}

fn sock_hold(parts: &[&str]) -> Result<i64, String> {
    let n: usize = at(parts, 1)?.parse().map_err(|_| "sock=hold,N,WAIT")?;
    let fds: Vec<i32> = (0..n).map(|_| socket(libc::SOCK_DGRAM)).collect();
    if let Some(bad) = fds.iter().find(|fd| **fd < 0) {
        return Ok(ret(i64::from(*bad)));
    }
    wait_for(at(parts, 2)?);
    Ok(0)
}

fn sock_udp2(parts: &[&str]) -> Result<i64, String> {
    let fd = socket(libc::SOCK_DGRAM);
    let (a, b) = (sockaddr(at(parts, 1)?)?, sockaddr(at(parts, 2)?)?);
    let r = [connect(fd, &a), send(fd, b"first"), connect(fd, &b), send(fd, b"second")];
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(r.into_iter().find(|r| *r < 0).unwrap_or(0))
}

fn sock_retry(parts: &[&str]) -> Result<i64, String> {
    let fd = socket(libc::SOCK_STREAM);
    let refused = connect(fd, &sockaddr(at(parts, 1)?)?);
    let second = connect(fd, &sockaddr(at(parts, 2)?)?);
    send(fd, b"GET / HTTP/1.1\r\nHost: retried.example\r\n\r\n");
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(if refused < 0 && second == 0 { 0 } else { -1 })
}

/// Ends a connection while the process goes on: by dup2 onto its fd, close_range, close(), or
/// close() of a socket whose fd is past the kernel's per-fd slots (`close_high`: fd 100).
fn sock_closed_without_close(parts: &[&str]) -> Result<i64, String> {
    let fd =
        if parts[0] == "close_high" { connected_at(at(parts, 1)?, 100)? } else { connected(at(parts, 1)?)? };
    let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    // SAFETY: our own fds.
    let r = match parts[0] {
        "dup2" => unsafe { libc::dup2(null.as_raw_fd(), fd) as i64 },
        "close" | "close_high" => unsafe { libc::close(fd) as i64 },
        _ => unsafe { libc::syscall(libc::SYS_close_range, fd as u32, fd as u32, 0u32) },
    };
    let r = ret(r);
    wait_for(at(parts, 2)?);
    Ok(r.min(0))
}

fn sock_exec_cloexec(parts: &[&str]) -> Result<i64, String> {
    // Far from the low fds the new program's start-up opens and closes (a close of the
    // same number would end a stale entry by accident).
    let low = socket(libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
    // SAFETY: our own fds.
    let fd = unsafe { libc::fcntl(low, libc::F_DUPFD_CLOEXEC, 200) };
    unsafe { libc::close(low) };
    let r = connect(fd, &sockaddr(at(parts, 1)?)?);
    if r < 0 {
        return Err(format!("connect: {r}"));
    }
    send(fd, b"GET / HTTP/1.1\r\nHost: reused.example\r\n\r\n");
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(me).arg(format!("waitfile={}", at(parts, 2)?)),
    );
    Err(format!("exec: {err}"))
}

fn sock_unfaulted(parts: &[&str]) -> Result<i64, String> {
    let file = std::env::temp_dir().join(format!("aiwatch-sockaddr-{}", std::process::id()));
    let sa = sockaddr(at(parts, 1)?)?;
    // SAFETY: a sockaddr_in's bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts((&sa as *const libc::sockaddr_in).cast::<u8>(), std::mem::size_of_val(&sa))
    };
    std::fs::write(&file, bytes).map_err(|e| e.to_string())?;
    let f = std::fs::File::open(&file).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&file);
    // SAFETY: a private read-only mapping of a file we own; not touched before connect().
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED {
        return Err("mmap failed".into());
    }
    let fd = socket(libc::SOCK_STREAM);
    let r = connect(fd, p.cast());
    send(fd, b"GET / HTTP/1.1\r\nHost: unfaulted.example\r\n\r\n");
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(r)
}

fn sock_badaddr(_: &[&str]) -> Result<i64, String> {
    let fd = socket(libc::SOCK_STREAM);
    let r = connect(fd, 16 as *const libc::sockaddr_in);
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(if r == -i64::from(libc::EFAULT) { 0 } else { -1 })
}

fn sock_sendto(parts: &[&str]) -> Result<i64, String> {
    let fd = socket(libc::SOCK_DGRAM);
    let peers = [
        at(parts, 1)?,
        at(parts, 1)?,
        at(parts, 1)?,
        at(parts, 1)?,
        at(parts, 1)?,
        at(parts, 2)?,
        at(parts, 3)?,
        at(parts, 1)?,
    ];
    let mut worst = 0;
    for p in peers {
        let sa = sockaddr(p)?;
        let len = std::mem::size_of_val(&sa) as u32;
        // SAFETY: a valid buffer and sockaddr.
        let r = unsafe {
            libc::sendto(fd, b"q".as_ptr().cast(), 1, 0, (&sa as *const libc::sockaddr_in).cast(), len)
        };
        worst = worst.min(ret(r as i64));
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(worst)
}

fn sock_fake53(parts: &[&str]) -> Result<i64, String> {
    let fd = socket(libc::SOCK_STREAM);
    let r = connect(fd, &sockaddr(at(parts, 1)?)?);
    let hello = sensor_user_hello("api.anthropic.com");
    let dns = sockaddr("127.0.0.1:53")?;
    let len = std::mem::size_of_val(&dns) as u32;
    // SAFETY: a valid buffer and sockaddr; TCP ignores the address.
    let sent = unsafe {
        libc::sendto(
            fd,
            hello.as_ptr().cast(),
            hello.len(),
            0,
            (&dns as *const libc::sockaddr_in).cast(),
            len,
        )
    };
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(r.min(ret(sent as i64)).min(0))
}

fn sensor_user_hello(name: &str) -> Vec<u8> {
    aiwatch::detect::parsers::tls::build_client_hello(name, 32, 16384)
}

/// A CONNECT head written a line at a time (as Python's http.client once did), the proxy's
/// answer read, then a ClientHello through the tunnel.
fn connect_headers(proxy: &str, n: &str) -> Result<i64, String> {
    use std::io::{Read, Write};
    let n: usize = n.parse().map_err(|_| "connect_headers: N")?;
    let mut s = std::net::TcpStream::connect(proxy).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut lines = vec!["CONNECT api.openai.com:443 HTTP/1.1\r\n".to_string()];
    lines.extend((0..n).map(|i| format!("X-Header-{i}: {}\r\n", "v".repeat(40))));
    lines.push("\r\n".into());
    for l in lines {
        s.write_all(l.as_bytes()).map_err(|e| e.to_string())?;
    }
    let mut b = [0u8; 256];
    let got = s.read(&mut b).map_err(|e| e.to_string())?;
    if !b[..got].starts_with(b"HTTP/1.1 200") {
        return Err("the proxy refused".into());
    }
    s.write_all(&sensor_user_hello("api.openai.com")).map_err(|e| e.to_string())?;
    Ok(0)
}
