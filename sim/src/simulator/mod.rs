//! The network simulator: a deterministic, seeded, discrete-event run of a deployment described
//! by a [`Scenario`], on the real control-plane code (see `docs/simulator.md`).
//!
//! # Layout
//! - [`scenario`]: the TOML scenario (regions, bridges, latencies, arrivals, faults), validated.
//! - [`world`]: the event loop; control is the real `ControlState`, placement and hub engine
//!   (`bridgemesh_control::hub_engine`: registrations, reconcile, the failure detector, load
//!   commits, membership pushes), bridges and clients are models (split by responsibility:
//!   dispatch, clients, control, hub, faults, reporting, views).
//! - [`network`]: latency, jitter, loss and bandwidth between regions; partitions (full or
//!   one-way) and degraded links.
//! - [`consensus`]: the control nodes, the leader and its term, who can commit (modeled Raft).
//! - [`cascade`]: what each bridge heard of the rooms it shares, and the media that follows.
//! - [`invariants`]: what must hold, one file each; violations carry the simulated time.
//! - [`report`]: the JSON report and the summary table.
//! - [`rng`]: the one seeded random source.
//!
//! # Run loop
//! ```text
//! pop the earliest event (time, then order of scheduling) → handle it at that virtual time
//!   arrival → join at control → placement → commit after the consensus delay → connect →
//!   confirm; heartbeats (with the load) → hub engine → verdicts committed → moved participants
//!   reconnect
//! every hub tick (50 ms): the hub engine's membership push → bridges' views of their shared rooms
//! every 10 s: media sample, capacity, acknowledged-join and media invariants; at the end:
//! convergence
//! ```

pub mod cascade;
pub mod consensus;
pub mod invariants;
pub mod network;
pub mod rediscovery;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod world;

pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
pub use world::{Placement, World, real_placement};

/// Runs `scenario` with `seed` and the real placement.
pub fn run(scenario: Scenario, seed: u64, progress: impl FnMut(u64, u64)) -> Report {
    World::new(scenario, seed, real_placement).run(progress)
}
