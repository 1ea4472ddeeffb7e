//! Host-identity and local-socket actions for `fsprobe`. Each returns 0 or `-errno`.
//!
//!   uname=x             uname(2)
//!   ethtool=IF          SIOCETHTOOL (ETHTOOL_GDRVINFO) on interface IF
//!   unix_connect=PATH   connect an AF_UNIX stream socket to PATH (`@name`: abstract)

fn ret(r: i64) -> i64 {
    if r < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(1))
    } else {
        r
    }
}

pub fn uname() -> i64 {
    // SAFETY: all-zero is a valid utsname; the kernel fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid buffer.
    ret(unsafe { libc::uname(&mut u) } as i64)
}

pub fn ethtool(ifname: &str) -> i64 {
    const ETHTOOL_GDRVINFO: u32 = 3;
    // struct ethtool_drvinfo: cmd, then 192 bytes of strings and counts.
    let mut info = [0u32; 49];
    info[0] = ETHTOOL_GDRVINFO;
    // struct ifreq: ifr_name[16], then ifr_data.
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut u32,
        _pad: [u8; 16],
    }
    let mut ifr = IfReq { name: [0; 16], data: info.as_mut_ptr(), _pad: [0; 16] };
    let n = ifname.len().min(15);
    ifr.name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
    // SAFETY: plain syscalls on our own socket with a valid ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let r = ret(libc::ioctl(s, 0x8946, &mut ifr as *mut IfReq) as i64);
        libc::close(s);
        r
    }
}

pub fn unix_connect(path: &str) -> i64 {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as u16;
    let (bytes, abstract_) = match path.strip_prefix('@') {
        Some(name) => (name.as_bytes(), true),
        None => (path.as_bytes(), false),
    };
    let start = usize::from(abstract_);
    let n = bytes.len().min(sa.sun_path.len() - 1 - start);
    for (i, b) in bytes[..n].iter().enumerate() {
        sa.sun_path[start + i] = *b as libc::c_char;
    }
    // An abstract name is as long as the address says; a path ends at its NUL.
    let len = 2 + start + n + usize::from(!abstract_);
    // SAFETY: plain syscalls on our own socket with a valid address.
    unsafe {
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        let r = ret(libc::connect(s, (&sa as *const libc::sockaddr_un).cast(), len as u32) as i64);
        libc::close(s);
        r
    }
}
