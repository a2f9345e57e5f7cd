//! The control cluster's consensus, modeled: its nodes (each in a region), which one leads, in
//! which term, and whether it can commit. openraft itself does not run under virtual time here:
//! it reads the runtime's clock and draws its election timeouts from an unseeded RNG, so a run
//! could not be replayed. What Raft guarantees is modeled instead — a leader is elected by, and
//! commits with, a majority of the nodes it reaches both ways — and the `no_split_brain`
//! invariant checks every commit against the network, independently of this rule (which tests
//! replace with broken ones).

use super::network::Network;

/// Whether `node` has a quorum now: to be elected, or to commit as leader.
pub type Quorum = fn(&ControlCluster, usize, &Network) -> bool;

/// Raft's rule: a majority of all the nodes, the node itself included, up and reachable both
/// ways (votes and acknowledgements must come back).
pub fn majority(cluster: &ControlCluster, node: usize, network: &Network) -> bool {
    cluster.up[node] && cluster.reachable_from(node, network) > cluster.regions.len() / 2
}

pub struct ControlCluster {
    /// Each node's region.
    pub regions: Vec<usize>,
    pub up: Vec<bool>,
    pub leader: usize,
    pub term: u64,
    quorum: Quorum,
}

impl ControlCluster {
    pub fn new(regions: Vec<usize>, leader: usize) -> Self {
        assert!(leader < regions.len(), "the leader is one of the nodes");
        ControlCluster {
            up: vec![true; regions.len()],
            regions,
            leader,
            term: 1,
            quorum: majority,
        }
    }

    /// Replaces the quorum rule (tests inject broken ones).
    pub fn set_quorum(&mut self, quorum: Quorum) {
        self.quorum = quorum;
    }

    pub fn leader_region(&self) -> usize {
        self.regions[self.leader]
    }

    /// Nodes up that `node` reaches both ways, itself included.
    pub fn reachable_from(&self, node: usize, network: &Network) -> usize {
        (0..self.regions.len())
            .filter(|&n| self.up[n] && (n == node || network.both_ways(self.regions[node], self.regions[n])))
            .count()
    }

    pub fn can_commit(&self, network: &Network) -> bool {
        (self.quorum)(self, self.leader, network)
    }

    /// An election: the first node (in order) a quorum can elect leads a new term. `false` when
    /// none can: no leader until the network changes.
    pub fn elect(&mut self, network: &Network) -> bool {
        let Some(winner) = (0..self.regions.len()).find(|&node| (self.quorum)(self, node, network)) else {
            return false;
        };
        self.leader = winner;
        self.term += 1;
        true
    }
}
