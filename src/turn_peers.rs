//! Keeps a TURN server's peer policy on the cluster's bridges: asks control for the media
//! addresses of every bridge that is not down ([`TURN_PEERS_PATH`]) every few seconds and hands
//! them to the server, so relays reach each bridge of the cluster as bridges come and go, and
//! nothing else unless the operator widened the policy. Used by the TURN server a bridge embeds
//! and by `bridgemesh turn --control`. A standalone server also reads which participants'
//! sessions ended ([`TURN_ENDED_SESSIONS_PATH`]), to refuse their earlier credentials (an
//! embedded one hears of its own bridge's participants directly).
//!
//! A failed ask keeps the last answer: control being unreachable for a while must not cut the
//! relays of calls in progress (a call does not depend on control).

use bridgemesh_pki::ClusterClient;
use bridgemesh_proto::bridge_session::{
    TURN_ENDED_SESSIONS_MAX, TURN_ENDED_SESSIONS_PATH, TURN_PEERS_MAX, TURN_PEERS_PATH, TurnEndedSessions,
    TurnPeers, turn_peers_credential,
};
use bridgemesh_turn::TurnServer;
use serde::de::DeserializeOwned;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often control is asked: a new bridge is reachable through TURN within this, and a
/// bridge's participants only need TURN after control placed them there.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read: [`TURN_PEERS_MAX`] addresses of the longest kind fit, and
/// [`TURN_ENDED_SESSIONS_MAX`] ended sessions of the longest participant ids.
const ANSWER_BYTES_MAX: usize = if TURN_PEERS_MAX * 64 > TURN_ENDED_SESSIONS_MAX * 160 {
    TURN_PEERS_MAX * 64
} else {
    TURN_ENDED_SESSIONS_MAX * 160
};

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
                Asker::Standalone { credential } => {
                    ask::<TurnPeers>(&client, &control_urls[index], TURN_PEERS_PATH, credential).await
                }
                Asker::Bridge(cluster) => ask_cluster(cluster, &control_urls[index]).await,
            };
            match answer {
                Ok(peers) => {
                    let Some(server) = turn.upgrade() else { return };
                    server.set_bridges(peers.media_addresses);
                    drop(server);
                    if let Asker::Standalone { credential } = &asker {
                        end_sessions(&turn, &client, &control_urls[index], credential).await;
                    }
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

/// Ends on `turn` the sessions control at `base` says ended (a failed ask is retried at the next
/// refresh: until then, their credentials only expire).
async fn end_sessions(turn: &Weak<TurnServer>, client: &reqwest::Client, base: &str, credential: &str) {
    match ask::<TurnEndedSessions>(client, base, TURN_ENDED_SESSIONS_PATH, credential).await {
        Ok(ended) => {
            let Some(server) = turn.upgrade() else { return };
            for session in ended.sessions.iter().take(TURN_ENDED_SESSIONS_MAX) {
                server.end_session_at(session.participant.as_str(), session.ended_at_unix_s);
            }
        }
        Err(err) => tracing::debug!(%err, "TURN: ended sessions not read"),
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

async fn ask<T: DeserializeOwned>(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    credential: &str,
) -> anyhow::Result<T> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
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
