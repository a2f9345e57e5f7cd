//! The cluster CA and the certificates it issues to bridges and control nodes.
//!
//! Every link between nodes is mutual TLS under the cluster CA: bridge to bridge (cascade),
//! control to control (Raft), bridge to control (the bridge session). A certificate names its
//! holder with exactly one DNS name: `<bridge id>.bridge.bridgemesh` for a bridge,
//! `<node id>.control.bridgemesh` for a control node. The CA is ours alone (no public CA can issue
//! such names), so a certificate that chains to it and names a bridge proves the peer is that
//! bridge.
//!
//! The CA's subject and key usages are fixed, so the issuer can be rebuilt from the CA key alone:
//! this avoids an X.509 parser for the CA certificate. Loading checks that the certificate and the
//! key belong together by issuing a throwaway certificate and verifying it against the loaded one.

use bridgemesh_proto::ids::{BridgeId, IdError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::identity::{BridgeIdentity, ClusterIdentity};
use crate::pem_files::{create_dir, parse_pem_cert, read_pem_file, write_file};

/// The DNS suffix of every bridge name: `<bridge id>.bridge.bridgemesh`.
pub const BRIDGE_NAME_SUFFIX: &str = ".bridge.bridgemesh";
/// The DNS suffix of every control node name: `<node id>.control.bridgemesh`.
pub const CONTROL_NAME_SUFFIX: &str = ".control.bridgemesh";
/// File names inside a CA directory and a bridge identity directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const BRIDGE_CERT_FILE: &str = "bridge.pem";
pub const BRIDGE_KEY_FILE: &str = "bridge-key.pem";
pub const CONTROL_CERT_FILE: &str = "control.pem";
pub const CONTROL_KEY_FILE: &str = "control-key.pem";

const CA_COMMON_NAME: &str = "bridgemesh cluster CA";
/// Long enough that nobody has to think about CA rotation for a deployment's life; short enough
/// that a leaked CA key does not stay useful forever.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Bridge certificates are reissued with the bridge (`bridgemesh up` makes new ones each start);
/// a year keeps a forgotten certificate from working indefinitely.
const BRIDGE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start being valid a little in the past so that a peer whose clock is behind does
/// not refuse a certificate issued a moment ago.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);

/// Why a CA or bridge identity could not be made, loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("cannot read or write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("{what} is not valid PEM: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("bridge id {bridge_id:?} cannot be a DNS name (dot-separated labels of 1-63 characters)")]
    BridgeIdNotDnsName { bridge_id: String },
    #[error("the certificate names no bridge (no DNS name ending in {BRIDGE_NAME_SUFFIX})")]
    NoBridgeName,
    #[error("the certificate names more than one bridge")]
    SeveralBridgeNames,
    #[error("the certificate's bridge name is not a valid bridge id: {0}")]
    BadBridgeId(#[from] IdError),
    #[error("the private key does not belong to the certificate, or cannot be used: {0}")]
    KeyMismatch(rustls::Error),
    #[error("the certificate is not valid under the cluster CA: {0}")]
    NotIssuedByCa(rustls::Error),
    #[error(
        "the certificate names no cluster member (no DNS name ending in {BRIDGE_NAME_SUFFIX} or {CONTROL_NAME_SUFFIX})"
    )]
    NoClusterName,
    #[error("the certificate names more than one cluster member")]
    SeveralClusterNames,
    #[error("the certificate's control node name is not a node id (a positive integer)")]
    BadControlNodeId,
    #[error("the certificate names {found}, not a {expected}")]
    WrongRole { expected: &'static str, found: String },
}

/// Who a cluster certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClusterName {
    Bridge(BridgeId),
    /// A control node, by its Raft node id.
    Control(u64),
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bridge(id) => write!(f, "bridge {id}"),
            Self::Control(id) => write!(f, "control node {id}"),
        }
    }
}

