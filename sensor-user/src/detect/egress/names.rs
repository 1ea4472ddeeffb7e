//! The names a session's DNS answers gave to addresses, so a later connection to one of them
//! is named.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use super::{Connection, DnsLookup};
use crate::detect::parsers::{dns, sockaddr::Peer};

/// Addresses remembered per session from DNS answers.
const DNS_CACHE: usize = 4096;

#[derive(Default)]
pub(super) struct DnsCache {
    pub(super) names: HashMap<IpAddr, String>,
    order: VecDeque<IpAddr>,
}

impl DnsCache {
    fn insert(&mut self, ip: IpAddr, name: &str) {
        if self.names.insert(ip, name.to_string()).is_none() {
            self.order.push_back(ip);
            while self.order.len() > DNS_CACHE {
                if let Some(old) = self.order.pop_front() {
                    self.names.remove(&old);
                }
            }
        }
    }
}

/// Remembers a DNS answer's addresses for the session; the lookup to report.
pub(super) fn learn(
    dns: &mut HashMap<u32, DnsCache>,
    session: u32,
    msg: &dns::Message,
    c: &Connection,
    peer: Option<Peer>,
) -> Option<DnsLookup> {
    if !msg.response {
        return None;
    }
    let q = msg.questions.first()?;
    let addrs = msg.addresses();
    let cache = dns.entry(session).or_default();
    for ip in &addrs {
        cache.insert(*ip, &q.name);
    }
    let resolver = peer.map(|p| p.addr.ip().to_string()).unwrap_or_else(|| c.remote_addr.clone());
    Some(DnsLookup {
        name: q.name.clone(),
        qtype: q.qtype,
        rcode: msg.rcode,
        answers: addrs.iter().map(|a| a.to_string()).collect(),
        resolver,
        protocol: c.protocol,
    })
}
