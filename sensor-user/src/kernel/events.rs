//! Decoding of ring-buffer records into typed events. The bytes are checked, never trusted:
//! wrong sizes, unknown kinds or out-of-range lengths are errors, not panics.

use std::mem::size_of;

use sensor_common::{
    CloseEvent, CompatAbi, CompatData, CompatEvent, ConnectEvent, DataEvent, Direction, EnvReadEvent,
    EventHeader, EventKind, ExecEnvEvent, ExecEvent, ExitEvent, FileEvent, ForkEvent, IoctlEvent,
    RawSockAddr, StateEvent, Syscall, TlsDataEvent, TlsFunc, TrackState, UnameEvent, UnixConnectEvent,
    ARGV_LEN, ARG_LEN, PATH_LEN,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: EventKind,
    pub flags: u32,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub session: u32,
    pub state: Option<TrackState>,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Exec {
        hdr: Header,
        ppid: u32,
        filename: String,
        argv: Vec<String>,
    },
    Fork {
        hdr: Header,
        child: u32,
    },
    Exit {
        hdr: Header,
    },
    File(FileRecord),
    Connect {
        hdr: Header,
        fd: i32,
        sock_type: u32,
        ret: i64,
        addr: RawSockAddr,
    },
    Data {
        hdr: Header,
        fd: i32,
        direction: Direction,
        bytes: i64,
        sock_type: u32,
        family: u16,
        peer: RawSockAddr,
        data: Vec<u8>,
    },
    /// A chunk of the plaintext a tracked process gave OpenSSL's `SSL_write` (`bytes`: the
    /// call's byte count; the first chunk of a call has `CONTENT_START`).
    TlsData {
        hdr: Header,
        ssl: u64,
        bytes: u64,
        data: Vec<u8>,
    },
    /// `getenv`/`secure_getenv` of a tracked process.
    EnvRead {
        hdr: Header,
        secure: bool,
        /// Reads of the name by the process since its last record, not sent.
        repeats: u32,
        name: String,
    },
    /// Interface-enumeration ioctl.
    Ioctl {
        hdr: Header,
        fd: i32,
        cmd: u32,
        ret: i64,
        ifname: String,
    },
    /// `uname(2)`: the host's name asked for.
    Uname {
        hdr: Header,
    },
    /// `connect()` on an `AF_UNIX` socket; `path` as the process gave it (an abstract name
    /// starts with NUL).
    UnixConnect {
        hdr: Header,
        fd: i32,
        ret: i64,
        path: Vec<u8>,
    },
    /// The environment of the exec that follows (`NAME=value` entries).
    ExecEnv {
        hdr: Header,
        entries: Vec<String>,
    },
    Close {
        hdr: Header,
        fd: i32,
        sock_type: u32,
        bytes_sent: u64,
        bytes_recv: u64,
    },
    /// `close_range()` closed every fd from `first` to `last`.
    CloseRange {
        hdr: Header,
        first: i32,
        last: u32,
    },
    State {
        hdr: Header,
        fd: i32,
        oldstate: u32,
        newstate: u32,
        local: RawSockAddr,
        remote: RawSockAddr,
    },
    /// A syscall through a 32-bit entry (`int $0x80`), seen at its entry.
    Compat(CompatRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatRecord {
    pub hdr: Header,
    pub abi: CompatAbi,
    /// In the ABI's numbering.
    pub nr: u32,
    pub args: [u64; 6],
    /// The path argument, as read from user memory.
    pub path: Option<String>,
    /// The sockaddr of a connect, raw.
    pub sockaddr: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub hdr: Header,
    pub syscall: Syscall,
    pub dirfd: i32,
    pub flags: u32,
    pub resolve: u32,
    pub ret: i64,
    pub path: String,
}

impl KernelEvent {
    pub fn header(&self) -> &Header {
        match self {
            Self::Exec { hdr, .. }
            | Self::Fork { hdr, .. }
            | Self::Exit { hdr }
            | Self::Connect { hdr, .. }
            | Self::Data { hdr, .. }
            | Self::TlsData { hdr, .. }
            | Self::Close { hdr, .. }
            | Self::CloseRange { hdr, .. }
            | Self::State { hdr, .. }
            | Self::EnvRead { hdr, .. }
            | Self::Ioctl { hdr, .. }
            | Self::Uname { hdr }
            | Self::UnixConnect { hdr, .. }
            | Self::ExecEnv { hdr, .. } => hdr,
            Self::File(f) => &f.hdr,
            Self::Compat(c) => &c.hdr,
        }
    }

    /// The label of its kind in metrics (`aiwatch_events_total`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec { .. } => "exec",
            Self::Fork { .. } => "fork",
            Self::Exit { .. } => "exit",
            Self::File(_) => "file",
            Self::Connect { .. } => "connect",
            Self::Data { .. } => "data",
            Self::TlsData { .. } => "tls_data",
            Self::Close { .. } => "close",
            Self::CloseRange { .. } => "close_range",
            Self::State { .. } => "tcp_state",
            Self::EnvRead { .. } => "env_read",
            Self::Ioctl { .. } => "ioctl",
            Self::Uname { .. } => "uname",
            Self::UnixConnect { .. } => "unix_connect",
            Self::ExecEnv { .. } => "exec_env",
            Self::Compat(_) => "compat_syscall",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need}-byte {what}")]
    Short { what: &'static str, need: usize, got: usize },
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown syscall id {0}")]
    Syscall(u32),
    #[error("unknown data direction {0}")]
    Direction(u32),
    #[error("unknown compat ABI or data kind {0}")]
    Compat(u32),
    #[error("unknown TLS function {0}")]
    TlsFunc(u32),
    #[error("{field} length {len} exceeds its {max}-byte buffer")]
    Length { field: &'static str, len: u32, max: usize },
}

impl DecodeError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Short { .. } => "short",
            Self::Kind(_) => "kind",
            Self::Syscall(_) => "syscall",
            Self::Direction(_) => "direction",
            Self::Compat(_) => "compat",
            Self::TlsFunc(_) => "tls_func",
            Self::Length { .. } => "length",
        }
    }
}

