//! `bridgemesh up --domain` as an operator runs it, in a small internet of network namespaces:
//! the server host runs the real binary on ports 80, 443, 3478 and UDP 10000; an ACME host runs
//! Debian's pebble (its DNS stand-in resolves the domain to the server); client hosts run
//! headless Chromium, which trusts pebble's root through an NSS database in its profile and
//! resolves the domain through its namespace's hosts file. No `--unsafely-treat-insecure-*`:
//! camera and microphone work because the page is a real secure context.
//!
//! - two ordinary clients see and hear each other over `https://<domain>/<room>`;
//! - a "corporate" client whose network drops all outbound UDP and every TCP port but 443 still
//!   joins, through TURN over TLS on 443, and receives media; join → first frame is printed.

use bridgemesh_tests::chromium::{Browser, LaunchOptions};
use bridgemesh_tests::harness::web::{Participant, install_helpers};
use bridgemesh_tests::netns::{self, Lab};
use bridgemesh_tests::pebble::Pebble;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const DOMAIN: &str = "meet.bridgemesh.test";
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(60);

/// The selected candidate pair's local candidate and every local candidate's type.
const SELECTED_PAIR_JS: &str = r#"(async () => {
  const pc = window.bridgemesh.pc;
  if (!pc) return { error: 'no peer connection' };
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  const localTypes = [];
  stats.forEach((r) => { if (r.type === 'local-candidate') localTypes.push(`${r.candidateType}/${r.relayProtocol || '-'}`); });
  if (!pair) return { error: 'no selected candidate pair', localTypes };
  const local = stats.get(pair.localCandidateId);
  return { localType: local.candidateType, relayProtocol: local.relayProtocol || null, url: local.url || null, localTypes };
})()"#;

/// The lab, pebble, and `bridgemesh up --domain` running in the server host.
struct Deployment {
    lab: Lab,
    server: usize,
    _pebble: Pebble,
    up: tokio::process::Child,
    roots_file: PathBuf,
    _dir: tempfile::TempDir,
    /// What `up` printed on stdout until it was ready.
    printed: Vec<String>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.up.start_kill();
    }
}

async fn deploy() -> Deployment {
    netns::available().expect("these tests need network namespaces");
    let mut lab = Lab::new().unwrap();
    let server = lab.add_host("server").unwrap();
    let acme = lab.add_host("acme").unwrap();
    let server_ip = IpAddr::V4(lab.host(server).ipv4);
    lab.resolve(DOMAIN, server_ip).unwrap();
    let acme_ip = IpAddr::V4(lab.host(acme).ipv4);
    let pebble = Pebble::start_in(Some(&lab.host(acme).netns), acme_ip, server_ip, 80, 3600).await;
    let roots = pebble.issuing_roots_pem_in(Some(&lab.host(acme).netns)).await;
    let dir = tempfile::tempdir().unwrap();
    let roots_file = dir.path().join("pebble-roots.pem");
    std::fs::write(&roots_file, roots).unwrap();

    let started = Instant::now();
    let mut up = lab
        .host(server)
        .tokio_command(env!("CARGO_BIN_EXE_bridgemesh"))
        .args([
            "up",
            "--domain",
            DOMAIN,
            "--acme-directory",
            &pebble.directory_url,
        ])
        .arg("--acme-ca-file")
        .arg(&pebble.directory_ca_file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "info,openraft=warn,webrtc=error,rtc=error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("bridgemesh runs in the server namespace");
    let mut lines = BufReader::new(up.stdout.take().expect("piped")).lines();
    let mut printed = Vec::new();
    let ready = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            let done = line.starts_with("press Ctrl-C");
            printed.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "up --domain did not start: {printed:?}{}",
        pebble.logs()
    );
    println!(
        "up --domain ready after {} ms (pebble already running):\n  {}",
        started.elapsed().as_millis(),
        printed.join("\n  ")
    );
    // Keep draining stdout so `up` never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Deployment {
        lab,
        server,
        _pebble: pebble,
        up,
        roots_file,
        _dir: dir,
        printed,
    }
}

impl Deployment {
    async fn browser(&self, host: usize) -> Browser {
        // A host just added still has IPv6 addresses in duplicate address detection (its
        // link-local one); when they settle Chromium sees a network change and fails the page
        // loading then with ERR_NETWORK_CHANGED. Launch once nothing is tentative.
        let netns = &self.lab.host(host).netns;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tentative = netns.ip(&["-6", "addr", "show", "tentative"]).expect("ip addr");
            if tentative.trim().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "IPv6 addresses still tentative: {tentative}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Browser::launch_with(LaunchOptions {
            netns: Some(&self.lab.host(host).netns),
            trusted_ca_pems: vec![self.roots_file.clone()],
            ..LaunchOptions::default()
        })
        .await
        .expect("chromium starts in its namespace")
    }
}

