//! DNS messages (queries and answers, UDP or TCP framing): question names and the addresses
//! answered for them. Name compression is followed with a bound on jumps, so a loop in a
//! malicious message ends.

use std::net::IpAddr;

use super::Cursor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    /// Response code (0 = NOERROR, 3 = NXDOMAIN, …).
    pub rcode: u8,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub ttl: u32,
    pub data: AnswerData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    Addr(IpAddr),
    Cname(String),
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("malformed DNS message: {0}")]
    Malformed(&'static str),
}

const MAX_RECORDS: usize = 64;
const MAX_JUMPS: usize = 16;

/// Parses a message; with `tcp`, the 2-byte length prefix first.
pub fn parse(data: &[u8], tcp: bool) -> Result<Message, DnsError> {
    let data = if tcp {
        let len = usize::from(u16::from_be_bytes([
            *data.first().ok_or(DnsError::Short)?,
            *data.get(1).ok_or(DnsError::Short)?,
        ]));
        let body = data.get(2..).ok_or(DnsError::Short)?;
        &body[..len.min(body.len())]
    } else {
        data
    };
    let mut c = Cursor::new(data);
    let id = c.u16().ok_or(DnsError::Short)?;
    let flags = c.u16().ok_or(DnsError::Short)?;
    let qd = usize::from(c.u16().ok_or(DnsError::Short)?);
    let an = usize::from(c.u16().ok_or(DnsError::Short)?);
    c.take(4).ok_or(DnsError::Short)?;
    if flags & 0x7800 != 0 {
        // Only standard queries (opcode 0) name hosts.
        return Err(DnsError::Malformed("opcode"));
    }
    let mut msg = Message {
        id,
        response: flags & 0x8000 != 0,
        rcode: (flags & 0xf) as u8,
        questions: Vec::new(),
        answers: Vec::new(),
    };
    for _ in 0..qd.min(MAX_RECORDS) {
        let name = name(data, &mut c).ok_or(DnsError::Malformed("question name"))?;
        let qtype = c.u16().ok_or(DnsError::Malformed("question type"))?;
        c.u16().ok_or(DnsError::Malformed("question class"))?;
        msg.questions.push(Question { name, qtype });
    }
    if msg.questions.is_empty() {
        return Err(DnsError::Malformed("no question"));
    }
    for _ in 0..an.min(MAX_RECORDS) {
        // A cut answer section keeps the answers read so far.
        let Some(a) = answer(data, &mut c) else { break };
        msg.answers.push(a);
    }
    Ok(msg)
}

fn answer<'a>(data: &'a [u8], c: &mut Cursor<'a>) -> Option<Answer> {
    let name = name(data, c)?;
    let ty = c.u16()?;
    c.u16()?; // class
    let ttl = c.u32()?;
    let len = usize::from(c.u16()?);
    let at = c.pos();
    let rdata = c.take(len)?;
    let data = match (ty, len) {
        (1, 4) => AnswerData::Addr(IpAddr::from([rdata[0], rdata[1], rdata[2], rdata[3]])),
        (28, 16) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(rdata);
            AnswerData::Addr(IpAddr::from(b))
        }
        (5, _) => {
            let mut r = Cursor::new(data);
            r.take(at)?;
            AnswerData::Cname(self::name(data, &mut r)?)
        }
        (other, _) => AnswerData::Other(other),
    };
    Some(Answer { name, ttl, data })
}

/// Reads a (possibly compressed) name at the cursor, leaving the cursor after it.
fn name<'a>(msg: &'a [u8], c: &mut Cursor<'a>) -> Option<String> {
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut jumps = 0usize;
    let mut r = *c;
    let mut resumed: Option<Cursor<'_>> = None;
    loop {
        let len = r.u8()?;
        match len & 0xc0 {
            0x00 if len == 0 => break,
            0x00 => {
                let label = r.take(usize::from(len))?;
                total += label.len() + 1;
                if total > 255 {
                    return None;
                }
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
            }
            0xc0 => {
                let lo = r.u8()?;
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return None;
                }
                if resumed.is_none() {
                    resumed = Some(r);
                }
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                r = Cursor::new(msg);
                r.take(target)?;
            }
            _ => return None,
        }
    }
    *c = resumed.unwrap_or(r);
    Some(labels.join("."))
}

