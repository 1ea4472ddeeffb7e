//! Host identity asked for without a file (`uname(2)`), and `AF_UNIX` connects (a local proxy
//! or agent on a socket) of a session.

use super::{signal, state::State};
use crate::{
    kernel::events::Header,
    output::{
        emit::Out,
        report::{Body, ProcessRef, SessionRef},
    },
};

/// `uname(2)`: the node name is the host's name (`os.hostname()` in Node), a host identity
/// read like `/etc/hostname`.
pub(super) fn uname(st: &mut State, hdr: &Header) -> Vec<Out> {
    let Some(who) = st.table.who(hdr.pid) else { return Vec::new() };
    let category = "host_identity";
    let out = signal(&mut st.correlator, &who, "uname", category, "uname", hdr.ts_ns);
    let body = Body::HostQuery {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, hdr.tid, &hdr.comm),
        reader: who.reader,
        request: "uname",
        category,
    };
    vec![out, Out::record(hdr.ts_ns, body)]
}

/// A connect on an `AF_UNIX` socket, reported with its path.
pub(super) fn unix_connect(st: &mut State, hdr: &Header, fd: i32, ret: i64, path: &[u8]) -> Vec<Out> {
    let Some(who) = st.table.who(hdr.pid) else { return Vec::new() };
    let body = Body::UnixConnect {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, hdr.tid, &hdr.comm),
        reader: who.reader,
        fd,
        path: unix_path(path),
        result: ret,
    };
    vec![Out::record(hdr.ts_ns, body)]
}

/// `sun_path` as text: a path ends at its NUL; an abstract name (leading NUL) is `@name`, its
/// length given by the address length, other NULs in it shown as `@` as `ss` does.
pub fn unix_path(raw: &[u8]) -> String {
    match raw.split_first() {
        None => String::new(),
        Some((0, name)) => {
            let name: Vec<u8> = name.iter().map(|&b| if b == 0 { b'@' } else { b }).collect();
            format!("@{}", String::from_utf8_lossy(&name))
        }
        Some(_) => {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unix_path;

    #[test]
    fn unix_paths_and_abstract_names() {
        assert_eq!(unix_path(b"/run/proxy.sock\0\0"), "/run/proxy.sock");
        assert_eq!(unix_path(b"\0proxy"), "@proxy");
        assert_eq!(unix_path(b"\0a\0b"), "@a@b");
        assert_eq!(unix_path(b""), "");
        assert_eq!(unix_path(b"/no/nul"), "/no/nul");
    }
}
