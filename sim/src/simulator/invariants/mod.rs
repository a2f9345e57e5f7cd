//! What must hold in every run, one invariant per file. Each looks at the world (the models) and
//! the replicated state, and returns what it found wrong.

pub mod acked_joins;
pub mod capacity;
pub mod liveness;
pub mod media_delivery;
pub mod no_split_brain;
pub mod one_live_bridge;
pub mod refused_with_room;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub at_ms: u64,
    pub invariant: String,
    pub message: String,
}

impl Violation {
    pub fn new(at_ms: u64, invariant: &str, message: String) -> Self {
        Violation {
            at_ms,
            invariant: invariant.to_owned(),
            message,
        }
    }
}