impl ClusterName {
    /// The DNS name the certificate carries (and a client asks for).
    pub fn server_name(&self) -> Result<ServerName<'static>, PkiError> {
        match self {
            Self::Bridge(id) => bridge_server_name(id),
            Self::Control(id) => Ok(control_server_name(*id)),
        }
    }
}

/// The DNS name a control node's certificate carries.
pub fn control_server_name(node_id: u64) -> ServerName<'static> {
    ServerName::try_from(format!("{node_id}{CONTROL_NAME_SUFFIX}")).expect("digits and dots form a DNS name")
}

/// Who a certificate names, bridge or control node. The certificate must already have been
/// verified: this only reads it.
pub fn cluster_name_of(cert: &CertificateDer<'_>) -> Result<ClusterName, PkiError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| PkiError::Pem {
        what: "certificate",
        reason: format!("not a parsable X.509 certificate: {e:?}"),
    })?;
    let mut names = parsed.valid_dns_names().filter_map(|name| {
        if let Some(id) = name.strip_suffix(BRIDGE_NAME_SUFFIX) {
            Some(BridgeId::new(id).map(ClusterName::Bridge).map_err(PkiError::from))
        } else {
            name.strip_suffix(CONTROL_NAME_SUFFIX).map(|id| {
                // Digits only: `u64::from_str` would also take a leading `+`.
                match id.parse::<u64>() {
                    Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => Ok(ClusterName::Control(n)),
                    _ => Err(PkiError::BadControlNodeId),
                }
            })
        }
    });
    let name = names.next().ok_or(PkiError::NoClusterName)??;
    if names.next().is_some() {
        return Err(PkiError::SeveralClusterNames);
    }
    Ok(name)
}

/// The cluster's certificate authority: signs one certificate per bridge.
pub struct ClusterCa {
    key: KeyPair,
    cert: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// The crypto provider of every TLS configuration here: ring, never aws-lc.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The DNS name a bridge's certificate carries and a connecting bridge asks for.
pub fn bridge_server_name(bridge_id: &BridgeId) -> Result<ServerName<'static>, PkiError> {
    let not_dns = || PkiError::BridgeIdNotDnsName {
        bridge_id: bridge_id.as_str().to_owned(),
    };
    match ServerName::try_from(format!("{}{BRIDGE_NAME_SUFFIX}", bridge_id.as_str())) {
        Ok(name @ ServerName::DnsName(_)) => Ok(name),
        // An id made only of digits and dots would read as an IPv4 address.
        Ok(_) | Err(_) => Err(not_dns()),
    }
}

/// The bridge id a certificate names. The certificate must already have been verified: this only
/// reads it.
pub fn bridge_id_of(cert: &CertificateDer<'_>) -> Result<BridgeId, PkiError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| PkiError::Pem {
        what: "certificate",
        reason: format!("not a parsable X.509 certificate: {e:?}"),
    })?;
    let mut ids = parsed
        .valid_dns_names()
        .filter_map(|name| name.strip_suffix(BRIDGE_NAME_SUFFIX));
    let id = ids.next().ok_or(PkiError::NoBridgeName)?;
    if ids.next().is_some() {
        return Err(PkiError::SeveralBridgeNames);
    }
    Ok(BridgeId::new(id)?)
}

fn now_plus(offset: Duration, add: bool) -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    if add { now + offset } else { now - offset }
}

/// The CA's parameters. Everything that ends up in an issued certificate's issuer fields is fixed
/// here, which is what lets [`ClusterCa::from_pem`] rebuild the issuer from the key alone.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    // Bridges' certificates are issued directly by the CA: no intermediates.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now_plus(CLOCK_SKEW_ALLOWANCE, false);
    params.not_after = now_plus(CA_VALIDITY, true);
    params
}

