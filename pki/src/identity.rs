//! What a cluster member presents on every link: its certificate chain, its private key, and the
//! CA certificate it trusts peers under. One type, [`ClusterIdentity`], for bridges and control
//! nodes alike; [`BridgeIdentity`] is the same identity known to name a bridge.

use crate::ca::{
    BRIDGE_CERT_FILE, BRIDGE_KEY_FILE, CA_CERT_FILE, CONTROL_CERT_FILE, CONTROL_KEY_FILE, ClusterName,
    PkiError, cluster_name_of, crypto_provider, root_store,
};
use crate::pem_files::{create_dir, parse_pem_cert, parse_pem_certs, read_pem_file, to_pem, write_file};
use bridgemesh_proto::ids::BridgeId;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::Arc;

/// A cluster member's certificate chain, its private key, and the CA certificate it trusts peers
/// under: what a node presents on every link to another node, bridge or control.
#[derive(Clone)]
pub struct ClusterIdentity {
    name: ClusterName,
    cert_chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    ca_cert: CertificateDer<'static>,
}

impl std::fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClusterIdentity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Checks that `key` is the chain's, that the chain is valid under `ca_cert` for server and client
/// use under the name it carries, and returns that name.
fn check_chain(
    cert_chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    ca_cert: &CertificateDer<'static>,
) -> Result<ClusterName, PkiError> {
    let provider = crypto_provider();
    rustls::sign::CertifiedKey::from_der(cert_chain.to_vec(), key.clone_key(), &provider)
        .map_err(PkiError::KeyMismatch)?;
    let (end_entity, intermediates) = cert_chain.split_first().ok_or(PkiError::Pem {
        what: "certificate",
        reason: "empty chain".into(),
    })?;
    let name = cluster_name_of(end_entity)?;
    let roots = root_store(ca_cert)?;
    let now = UnixTime::now();
    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| PkiError::NotIssuedByCa(rustls::Error::General(e.to_string())))?
        .verify_server_cert(end_entity, intermediates, &name.server_name()?, &[], now)
        .map_err(PkiError::NotIssuedByCa)?;
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| PkiError::NotIssuedByCa(rustls::Error::General(e.to_string())))?
        .verify_client_cert(end_entity, intermediates, now)
        .map_err(PkiError::NotIssuedByCa)?;
    Ok(name)
}

impl ClusterIdentity {
    /// An identity from its parts. Checks that the key is the certificate's, that the chain is
    /// valid under `ca_cert` for both server and client use, and reads who it names.
    pub fn new(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca_cert: CertificateDer<'static>,
    ) -> Result<Self, PkiError> {
        let name = check_chain(&cert_chain, &key, &ca_cert)?;
        Ok(Self {
            name,
            cert_chain,
            key: Arc::new(key),
            ca_cert,
        })
    }

