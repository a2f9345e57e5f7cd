//! The `bridgemesh` binary's assembly of the crates: what `bridgemesh up` starts, reusable by
//! tests so they run exactly what an operator runs.

pub mod admin;
pub mod bridge_node;
pub mod control_node;
pub mod load;
pub mod public;
pub mod recordings_cli;
pub mod turn_peers;
pub mod up;
pub mod users_cli;
