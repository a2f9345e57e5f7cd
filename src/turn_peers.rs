//! Keeps a TURN server's peer policy on the cluster's bridges: asks control for the media
//! addresses of every bridge that is not down ([`TURN_PEERS_PATH`]) every few seconds and hands
//! them to the server, so relays reach each bridge of the cluster as bridges come and go, and
//! nothing else unless the operator widened the policy. Used by the TURN server a bridge embeds
//! and by `bridgemesh turn --control`.
//!
//! A failed ask keeps the last answer: control being unreachable for a while must not cut the
//! relays of calls in progress (a call does not depend on control).

use bridgemesh_proto::bridge_session::{TURN_PEERS_MAX, TURN_PEERS_PATH, TurnPeers, turn_peers_credential};
use bridgemesh_turn::TurnServer;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often control is asked: a new bridge is reachable through TURN within this, and a
/// bridge's participants only need TURN after control placed them there.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read: [`TURN_PEERS_MAX`] addresses of the longest kind fit.
const ANSWER_BYTES_MAX: usize = TURN_PEERS_MAX * 64;

/// Asks each of `control_urls` (base URLs, `http://host:port`) in turn until one answers, every
/// [`REFRESH_INTERVAL`], while `turn` exists. `turn_secret` is the server's REST secret, which
/// the credential derives from.
pub fn spawn(turn: &Arc<TurnServer>, control_urls: Vec<String>, turn_secret: &[u8]) -> JoinHandle<()> {
    let turn = Arc::downgrade(turn);
    let credential = turn_peers_credential(turn_secret);
    tokio::spawn(refresh_loop(turn, control_urls, credential))
}

async fn refresh_loop(turn: Weak<TurnServer>, control_urls: Vec<String>, credential: String) {
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "TURN peers: no HTTP client; relays reach the configured peers only");
            return;
        }
    };
    let mut first = 0;
    loop {
        for offset in 0..control_urls.len() {
            let index = (first + offset) % control_urls.len();
            match ask(&client, &control_urls[index], &credential).await {
                Ok(peers) => {
                    let Some(turn) = turn.upgrade() else { return };
                    turn.set_bridges(peers.media_addresses);
                    first = index;
                    break;
                }
                Err(err) => tracing::debug!(%err, "TURN peers: a control node did not answer"),
            }
        }
        if turn.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(REFRESH_INTERVAL).await;
    }
}

async fn ask(client: &reqwest::Client, base: &str, credential: &str) -> anyhow::Result<TurnPeers> {
    let url = format!("{}{TURN_PEERS_PATH}", base.trim_end_matches('/'));
    let mut response = client.get(&url).bearer_auth(credential).send().await?;
    anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        anyhow::ensure!(
            body.len() + chunk.len() <= ANSWER_BYTES_MAX,
            "{url}: answer over {ANSWER_BYTES_MAX} bytes"
        );
        body.extend_from_slice(&chunk);
    }
    Ok(serde_json::from_slice(&body)?)
}