impl ClusterCa {
    /// A new CA with a fresh ECDSA P-256 key (the signature every TLS stack verifies).
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params().self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key,
        })
    }

    /// A CA from its certificate and PKCS#8 key, both PEM; checks they belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert = parse_pem_cert("CA certificate", cert_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Pem {
            what: "CA key",
            reason: e.to_string(),
        })?;
        let ca = Self {
            key,
            cert,
            cert_pem: cert_pem.to_owned(),
        };
        // A CA certificate made by another tool (different subject) or a key that is not the
        // certificate's would issue certificates no bridge accepts: find out now, not at the first
        // cascade handshake.
        let probe = BridgeId::new("ca-self-check").expect("a valid bridge id");
        ca.issue_bridge_cert(&probe)?;
        Ok(ca)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's PKCS#8 private key, PEM. Secret.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// Reads [`CA_CERT_FILE`] and [`CA_KEY_FILE`] from `dir`.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        Self::from_pem(
            &read_pem_file(&dir.join(CA_CERT_FILE))?,
            &read_pem_file(&dir.join(CA_KEY_FILE))?,
        )
    }

    /// Writes [`CA_CERT_FILE`] and [`CA_KEY_FILE`] (mode 0600) into `dir`, creating it. Refuses
    /// to replace an existing key: every bridge certificate issued under it would stop working.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        create_dir(dir)?;
        let key_path = dir.join(CA_KEY_FILE);
        if key_path.exists() {
            return Err(PkiError::AlreadyExists { path: key_path });
        }
        write_file(&key_path, &self.key_pem(), true)?;
        write_file(&dir.join(CA_CERT_FILE), &self.cert_pem, false)
    }

    /// A certificate for `bridge_id`, valid for both ends of a connection (server and client
    /// authentication), with a fresh ECDSA P-256 key.
    pub fn issue_bridge_cert(&self, bridge_id: &BridgeId) -> Result<BridgeIdentity, PkiError> {
        let (chain, key) = self.issue(&ClusterName::Bridge(bridge_id.clone()))?;
        BridgeIdentity::new(chain, key, self.cert.clone())
    }

    /// A certificate for control node `node_id`: it serves the cluster listener (Raft peers and
    /// bridge sessions) and is the node's client certificate toward other control nodes.
    pub fn issue_control_cert(&self, node_id: u64) -> Result<ClusterIdentity, PkiError> {
        let name = ClusterName::Control(node_id);
        let (chain, key) = self.issue(&name)?;
        ClusterIdentity::new(chain, key, self.cert.clone())
    }

    fn issue(
        &self,
        holder: &ClusterName,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let name = match holder.server_name()? {
            ServerName::DnsName(name) => name.as_ref().to_owned(),
            _ => unreachable!("cluster names are DNS names only"),
        };
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(
            DnType::CommonName,
            match holder {
                ClusterName::Bridge(id) => id.as_str().to_owned(),
                ClusterName::Control(id) => format!("control node {id}"),
            },
        );
        params.distinguished_name = subject;
        let not_dns = |_| match holder {
            ClusterName::Bridge(id) => PkiError::BridgeIdNotDnsName {
                bridge_id: id.as_str().to_owned(),
            },
            ClusterName::Control(_) => PkiError::BadControlNodeId,
        };
        params.subject_alt_names = vec![SanType::DnsName(
            rcgen::string::Ia5String::try_from(name).map_err(not_dns)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now_plus(CLOCK_SKEW_ALLOWANCE, false);
        params.not_after = now_plus(BRIDGE_CERT_VALIDITY, true);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        Ok((vec![cert.der().clone()], key_der))
    }
}

/// The trust store of every cluster link: the cluster CA alone.
pub fn root_store(ca_cert: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.clone()).map_err(PkiError::NotIssuedByCa)?;
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> BridgeId {
        BridgeId::new(value).unwrap()
    }

    #[test]
    fn issued_certificate_names_its_bridge_and_round_trips_through_pem() {
        let ca = ClusterCa::generate().unwrap();
        let identity = ca.issue_bridge_cert(&id("eu-west_1.b")).unwrap();
        assert_eq!(identity.bridge_id(), &id("eu-west_1.b"));

        let again = BridgeIdentity::from_pem(
            &identity.cert_chain_pem(),
            &identity.key_pem(),
            &identity.ca_cert_pem(),
        )
        .unwrap();
        assert_eq!(again.bridge_id(), identity.bridge_id());
        assert_eq!(again.cert_chain(), identity.cert_chain());
        assert_eq!(again.key().secret_der(), identity.key().secret_der());
        assert_eq!(again.ca_cert(), ca.cert_der());
    }

    #[test]
    fn ca_round_trips_through_pem_and_still_issues_valid_certificates() {
        let ca = ClusterCa::generate().unwrap();
        let loaded = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        // Valid under the original CA certificate: the rebuilt issuer is the same issuer.
        let identity = loaded.issue_bridge_cert(&id("b2")).unwrap();
        BridgeIdentity::new(
            identity.cert_chain().to_vec(),
            identity.key().clone_key(),
            ca.cert_der().clone(),
        )
        .unwrap();
    }

    #[test]
    fn ca_key_of_another_ca_is_refused() {
        let one = ClusterCa::generate().unwrap();
        let other = ClusterCa::generate().unwrap();
        let err = ClusterCa::from_pem(one.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(matches!(err, PkiError::NotIssuedByCa(_)), "{err}");
    }

    #[test]
    fn identity_under_another_ca_or_with_another_key_is_refused() {
        let ca = ClusterCa::generate().unwrap();
        let other = ClusterCa::generate().unwrap();
        let identity = ca.issue_bridge_cert(&id("b1")).unwrap();
        let err = BridgeIdentity::from_pem(&identity.cert_chain_pem(), &identity.key_pem(), other.cert_pem())
            .unwrap_err();
        assert!(matches!(err, PkiError::NotIssuedByCa(_)), "{err}");

        let stranger = ca.issue_bridge_cert(&id("b2")).unwrap();
        let err = BridgeIdentity::from_pem(&identity.cert_chain_pem(), &stranger.key_pem(), ca.cert_pem())
            .unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch(_)), "{err}");
    }

    #[test]
    fn a_control_identity_is_not_a_bridge_identity_and_round_trips_as_itself() {
        let ca = ClusterCa::generate().unwrap();
        let control = ca.issue_control_cert(7).unwrap();
        let err = BridgeIdentity::from_pem(&control.cert_chain_pem(), &control.key_pem(), ca.cert_pem())
            .unwrap_err();
        assert!(matches!(err, PkiError::WrongRole { .. }), "{err}");

        let dir = tempfile::tempdir().unwrap();
        control.save_control(dir.path()).unwrap();
        let loaded = ClusterIdentity::load_control(dir.path()).unwrap();
        assert_eq!(loaded.name(), &ClusterName::Control(7));
        assert_eq!(loaded.key().secret_der(), control.key().secret_der());
        assert!(BridgeIdentity::load(dir.path()).is_err(), "no bridge files there");
    }

    #[test]
    fn bridge_ids_that_cannot_be_dns_names_are_refused() {
        let ca = ClusterCa::generate().unwrap();
        for bad in ["a..b", "-a", "a-", &"x".repeat(64), "a."] {
            let err = ca.issue_bridge_cert(&id(bad)).unwrap_err();
            assert!(matches!(err, PkiError::BridgeIdNotDnsName { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn files_load_back_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate().unwrap();
        ca.save(dir.path()).unwrap();
        let loaded = ClusterCa::load(dir.path()).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        assert!(matches!(ca.save(dir.path()), Err(PkiError::AlreadyExists { .. })));

        let out = dir.path().join("b1");
        ca.issue_bridge_cert(&id("b1")).unwrap().save(&out).unwrap();
        let identity = BridgeIdentity::load(&out).unwrap();
        assert_eq!(identity.bridge_id(), &id("b1"));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for key in [dir.path().join(CA_KEY_FILE), out.join(BRIDGE_KEY_FILE)] {
                let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
    }
}