/// Copies a `T` out of the front of `bytes` after checking the size.
fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short { what, need: size_of::<T>(), got: bytes.len() });
    }
    // SAFETY: length checked; T is a plain repr(C) type valid for any bit pattern, read unaligned.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn sized<'a>(buf: &'a [u8], len: u32, field: &'static str) -> Result<&'a [u8], DecodeError> {
    buf.get(..len as usize).ok_or(DecodeError::Length { field, len, max: buf.len() })
}

fn header(raw: &EventHeader) -> Result<Header, DecodeError> {
    Ok(Header {
        kind: EventKind::try_from(raw.kind).map_err(DecodeError::Kind)?,
        flags: raw.flags,
        ts_ns: raw.ts_ns,
        pid: raw.pid,
        tid: raw.tid,
        uid: raw.uid,
        gid: raw.gid,
        session: raw.session,
        state: TrackState::try_from(raw.state).ok(),
        comm: cstr(&raw.comm),
    })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let raw: EventHeader = read(bytes, "event header")?;
    let hdr = header(&raw)?;
    Ok(match hdr.kind {
        EventKind::Exec => exec(bytes, hdr)?,
        EventKind::Fork => {
            let ev: ForkEvent = read(bytes, "fork event")?;
            KernelEvent::Fork { hdr, child: ev.child_pid }
        }
        EventKind::Exit => {
            let _: ExitEvent = read(bytes, "exit event")?;
            KernelEvent::Exit { hdr }
        }
        EventKind::File => file(bytes, hdr)?,
        EventKind::Connect => {
            let ev: ConnectEvent = read(bytes, "connect event")?;
            KernelEvent::Connect { hdr, fd: ev.fd, sock_type: ev.sock_type, ret: ev.ret, addr: ev.addr }
        }
        EventKind::Data => data(bytes, hdr)?,
        EventKind::TlsData => {
            let ev: TlsDataEvent = read(bytes, "tls data event")?;
            TlsFunc::try_from(ev.func).map_err(DecodeError::TlsFunc)?;
            let data = sized(&ev.data, ev.len, "tls data")?.to_vec();
            KernelEvent::TlsData { hdr, ssl: ev.ssl, bytes: ev.bytes, data }
        }
        EventKind::Close => {
            let ev: CloseEvent = read(bytes, "close event")?;
            if has(&hdr, sensor_common::flags::FD_RANGE) {
                return Ok(KernelEvent::CloseRange { hdr, first: ev.fd, last: ev.last_fd });
            }
            KernelEvent::Close {
                hdr,
                fd: ev.fd,
                sock_type: ev.sock_type,
                bytes_sent: ev.bytes_sent,
                bytes_recv: ev.bytes_recv,
            }
        }
        EventKind::EnvRead => {
            let ev: EnvReadEvent = read(bytes, "env read event")?;
            let name = cstr(sized(&ev.name, ev.name_len, "name")?);
            KernelEvent::EnvRead {
                hdr,
                secure: ev.func == sensor_common::EnvFunc::SecureGetenv as u32,
                repeats: ev.repeats,
                name,
            }
        }
        EventKind::Ioctl => {
            let ev: IoctlEvent = read(bytes, "ioctl event")?;
            KernelEvent::Ioctl { hdr, fd: ev.fd, cmd: ev.cmd, ret: ev.ret, ifname: cstr(&ev.ifname) }
        }
        EventKind::Uname => {
            let _: UnameEvent = read(bytes, "uname event")?;
            KernelEvent::Uname { hdr }
        }
        EventKind::UnixConnect => {
            let ev: UnixConnectEvent = read(bytes, "unix connect event")?;
            let path = sized(&ev.path, ev.path_len, "unix socket path")?.to_vec();
            KernelEvent::UnixConnect { hdr, fd: ev.fd, ret: ev.ret, path }
        }
        EventKind::ExecEnv => {
            let ev: ExecEnvEvent = read(bytes, "exec environment event")?;
            KernelEvent::ExecEnv { hdr, entries: strings(sized(&ev.data, ev.len, "environment")?, ev.count) }
        }
        EventKind::Compat => compat(bytes, hdr)?,
        EventKind::State => {
            let ev: StateEvent = read(bytes, "state event")?;
            KernelEvent::State {
                hdr,
                fd: ev.fd,
                oldstate: ev.oldstate,
                newstate: ev.newstate,
                local: ev.local,
                remote: ev.remote,
            }
        }
    })
}

