//! `[output.syslog]`: records to a SIEM as RFC 5424 syslog over TCP, UDP or TLS
//! (`output/syslog/`). Every value is checked while it is deserialized; what depends on several
//! fields (TLS needs a CA file) is checked by [`SyslogConfig::check`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{MapSize, OutputSchema};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The receiver, `host:port` (`[v6]:port` for an IPv6 literal); a name is resolved at each
    /// connection.
    pub address: Address,
    /// `tcp` (octet-counted framing, RFC 6587), `udp` (one message per datagram) or `tls`
    /// (TCP framing inside TLS, RFC 5425).
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// `native` (aiwatch.v1) or `ocsf` JSON as the message.
    #[serde(default = "default_format")]
    pub format: OutputSchema,
    #[serde(default = "default_facility")]
    pub facility: Facility,
    /// APP-NAME of every message.
    #[serde(default = "default_app_name")]
    pub app_name: AppName,
    /// Records waiting for the receiver at most (while it is down, for instance); past that they
    /// are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: MapSize,
    /// TLS: PEM file of the CA certificates the receiver's certificate must chain to. Required
    /// with `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// TLS: the name the receiver's certificate must carry; the address's host by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// UDP: the largest datagram sent (480 to 65507 bytes); a larger message is dropped and
    /// counted (`oversize`), since a truncated JSON record is useless to a SIEM.
    #[serde(default = "default_max_datagram")]
    pub max_datagram: DatagramSize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
    Tls,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Tls => "tls",
        }
    }
}

/// RFC 5424 facilities, with their codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern = 0,
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Syslog = 5,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Cron = 9,
    Authpriv = 10,
    Ftp = 11,
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

impl Facility {
    pub fn code(self) -> u8 {
        self as u8
    }
}

validated!(
    /// `host:port`, with a non-zero port.
    Address(String, "String"),
    |v| split_address(&v).map(drop)
);
validated!(
    /// An RFC 5424 APP-NAME: 1 to 48 printable ASCII characters, no space.
    AppName(String, "String"),
    |v| if (1..=48).contains(&v.len()) && v.bytes().all(|b| (33..=126).contains(&b)) {
        Ok(())
    } else {
        Err(format!("{v:?} is not an APP-NAME (1 to 48 printable ASCII characters, no space)"))
    }
);
validated!(
    /// A UDP datagram size: 480 (RFC 5426's minimum) to 65507 (IPv4's maximum payload).
    DatagramSize(u32, "u32"),
    |v| if (480..=65507).contains(&v) { Ok(()) } else { Err(format!("{v} is out of range 480..=65507")) }
);

impl Address {
    pub fn host(&self) -> &str {
        split_address(&self.0).map_or("", |(h, _)| h)
    }

    pub fn port(&self) -> u16 {
        split_address(&self.0).map_or(0, |(_, p)| p)
    }
}

/// `host:port` or `[v6]:port` into the host (without brackets) and the port.
fn split_address(v: &str) -> Result<(&str, u16), String> {
    let bad = || format!("{v:?} is not host:port (or [ipv6]:port) with a port from 1 to 65535");
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host, port))
}

fn default_transport() -> Transport {
    Transport::Tcp
}
fn default_format() -> OutputSchema {
    OutputSchema::Native
}
fn default_facility() -> Facility {
    Facility::Local0
}
fn default_app_name() -> AppName {
    AppName("aiwatch".to_string())
}
fn default_queue() -> MapSize {
    MapSize(8192)
}
fn default_max_datagram() -> DatagramSize {
    DatagramSize(8192)
}

impl SyslogConfig {
    /// What depends on several fields: the failing field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let tls = self.transport == Transport::Tls;
        if tls && self.ca_file.is_none() {
            return Err(("ca_file", "transport \"tls\" needs ca_file (PEM CA certificates)".into()));
        }
        if !tls && self.ca_file.is_some() {
            return Err(("ca_file", "only used with transport \"tls\"".into()));
        }
        if !tls && self.server_name.is_some() {
            return Err(("server_name", "only used with transport \"tls\"".into()));
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_absolute() {
                return Err(("ca_file", format!("{} is not an absolute path", ca.display())));
            }
        }
        let name = self.tls_server_name();
        if tls && rustls_name(name).is_none() {
            return Err(("server_name", format!("{name:?} is not a DNS name or an IP address")));
        }
        Ok(())
    }

    /// The name the receiver's certificate must carry.
    pub fn tls_server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or_else(|| self.address.host())
    }
}

fn rustls_name(name: &str) -> Option<tokio_rustls::rustls::pki_types::ServerName<'static>> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::parse(&format!("[output.syslog]\n{body}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_addresses() {
        let c = parse("address = \"siem.example:6514\"").unwrap().output.syslog.unwrap();
        assert_eq!(
            (c.transport, c.format, c.facility),
            (Transport::Tcp, OutputSchema::Native, Facility::Local0)
        );
        assert_eq!(
            (c.address.host(), c.address.port(), c.app_name.0.as_str()),
            ("siem.example", 6514, "aiwatch")
        );
        let v6 = parse("address = \"[::1]:514\"").unwrap().output.syslog.unwrap();
        assert_eq!((v6.address.host(), v6.address.port()), ("::1", 514));
        assert_eq!(crate::config::Config::default().output.syslog, None);
        // `aiwatch config` prints it back as a valid file.
        let cfg = parse("address = \"h:1\"\ntransport = \"tls\"\nca_file = \"/ca.pem\"\nfacility = \"auth\"")
            .unwrap();
        assert_eq!(crate::config::Config::parse(&cfg.to_toml(), "printed").unwrap(), cfg);
    }

    #[test]
    fn errors_name_the_field() {
        for (body, field, why) in [
            ("address = \"siem\"", "output.syslog.address", "not host:port"),
            ("address = \"h:0\"", "output.syslog.address", "not host:port"),
            ("address = \"::1:514\"", "output.syslog.address", "not host:port"),
            ("address = \"h:1\"\ntransport = \"sctp\"", "output.syslog.transport", "unknown variant"),
            ("address = \"h:1\"\nfacility = \"local9\"", "output.syslog.facility", "unknown variant"),
            ("address = \"h:1\"\napp_name = \"ai watch\"", "output.syslog.app_name", "not an APP-NAME"),
            ("address = \"h:1\"\nmax_datagram = 70000", "output.syslog.max_datagram", "out of range"),
            ("address = \"h:1\"\ntransport = \"tls\"", "output.syslog.ca_file", "needs ca_file"),
            ("address = \"h:1\"\nca_file = \"/ca.pem\"", "output.syslog.ca_file", "only used with"),
            (
                "address = \"h:1\"\ntransport = \"tls\"\nca_file = \"ca.pem\"",
                "output.syslog.ca_file",
                "absolute",
            ),
            (
                "address = \"h:1\"\ntransport = \"tls\"\nca_file = \"/ca.pem\"\nserver_name = \"a b\"",
                "output.syslog.server_name",
                "not a DNS name",
            ),
            ("transport = \"tcp\"", "output.syslog", "missing field `address`"),
        ] {
            let e = parse(body).expect_err(body);
            assert!(e.contains(field) && e.contains(why), "{body}: {e}");
        }
    }
}
