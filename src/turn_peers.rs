//! Keeps a TURN server's peer policy on the cluster's bridges: asks control for the media
//! addresses of every bridge that is not down ([`TURN_PEERS_PATH`]) every few seconds and hands
//! them to the server, so relays reach each bridge of the cluster as bridges come and go, and
//! nothing else unless the operator widened the policy. Used by the TURN server a bridge embeds
//! and by `bridgemesh turn --control`.
//!
//! A failed ask keeps the last answer: control being unreachable for a while must not cut the
//! relays of calls in progress (a call does not depend on control).

use bridgemesh_pki::ClusterClient;
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

/// How a TURN server proves to control that it may read the bridges' addresses.
pub enum Asker {
    /// A standalone server (`bridgemesh turn --control URL`): the public API, with the
    /// credential derived from its REST secret.
    Standalone { credential: String },
    /// The server a bridge embeds: control's cluster listener, under the bridge's certificate
    /// (its REST secret is its own bridge's, which control does not accept for this).
    Bridge(ClusterClient),
}

impl Asker {
    pub fn standalone(turn_secret: &[u8]) -> Self {
        Self::Standalone {
            credential: turn_peers_credential(turn_secret),
        }
    }
}

/// Asks each of `control_urls` (base URLs) in turn until one answers, every
/// [`REFRESH_INTERVAL`], while `turn` exists.
pub fn spawn(turn: &Arc<TurnServer>, control_urls: Vec<String>, asker: Asker) -> JoinHandle<()> {
    let turn = Arc::downgrade(turn);
    tokio::spawn(refresh_loop(turn, control_urls, asker))
}

async fn refresh_loop(turn: Weak<TurnServer>, control_urls: Vec<String>, asker: Asker) {
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
            let answer = match &asker {
                Asker::Standalone { credential } => ask(&client, &control_urls[index], credential).await,
                Asker::Bridge(cluster) => ask_cluster(cluster, &control_urls[index]).await,
            };
            match answer {
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

async fn ask_cluster(cluster: &ClusterClient, base: &str) -> anyhow::Result<TurnPeers> {
    let answer = cluster.get(base, TURN_PEERS_PATH, REQUEST_TIMEOUT).await?;
    anyhow::ensure!(answer.status == 200, "{base}{TURN_PEERS_PATH}: {}", answer.status);
    anyhow::ensure!(
        answer.body.len() <= ANSWER_BYTES_MAX,
        "{base}{TURN_PEERS_PATH}: answer over {ANSWER_BYTES_MAX} bytes"
    );
    Ok(serde_json::from_slice(&answer.body)?)
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
