//! The public listener's certificate: loaded from PEM, swapped in place when renewed. rustls asks
//! [`CertificateSlot`] for the certificate at each handshake, so a swap takes effect for the next
//! connection while open ones keep the session they negotiated.

use crate::public::renewal::Validity;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    #[error("no certificate in the PEM text")]
    NoCertificate,
    #[error("cannot read the certificate chain: {0}")]
    Chain(String),
    #[error("cannot read the private key: {0}")]
    Key(String),
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("the certificate does not cover {0}")]
    WrongName(String),
}

/// A certificate chain with its key, ready for rustls, and its validity.
#[derive(Clone)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub validity: Validity,
    /// The leaf's serial number in hex: shows a renewal took effect.
    pub serial_hex: String,
}

impl std::fmt::Debug for LoadedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCertificate")
            .field("validity", &self.validity)
            .field("serial_hex", &self.serial_hex)
            .finish_non_exhaustive()
    }
}

impl LoadedCertificate {
    /// Parses a PEM chain (leaf first) and a PEM private key; with `domain`, checks the leaf
    /// names it, so a certificate for another site is refused at start rather than by browsers.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        domain: Option<&str>,
    ) -> Result<Self, CertificateError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| CertificateError::Chain(err.to_string()))?;
        let leaf = chain.first().ok_or(CertificateError::NoCertificate)?;
        let (validity, serial_hex) = leaf_facts(leaf, domain)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| CertificateError::Key(err.to_string()))?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|err| CertificateError::UnsupportedKey(err.to_string()))?;
        Ok(Self {
            key: Arc::new(CertifiedKey::new(chain, signing_key)),
            validity,
            serial_hex,
        })
    }
}

fn leaf_facts(
    leaf: &CertificateDer<'_>,
    domain: Option<&str>,
) -> Result<(Validity, String), CertificateError> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|err| CertificateError::Parse(err.to_string()))?;
    let time = |t: x509_parser::time::ASN1Time| {
        let s = t.timestamp();
        if s >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    let validity = Validity {
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
    };
    if let Some(domain) = domain {
        let names: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !names.iter().any(|name| name_matches(name, domain)) {
            return Err(CertificateError::WrongName(domain.to_owned()));
        }
    }
    Ok((validity, hex::encode(cert.raw_serial())))
}

/// `name` from a certificate (maybe `*.example.org`) covers `domain`.
fn name_matches(name: &str, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(suffix) => domain
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => name == domain,
    }
}

/// The certificate the public listener presents; replaced in place on renewal.
#[derive(Debug, Default)]
pub struct CertificateSlot {
    current: RwLock<Option<LoadedCertificate>>,
}

impl CertificateSlot {
    pub fn new(certificate: Option<LoadedCertificate>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(certificate),
        })
    }

    pub fn replace(&self, certificate: LoadedCertificate) {
        *self.current.write().expect("certificate lock") = Some(certificate);
    }

    pub fn current(&self) -> Option<LoadedCertificate> {
        self.current.read().expect("certificate lock").clone()
    }
}

impl ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .expect("certificate lock")
            .as_ref()
            .map(|certificate| certificate.key.clone())
    }
}

/// A rustls server configuration presenting whatever `slot` holds (ring provider only).
pub fn server_config(slot: Arc<CertificateSlot>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_a_chain_and_reads_its_validity() {
        let (cert, key) = self_signed(&["meet.example.org"]);
        let loaded =
            LoadedCertificate::from_pem(cert.as_bytes(), key.as_bytes(), Some("meet.example.org")).unwrap();
        assert!(loaded.validity.not_after > loaded.validity.not_before);
        assert!(!loaded.serial_hex.is_empty());
    }

    #[test]
    fn refuses_a_certificate_for_another_name() {
        let (cert, key) = self_signed(&["other.example.org"]);
        let err = LoadedCertificate::from_pem(cert.as_bytes(), key.as_bytes(), Some("meet.example.org"))
            .unwrap_err();
        assert!(matches!(err, CertificateError::WrongName(_)), "{err}");
    }

    #[test]
    fn refuses_empty_and_garbage_input() {
        let (_, key) = self_signed(&["a.example"]);
        assert!(matches!(
            LoadedCertificate::from_pem(b"", key.as_bytes(), None),
            Err(CertificateError::NoCertificate)
        ));
        let (cert, _) = self_signed(&["a.example"]);
        assert!(LoadedCertificate::from_pem(cert.as_bytes(), b"not a key", None).is_err());
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.example.org", "meet.example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(name_matches("meet.example.org", "MEET.example.org"));
    }
}
