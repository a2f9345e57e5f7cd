//! TLS configurations of the cluster links that run over TCP: control's cluster listener (Raft
//! peers and bridge sessions) and its clients. Both ends present a certificate from the cluster
//! CA and verify the other's; nothing else is trusted.

use crate::ca::{ClusterIdentity, ClusterName, PkiError, cluster_name_of, crypto_provider, root_store};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// The name a client asks for when it does not know which control node it reaches (a bridge
/// given a control node's address). The verifier accepts any control node's certificate then.
pub const ANY_CONTROL_SERVER_NAME: &str = "control.bridgemesh";

fn tls_error(err: impl std::fmt::Display) -> PkiError {
    PkiError::NotIssuedByCa(rustls::Error::General(err.to_string()))
}

/// The cluster listener's configuration: its certificate, and a client certificate from the
/// cluster CA demanded of every connection (which member it names is the routes' business).
pub fn server_config(identity: &ClusterIdentity) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(root_store(identity.ca_cert())?, provider.clone())
            .build()
            .map_err(tls_error)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain().to_vec(), identity.key().clone_key())
        .map_err(PkiError::KeyMismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that presents `identity` and accepts only a control node's
/// certificate from the cluster CA (any control node: they are equals).
pub fn control_client_config(identity: &ClusterIdentity) -> Result<Arc<ClientConfig>, PkiError> {
    let provider = crypto_provider();
    let inner =
        WebPkiServerVerifier::builder_with_provider(root_store(identity.ca_cert())?, provider.clone())
            .build()
            .map_err(tls_error)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ControlServerVerifier { inner }))
        .with_client_auth_cert(identity.cert_chain().to_vec(), identity.key().clone_key())
        .map_err(PkiError::KeyMismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to put in a client hello toward a control node.
pub fn any_control_server_name() -> ServerName<'static> {
    ServerName::try_from(ANY_CONTROL_SERVER_NAME).expect("a DNS name")
}

/// Verifies a server certificate as WebPKI does under the cluster CA, for the control node name
/// the certificate itself carries: the client reached an address, not a name, and every control
/// node may answer there.
#[derive(Debug)]
struct ControlServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ControlServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = match cluster_name_of(end_entity) {
            Ok(name @ ClusterName::Control(_)) => name,
            Ok(ClusterName::Bridge(_)) | Err(_) => {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName,
                ));
            }
        };
        let server_name = name
            .server_name()
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Who the peer of an established connection is, by its (verified) certificate.
pub fn peer_name(connection: &rustls::CommonState) -> Option<ClusterName> {
    let end_entity = connection.peer_certificates()?.first()?;
    cluster_name_of(end_entity).ok()
}
