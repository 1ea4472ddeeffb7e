//! `struct sockaddr_in`/`sockaddr_in6` bytes as processes pass them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sensor_common::RawSockAddr;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// An inet socket address; `v4_mapped` when an IPv6 socket addressed `::ffff:a.b.c.d` (the
/// address is then given as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub v4_mapped: bool,
}

pub fn parse(raw: &RawSockAddr) -> Option<Peer> {
    let len = (raw.len as usize).min(raw.data.len());
    let d = &raw.data[..len];
    let family = u16::from_ne_bytes([*d.first()?, *d.get(1)?]);
    let port = u16::from_be_bytes([*d.get(2)?, *d.get(3)?]);
    match family {
        AF_INET => {
            let a = d.get(4..8)?;
            Some(Peer {
                addr: SocketAddr::new(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(), port),
                v4_mapped: false,
            })
        }
        AF_INET6 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(d.get(8..24)?);
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => Some(Peer { addr: SocketAddr::new(IpAddr::V4(v4), port), v4_mapped: true }),
                None => Some(Peer { addr: SocketAddr::new(IpAddr::V6(v6), port), v4_mapped: false }),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn v4(ip: [u8; 4], port: u16) -> RawSockAddr {
        let mut data = [0u8; 28];
        data[..2].copy_from_slice(&AF_INET.to_ne_bytes());
        data[2..4].copy_from_slice(&port.to_be_bytes());
        data[4..8].copy_from_slice(&ip);
        RawSockAddr { len: 16, data }
    }

    pub fn v6(ip: Ipv6Addr, port: u16) -> RawSockAddr {
        let mut data = [0u8; 28];
        data[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        data[2..4].copy_from_slice(&port.to_be_bytes());
        data[8..24].copy_from_slice(&ip.octets());
        RawSockAddr { len: 28, data }
    }

    #[test]
    fn families() {
        assert_eq!(parse(&v4([127, 0, 0, 1], 443)).unwrap().addr, "127.0.0.1:443".parse().unwrap());
        let p = parse(&v6("::1".parse().unwrap(), 8443)).unwrap();
        assert_eq!(p.addr, "[::1]:8443".parse().unwrap());
        let p = parse(&v6("::ffff:10.1.2.3".parse().unwrap(), 53)).unwrap();
        assert!(p.v4_mapped);
        assert_eq!(p.addr, "10.1.2.3:53".parse().unwrap());
        assert_eq!(parse(&RawSockAddr { len: 0, data: [0; 28] }), None);
        let mut short = v6("::1".parse().unwrap(), 1);
        short.len = 16;
        assert_eq!(parse(&short), None);
        let mut unix = v4([0; 4], 0);
        unix.data[0] = 1;
        assert_eq!(parse(&unix), None);
    }
}
