//! Three `bridgemesh control` processes configured by TOML files, driven with `bridgemesh admin`
//! and `bridgemesh token`: the cluster forms, survives SIGKILL of its leader, and the killed
//! process catches up when started again from its data directory.
//!
//! (An integration test of the root package, so that Cargo builds the `bridgemesh` binary for it;
//! the other end-to-end tests live in the `bridgemesh-tests` crate beside this file.)

#[path = "control_nodes/mod.rs"]
mod control_nodes;

use control_nodes::*;
use serde_json::json;

#[test]
fn three_control_processes_form_a_cluster_survive_a_killed_leader_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    for node in &mut nodes {
        node.start();
    }
    let leader = agreed_leader(&nodes);
    let status = admin(&nodes[0].url(), &["cluster", "status"]).unwrap();
    assert_eq!(status["voters"], json!([1, 2, 3]));
    assert!(
        admin(&nodes[0].url(), &["--token", "wrong", "rooms"]).is_err(),
        "the admin token is checked"
    );

    let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    register_bridge(&http, &nodes[1].url(), 100);
    wait_bridge_known(&http, &nodes.iter().map(Node::url).collect::<Vec<_>>());

    // Tokens are required by this configuration; `bridgemesh token` makes one that works.
    let (status, body) = join(&http, &nodes[2].url(), "standup", None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_required")),
        "{body}"
    );
    let ada = token("standup");
    let (status, body) = join(&http, &nodes[2].url(), "standup", Some(&ada));
    assert_eq!(status, 200, "{body}");

    // SIGKILL the leader: the survivors elect another and keep taking joins.
    let killed = nodes.iter().position(|n| n.id == leader).unwrap();
    nodes[killed].kill();
    let survivor = (killed + 1) % 3;
    let new_leader = eventually("a new leader", || {
        leader_seen_by(&nodes[survivor].url()).filter(|l| *l != leader)
    });
    let (status, body) = eventually("a join after the kill", || {
        let answer = join(&http, &nodes[survivor].url(), "standup", Some(&ada));
        (answer.0 == 200).then_some(answer)
    });
    assert_eq!(status, 200, "{body}");
    let rooms = admin(&nodes[survivor].url(), &["rooms"]).unwrap();
    assert_eq!(rooms[0]["participants_per_bridge"]["bridge-a"], 2, "{rooms}");
    assert_ne!(new_leader, leader);

    // The killed process comes back from its data directory and catches up.
    nodes[killed].start();
    let applied = |url: &str| admin(url, &["cluster", "status"]).ok()?["last_applied_index"].as_u64();
    eventually("the restarted node catches up", || {
        let target = applied(&nodes[survivor].url())?;
        (applied(&nodes[killed].url())? >= target).then_some(())
    });
    let rooms = admin(&nodes[killed].url(), &["rooms"]).unwrap();
    assert_eq!(rooms[0]["participants_per_bridge"]["bridge-a"], 2, "{rooms}");
}