/// The web client's join timeline (`window.bridgemesh.metrics`), in ms after the join click,
/// as `tests/benches/first_frame.rs` reads it: one line for the report.
async fn join_timeline(participant: &Participant) -> (f64, String) {
    let metrics = participant
        .page
        .eval("window.bridgemesh.metrics")
        .await
        .expect("the client's metrics");
    let clicked = metrics["joinClickedAt"].as_f64().expect("joinClickedAt is set");
    let mut line = String::new();
    for field in [
        "joinResponseAt",
        "signalingOpenAt",
        "iceConnectedAt",
        "connectedAt",
        "firstRemoteFrameAt",
    ] {
        if let Some(at) = metrics[field].as_f64() {
            line.push_str(&format!(" {field}={:.0}", at - clicked));
        }
    }
    let first_frame = metrics["firstRemoteFrameAt"]
        .as_f64()
        .map_or(f64::NAN, |at| at - clicked);
    (first_frame, line)
}

async fn open(browser: &Browser, room: &str, name: &str) -> Participant {
    let url = format!("https://{DOMAIN}/{room}?autojoin=1&name={name}");
    let page = browser
        .new_page(&url)
        .await
        .unwrap_or_else(|err| panic!("opening {url} for {name}: {err:#}"));
    install_helpers(&page).await.expect("test helpers");
    let secure = page
        .eval("window.isSecureContext && location.protocol")
        .await
        .unwrap();
    assert_eq!(
        secure,
        Value::from("https:"),
        "{name}: a secure context over https"
    );
    Participant {
        name: name.to_owned(),
        page,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_meet_over_https_with_an_acme_certificate() {
    let mut deployment = deploy().await;
    assert!(
        deployment
            .printed
            .iter()
            .any(|l| l.starts_with("certificate issued by ACME in")),
        "{:?}",
        deployment.printed
    );
    let alice_host = deployment.lab.add_host("alice").unwrap();
    let carol_host = deployment.lab.add_host("carol").unwrap();
    deployment
        .lab
        .resolve(DOMAIN, IpAddr::V4(deployment.lab.host(deployment.server).ipv4))
        .unwrap();
    let alice_browser = deployment.browser(alice_host).await;
    let carol_browser = deployment.browser(carol_host).await;
    let alice = open(&alice_browser, "standup", "Alice").await;
    let carol = open(&carol_browser, "standup", "Carol").await;
    alice.wait_for_media_from(&carol, MEDIA_TIMEOUT).await;
    carol.wait_for_media_from(&alice, MEDIA_TIMEOUT).await;
    let (first_frame, timeline) = join_timeline(&carol).await;
    println!("direct client (UDP): join click -> first remote frame {first_frame:.0} ms;{timeline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corporate_client_joins_through_turn_over_tls_on_443() {
    let mut deployment = deploy().await;
    let alice_host = deployment.lab.add_host("alice").unwrap();
    let corp_host = deployment.lab.add_host("corp").unwrap();
    let server_ip = IpAddr::V4(deployment.lab.host(deployment.server).ipv4);
    deployment.lab.resolve(DOMAIN, server_ip).unwrap();
    // The corporate firewall: out of eth0 only TCP to port 443 (and what answers it).
    let corp = deployment.lab.host(corp_host);
    corp.nft(
        "table inet corporate { chain output { type filter hook output priority 0; \
         oifname \"eth0\" ct state established,related accept; \
         oifname \"eth0\" tcp dport 443 accept; \
         oifname \"eth0\" drop; }; }",
    )
    .unwrap();
    // The firewall holds: TURN over TCP on 3478 is unreachable, 443 is not.
    assert!(corp.connect_tcp(SocketAddr::new(server_ip, 3478)).is_err());
    assert!(corp.connect_tcp(SocketAddr::new(server_ip, 443)).is_ok());

    let alice_browser = deployment.browser(alice_host).await;
    let corp_browser = deployment.browser(corp_host).await;
    let alice = open(&alice_browser, "allhands", "Alice").await;
    let bob = open(&corp_browser, "allhands", "Bob").await;
    let first_frame = "s.state === 'connected' && s.peers.length === 1 \
         && s.inbound.some((r) => r.kind === 'video' && r.from === s.peers[0].id && r.frames > 0)";
    bob.wait_until("a first video frame", first_frame, MEDIA_TIMEOUT, &[&alice])
        .await;
    bob.wait_for_media_from(&alice, MEDIA_TIMEOUT).await;
    alice.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    let (first_frame, timeline) = join_timeline(&bob).await;
    println!(
        "corporate client (TCP 443 only, TURN over TLS): join click -> first remote frame {first_frame:.0} ms;{timeline}"
    );
    let pair: Value = bob.page.eval(SELECTED_PAIR_JS).await.expect("the candidate pair");
    assert_eq!(pair["localType"], "relay", "{pair}");
    assert_eq!(pair["relayProtocol"], "tls", "TURN over TLS: {pair}");
    assert!(
        pair["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("turns:{DOMAIN}:443"))),
        "{pair}"
    );
}
