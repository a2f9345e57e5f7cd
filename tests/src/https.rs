//! HTTPS from a test's side: a small PKI made with rcgen (a CA and a leaf for a domain), and a
//! client that trusts exactly that CA and reaches a domain at an address the test chooses, the
//! way `--host-resolver-rules` does for Chromium. Plain HTTP/1.1 written by hand, so a test sees
//! status codes and headers exactly as the server sent them.

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_MAX_BYTES: usize = 1 << 20;

/// A test CA and a certificate it issued for `domain`.
pub struct TestPki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    pub fn new(domain: &str) -> Self {
        Self::with_names(&[domain.to_owned()])
    }

    /// A leaf for several names; a name that parses as an IP address becomes an IP SAN.
    pub fn with_names(names: &[String]) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bridgemesh test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let (leaf_pem, leaf_key_pem) = issue(&issuer, names);
        Self {
            ca_pem: ca.pem(),
            leaf_pem,
            leaf_key_pem,
            issuer,
        }
    }

    /// Another leaf (certificate and key PEM) for `names` from the same CA.
    pub fn reissue(&self, names: &[String]) -> (String, String) {
        issue(&self.issuer, names)
    }
}

fn issue(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, names: &[String]) -> (String, String) {
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf_params = rcgen::CertificateParams::new(names.to_vec()).expect("params");
    let leaf = leaf_params.signed_by(&leaf_key, issuer).expect("leaf");
    (leaf.pem(), leaf_key.serialize_pem())
}

/// A TLS client trusting only the CA certificates in `ca_pem`.
pub fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `domain` at `addr`, its certificate verified against `ca_pem`.
pub async fn tls_connect(
    addr: SocketAddr,
    domain: &str,
    ca_pem: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await??;
    let name = ServerName::try_from(domain.to_owned()).expect("domain");
    tokio::time::timeout(IO_TIMEOUT, connector(ca_pem).connect(name, tcp)).await?
}

/// A response as received: status, headers (lower-cased names) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request over `stream` (`Connection: close`), the response read to its end.
pub async fn request<S>(stream: &mut S, host: &str, method: &str, path: &str, json: Option<&str>) -> Response
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    request_with_bearer(stream, host, method, path, json, None).await
}

/// [`request`] with `Authorization: Bearer <bearer>` when given.
pub async fn request_with_bearer<S>(
    stream: &mut S,
    host: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    bearer: Option<&str>,
) -> Response
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let body = json.unwrap_or("");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(bearer) = bearer {
        head.push_str(&format!("Authorization: Bearer {bearer}\r\n"));
    }
    if json.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    tokio::time::timeout(IO_TIMEOUT, stream.write_all(head.as_bytes()))
        .await
        .expect("request written in time")
        .expect("request written");
    let mut raw = Vec::new();
    let read = tokio::time::timeout(IO_TIMEOUT, async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&chunk[..n]);
                    assert!(raw.len() < RESPONSE_MAX_BYTES, "response too large");
                }
                // rustls reports a peer that closed without close_notify; the response is whole.
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(err) => panic!("reading the response: {err}"),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no complete response within {IO_TIMEOUT:?}");
    parse_response(&raw)
}

/// One HTTP/1.1 request on a connection kept open for more: the response is read by its
/// `Content-Length`.
pub async fn request_keep_alive<S>(stream: &mut S, host: &str, path: &str) -> Response
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("request written");
    let mut raw = Vec::new();
    let read = tokio::time::timeout(IO_TIMEOUT, async {
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await.expect("reading the response");
            assert!(n > 0, "the server closed the connection");
            raw.extend_from_slice(&chunk[..n]);
            assert!(raw.len() < RESPONSE_MAX_BYTES, "response too large");
            if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("a length"));
                if raw.len() >= split + 4 + length {
                    return;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no complete response within {IO_TIMEOUT:?}");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&body[..line_end]).expect("chunk size");
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).expect("chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
    out
}

/// `GET` or `POST` over a fresh HTTPS connection.
pub async fn https(
    addr: SocketAddr,
    domain: &str,
    ca_pem: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Response {
    let mut tls = tls_connect(addr, domain, ca_pem)
        .await
        .unwrap_or_else(|err| panic!("TLS to {domain} at {addr}: {err}"));
    request(&mut tls, domain, method, path, json).await
}

/// `GET path` over a fresh HTTPS connection with a bearer token.
pub async fn https_get_with_bearer(
    addr: SocketAddr,
    domain: &str,
    ca_pem: &str,
    path: &str,
    bearer: &str,
) -> Response {
    let mut tls = tls_connect(addr, domain, ca_pem)
        .await
        .unwrap_or_else(|err| panic!("TLS to {domain} at {addr}: {err}"));
    request_with_bearer(&mut tls, domain, "GET", path, None, Some(bearer)).await
}

/// A request over HTTPS on a TCP connection made elsewhere (inside a network namespace).
pub async fn https_over(
    tcp: std::net::TcpStream,
    domain: &str,
    ca_pem: &str,
    method: &str,
    path: &str,
) -> Response {
    tcp.set_nonblocking(true).expect("non-blocking");
    let tcp = TcpStream::from_std(tcp).expect("a tokio stream");
    let name = ServerName::try_from(domain.to_owned()).expect("domain");
    let mut tls = tokio::time::timeout(IO_TIMEOUT, connector(ca_pem).connect(name, tcp))
        .await
        .expect("TLS in time")
        .unwrap_or_else(|err| panic!("TLS to {domain}: {err}"));
    request(&mut tls, domain, method, path, None).await
}

/// `GET` over plain HTTP.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> Response {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    request(&mut tcp, host, "GET", path, None).await
}

/// The certificate the server at `addr` presents for `domain` (leaf, DER).
pub async fn presented_leaf(addr: SocketAddr, domain: &str, ca_pem: &str) -> Vec<u8> {
    let tls = tls_connect(addr, domain, ca_pem)
        .await
        .unwrap_or_else(|err| panic!("TLS to {domain} at {addr}: {err}"));
    let (_, connection) = tls.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a certificate")
        .to_vec()
}

/// `up::start` on the state directory a [`bridgemesh::up::Running`] just stopped with: an
/// in-process restart. `stop` returns once the control node's Raft store is closed, so the
/// restart opens it at once.
pub async fn restart_up(config: bridgemesh::up::UpConfig) -> bridgemesh::up::Running {
    bridgemesh::up::start(config)
        .await
        .unwrap_or_else(|err| panic!("restart: {err:#}"))
}