    /// An identity from PEM: the certificate chain (the member's certificate first), its PKCS#8
    /// key, and the cluster CA certificate.
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str, ca_cert_pem: &str) -> Result<Self, PkiError> {
        let cert_chain = parse_pem_certs("certificate", cert_chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| PkiError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
        let ca_cert = parse_pem_cert("CA certificate", ca_cert_pem)?;
        Self::new(cert_chain, key, ca_cert)
    }

    /// A control node's identity from `dir` ([`CONTROL_CERT_FILE`], [`CONTROL_KEY_FILE`],
    /// [`CA_CERT_FILE`]), as `bridgemesh ca issue-control` writes it.
    pub fn load_control(dir: &Path) -> Result<Self, PkiError> {
        let identity = Self::load_files(dir, CONTROL_CERT_FILE, CONTROL_KEY_FILE)?;
        match identity.name {
            ClusterName::Control(_) => Ok(identity),
            ref other => Err(PkiError::WrongRole {
                expected: "control node",
                found: other.to_string(),
            }),
        }
    }

    /// Writes a control node's files into `dir` (see [`ClusterIdentity::load_control`]).
    pub fn save_control(&self, dir: &Path) -> Result<(), PkiError> {
        self.save_files(dir, CONTROL_CERT_FILE, CONTROL_KEY_FILE)
    }

    fn load_files(dir: &Path, cert_file: &str, key_file: &str) -> Result<Self, PkiError> {
        Self::from_pem(
            &read_pem_file(&dir.join(cert_file))?,
            &read_pem_file(&dir.join(key_file))?,
            &read_pem_file(&dir.join(CA_CERT_FILE))?,
        )
    }

    /// Writes the chain, the key (mode 0600) and the CA certificate into `dir`, creating it and
    /// replacing earlier files (reissuing is normal).
    fn save_files(&self, dir: &Path, cert_file: &str, key_file: &str) -> Result<(), PkiError> {
        create_dir(dir)?;
        write_file(&dir.join(key_file), &self.key_pem(), true)?;
        write_file(&dir.join(cert_file), &self.cert_chain_pem(), false)?;
        write_file(&dir.join(CA_CERT_FILE), &self.ca_cert_pem(), false)
    }

    /// Who this identity is.
    pub fn name(&self) -> &ClusterName {
        &self.name
    }

    /// The certificate chain, the member's certificate first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    /// The private key. Secret.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The CA certificate peers must chain to.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    pub fn cert_chain_pem(&self) -> String {
        self.cert_chain
            .iter()
            .map(|cert| to_pem("CERTIFICATE", cert))
            .collect()
    }

    /// The private key, PKCS#8 PEM. Secret.
    pub fn key_pem(&self) -> String {
        to_pem("PRIVATE KEY", self.key.secret_der())
    }

    pub fn ca_cert_pem(&self) -> String {
        to_pem("CERTIFICATE", &self.ca_cert)
    }
}

/// A [`ClusterIdentity`] whose certificate names a bridge.
#[derive(Clone)]
pub struct BridgeIdentity {
    bridge_id: BridgeId,
    identity: ClusterIdentity,
}

impl std::fmt::Debug for BridgeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("BridgeIdentity")
            .field("bridge_id", &self.bridge_id)
            .finish_non_exhaustive()
    }
}

impl From<&BridgeIdentity> for ClusterIdentity {
    fn from(bridge: &BridgeIdentity) -> Self {
        bridge.identity.clone()
    }
}

impl std::ops::Deref for BridgeIdentity {
    type Target = ClusterIdentity;

    fn deref(&self) -> &ClusterIdentity {
        &self.identity
    }
}

impl BridgeIdentity {
    /// An identity from its parts, checked as [`ClusterIdentity::new`] checks any member's; the
    /// certificate must name a bridge.
    pub fn new(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca_cert: CertificateDer<'static>,
    ) -> Result<Self, PkiError> {
        Self::from_cluster(ClusterIdentity::new(cert_chain, key, ca_cert)?)
    }

    /// An identity from PEM: the certificate chain (bridge certificate first), its PKCS#8 key,
    /// and the cluster CA certificate.
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str, ca_cert_pem: &str) -> Result<Self, PkiError> {
        Self::from_cluster(ClusterIdentity::from_pem(cert_chain_pem, key_pem, ca_cert_pem)?)
    }

    /// Reads [`BRIDGE_CERT_FILE`], [`BRIDGE_KEY_FILE`] and [`CA_CERT_FILE`] from `dir`.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        Self::from_cluster(ClusterIdentity::load_files(
            dir,
            BRIDGE_CERT_FILE,
            BRIDGE_KEY_FILE,
        )?)
    }

    fn from_cluster(identity: ClusterIdentity) -> Result<Self, PkiError> {
        match identity.name() {
            ClusterName::Bridge(id) => Ok(Self {
                bridge_id: id.clone(),
                identity,
            }),
            other => Err(PkiError::WrongRole {
                expected: "bridge",
                found: other.to_string(),
            }),
        }
    }

    /// The bridge this identity belongs to, as its certificate names it.
    pub fn bridge_id(&self) -> &BridgeId {
        &self.bridge_id
    }

    /// Writes [`BRIDGE_CERT_FILE`], [`BRIDGE_KEY_FILE`] (mode 0600) and [`CA_CERT_FILE`] into
    /// `dir`, creating it and replacing earlier files (reissuing is normal).
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        self.identity.save_files(dir, BRIDGE_CERT_FILE, BRIDGE_KEY_FILE)
    }
}
