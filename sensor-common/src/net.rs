//! Socket events: connect, first bytes, close, TCP state; and interface-enumeration ioctls.

use crate::EventHeader;

/// Bytes of a send copied at most (a post-quantum TLS ClientHello is well past 2 KiB).
pub const DATA_LEN: usize = 8192;
/// Bytes of a received DNS message copied at most.
pub const DNS_RECV_LEN: usize = 2048;

/// A `struct sockaddr` as the process passed it (or as the kernel built it): family, then
/// port and address in network order, exactly the C layout of `sockaddr_in`/`sockaddr_in6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct RawSockAddr {
    /// Bytes of `data` that are valid.
    pub len: u32,
    pub data: [u8; 28],
}

u32_enum! {
    /// Direction of a [`DataEvent`], sent as `u32`.
    pub enum Direction {
        Send = 1 => "send",
        Recv = 2 => "recv",
    }
}

/// `connect()` of a tracked process on an `AF_INET`/`AF_INET6` socket, with its result.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ConnectEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, … (0 when the socket was created before tracking).
    pub sock_type: u32,
    /// 0, or `-errno` (`-EINPROGRESS` for a non-blocking connect: see [`StateEvent`]).
    pub ret: i64,
    pub addr: RawSockAddr,
}

/// The first bytes a tracked process sent on (or, for DNS, received from) an inet socket.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct DataEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// [`Direction`] as `u32`.
    pub direction: u32,
    /// Bytes the syscall transferred.
    pub ret: i64,
    pub sock_type: u16,
    /// `AF_INET`, `AF_INET6` or `AF_NETLINK`.
    pub family: u16,
    /// Bytes of `data` that are valid.
    pub len: u32,
    /// Peer given to `sendto`/`sendmsg`/`recvfrom` (len 0 when none).
    pub peer: RawSockAddr,
    pub data: [u8; DATA_LEN],
}

/// `close()` of a tracked inet socket (or a `dup2`/`dup3` onto it), with what went through it.
/// With [`flags::FD_RANGE`](crate::flags::FD_RANGE) in the header: `close_range()` closed
/// every fd from `fd` to `last_fd`, and user space finds which were sockets (counts are 0).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct CloseEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    pub sock_type: u32,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// The last fd closed: `fd` itself but for a range.
    pub last_fd: u32,
    pub _pad: u32,
}

/// A TCP state change of a connection a tracked process started (from
/// `sock:inet_sock_set_state`, often in softirq context: the header's pid is the owner's, taken
/// from the map, and its comm and uid are empty).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct StateEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    pub oldstate: u32,
    pub newstate: u32,
    pub _pad: u32,
    pub local: RawSockAddr,
    pub remote: RawSockAddr,
}

/// TCP states as the kernel numbers them (`TCP_ESTABLISHED` …). Constants, not an enum: a
/// [`StateEvent`] carries any of the kernel's states, and these are only the few acted on.
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const CLOSE: u32 = 7;
}

u32_enum! {
    /// The interface-enumeration ioctls reported (`<linux/sockios.h>`); the label is the
    /// constant's C name.
    pub enum InterfaceIoctl {
        Name = 0x8910 => "SIOCGIFNAME",
        Conf = 0x8912 => "SIOCGIFCONF",
        Flags = 0x8913 => "SIOCGIFFLAGS",
        Addr = 0x8915 => "SIOCGIFADDR",
        BrdAddr = 0x8919 => "SIOCGIFBRDADDR",
        Netmask = 0x891b => "SIOCGIFNETMASK",
        Mtu = 0x8921 => "SIOCGIFMTU",
        HwAddr = 0x8927 => "SIOCGIFHWADDR",
        Index = 0x8933 => "SIOCGIFINDEX",
        /// `struct ifreq` whose `ifr_data` points to an ethtool command (driver, link,
        /// permanent MAC address, …).
        Ethtool = 0x8946 => "SIOCETHTOOL",
    }
}

impl InterfaceIoctl {
    /// Whether the answer is the interface's MAC address (a host identifier).
    pub const fn returns_mac(self) -> bool {
        // SIOCETHTOOL may be ETHTOOL_GPERMADDR, the burnt-in address; the command is behind a
        // pointer the kernel does not follow here.
        matches!(self, Self::HwAddr | Self::Ethtool)
    }
}

/// An interface-enumeration `ioctl` of a tracked process ([`InterfaceIoctl`]).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct IoctlEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// [`InterfaceIoctl`] as `u32`.
    pub cmd: u32,
    pub ret: i64,
    /// `ifr_name` of the `struct ifreq` argument (empty for `SIOCGIFCONF`, which takes a
    /// `struct ifconf`).
    pub ifname: [u8; 16],
}

/// `uname(2)` of a tracked process: the host's name (what Node's `os.hostname()` asks), kernel
/// release and machine. The header is all of it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct UnameEvent {
    pub hdr: EventHeader,
}

/// Bytes of `sun_path` in a `sockaddr_un`.
pub const UNIX_PATH_LEN: usize = 108;

/// `connect()` of a tracked process on an `AF_UNIX` socket (a local proxy or agent), with the
/// socket's path. An abstract socket's path starts with a NUL byte.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct UnixConnectEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// Bytes of `path` that are valid (from the address length; 0 if unreadable).
    pub path_len: u32,
    /// 0, or `-errno`.
    pub ret: i64,
    pub path: [u8; UNIX_PATH_LEN],
    pub _pad: u32,
}

const _: () = assert!(DATA_LEN.is_power_of_two() && DNS_RECV_LEN <= DATA_LEN);
const _: () = assert!(core::mem::size_of::<RawSockAddr>() == 32);
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 56 + 16 + 32);
const _: () = assert!(core::mem::size_of::<DataEvent>() == 56 + 24 + 32 + DATA_LEN);
const _: () = assert!(core::mem::size_of::<CloseEvent>() == 56 + 32);
const _: () = assert!(core::mem::size_of::<StateEvent>() == 56 + 16 + 64);
const _: () = assert!(core::mem::size_of::<IoctlEvent>() == 56 + 16 + 16);
const _: () = assert!(core::mem::size_of::<UnameEvent>() == 56);
const _: () = assert!(core::mem::size_of::<UnixConnectEvent>() == 56 + 16 + 112);

#[cfg(test)]
mod tests {
    use super::InterfaceIoctl;

    #[test]
    fn interface_ioctls() {
        assert_eq!(InterfaceIoctl::try_from(0x8927).map(InterfaceIoctl::name), Ok("SIOCGIFHWADDR"));
        assert!(InterfaceIoctl::HwAddr.returns_mac() && !InterfaceIoctl::Conf.returns_mac());
        assert_eq!(InterfaceIoctl::try_from(1), Err(1));
        assert_eq!(InterfaceIoctl::ALL.len(), InterfaceIoctl::COUNT as usize);
    }
}
