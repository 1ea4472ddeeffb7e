//! Benchmark workloads: `bench-driver WORKLOAD ITERATIONS` runs the workload ITERATIONS times and
//! prints the mean nanoseconds per operation. Each workload is one thing a sensor may hook.

use std::{ffi::CString, process::ExitCode, time::Instant};

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// One operation of `workload`.
fn op(workload: &str) -> Result<(), String> {
    // SAFETY (all libc calls): valid NUL-terminated strings and buffers; results are ignored.
    unsafe {
        match workload {
            "open_watched" => {
                let fd = libc::openat(libc::AT_FDCWD, c("/etc/localtime").as_ptr(), libc::O_RDONLY);
                libc::close(fd);
            }
            "open_unwatched" => {
                let fd = libc::openat(libc::AT_FDCWD, c("/etc/passwd").as_ptr(), libc::O_RDONLY);
                libc::close(fd);
            }
            "readlink" => {
                let mut b = [0u8; 256];
                libc::readlink(c("/etc/localtime").as_ptr(), b.as_mut_ptr().cast(), b.len());
            }
            "stat" => {
                let mut st: libc::stat = std::mem::zeroed();
                libc::stat(c("/etc/hostname").as_ptr(), &mut st);
            }
            "getpid" => {
                libc::syscall(libc::SYS_getpid);
            }
            "connect_closed" => {
                let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let addr = libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: 1u16.to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
                    sin_zero: [0; 8],
                };
                libc::connect(
                    s,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                );
                libc::close(s);
            }
            "getenv" => {
                libc::getenv(c("HTTPS_PROXY").as_ptr());
            }
            "fork_exit" => {
                let pid = libc::fork();
                if pid == 0 {
                    libc::_exit(0);
                }
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
            "exec_true" => {
                let (t, a) = (c("/bin/true"), [c("true")]);
                let argv = [a[0].as_ptr(), std::ptr::null()];
                let pid = libc::fork();
                if pid == 0 {
                    libc::execv(t.as_ptr(), argv.as_ptr());
                    libc::_exit(127);
                }
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
            other => return Err(format!("unknown workload {other:?}")),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(workload), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: bench-driver WORKLOAD ITERATIONS");
        return ExitCode::from(2);
    };
    // Warm-up, then the measured run.
    for _ in 0..n.min(1000) / 10 {
        if let Err(e) = op(workload) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let start = Instant::now();
    for _ in 0..n {
        let _ = op(workload);
    }
    println!("{:.1}", start.elapsed().as_nanos() as f64 / n as f64);
    ExitCode::SUCCESS
}
