//! Two pages of the real web client with `iceTransportPolicy: "relay"` (the `?relay=` hook of
//! app.js) join a room on `bridgemesh up`: media flows, and only through the embedded TURN server,
//! over UDP in one test and over TCP in the other. The selected candidate pair's local candidate
//! must be a relay candidate on the TURN transport asked for, no other kind of local candidate may
//! exist, and the TURN server must have relayed the traffic.

use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use serde_json::Value;
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(40);

/// The selected candidate pair of a page's peer connection and the types of all its local
/// candidates.
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
  const remote = stats.get(pair.remoteCandidateId);
  return {
    localType: local.candidateType,
    relayProtocol: local.relayProtocol || null,
    url: local.url || null,
    remoteType: remote.candidateType,
    remotePort: remote.port,
    bytesReceived: pair.bytesReceived,
    localTypes,
  };
})()"#;

async fn media_only_through_turn(transport: &str) {
    let running = up().await;
    let turn = running.turn.clone().expect("bridgemesh up runs TURN by default");
    let room = room(&format!("turn-only-{transport}"));
    let browser = Browser::launch().await.expect("chromium starts");
    let query = format!("&relay={transport}");
    let ada = Participant::open_with_query(&browser, &running, &room, "Ada", &query).await;
    let bob = Participant::open_with_query(&browser, &running, &room, "Bob", &query).await;

    ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;

    let media_port = running.bridge.media_addr().port();
    for participant in [&ada, &bob] {
        let pair: Value = participant
            .page
            .eval(SELECTED_PAIR_JS)
            .await
            .unwrap_or_else(|err| panic!("{}: reading the candidate pair: {err:#}", participant.name));
        let who = &participant.name;
        assert_eq!(pair["localType"], "relay", "{who}: selected pair {pair}");
        assert_eq!(pair["relayProtocol"], transport, "{who}: selected pair {pair}");
        assert_eq!(
            pair["remotePort"], media_port,
            "{who}: the bridge's media port: {pair}"
        );
        let local_types = pair["localTypes"].as_array().expect("a list");
        assert!(
            !local_types.is_empty()
                && local_types
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| t.starts_with("relay/"))),
            "{who}: only relay candidates are gathered: {pair}"
        );
    }
    // Read the pages first, then the server: every RTP packet a page counted reached it through
    // the TURN server, so the server's count can only be larger.
    let mut received_by_pages = 0;
    for participant in [&ada, &bob] {
        let summary = participant.summary().await;
        for stream in summary["inbound"].as_array().expect("a list") {
            received_by_pages += stream["packets"].as_u64().expect("a count");
        }
    }
    let stats = turn.stats();
    assert!(
        stats.allocations_active >= 2,
        "one allocation per page at least: {stats:?}"
    );
    assert!(received_by_pages > 0);
    assert!(
        stats.peer_to_client_packets_total >= received_by_pages,
        "the pages received {received_by_pages} RTP packets, all through TURN: {stats:?}"
    );
    assert!(stats.client_to_peer_packets_total > 0, "{stats:?}");
    assert_eq!(stats.auth_failures_total, 0, "{stats:?}");

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_relay_only_policy_gets_media_through_turn_over_udp() {
    media_only_through_turn("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_relay_only_policy_gets_media_through_turn_over_tcp() {
    media_only_through_turn("tcp").await;
}
