//! coturn's `turnutils_uclient` (a TURN client we did not write) allocates on our server with
//! REST credentials (`-W <secret>`: it derives `<expiry>:<user>` and the HMAC itself), creates
//! permissions, binds channels (or uses Send indications with `-s`) and relays to an echo peer and
//! back, over UDP, TCP and TLS. Every message it sent must come back.

use bridgemesh_tests::turn::{run_uclient, turn_lab};
use std::net::SocketAddr;

const MESSAGES: u32 = 50;

async fn relays_everything(transport: &str, extra: &[&str]) {
    let cert_dir =
        std::env::temp_dir().join(format!("bridgemesh-turn-tls-{}-{transport}", std::process::id()));
    let lab = turn_lab(|config| {
        if transport == "tls" {
            let (cert, key) = write_self_signed(&cert_dir);
            config.tls_listen = Some("127.0.0.1:0".parse().unwrap());
            config.tls_cert_path = Some(cert);
            config.tls_key_path = Some(key);
        }
    })
    .await;
    let server: SocketAddr = match transport {
        "udp" => lab.server.udp_addr(),
        "tcp" => lab.server.tcp_addr(),
        _ => lab.server.tls_addr(),
    }
    .expect("listening");
    let report = run_uclient(server, lab.echo, MESSAGES, extra).await;
    let stats = lab.server.stats();
    assert_eq!(report.sent, 2 * u64::from(MESSAGES), "{}", report.output);
    // The server's counters say which leg lost a message, if one is lost.
    assert_eq!(
        report.received, report.sent,
        "every message came back through the relay ({stats:?}):\n{}",
        report.output
    );
    assert!(
        stats.client_to_peer_packets_total >= report.sent
            && stats.peer_to_client_packets_total >= report.sent,
        "{stats:?}"
    );
    assert!(stats.allocations_total >= 2, "{stats:?}");
    assert_eq!(stats.auth_failures_total, 0, "{stats:?}");
    let _ = std::fs::remove_dir_all(&cert_dir);
}

/// A self-signed certificate for 127.0.0.1 made here (nothing downloaded); uclient does not verify.
fn write_self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("rcgen makes a certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_uclient_relays_over_udp_with_channels() {
    relays_everything("udp", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_uclient_relays_over_udp_with_send_indications() {
    relays_everything("udp", &["-s"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_uclient_relays_over_tcp_with_channels() {
    relays_everything("tcp", &["-t"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_uclient_relays_over_tcp_with_send_indications() {
    relays_everything("tcp", &["-t", "-s"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_uclient_relays_over_tls() {
    relays_everything("tls", &["-t", "-S"]).await;
}