/// The first `count` NUL-separated strings of a packed argv or environment.
fn strings(packed: &[u8], count: u32) -> Vec<String> {
    packed.split(|&b| b == 0).take(count as usize).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

fn exec(bytes: &[u8], hdr: Header) -> Result<KernelEvent, DecodeError> {
    let ev: ExecEvent = read(bytes, "exec event")?;
    let filename = cstr(sized(&ev.filename, ev.filename_len, "filename")?);
    let argv = strings(sized(&ev.argv, ev.argv_len, "argv")?, ev.argc);
    Ok(KernelEvent::Exec { hdr, ppid: ev.ppid, filename, argv })
}

fn file(bytes: &[u8], hdr: Header) -> Result<KernelEvent, DecodeError> {
    let ev: FileEvent = read(bytes, "file event")?;
    let syscall = Syscall::try_from(ev.syscall).map_err(DecodeError::Syscall)?;
    let path = cstr(sized(&ev.path, ev.path_len, "path")?);
    Ok(KernelEvent::File(FileRecord {
        hdr,
        syscall,
        dirfd: ev.dirfd,
        flags: ev.flags,
        resolve: ev.resolve,
        ret: ev.ret,
        path,
    }))
}

fn compat(bytes: &[u8], hdr: Header) -> Result<KernelEvent, DecodeError> {
    let ev: CompatEvent = read(bytes, "compat syscall event")?;
    let abi = CompatAbi::try_from(ev.abi).map_err(DecodeError::Compat)?;
    let kind = CompatData::try_from(ev.data_kind).map_err(DecodeError::Compat)?;
    let data = sized(&ev.data, ev.data_len, "compat data")?;
    let (path, sockaddr) = match kind {
        CompatData::None => (None, None),
        CompatData::Path => (Some(cstr(data)), None),
        CompatData::SockAddr => (None, Some(data.to_vec())),
    };
    Ok(KernelEvent::Compat(CompatRecord { hdr, abi, nr: ev.nr, args: ev.args, path, sockaddr }))
}

fn data(bytes: &[u8], hdr: Header) -> Result<KernelEvent, DecodeError> {
    let ev: DataEvent = read(bytes, "data event")?;
    let direction = Direction::try_from(ev.direction).map_err(DecodeError::Direction)?;
    let data = sized(&ev.data, ev.len, "data")?.to_vec();
    Ok(KernelEvent::Data {
        hdr,
        fd: ev.fd,
        direction,
        bytes: ev.ret,
        sock_type: u32::from(ev.sock_type),
        family: ev.family,
        peer: ev.peer,
        data,
    })
}

/// Whether a header flag is set.
pub fn has(hdr: &Header, flag: u32) -> bool {
    hdr.flags & flag != 0
}

/// Builders of raw records, for tests here and in the fuzz targets.
pub mod raw {
    use super::*;

    pub fn header(kind: EventKind, pid: u32) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"node");
        EventHeader {
            kind: kind as u32,
            flags: 0,
            ts_ns: 1,
            pid,
            tid: pid,
            uid: 1000,
            gid: 1000,
            session: 0,
            state: TrackState::Pending as u32,
            comm,
        }
    }

    pub fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is plain repr(C) data; every byte is initialized by the builders below.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    pub fn file(pid: u32, syscall: Syscall, path: &str, ret: i64) -> Vec<u8> {
        let mut p = [0u8; PATH_LEN];
        p[..path.len()].copy_from_slice(path.as_bytes());
        bytes(&FileEvent {
            hdr: header(EventKind::File, pid),
            syscall: syscall as u32,
            dirfd: sensor_common::AT_FDCWD,
            flags: 0,
            resolve: 0,
            ret,
            path_len: path.len() as u32,
            _pad: 0,
            path: p,
        })
    }

    /// An i386 syscall `nr` with a path or sockaddr in `data` (`kind`).
    pub fn compat(pid: u32, nr: u32, args: [u64; 6], kind: CompatData, data: &[u8]) -> Vec<u8> {
        let mut d = [0u8; sensor_common::COMPAT_DATA_LEN];
        d[..data.len()].copy_from_slice(data);
        bytes(&CompatEvent {
            hdr: header(EventKind::Compat, pid),
            nr,
            abi: CompatAbi::I386 as u32,
            args,
            data_kind: kind as u32,
            data_len: data.len() as u32,
            data: d,
        })
    }

    pub fn connect(pid: u32, fd: i32, addr: RawSockAddr) -> Vec<u8> {
        bytes(&ConnectEvent { hdr: header(EventKind::Connect, pid), fd, sock_type: 1, ret: 0, addr })
    }

    pub fn send(pid: u32, fd: i32, payload: &[u8]) -> Vec<u8> {
        let mut data = [0u8; sensor_common::DATA_LEN];
        let n = payload.len().min(data.len());
        data[..n].copy_from_slice(&payload[..n]);
        bytes(&DataEvent {
            hdr: header(EventKind::Data, pid),
            fd,
            direction: Direction::Send as u32,
            ret: n as i64,
            sock_type: 1,
            family: 2,
            len: n as u32,
            peer: RawSockAddr { len: 0, data: [0; 28] },
            data,
        })
    }

    pub fn close(pid: u32, fd: i32) -> Vec<u8> {
        bytes(&CloseEvent {
            hdr: header(EventKind::Close, pid),
            fd,
            sock_type: 1,
            bytes_sent: 100,
            bytes_recv: 200,
            last_fd: fd as u32,
            _pad: 0,
        })
    }

    /// A fork by `pid` while it was pending in the kernel (the header's state).
    pub fn fork(pid: u32, child: u32) -> Vec<u8> {
        bytes(&ForkEvent { hdr: header(EventKind::Fork, pid), child_pid: child, _pad: 0 })
    }

    pub fn exec(pid: u32, filename: &str, argv: &[&str]) -> Vec<u8> {
        let mut f = [0u8; PATH_LEN];
        f[..filename.len()].copy_from_slice(filename.as_bytes());
        let mut a = [0u8; ARGV_LEN + ARG_LEN];
        let mut off = 0;
        for arg in argv {
            a[off..off + arg.len()].copy_from_slice(arg.as_bytes());
            off += arg.len() + 1;
        }
        bytes(&ExecEvent {
            hdr: header(EventKind::Exec, pid),
            filename_len: filename.len() as u32,
            argc: argv.len() as u32,
            argv_len: off as u32,
            ppid: 1,
            filename: f,
            argv: a,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_file_and_exec() {
        let ev = decode(&raw::file(7, Syscall::Openat, "/etc/localtime", 3)).unwrap();
        let KernelEvent::File(f) = ev else { panic!("not a file event") };
        assert_eq!((f.hdr.pid, f.syscall, f.path.as_str(), f.ret), (7, Syscall::Openat, "/etc/localtime", 3));
        assert_eq!(f.hdr.comm, "node");
        let ev = decode(&raw::exec(9, "/usr/bin/node", &["node", "cli.js", ""])).unwrap();
        let KernelEvent::Exec { filename, argv, .. } = ev else { panic!("not exec") };
        assert_eq!(filename, "/usr/bin/node");
        assert_eq!(argv, vec!["node", "cli.js", ""]);
    }

    #[test]
    fn decodes_compat_syscalls_and_rejects_bad_ones() {
        let b = raw::compat(7, 5, [0x1000, 0, 0, 0, 0, 0], CompatData::Path, b"/etc/localtime");
        let KernelEvent::Compat(c) = decode(&b).unwrap() else { panic!("not compat") };
        assert_eq!(
            (c.nr, c.abi, c.path.as_deref(), c.sockaddr),
            (5, CompatAbi::I386, Some("/etc/localtime"), None)
        );
        assert_eq!(c.args[0], 0x1000);
        let b = raw::compat(7, 362, [3, 0, 16, 0, 0, 0], CompatData::SockAddr, &[2, 0, 1, 187, 10, 0, 0, 1]);
        let KernelEvent::Compat(c) = decode(&b).unwrap() else { panic!("not compat") };
        assert_eq!(c.sockaddr.as_deref(), Some(&[2, 0, 1, 187, 10, 0, 0, 1][..]));
        let off = size_of::<EventHeader>();
        let mut bad = b.clone();
        bad[off + 4..off + 8].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(decode(&bad), Err(DecodeError::Compat(9)));
        let mut bad = b.clone();
        bad[off + 60..off + 64].copy_from_slice(&999u32.to_ne_bytes());
        assert!(matches!(decode(&bad), Err(DecodeError::Length { field: "compat data", .. })));
        assert!(matches!(decode(&b[..200]), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn rejects_malformed_records() {
        assert!(matches!(decode(&[]), Err(DecodeError::Short { .. })));
        assert!(matches!(decode(&[0u8; 20]), Err(DecodeError::Short { .. })));
        let mut b = raw::file(1, Syscall::Open, "/x", 0);
        b[0] = 99;
        assert_eq!(decode(&b), Err(DecodeError::Kind(99)));
        let good = raw::file(1, Syscall::Open, "/x", 0);
        assert!(matches!(decode(&good[..100]), Err(DecodeError::Short { what: "file event", .. })));
        let mut b = good.clone();
        let off = size_of::<EventHeader>();
        b[off..off + 4].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(decode(&b), Err(DecodeError::Syscall(77)));
        let mut b = good.clone();
        let len_off = size_of::<EventHeader>() + 24;
        b[len_off..len_off + 4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(matches!(decode(&b), Err(DecodeError::Length { field: "path", .. })));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Deterministic pseudo-random inputs of every interesting length.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for len in [0, 1, 55, 56, 57, 64, 100, 344, 345, 1608, 2000] {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let mut b = buf.clone();
                if b.len() >= 4 {
                    b[0] = (x % 5) as u8;
                    b[1..4].fill(0);
                }
                let _ = decode(&b);
            }
        }
    }
}
