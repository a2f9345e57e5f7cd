//! TURN over TCP and TLS: frames read off a stream (RFC 5766 §2.1) and one client connection
//! served.

use super::*;

/// Reads RFC 5766 §2.1 frames off a stream into a buffer that holds the largest frame
/// [`stream_frame_len`] accepts.
pub(super) struct StreamFramer {
    frame: Vec<u8>,
}

impl StreamFramer {
    pub(super) fn new() -> Self {
        Self {
            frame: vec![0u8; stun::STREAM_FRAME_MAX_BYTES],
        }
    }

    /// The next frame, or `None` when the stream ends, fails, passes `deadline`, or sends bytes
    /// that are neither STUN nor ChannelData (there is then no way to find the next frame).
    pub(super) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        deadline: tokio::time::Instant,
    ) -> Option<&[u8]> {
        let mut head = [0u8; 4];
        match tokio::time::timeout_at(deadline, reader.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            _ => return None,
        }
        let len = stream_frame_len(head)?;
        // Cannot happen while the buffer is STREAM_FRAME_MAX_BYTES; refusing beats slicing past it.
        if len > self.frame.len() {
            return None;
        }
        self.frame[..4].copy_from_slice(&head);
        match tokio::time::timeout_at(deadline, reader.read_exact(&mut self.frame[4..len])).await {
            Ok(Ok(_)) => Some(&self.frame[..len]),
            _ => None,
        }
    }
}

/// One TCP or TLS client: STUN messages and ChannelData frames back to back (RFC 5766 §2.1).
/// The allocation it creates lives as long as the connection (RFC 6062 §5.1 does the same).
/// Without an allocation, the connection has `stream_idle_without_allocation_s` from its accept
/// (or from the end of its allocation) to make one: a fixed deadline, not an idle timer, so a
/// client cannot hold a connection slot with a trickle of unauthenticated Bindings.
pub(super) async fn serve_stream<S>(
    shared: Arc<Shared>,
    stream: S,
    five_tuple: FiveTuple,
    accepted_at: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (tx, mut frames) = StreamTx::new();
    let queued_bytes = tx.queued_bytes.clone();
    // Over TLS each frame is a TLS record of its own, as coturn writes them: clients that read
    // one record as one message (coturn's own `turnutils_uclient` does) would otherwise lose every
    // frame after the first of a record. Over TCP, queued frames are coalesced into one write.
    let record_per_frame = five_tuple.transport == Transport::Tls;
    let mut writer_task = AbortOnDrop(tokio::spawn(async move {
        let mut writer = BufWriter::new(writer);
        while let Some(frame) = frames.recv().await {
            let written = writer.write_all(&frame).await;
            queued_bytes.fetch_sub(frame.len(), Relaxed);
            if written.is_err() {
                return;
            }
            // Coalesce what is already queued into one write, then flush.
            while !record_per_frame && let Ok(frame) = frames.try_recv() {
                let written = writer.write_all(&frame).await;
                queued_bytes.fetch_sub(frame.len(), Relaxed);
                if written.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
    }));
    let allocation_guard = AllocationOfStream {
        shared: &shared,
        five_tuple,
    };
    let client = ClientTx::Stream(tx);
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut framer = StreamFramer::new();
    let mut out = Vec::with_capacity(1500);
    let without_allocation = Duration::from_secs(shared.config.stream_idle_without_allocation_s);
    let idle_with_allocation = Duration::from_secs(u64::from(shared.config.allocation_lifetime_max_s));
    let mut allocation_deadline = accepted_at + without_allocation;
    let mut had_allocation = false;
    loop {
        let now = tokio::time::Instant::now();
        let deadline = if shared.has_allocation(&five_tuple) {
            had_allocation = true;
            now + idle_with_allocation
        } else {
            if had_allocation {
                had_allocation = false;
                allocation_deadline = now + without_allocation;
            }
            allocation_deadline
        };
        let Some(frame) = framer.next(&mut reader, deadline).await else {
            break;
        };
        handle_client_packet(&shared, five_tuple, &client, frame, &mut out);
    }
    drop(allocation_guard);
    drop(client);
    // The writer ends once every queue sender is gone (the allocation's relay task holds one
    // until its abort lands); a client that does not read leaves it blocked, so it is aborted.
    let _ = tokio::time::timeout(WRITER_DRAIN_TIMEOUT, &mut writer_task.0).await;
}
