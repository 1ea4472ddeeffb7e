//! Interface enumeration: netlink route requests and `SIOCGIF*` ioctls of a session.

use super::{signal, state::State};
use crate::{
    detect::{correlate::Correlator, parsers::netlink},
    kernel::events::Header,
    model::procs::Who,
    output::{
        emit::Out,
        report::{Body, ProcessRef, SessionRef},
    },
};

/// One query, as the record reports it.
struct Query {
    /// `netlink` or `ioctl`.
    method: &'static str,
    request: &'static str,
    interface: Option<String>,
    dump: bool,
    result: Option<i64>,
    /// The answer carries MAC addresses (host identity).
    identity: bool,
}

/// Data on a netlink socket: the route requests in it.
pub(super) fn netlink(st: &mut State, hdr: &Header, data: &[u8]) -> Vec<Out> {
    let Some(who) = st.table.who(hdr.pid) else { return Vec::new() };
    let mut out = Vec::new();
    for req in netlink::requests(data) {
        // A link dump returns every interface's MAC address.
        let identity = req.kind == "RTM_GETLINK";
        let q = Query {
            method: "netlink",
            request: req.kind,
            interface: None,
            dump: req.dump,
            result: None,
            identity,
        };
        query(&mut st.correlator, &who, hdr, q, &mut out);
    }
    out
}

pub(super) fn ioctl(st: &mut State, hdr: &Header, cmd: u32, ret: i64, ifname: String) -> Vec<Out> {
    let Ok(request) = sensor_common::InterfaceIoctl::try_from(cmd) else { return Vec::new() };
    let Some(who) = st.table.who(hdr.pid) else { return Vec::new() };
    let interface = (!ifname.is_empty()).then_some(ifname);
    let q = Query {
        method: "ioctl",
        request: request.name(),
        interface,
        dump: false,
        result: Some(ret),
        identity: request.returns_mac(),
    };
    let mut out = Vec::new();
    query(&mut st.correlator, &who, hdr, q, &mut out);
    out
}

fn query(correlator: &mut Correlator, who: &Who<'_>, hdr: &Header, q: Query, out: &mut Vec<Out>) {
    let mut categories = vec!["network_config"];
    if q.identity {
        categories.push("host_identity");
    }
    for c in &categories {
        out.push(signal(correlator, who, "interfaces", c, q.request, hdr.ts_ns));
    }
    let body = Body::InterfaceQuery {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, hdr.tid, &hdr.comm),
        reader: who.reader,
        method: q.method,
        request: q.request,
        interface: q.interface,
        dump: q.dump,
        result: q.result,
        categories,
    };
    out.push(Out::record(hdr.ts_ns, body));
}
