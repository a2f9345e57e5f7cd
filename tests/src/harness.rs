//! Starting what an operator starts, on ephemeral loopback ports, for one test.

use bridgemesh::up::{Running, UpConfig};
use bridgemesh_proto::RoomId;
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use std::sync::Once;

static TRACING: Once = Once::new();

/// Logs at `RUST_LOG` (default warn) to the test's captured output.
pub fn init_tracing() {
    TRACING.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// `bridgemesh up` on ephemeral ports.
pub async fn up() -> Running {
    init_tracing();
    bridgemesh::up::start(UpConfig::ephemeral())
        .await
        .expect("bridgemesh up starts")
}

pub fn room(name: &str) -> RoomId {
    RoomId::new(name).expect("valid room name")
}

/// A synthetic participant publishing audio and video into `room`.
pub async fn join(running: &Running, room: &RoomId, name: &str) -> SyntheticParticipant {
    SyntheticParticipant::join(&running.control_url, room, ParticipantOptions::new(name))
        .await
        .unwrap_or_else(|err| panic!("{name} could not join: {err}"))
}