impl Message {
    /// The addresses this response gives for its (first) question, following CNAMEs.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter_map(|a| match a.data {
                AnswerData::Addr(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }

    pub fn min_ttl(&self) -> u32 {
        self.answers.iter().map(|a| a.ttl).min().unwrap_or(0)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A response for `name` with A records `ips`, through a CNAME when `cname` is given.
    pub fn response(id: u16, name: &str, cname: Option<&str>, ips: &[[u8; 4]]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend([0x81, 0x80, 0, 1]);
        m.extend(((ips.len() + usize::from(cname.is_some())) as u16).to_be_bytes());
        m.extend([0, 0, 0, 0]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend(l.as_bytes());
        }
        m.extend([0, 0, 1, 0, 1]);
        let mut owner = vec![0xc0, 12];
        if let Some(cn) = cname {
            let at = m.len() + 12;
            m.extend([0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
            let mut rd = Vec::new();
            for l in cn.split('.') {
                rd.push(l.len() as u8);
                rd.extend(l.as_bytes());
            }
            rd.push(0);
            m.extend((rd.len() as u16).to_be_bytes());
            m.extend(rd);
            owner = vec![0xc0, at as u8];
        }
        for ip in ips {
            m.extend(&owner);
            m.extend([0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
            m.extend(ip);
        }
        m
    }

    #[test]
    fn real_glibc_query_and_answer() {
        let q = parse(include_bytes!("testdata/glibc_query_0.bin"), false).unwrap();
        assert!(!q.response);
        assert_eq!(q.questions, vec![Question { name: "api.anthropic.com".into(), qtype: 1 }]);
        let a = parse(include_bytes!("testdata/answer_a.bin"), false).unwrap();
        assert!(a.response);
        assert_eq!(a.addresses(), vec![IpAddr::from([127, 0, 0, 7])]);
        assert_eq!(a.min_ttl(), 300);
    }

    #[test]
    fn cname_chain_tcp_framing_and_truncation() {
        let r = response(7, "api.example.com", Some("edge.cdn.example.net"), &[[10, 0, 0, 1], [10, 0, 0, 2]]);
        let m = parse(&r, false).unwrap();
        assert_eq!(m.answers[0].data, AnswerData::Cname("edge.cdn.example.net".into()));
        assert_eq!(m.answers[1].name, "edge.cdn.example.net");
        assert_eq!(m.addresses().len(), 2);
        let mut tcp = (r.len() as u16).to_be_bytes().to_vec();
        tcp.extend(&r);
        assert_eq!(parse(&tcp, true).unwrap(), m);
        // Cut inside the last answer: the earlier ones stay.
        let cut = parse(&r[..r.len() - 3], false).unwrap();
        assert_eq!(cut.addresses().len(), 1);
    }

    #[test]
    fn malicious_messages() {
        assert_eq!(parse(&[1, 2, 3], false), Err(DnsError::Short));
        // A compression pointer to itself.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend([0xc0, 12, 0, 1, 0, 1]);
        assert!(parse(&m, false).is_err());
        // A pointer past the end.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0xff];
        m.extend([0, 1, 0, 1]);
        assert!(parse(&m, false).is_err());
        // A name longer than 255 bytes.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            m.push(63);
            m.extend([b'a'; 63]);
        }
        m.extend([0, 0, 1, 0, 1]);
        assert!(parse(&m, false).is_err());
        // Not a standard query.
        let mut m = response(1, "x.example", None, &[]);
        m[2] |= 0x28;
        assert_eq!(parse(&m, false), Err(DnsError::Malformed("opcode")));
    }

    #[test]
    fn never_panics() {
        let r = response(9, "api.example.com", Some("e.example.net"), &[[1, 2, 3, 4]]);
        let seeds: [&[u8]; 3] =
            [include_bytes!("testdata/glibc_query_0.bin"), include_bytes!("testdata/answer_a.bin"), &r];
        for input in crate::detect::parsers::fuzzish::inputs(&seeds) {
            let _ = parse(&input, false);
            let _ = parse(&input, true);
        }
    }
}
