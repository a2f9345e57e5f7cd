//! No split brain across partitioned control nodes: every commit comes from a leader that a
//! majority of the control nodes (up, reachable both ways from it) could have acknowledged at
//! that moment, terms never go back from one commit to the next, and a term has one leader.
//! Checked at every commit, against the network itself rather than the consensus model's rule.

use super::Violation;
use crate::simulator::world::World;

/// The last commit's term and leader node; `None` before the first.
pub type LastCommit = Option<(u64, usize)>;

pub fn check(world: &World, last: LastCommit) -> Vec<Violation> {
    let cluster = world.control_cluster();
    let network = world.network();
    let (term, leader) = (cluster.term, cluster.leader);
    let nodes = cluster.regions.len();
    let mut found = Vec::new();
    let acknowledging = (0..nodes)
        .filter(|&n| {
            cluster.up[n] && (n == leader || network.both_ways(cluster.regions[leader], cluster.regions[n]))
        })
        .count();
    if acknowledging <= nodes / 2 {
        found.push(Violation::new(
            world.now_ms(),
            "no_split_brain",
            format!(
                "node {leader} committed in term {term} reaching {acknowledging} of {nodes} control nodes"
            ),
        ));
    }
    if let Some((last_term, last_leader)) = last
        && (term < last_term || (term == last_term && leader != last_leader))
    {
        found.push(Violation::new(
            world.now_ms(),
            "no_split_brain",
            format!(
                "node {leader} committed in term {term} after node {last_leader} committed in term {last_term}"
            ),
        ));
    }
    found
}
