//! `up --domain` against a real ACME server (Debian's pebble): it orders a certificate, proves
//! control of the domain over http-01 on its port 80 listener, serves HTTPS with the certificate,
//! renews it when it nears expiry (pebble issues 24-second certificates here, so renewal is due
//! after 16 s) and swaps it in without dropping an open connection; a restart reuses the stored
//! certificate instead of ordering again.

use bridgemesh::public::PublicConfig;
use bridgemesh::up::{self, UpConfig};
use bridgemesh_tests::harness::init_tracing;
use bridgemesh_tests::https::{https, presented_leaf, request_keep_alive, restart_up, tls_connect};
use bridgemesh_tests::pebble::{Pebble, free_tcp_port};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

const DOMAIN: &str = "meet.bridgemesh.test";
const VALIDITY_S: u64 = 24;

/// An address of 127.0.0.0/8 of this test's own, so the ports picked for pebble and port 80
/// cannot be taken meanwhile by tests binding 127.0.0.1.
fn own_loopback() -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(127, 77, (pid >> 8) as u8, (pid as u8).max(1)))
}

fn config(pebble: &Pebble, http_port: u16, state_dir: &Path) -> UpConfig {
    UpConfig {
        public: Some(PublicConfig {
            domain: DOMAIN.to_owned(),
            bind_ip: own_loopback(),
            public_ip: Some(own_loopback()),
            https_port: 0,
            http_port,
            state_dir: state_dir.to_owned(),
            acme_directory: pebble.directory_url.clone(),
            acme_ca_file: Some(pebble.directory_ca_file.clone()),
            ..PublicConfig::default()
        }),
        ..UpConfig::ephemeral()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificate_from_pebble_is_served_and_renewed() {
    init_tracing();
    let loopback = own_loopback();
    let http_port = free_tcp_port(loopback);
    let pebble = Pebble::start(loopback, loopback, http_port, VALIDITY_S).await;
    let state_dir = tempfile::tempdir().unwrap();
    let running = match up::start(config(&pebble, http_port, state_dir.path())).await {
        Ok(running) => running,
        Err(err) => panic!("up --domain with ACME: {err:#}{}", pebble.logs()),
    };
    let roots = pebble.issuing_roots_pem().await;
    let front = running.public.as_ref().expect("a public front");
    let took = front.first_order.expect("this start ordered a certificate");
    println!("time to first certificate from pebble: {} ms", took.as_millis());
    let addr = front.https_addr;

    let health = https(addr, DOMAIN, &roots, "GET", "/health", None).await;
    assert_eq!(health.status, 200);
    let first_leaf = presented_leaf(addr, DOMAIN, &roots).await;
    let first_serial = front.certificates.borrow().as_ref().unwrap().serial_hex.clone();

    // A connection opened on the first certificate, used again after the swap.
    let mut open_before = tls_connect(addr, DOMAIN, &roots).await.expect("TLS");
    let before = request_keep_alive(&mut open_before, DOMAIN, "/health").await;
    assert_eq!(before.status, 200);
    let mut certificates = front.certificates.clone();
    tokio::time::timeout(
        Duration::from_secs(VALIDITY_S * 3),
        certificates.wait_for(|c| c.as_ref().is_some_and(|c| c.serial_hex != first_serial)),
    )
    .await
    .unwrap_or_else(|_| panic!("no renewal within {}s{}", VALIDITY_S * 3, pebble.logs()))
    .expect("the front is running");
    let renewed_serial = certificates.borrow().as_ref().unwrap().serial_hex.clone();
    let renewed_leaf = presented_leaf(addr, DOMAIN, &roots).await;
    assert_ne!(
        renewed_leaf, first_leaf,
        "new connections get the renewed certificate"
    );
    let still_open = request_keep_alive(&mut open_before, DOMAIN, "/health").await;
    assert_eq!(
        still_open.status, 200,
        "a connection from before the renewal still works"
    );
    drop(open_before);

    // A restart finds the stored certificate and serves it without ordering.
    running.stop().await;
    let again = restart_up(config(&pebble, http_port, state_dir.path())).await;
    let front = again.public.as_ref().unwrap();
    assert!(front.first_order.is_none(), "the stored certificate was used");
    let serial_now = front.certificates.borrow().as_ref().unwrap().serial_hex.clone();
    assert_eq!(serial_now, renewed_serial, "the renewed certificate was stored");
    let health = https(front.https_addr, DOMAIN, &roots, "GET", "/health", None).await;
    assert_eq!(health.status, 200);
    again.stop().await;
}
