//! `up --domain` with `--tls-cert/--tls-key`: one TLS port serves the web client, the control
//! API, the bridge's signaling WebSocket (wss) and TURN over TLS; port 80 only redirects; the
//! state directory keeps the secrets across a restart. Loopback only; the certificate is from a
//! test CA the client trusts (and nothing else).

use bridgemesh::public::PublicConfig;
use bridgemesh::up::{self, UpConfig};
use bridgemesh_tests::harness::init_tracing;
use bridgemesh_tests::https::{
    TestPki, http_get, https, https_get_with_bearer, presented_leaf, request_keep_alive, restart_up,
    tls_connect,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const DOMAIN: &str = "meet.bridgemesh.test";

fn public_config(state_dir: &Path, pki_dir: &Path) -> PublicConfig {
    PublicConfig {
        domain: DOMAIN.to_owned(),
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        public_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        https_port: 0,
        http_port: 0,
        state_dir: state_dir.to_owned(),
        tls_cert: Some(pki_dir.join("cert.pem")),
        tls_key: Some(pki_dir.join("key.pem")),
        tls_files_check_s: 1,
        ..PublicConfig::default()
    }
}

async fn start(state_dir: &Path, pki_dir: &Path) -> up::Running {
    up::start(UpConfig {
        public: Some(public_config(state_dir, pki_dir)),
        ..UpConfig::ephemeral()
    })
    .await
    .expect("up --domain starts")
}

/// A STUN Allocate request without credentials; a TURN server answers 401 with a nonce.
fn allocate_request() -> Vec<u8> {
    let mut message = vec![0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42];
    message.extend_from_slice(&[7u8; 12]); // transaction id
    message.extend_from_slice(&[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]); // REQUESTED-TRANSPORT UDP
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_up_serves_web_api_signaling_and_turn_on_one_port() {
    init_tracing();
    let pki = TestPki::new(DOMAIN);
    let pki_dir = tempfile::tempdir().unwrap();
    std::fs::write(pki_dir.path().join("cert.pem"), &pki.leaf_pem).unwrap();
    std::fs::write(pki_dir.path().join("key.pem"), &pki.leaf_key_pem).unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let running = start(state_dir.path(), pki_dir.path()).await;
    let front = running.public.as_ref().expect("a public front");
    let https_addr = front.https_addr;
    let origin = format!("https://{DOMAIN}:{}", https_addr.port());
    assert_eq!(running.control_url, origin);

    // /metrics on the internet needs the token kept in the state directory, control's and the
    // bridges' alike; /health does not.
    let token = std::fs::read_to_string(state_dir.path().join("metrics-token")).unwrap();
    for path in [
        "/metrics",
        "/bridges/local-1/metrics",
        "/bridges/local-1/metrics/turn",
    ] {
        let open = https(https_addr, DOMAIN, &pki.ca_pem, "GET", path, None).await;
        assert_eq!(open.status, 401, "{path} without the token");
    }
    for path in ["/metrics", "/bridges/local-1/metrics"] {
        let scraped = https_get_with_bearer(https_addr, DOMAIN, &pki.ca_pem, path, token.trim()).await;
        assert_eq!(scraped.status, 200, "{path} with the token");
    }
    let health = https(https_addr, DOMAIN, &pki.ca_pem, "GET", "/health", None).await;
    assert_eq!(health.status, 200);

    // The web client and the API over HTTPS.
    let page = https(https_addr, DOMAIN, &pki.ca_pem, "GET", "/standup", None).await;
    assert_eq!(page.status, 200);
    assert!(
        String::from_utf8_lossy(&page.body).contains("app.js"),
        "the web client's page"
    );
    let join = https(
        https_addr,
        DOMAIN,
        &pki.ca_pem,
        "POST",
        "/api/v1/rooms/standup/join",
        Some(r#"{"display_name":"Ada"}"#),
    )
    .await;
    assert_eq!(join.status, 200, "{:?}", join.json());
    let join = join.json();
    let signaling_url = join["signaling_url"]
        .as_str()
        .expect("a signaling URL")
        .to_owned();
    assert_eq!(
        signaling_url,
        format!(
            "wss://{DOMAIN}:{}/bridges/local-1/bridge/v1/signal",
            https_addr.port()
        )
    );
    let urls: Vec<&str> = join["ice_servers"][0]["urls"]
        .as_array()
        .expect("TURN URLs")
        .iter()
        .filter_map(|url| url.as_str())
        .collect();
    let turns = format!("turns:{DOMAIN}:{}?transport=tcp", https_addr.port());
    assert!(urls.contains(&turns.as_str()), "{urls:?}");

    // The bridge's signaling over WSS on the same port: the ticket is welcomed.
    let tls = tls_connect(https_addr, DOMAIN, &pki.ca_pem).await.expect("TLS");
    let (mut ws, _) = tokio_tungstenite::client_async(signaling_url.as_str(), tls)
        .await
        .expect("WebSocket upgrade over TLS");
    use futures_util::{SinkExt as _, StreamExt as _};
    let hello = serde_json::json!({"type": "hello", "ticket": join["ticket"]}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(hello.into()))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer to hello")
        .expect("an open socket")
        .expect("a message");
    let first: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first["type"], "welcome", "{first}");
    drop(ws);

    // TURN over TLS on the same port: a STUN Allocate gets the TURN server's 401.
    let mut tls = tls_connect(https_addr, DOMAIN, &pki.ca_pem).await.expect("TLS");
    tls.write_all(&allocate_request()).await.unwrap();
    let mut header = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut header))
        .await
        .expect("a TURN answer in time")
        .expect("a STUN header");
    assert_eq!(&header[..2], &[0x01, 0x13], "an Allocate error response");
    assert_eq!(&header[4..8], &[0x21, 0x12, 0xA4, 0x42]);
    assert_eq!(&header[8..20], &[7u8; 12], "the request's transaction");

    // Port 80 redirects to the same path on https, whatever Host the request names.
    let redirect = http_get(front.http_addr, "evil.example", "/standup?x=1").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect.header("location"),
        Some(format!("{origin}/standup?x=1").as_str())
    );

    // A client that does not trust the test CA is refused.
    let stranger = TestPki::new(DOMAIN);
    assert!(tls_connect(https_addr, DOMAIN, &stranger.ca_pem).await.is_err());

    // Certificate files replaced by another tool (certbot): the new one is served to new
    // connections, the connection opened before keeps working.
    let mut open_before = tls_connect(https_addr, DOMAIN, &pki.ca_pem).await.expect("TLS");
    let before = request_keep_alive(&mut open_before, DOMAIN, "/health").await;
    assert_eq!(before.status, 200);
    let first_leaf = presented_leaf(https_addr, DOMAIN, &pki.ca_pem).await;
    let (leaf, key) = pki.reissue(&[DOMAIN.to_owned()]);
    std::fs::write(pki_dir.path().join("key.pem"), key).unwrap();
    std::fs::write(pki_dir.path().join("cert.pem"), leaf).unwrap();
    let mut certificates = front.certificates.clone();
    let first_serial = certificates
        .borrow_and_update()
        .as_ref()
        .unwrap()
        .serial_hex
        .clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        certificates.wait_for(|c| c.as_ref().is_some_and(|c| c.serial_hex != first_serial)),
    )
    .await
    .expect("the changed files are loaded")
    .expect("the front is running");
    assert_ne!(presented_leaf(https_addr, DOMAIN, &pki.ca_pem).await, first_leaf);
    let after = request_keep_alive(&mut open_before, DOMAIN, "/health").await;
    assert_eq!(after.status, 200, "a connection from before the swap still works");
    // Closed by the client: the HTTP server's graceful stop waits for open connections.
    drop(open_before);

    // A restart on the same state directory keeps the admin token (and the cluster secret).
    let token = running.admin_token.clone();
    running.stop().await;
    let again = restart_up(UpConfig {
        public: Some(public_config(state_dir.path(), pki_dir.path())),
        ..UpConfig::ephemeral()
    })
    .await;
    assert_eq!(again.admin_token, token);
    again.stop().await;
}
