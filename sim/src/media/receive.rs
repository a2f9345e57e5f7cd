//! What a synthetic participant receives: the remote tracks it reads, which publisher and
//! source each one is (from the offer's track map), and the loop that verifies and accounts
//! their packets.

use super::*;

/// A remote track being read.
pub(super) struct ReceiverEntry {
    pub(super) track: Arc<dyn TrackRemote>,
    pub(super) ssrc: Option<u32>,
    pub(super) key: Option<(ParticipantId, MediaSource)>,
}

/// Where one remote track's packets are accounted.
pub(super) struct Binding {
    pub(super) tag: u64,
    pub(super) source: MediaSource,
    pub(super) accumulator: Arc<Mutex<StreamAccumulator>>,
}

pub(super) struct Handler {
    pub(super) shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.shared.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(?state, "peer connection state");
        self.shared.connection.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Runs on the connection's driver: spawn, never block.
        self.shared.spawn_receiver(track);
    }
}

/// Reads one remote track until it ends or the session shuts down.
pub(super) async fn receive_loop(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let track_id = track.track_id().await;
    let video = track.kind().await == RtpCodecKind::Video;
    let ssrc = track.ssrcs().await.first().copied();
    lock(&shared.receivers).insert(
        track_id.clone(),
        ReceiverEntry {
            track: Arc::clone(&track),
            ssrc,
            key: None,
        },
    );
    let mut shutdown = shared.shutdown.subscribe();
    let mut mid: Option<String> = None;
    let mut last_mid_attempt: Option<Instant> = None;
    let mut epoch_seen: Option<u64> = None;
    let mut binding: Option<Binding> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|down| *down) => break,
            event = track.poll() => event,
        };
        match event {
            None | Some(TrackRemoteEvent::OnEnded) | Some(TrackRemoteEvent::OnError) => break,
            Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                // The track can be reported before or after the offer naming its mid was
                // applied, and a later offer can remap the mid: resolve lazily, re-resolve on
                // every mapping change.
                if mid.is_none()
                    && last_mid_attempt.is_none_or(|at| at.elapsed() >= Duration::from_millis(100))
                {
                    last_mid_attempt = Some(Instant::now());
                    mid = shared.resolve_mid(&track_id).await;
                    if mid.is_none() {
                        tracing::debug!(track_id, "no mid for remote track yet");
                    }
                }
                if let Some(mid) = &mid {
                    let epoch = shared.mapping_epoch.load(Ordering::Acquire);
                    if epoch_seen != Some(epoch) {
                        epoch_seen = Some(epoch);
                        binding = shared.bind(mid, &track_id);
                    }
                }
                match &binding {
                    Some(b) => {
                        let verdict = payload::verify(&packet.payload, video, Some(b.tag), Some(b.source));
                        lock(&b.accumulator).record(
                            packet.payload.len(),
                            shared.accounting.started.elapsed(),
                            payload::unix_micros(),
                            &verdict,
                        );
                        if !shared.got_media.swap(true, Ordering::AcqRel) {
                            shared.first_media.send_replace(Some(Instant::now()));
                        }
                    }
                    None => {
                        shared
                            .accounting
                            .counters
                            .unattributed_packets
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(_) => {}
        }
    }
    lock(&shared.receivers).remove(&track_id);
}
