//! Syscalls through the 32-bit entry from this 64-bit process (`int $0x80`), which the
//! `syscalls:sys_*` tracepoints do not fire for: fsprobe's `int80=` actions.
//!
//! `int80=open,PATH`            open(PATH, O_RDONLY) (i386 number 5)
//! `int80=nr,NR,COUNT`          syscall NR without arguments, COUNT times
//! `int80=connect,IP:PORT`      a 64-bit socket(), then connect (i386 362)
//! `int80=socketcall,IP:PORT`   the same through socketcall(SYS_CONNECT, args) (i386 102)
//!
//! Pointers must be below 4 GiB (the kernel takes the low 32 bits), so the path, address and
//! argument block are written into a `MAP_32BIT` page. The upper halves of the registers are
//! filled with garbage on purpose: the kernel ignores them, and so must the sensor.

use std::net::SocketAddrV4;

const OPEN: u32 = 5;
const SOCKETCALL: u32 = 102;
const CONNECT: u32 = 362;
const SYS_CONNECT: u32 = 3;

pub fn act(arg: &str) -> Result<i64, String> {
    let (what, rest) = arg.split_once(',').ok_or("int80=WHAT,...")?;
    let page = low_page()?;
    // SAFETY: the page is ours, 4 KiB, and the syscalls get pointers into it.
    unsafe {
        match what {
            "open" => {
                let path = put(page, 0, rest.as_bytes(), true)?;
                Ok(int80(OPEN, path, libc::O_RDONLY as u32, 0))
            }
            "nr" => {
                let (nr, count) = rest.split_once(',').ok_or("int80=nr,NR,COUNT")?;
                let nr: u32 = nr.parse().map_err(|_| format!("bad number {nr:?}"))?;
                let count: u32 = count.parse().map_err(|_| format!("bad count {count:?}"))?;
                let mut ret = 0;
                for _ in 0..count {
                    ret = int80(nr, 0, 0, 0);
                }
                Ok(ret)
            }
            "connect" | "socketcall" => {
                let peer: SocketAddrV4 = rest.parse().map_err(|e| format!("{rest:?}: {e}"))?;
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                if fd < 0 {
                    return Ok(-1);
                }
                let mut sa = [0u8; 16];
                sa[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                sa[2..4].copy_from_slice(&peer.port().to_be_bytes());
                sa[4..8].copy_from_slice(&peer.ip().octets());
                let addr = put(page, 0, &sa, false)?;
                let ret = if what == "connect" {
                    int80(CONNECT, fd as u32, addr, 16)
                } else {
                    let block: Vec<u8> = [fd as u32, addr, 16].iter().flat_map(|v| v.to_ne_bytes()).collect();
                    let args = put(page, 64, &block, false)?;
                    int80(SOCKETCALL, SYS_CONNECT, args, 0)
                };
                libc::close(fd);
                Ok(ret)
            }
            other => Err(format!("int80={other}: unknown")),
        }
    }
}

/// A fresh page below 4 GiB.
fn low_page() -> Result<*mut u8, String> {
    // SAFETY: an anonymous private mapping; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap(MAP_32BIT): {}", std::io::Error::last_os_error()));
    }
    Ok(p.cast())
}

/// Copies `bytes` (and a NUL) to `page + at`; its 32-bit address.
///
/// # Safety
/// `page` is a writable 4 KiB page.
unsafe fn put(page: *mut u8, at: usize, bytes: &[u8], nul: bool) -> Result<u32, String> {
    if at + bytes.len() + 1 > 4096 {
        return Err("too long for the page".into());
    }
    let dst = unsafe { page.add(at) };
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
        if nul {
            *dst.add(bytes.len()) = 0;
        }
    }
    u32::try_from(dst as usize).map_err(|_| "MAP_32BIT gave an address above 4 GiB".to_string())
}

/// `int $0x80` with three arguments (ebx, ecx, edx); the result sign-extended from eax.
///
/// # Safety
/// The arguments must be what syscall `nr` expects.
unsafe fn int80(nr: u32, a: u32, b: u32, c: u32) -> i64 {
    // Garbage in the upper halves: the kernel uses the low 32 bits of each register.
    const GARBAGE: u64 = 0xdead_beef_0000_0000;
    let ret: u64;
    // rbx is reserved by LLVM: swapped in and out around the trap. The 32-bit entry may clobber
    // r8-r11.
    unsafe {
        core::arch::asm!(
            "xchg {a}, rbx",
            "int 0x80",
            "xchg {a}, rbx",
            a = inout(reg) GARBAGE | u64::from(a) => _,
            inlateout("rax") u64::from(nr) => ret,
            in("rcx") GARBAGE | u64::from(b),
            in("rdx") GARBAGE | u64::from(c),
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    i64::from(ret as u32 as i32)
}
