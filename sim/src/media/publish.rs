//! What a synthetic participant publishes: the codecs it offers, each source's state carried
//! from one peer connection to the next, and the loops sending stamped audio and video (with
//! keyframes on request).

use super::*;

pub(super) fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

pub(super) fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: payload::VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// What one published source carries from one peer connection to the next, so that receivers
/// see one continuous stream across a reconnect: the SSRC, the RTP sequence number and timestamp
/// (the bridge forwards both untouched and rewrites only the SSRC), the stamp sequence (receivers
/// account loss by it), and the counters.
pub(super) struct SourceState {
    pub(super) ssrc: u32,
    /// RTP sequence number of the next packet.
    pub(super) next_rtp_seq: AtomicU16,
    /// RTP timestamp of the latest packet sent …
    pub(super) last_timestamp: AtomicU32,
    /// … and when, in µs after [`Accounting::started`], plus one (0: nothing sent yet).
    pub(super) last_sent_us: AtomicU64,
    /// Stamp sequence of the next packet.
    pub(super) next_stamp_seq: AtomicU64,
    pub(super) packets: AtomicU64,
    pub(super) payload_bytes: AtomicU64,
    pub(super) frames: AtomicU64,
}

impl SourceState {
    pub(super) fn new() -> Self {
        Self {
            ssrc: rand::random(),
            next_rtp_seq: AtomicU16::new(rand::random()),
            last_timestamp: AtomicU32::new(rand::random()),
            last_sent_us: AtomicU64::new(0),
            next_stamp_seq: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            payload_bytes: AtomicU64::new(0),
            frames: AtomicU64::new(0),
        }
    }

    /// The RTP timestamp to continue from `since_start` after the start, for a sender loop that
    /// (re)starts: the last one sent advanced by the time since, so a receiver's jitter buffer
    /// sees the outage as the pause it was.
    fn resume_timestamp(&self, since_start: Duration, clock_rate: u32) -> u32 {
        let last = self.last_timestamp.load(Ordering::Acquire);
        match self.last_sent_us.load(Ordering::Acquire) {
            0 => last,
            sent_us => continued_timestamp(last, Duration::from_micros(sent_us - 1), since_start, clock_rate),
        }
    }

    /// Remembers what was just sent, for the next connection's sender loops.
    fn note_sent(&self, next_rtp_seq: u16, timestamp: u32, since_start: Duration) {
        self.next_rtp_seq.store(next_rtp_seq, Ordering::Release);
        self.last_timestamp.store(timestamp, Ordering::Release);
        let us = u64::try_from(since_start.as_micros()).unwrap_or(u64::MAX - 1);
        self.last_sent_us.store(us + 1, Ordering::Release);
    }

    pub(super) fn stats(&self) -> SentStats {
        SentStats {
            packets: self.packets.load(Ordering::Relaxed),
            payload_bytes: self.payload_bytes.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
        }
    }
}

/// `last` advanced by the `clock_rate` ticks between `last_sent` and `now` (RTP timestamps wrap).
pub(super) fn continued_timestamp(last: u32, last_sent: Duration, now: Duration, clock_rate: u32) -> u32 {
    let elapsed = now.saturating_sub(last_sent);
    let ticks = elapsed.as_micros() * u128::from(clock_rate) / 1_000_000;
    last.wrapping_add(ticks as u32)
}

/// One published source on one peer connection.
pub(super) struct LocalSource {
    pub(super) source: MediaSource,
    pub(super) mime: &'static str,
    pub(super) state: Arc<SourceState>,
    pub(super) track_id: String,
    pub(super) track: Arc<TrackLocalStaticRTP>,
    pub(super) sender: Arc<dyn RtpSender>,
    /// Negotiated payload type, or [`NO_PAYLOAD_TYPE`] while the source is not negotiated.
    pub(super) payload_type: AtomicU16,
}

impl LocalSource {
    fn payload_type(&self) -> Option<u8> {
        u8::try_from(self.payload_type.load(Ordering::Acquire)).ok()
    }

    /// Sends one RTP packet on this source's track and counts it.
    async fn send(
        &self,
        payload_type: u8,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        body: Vec<u8>,
    ) -> webrtc::error::Result<()> {
        let len = body.len() as u64;
        let packet = rtp::packet::Packet {
            header: rtp::header::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number,
                timestamp,
                ssrc: self.state.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(body),
        };
        self.track.write_rtp(packet).await?;
        self.state.packets.fetch_add(1, Ordering::Relaxed);
        self.state.payload_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }
}

/// Sends one audio packet every 20 ms while connected and negotiated.
pub(super) async fn audio_loop(shared: Arc<Shared>, src: Arc<LocalSource>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(
        1000 / u64::from(payload::AUDIO_PACKETS_PER_SECOND),
    ));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut shutdown = shared.shutdown.subscribe();
    let started = shared.accounting.started;
    let state = &src.state;
    let mut rtp_seq = state.next_rtp_seq.load(Ordering::Acquire);
    let mut timestamp = state.resume_timestamp(started.elapsed(), AUDIO_CLOCK_RATE);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|down| *down) => break,
            _ = ticker.tick() => {}
        }
        timestamp = timestamp.wrapping_add(payload::AUDIO_SAMPLES_PER_PACKET);
        let Some(payload_type) = src.payload_type() else {
            continue;
        };
        if !shared.is_connected() {
            continue;
        }
        let stamp_seq = state.next_stamp_seq.fetch_add(1, Ordering::AcqRel);
        let body = payload::audio_payload(shared.accounting.local_tag, stamp_seq, payload::unix_micros());
        let sent = src.send(payload_type, rtp_seq, timestamp, false, body).await;
        rtp_seq = rtp_seq.wrapping_add(1);
        state.note_sent(rtp_seq, timestamp, started.elapsed());
        if let Err(e) = sent {
            tracing::debug!("audio write failed: {e}");
        }
    }
}

