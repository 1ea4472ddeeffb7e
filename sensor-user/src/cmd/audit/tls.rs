//! The throwaway certificate authority of one audit: generated in memory when the audit starts,
//! never written anywhere but the runs' own `/etc/ssl/certs/aiwatch-audit-ca.pem`, and gone with
//! the audit. The mock's TLS listeners mint a certificate for whatever name a client asks for
//! (SNI), signed by it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

/// Validity: from a day ago to a week ahead (clients check it against their clock).
fn validity(p: &mut CertificateParams) {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
            / 86_400;
    let ymd = |days: i64| {
        let (y, m, d) = super::diff::civil_from_days(days);
        rcgen::date_time_ymd(y as i32, m as u8, d as u8)
    };
    p.not_before = ymd(now - 1);
    p.not_after = ymd(now + 7);
}

impl Ca {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let mut p = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "aiwatch audit throwaway CA");
        p.distinguished_name.push(DnType::OrganizationName, "aiwatch audit");
        p.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut p);
        let key = KeyPair::generate().context("CA key")?;
        let issuer = CertifiedIssuer::self_signed(p, key).context("self-signing the CA")?;
        Ok(Arc::new(Self { issuer, leaves: Mutex::new(HashMap::new()) }))
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` (a DNS name or an IP address), made once and kept.
    pub fn leaf(&self, name: &str) -> anyhow::Result<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.leaves.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.get(&name) {
            return Ok(k.clone());
        }
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.subject_alt_names = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SanType::IpAddress(ip)],
            Err(_) => vec![SanType::DnsName(name.clone().try_into().context("certificate name")?)],
        };
        p.distinguished_name.push(DnType::CommonName, name.clone());
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer).context("signing a leaf certificate")?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).context("leaf key")?;
        let ck = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(cert.der().to_vec()), self.issuer.der().clone()],
            signer,
        ));
        self.leaves.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(name, ck.clone());
        Ok(ck)
    }

    /// A rustls server configuration answering every name with a certificate of this CA.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug)]
struct Resolver(Arc<Ca>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI: the client dialled an address (127.0.0.1).
        let name = hello.server_name().unwrap_or("127.0.0.1").to_string();
        self.0.leaf(&name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_chain_to_the_ca_and_are_cached() {
        let ca = Ca::new().unwrap();
        assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let a = ca.leaf("API.Anthropic.com").unwrap();
        let b = ca.leaf("api.anthropic.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.cert.len(), 2);
        assert!(ca.leaf("127.0.0.1").is_ok());
        assert!(ca.server_config().is_ok());
    }
}
