//! Output buffers without an allocation per packet: datagrams are cut from one arena, and the
//! arena's memory is reused once the driver has sent (and dropped) every datagram cut from it.
//!
//! Reuse needs a moment when no datagram is alive, which a fan-out in progress is not: the
//! shard calls [`TxArena::recycle`] before each packet it forwards (the driver has sent the
//! previous input's datagrams by then), so the arena rarely runs out in the middle of one.

use bytes::BytesMut;

/// Bytes reserved at a time; a fan-out of one packet to every subscriber of a large room fits.
pub const TX_ARENA_BYTES: usize = 256 * 1024;

#[derive(Default)]
pub struct TxArena {
    buf: BytesMut,
}

impl TxArena {
    /// Takes the arena's memory back from the start when every datagram cut from it is gone and
    /// less than half of it is left; never allocates.
    pub fn recycle(&mut self) {
        if self.buf.capacity() < TX_ARENA_BYTES / 2 {
            self.buf.clear();
            // Refused while a datagram is alive: `start` then allocates a fresh arena when needed.
            let _reclaimed = self.buf.try_reclaim(TX_ARENA_BYTES);
        }
    }

    /// A zeroed buffer of `len` bytes to write one datagram into; [`TxArena::finish`] cuts it off.
    pub fn start(&mut self, len: usize) -> &mut [u8] {
        // A datagram started but never finished (its packet was refused) is overwritten.
        self.buf.clear();
        if self.buf.capacity() < len {
            // Reclaims the whole arena when every datagram cut from it is gone, else allocates a
            // fresh one (the old one is freed with its last datagram).
            self.buf.reserve(TX_ARENA_BYTES.max(len));
        }
        self.buf.resize(len, 0);
        &mut self.buf[..]
    }

    /// The first `len` bytes written since [`TxArena::start`], as a datagram of their own.
    pub fn finish(&mut self, len: usize) -> BytesMut {
        let datagram = self.buf.split_to(len);
        self.buf.clear();
        datagram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills the arena past half with datagrams that stay alive.
    fn fill(arena: &mut TxArena) -> Vec<BytesMut> {
        let mut held = vec![];
        arena.start(1000);
        held.push(arena.finish(1000));
        while arena.buf.capacity() >= TX_ARENA_BYTES / 2 {
            arena.start(1000);
            held.push(arena.finish(1000));
        }
        held
    }

    #[test]
    fn the_arena_is_taken_back_whole_only_once_its_datagrams_are_gone() {
        let mut arena = TxArena::default();
        let held = fill(&mut arena);
        arena.recycle();
        assert!(
            arena.buf.capacity() < TX_ARENA_BYTES / 2,
            "taken back under live datagrams"
        );
        drop(held);
        arena.recycle();
        assert!(arena.buf.capacity() >= TX_ARENA_BYTES);
        let datagram = {
            arena.start(3).copy_from_slice(b"abc");
            arena.finish(3)
        };
        assert_eq!(&datagram[..], b"abc");
    }
}