/// Sends VP8-shaped frames at `fps` while connected and negotiated.
pub(super) async fn video_loop(
    shared: Arc<Shared>,
    src: Arc<LocalSource>,
    fps: u32,
    keyframe_interval: Duration,
    sizes: FrameSizes,
) {
    let fps = fps.max(1);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut shutdown = shared.shutdown.subscribe();
    let started = shared.accounting.started;
    let state = &src.state;
    // One frame later than the last frame sent, so a restarted loop never repeats a timestamp.
    let timestamp_base = state
        .resume_timestamp(started.elapsed(), payload::VIDEO_CLOCK_RATE)
        .wrapping_add(payload::VIDEO_CLOCK_RATE / fps);
    let mut rtp_seq = state.next_rtp_seq.load(Ordering::Acquire);
    let mut frame_index: u64 = 0;
    let mut last_keyframe: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|down| *down) => break,
            _ = ticker.tick() => {}
        }
        let index = frame_index;
        frame_index += 1;
        let Some(payload_type) = src.payload_type() else {
            continue;
        };
        if !shared.is_connected() {
            continue;
        }
        let requested = shared.keyframe_requested.swap(false, Ordering::AcqRel);
        let keyframe = requested || last_keyframe.is_none_or(|at| at.elapsed() >= keyframe_interval);
        let size = if keyframe {
            sizes.keyframe_bytes
        } else {
            sizes.delta_bytes
        };
        let stamp_seq = state
            .next_stamp_seq
            .fetch_add(payload::packets_per_frame(size) as u64, Ordering::AcqRel);
        let bodies = payload::vp8_frame(
            shared.accounting.local_tag,
            src.source,
            stamp_seq,
            keyframe,
            size,
            payload::unix_micros(),
        );
        let timestamp = timestamp_base
            .wrapping_add((index * u64::from(payload::VIDEO_CLOCK_RATE) / u64::from(fps)) as u32);
        let count = bodies.len();
        debug_assert_eq!(
            count,
            payload::packets_per_frame(size),
            "stamp sequences reserved"
        );
        let mut complete = true;
        for (i, body) in bodies.into_iter().enumerate() {
            let sent = src
                .send(payload_type, rtp_seq, timestamp, i + 1 == count, body)
                .await;
            rtp_seq = rtp_seq.wrapping_add(1);
            state.note_sent(rtp_seq, timestamp, started.elapsed());
            if let Err(e) = sent {
                tracing::debug!("video write failed: {e}");
                complete = false;
                break;
            }
        }
        if complete {
            state.frames.fetch_add(1, Ordering::Relaxed);
            if keyframe {
                shared
                    .accounting
                    .counters
                    .keyframes_sent
                    .fetch_add(1, Ordering::Relaxed);
                last_keyframe = Some(Instant::now());
            }
        }
    }
}

/// Reads the bridge's RTCP feedback about the video sender; PLI/FIR ask for a keyframe.
pub(super) async fn video_rtcp_loop(shared: Arc<Shared>, src: Arc<LocalSource>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|down| *down) => break,
            event = src.track.poll() => event,
        };
        match event {
            None => break,
            Some(TrackLocalEvent::OnRtcpPacket(packets)) => {
                for packet in &packets {
                    let any = packet.as_any();
                    if any.is::<PictureLossIndication>() {
                        shared
                            .accounting
                            .counters
                            .plis_received
                            .fetch_add(1, Ordering::Relaxed);
                    } else if any.is::<FullIntraRequest>() {
                        shared
                            .accounting
                            .counters
                            .firs_received
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        continue;
                    }
                    shared.keyframe_requested.store(true, Ordering::Release);
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_continue_by_the_time_that_passed_and_wrap() {
        let ms = Duration::from_millis;
        assert_eq!(continued_timestamp(1000, ms(100), ms(100), 48_000), 1000);
        // 1.5 s at 48 kHz and at 90 kHz.
        assert_eq!(
            continued_timestamp(1000, ms(500), ms(2000), 48_000),
            1000 + 72_000
        );
        assert_eq!(continued_timestamp(0, ms(0), ms(1500), 90_000), 135_000);
        assert_eq!(continued_timestamp(u32::MAX - 10, ms(0), ms(1), 90_000), 79);
        // A clock reading before the last send (another task's) does not go back.
        assert_eq!(continued_timestamp(1000, ms(200), ms(100), 48_000), 1000);
    }

    #[test]
    fn a_source_resumes_where_the_previous_connection_stopped() {
        let state = SourceState::new();
        let first = state.last_timestamp.load(Ordering::Relaxed);
        // Nothing sent yet: the random start, whatever the time.
        assert_eq!(state.resume_timestamp(Duration::from_secs(9), 90_000), first);
        state.note_sent(7, 5000, Duration::from_millis(1000));
        assert_eq!(state.next_rtp_seq.load(Ordering::Relaxed), 7);
        assert_eq!(
            state.resume_timestamp(Duration::from_millis(3000), 90_000),
            5000 + 180_000
        );
        // Sent at the very start (0 µs) still counts as sent.
        let state = SourceState::new();
        state.note_sent(1, 10, Duration::ZERO);
        assert_eq!(state.resume_timestamp(Duration::from_millis(1), 48_000), 58);
    }
}
