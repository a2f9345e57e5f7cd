//! Durability under SIGKILL: three `bridgemesh control` processes take joins from three clients
//! (one per node) and all three are killed with SIGKILL at once while the joins flow. Started
//! again from their data directories, they hold every join a client got a 200 for, exactly once,
//! and nothing that was not asked for; all three agree.
//!
//! A join is acknowledged only after Raft committed it on a majority (written to the redb store
//! of each), so nothing a client was told can be lost with the processes. Joins in flight at the
//! kill may or may not be there: their clients got no answer and would retry as new joins.

#[path = "control_nodes/mod.rs"]
mod control_nodes;

use control_nodes::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ROOM: &str = "standup";
/// Acknowledged joins to have before the kill: each node takes 20 at once from one address,
/// then 5 per second (`rate_limit.rs`), so three clients reach this in about a second.
const ACKED_BEFORE_KILL: usize = 40;

/// What one client saw: the participants of its 200s and how many joins got no answer.
#[derive(Default)]
struct Outcome {
    acknowledged: Vec<(String, String)>,
    unanswered: usize,
    refused: usize,
}

/// Joins through `url` until `stop`; each answer is counted as it comes.
fn join_until(url: String, token: String, stop: Arc<AtomicBool>, seen: Arc<std::sync::Mutex<Outcome>>) {
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    while !stop.load(Ordering::SeqCst) {
        let answer = http
            .post(format!("{url}/api/v1/rooms/{ROOM}/join"))
            .json(&serde_json::json!({"display_name": "Ada"}))
            .bearer_auth(&token)
            .send()
            .and_then(|r| Ok((r.status().as_u16(), r.json::<Value>()?)));
        let mut seen = seen.lock().unwrap();
        match answer {
            Ok((200, body)) => {
                let id = body["participant_id"].as_str().unwrap().to_owned();
                let session = body["session_token"].as_str().unwrap().to_owned();
                seen.acknowledged.push((id, session));
            }
            Ok((429, _)) => {
                seen.refused += 1;
                drop(seen);
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok((status, body)) => panic!("join through {url}: {status} {body}"),
            Err(_) => seen.unanswered += 1,
        }
    }
}

/// The participant ids `url` lists in the room, with repeats, as the holder of `session` sees it.
fn participants_seen_by(url: &str, session: &str) -> Option<Vec<String>> {
    let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let view: Value = http
        .get(format!("{url}/api/v1/rooms/{ROOM}"))
        .bearer_auth(session)
        .send()
        .ok()?
        .json()
        .ok()?;
    let ids = view["participants"]
        .as_array()?
        .iter()
        .map(|p| p["participant_id"].as_str().unwrap().to_owned())
        .collect();
    Some(ids)
}

#[test]
fn every_acknowledged_join_survives_sigkill_of_all_control_nodes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    for node in &mut nodes {
        node.start();
    }
    agreed_leader(&nodes);
    let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    register_bridge(&http, &nodes[0].url(), 10_000);
    wait_bridge_known(&http, &nodes.iter().map(Node::url).collect::<Vec<_>>());
    let ada = token(ROOM);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Outcome::default()));
    let clients: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (url, token, stop, seen) = (node.url(), ada.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || join_until(url, token, stop, seen))
        })
        .collect();
    eventually("joins acknowledged before the kill", || {
        (seen.lock().unwrap().acknowledged.len() >= ACKED_BEFORE_KILL).then_some(())
    });

    // SIGKILL all three while the clients keep joining, then let the clients see it.
    let killed_at = Instant::now();
    let mut children: Vec<_> = nodes.iter_mut().filter_map(|n| n.child.take()).collect();
    for child in &mut children {
        child.kill().unwrap();
    }
    for child in &mut children {
        child.wait().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let outcome = std::mem::take(&mut *seen.lock().unwrap());
    let acknowledged: BTreeSet<&str> = outcome.acknowledged.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(acknowledged.len(), outcome.acknowledged.len(), "one id per join");

    for node in &mut nodes {
        node.start();
    }
    agreed_leader(&nodes);
    let session = &outcome.acknowledged[0].1;
    // Followers apply what the leader committed a little later: wait until all three list
    // every acknowledged join and agree on the rest.
    let views = eventually("the restarted nodes list every acknowledged join, alike", || {
        let mut views = BTreeMap::new();
        for node in &nodes {
            let mut listed = participants_seen_by(&node.url(), session)?;
            if !acknowledged.iter().all(|id| listed.iter().any(|l| l == id)) {
                return None;
            }
            listed.sort();
            views.insert(node.id, listed);
        }
        views.values().all(|v| *v == views[&1]).then_some(views)
    });
    // Unconfirmed placements are forgotten after a minute (`UNCONFIRMED_JOIN_TTL_MS`): had
    // that passed, a missing join above would not be a loss.
    assert!(
        killed_at.elapsed() < Duration::from_secs(50),
        "the check took {:?}",
        killed_at.elapsed()
    );
    for (node, listed) in &views {
        let distinct: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), listed.len(), "node {node} lists a join twice");
        // Besides the acknowledged joins, only those that got no answer may have committed.
        let extra = distinct.difference(&acknowledged).count();
        assert!(
            extra <= outcome.unanswered,
            "node {node}: {extra} joins nobody was told of, {} unanswered",
            outcome.unanswered
        );
    }
    eprintln!(
        "acknowledged {}, unanswered {}, refused (429) {}, listed after restart {}",
        outcome.acknowledged.len(),
        outcome.unanswered,
        outcome.refused,
        views[&1].len()
    );
}
