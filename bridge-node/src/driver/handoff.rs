//! Datagrams a shard read for a participant another shard owns, handed over without an
//! allocation per datagram.
//!
//! Each shard reads its own `SO_REUSEPORT` socket, and the kernel picks the socket by a hash of
//! the peer's 4-tuple, not by room; so some datagrams arrive at a shard that does not own their
//! participant. They are copied into fixed-size slots of a bounded channel toward the owner
//! (allocated once, at start), and the owner is woken once per batch read, not per datagram.
//! One peer's datagrams always arrive at one socket and cross one channel in order, so a
//! participant's datagrams reach its shard in the order they arrived.

use super::socket::DATAGRAM_MAX_BYTES;
use crate::demux::ParticipantKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use tokio::sync::Notify;

/// Datagrams queued toward one shard from all the others. A full channel drops, as a full
/// socket buffer would: the owner is that far behind.
pub const HANDOFF_CAPACITY: usize = 1024;

/// One datagram in transit, in a slot of its own.
pub struct HandedDatagram {
    pub from: SocketAddr,
    pub key: ParticipantKey,
    len: u16,
    data: [u8; DATAGRAM_MAX_BYTES],
}

impl HandedDatagram {
    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// The sending ends toward every shard, and which of them have news since the last wake-up.
pub struct HandoffSenders {
    senders: Vec<(SyncSender<HandedDatagram>, Arc<Notify>)>,
    pending_wake: Vec<bool>,
}

/// Where a shard takes what the others handed it.
pub struct HandoffReceiver {
    receiver: Receiver<HandedDatagram>,
    notify: Arc<Notify>,
}

/// What happened to a datagram offered to [`HandoffSenders::hand_over`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    Queued,
    /// The owner's channel is full (or the owner stopped): dropped.
    Dropped,
}

/// The channels between `shards` shards: shard `i` takes the `i`-th senders and receiver. Each
/// channel's slots are allocated here, once ([`HANDOFF_CAPACITY`] × 1.5 KiB per shard).
pub fn handoff_channels(shards: usize) -> (Vec<HandoffSenders>, Vec<HandoffReceiver>) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| {
            let (sender, receiver) = sync_channel(HANDOFF_CAPACITY);
            let notify = Arc::new(Notify::new());
            ((sender, notify.clone()), HandoffReceiver { receiver, notify })
        })
        .unzip();
    let per_shard = (0..shards)
        .map(|_| HandoffSenders {
            senders: senders.clone(),
            pending_wake: vec![false; shards],
        })
        .collect();
    (per_shard, receivers)
}

impl HandoffSenders {
    /// Copies `data` (cut at [`DATAGRAM_MAX_BYTES`], as the socket would) toward `shard`. The
    /// owner is woken by [`HandoffSenders::wake`], once for everything handed over meanwhile.
    pub fn hand_over(&mut self, shard: usize, from: SocketAddr, key: ParticipantKey, data: &[u8]) -> Handed {
        let Some((sender, _)) = self.senders.get(shard) else {
            return Handed::Dropped;
        };
        let len = data.len().min(DATAGRAM_MAX_BYTES);
        let mut datagram = HandedDatagram {
            from,
            key,
            len: len as u16,
            data: [0; DATAGRAM_MAX_BYTES],
        };
        datagram.data[..len].copy_from_slice(&data[..len]);
        match sender.try_send(datagram) {
            Ok(()) => {
                self.pending_wake[shard] = true;
                Handed::Queued
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Handed::Dropped,
        }
    }

    /// Wakes every shard handed something since the last call.
    pub fn wake(&mut self) {
        for (pending, (_, notify)) in self.pending_wake.iter_mut().zip(&self.senders) {
            if std::mem::take(pending) {
                notify.notify_one();
            }
        }
    }
}

impl HandoffReceiver {
    /// Resolves when another shard handed this one something (at once if it did since the
    /// last wait).
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    /// The next datagram handed over, if any.
    pub fn try_take(&self) -> Option<HandedDatagram> {
        self.receiver.try_recv().ok()
    }

    /// Makes the next [`HandoffReceiver::wait`] return at once: for a shard that left some
    /// datagrams for its next turn.
    pub fn wake_self(&self) {
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn datagrams_cross_in_order_and_a_full_channel_drops() {
        let (mut senders, receivers) = handoff_channels(2);
        for seq in 0..HANDOFF_CAPACITY as u16 {
            let handed = senders[0].hand_over(1, addr(seq), ParticipantKey(7), &seq.to_be_bytes());
            assert_eq!(handed, Handed::Queued);
        }
        assert_eq!(
            senders[0].hand_over(1, addr(1), ParticipantKey(7), b"one too many"),
            Handed::Dropped
        );
        assert_eq!(
            senders[0].hand_over(5, addr(1), ParticipantKey(7), b"no such shard"),
            Handed::Dropped
        );
        for seq in 0..HANDOFF_CAPACITY as u16 {
            let datagram = receivers[1].try_take().expect("queued");
            assert_eq!(
                (datagram.from, datagram.key, datagram.data()),
                (addr(seq), ParticipantKey(7), &seq.to_be_bytes()[..])
            );
        }
        assert!(receivers[1].try_take().is_none());
        assert!(receivers[0].try_take().is_none(), "nothing was handed to shard 0");
    }

    #[test]
    fn a_datagram_longer_than_the_socket_reads_is_cut_there() {
        let (mut senders, receivers) = handoff_channels(2);
        let long = vec![9u8; DATAGRAM_MAX_BYTES + 100];
        senders[1].hand_over(0, addr(1), ParticipantKey(1), &long);
        assert_eq!(
            receivers[0].try_take().expect("queued").data().len(),
            DATAGRAM_MAX_BYTES
        );
    }

    #[tokio::test]
    async fn the_owner_is_woken_once_for_a_batch() {
        let (mut senders, receivers) = handoff_channels(2);
        senders[0].hand_over(1, addr(1), ParticipantKey(1), b"a");
        senders[0].hand_over(1, addr(1), ParticipantKey(1), b"b");
        senders[0].wake();
        tokio::time::timeout(std::time::Duration::from_secs(5), receivers[1].wait())
            .await
            .expect("woken");
        assert!(receivers[1].try_take().is_some() && receivers[1].try_take().is_some());
        // No wake was asked for shard 0, and the one for shard 1 is used up.
        senders[0].wake();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), receivers[1].wait()).await;
        assert!(waited.is_err(), "a second wake without anything handed over");
    }
}
