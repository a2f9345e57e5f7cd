//! Output buffers without an allocation per packet: datagrams are cut from one arena, and the
//! arena's memory is reused once the driver has sent (and dropped) every datagram cut from it.

use bytes::BytesMut;

/// Bytes reserved at a time; a fan-out of one packet to every subscriber of a large room fits.
pub const TX_ARENA_BYTES: usize = 256 * 1024;

#[derive(Default)]
pub struct TxArena {
    buf: BytesMut,
}

impl TxArena {
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
