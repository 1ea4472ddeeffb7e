//! Netlink route requests: which kind of dump a process asked for (`getifaddrs()` and Node's
//! `os.networkInterfaces()` send `RTM_GETLINK` and `RTM_GETADDR` dumps).

use super::Cursor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: &'static str,
    pub dump: bool,
}

const NLM_F_DUMP: u16 = 0x300;
const MAX_MESSAGES: usize = 16;

fn kind(ty: u16) -> Option<&'static str> {
    Some(match ty {
        18 => "RTM_GETLINK",
        22 => "RTM_GETADDR",
        26 => "RTM_GETROUTE",
        30 => "RTM_GETNEIGH",
        34 => "RTM_GETRULE",
        38 => "RTM_GETQDISC",
        58 => "RTM_GETNETCONF",
        _ => return None,
    })
}

/// The route requests in a netlink send (several messages may be batched).
pub fn requests(data: &[u8]) -> Vec<Request> {
    let mut out = Vec::new();
    let mut c = Cursor::new(data);
    while out.len() < MAX_MESSAGES && c.remaining() >= 16 {
        let start = c.pos();
        let Some(len) = c.take(4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            break;
        };
        let Some(ty) = c.take(2).map(|b| u16::from_ne_bytes([b[0], b[1]])) else { break };
        let Some(flags) = c.take(2).map(|b| u16::from_ne_bytes([b[0], b[1]])) else { break };
        if len < 16 {
            break;
        }
        if let Some(kind) = kind(ty) {
            out.push(Request { kind, dump: flags & NLM_F_DUMP == NLM_F_DUMP });
        }
        // Messages are 4-byte aligned.
        let next = start.saturating_add((len + 3) & !3);
        let skip = next.saturating_sub(c.pos());
        if c.take(skip).is_none() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, flags: u16, extra: usize) -> Vec<u8> {
        let len = 16 + extra;
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.extend(ty.to_ne_bytes());
        m.extend(flags.to_ne_bytes());
        m.extend([0u8; 8]);
        m.extend(std::iter::repeat_n(0u8, extra));
        m
    }

    #[test]
    fn getifaddrs_requests() {
        // glibc's getifaddrs: RTM_GETLINK then RTM_GETADDR, dump, with a 1-byte rtgenmsg (padded).
        let mut both = msg(18, 0x301, 1);
        both.extend([0u8; 3]);
        both.extend(msg(22, 0x301, 1));
        let r = requests(&both);
        assert_eq!(
            r,
            vec![Request { kind: "RTM_GETLINK", dump: true }, Request { kind: "RTM_GETADDR", dump: true }]
        );
        assert_eq!(requests(&msg(26, 1, 12)), vec![Request { kind: "RTM_GETROUTE", dump: false }]);
        assert!(requests(&msg(16, 0x301, 4)).is_empty(), "RTM_NEWLINK is not a query");
    }

    #[test]
    fn malformed() {
        assert!(requests(&[]).is_empty());
        assert!(requests(&msg(18, 0x301, 0)[..10]).is_empty());
        let mut bad = msg(18, 0x301, 0);
        bad[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(requests(&bad).is_empty());
        let mut huge = msg(18, 0x301, 0);
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(requests(&huge).len(), 1);
        for input in crate::detect::parsers::fuzzish::inputs(&[&msg(18, 0x301, 4)]) {
            let _ = requests(&input);
        }
    }
}
