//! The EBML encoding Matroska and WebM are written in (RFC 8794): an element is its id, its size
//! as a variable-length integer, then its data. Only what the WebM writer needs: unsigned
//! integers, floats, strings, binary data and masters whose size is known when they are closed.

/// Matroska element ids used by the writer (the id bytes include their length marker).
pub mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TITLE: u32 = 0x7BA9;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const NAME: u32 = 0x536E;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const VOID: u32 = 0xEC;
}

/// The size value that says "unknown" in an 8-byte size field.
pub const UNKNOWN_SIZE_8: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Largest size an 8-byte size field holds (2^56 - 2; all ones means unknown).
pub const SIZE_MAX: u64 = (1 << 56) - 2;

pub fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// The shortest variable-length encoding of `size`.
pub fn put_size(out: &mut Vec<u8>, size: u64) {
    assert!(size <= SIZE_MAX, "EBML size out of range");
    // A length of n bytes holds 7n bits, less the all-ones value reserved for "unknown".
    let len = (1..=8)
        .find(|n| size < (1u64 << (7 * n)) - 1)
        .expect("checked above");
    put_size_fixed(out, size, len);
}

/// `size` in exactly `len` bytes (1..=8), for fields patched in place later.
pub fn put_size_fixed(out: &mut Vec<u8>, size: u64, len: usize) {
    assert!((1..=8).contains(&len) && size < (1u64 << (7 * len)) - 1);
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

pub fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    put_id(out, id);
    put_size(out, (8 - skip) as u64);
    out.extend_from_slice(&bytes[skip..]);
}

pub fn put_float(out: &mut Vec<u8>, id: u32, value: f64) {
    put_id(out, id);
    put_size(out, 8);
    out.extend_from_slice(&value.to_be_bytes());
}

pub fn put_bytes(out: &mut Vec<u8>, id: u32, data: &[u8]) {
    put_id(out, id);
    put_size(out, data.len() as u64);
    out.extend_from_slice(data);
}

pub fn put_str(out: &mut Vec<u8>, id: u32, value: &str) {
    put_bytes(out, id, value.as_bytes());
}

/// A master element: `body` writes its children; its size is known when it returns.
pub fn put_master(out: &mut Vec<u8>, id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut children = Vec::new();
    body(&mut children);
    put_bytes(out, id, &children);
}

/// A Void element taking exactly `total` bytes (at least 2: its id and a 1-byte size), which
/// readers skip: the room kept for a header that grows.
pub fn put_void(out: &mut Vec<u8>, total: usize) {
    assert!(total >= 2, "a Void element takes two bytes at least");
    put_id(out, id::VOID);
    // A fixed 8-byte size when it fits, so the element's length does not depend on its size.
    if total >= 9 {
        put_size_fixed(out, (total - 9) as u64, 8);
        out.resize(out.len() + total - 9, 0);
    } else {
        put_size_fixed(out, (total - 2) as u64, 1);
        out.resize(out.len() + total - 2, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_shortest_encoding_and_avoid_the_unknown_value() {
        let enc = |size| {
            let mut out = Vec::new();
            put_size(&mut out, size);
            out
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(126), [0xFE]);
        // 127 in one byte would be all ones: "unknown".
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(16_382), [0x7F, 0xFE]);
        assert_eq!(enc(16_383), [0x20, 0x3F, 0xFF]);
    }

    #[test]
    fn ids_keep_their_marker_bytes() {
        let mut out = Vec::new();
        put_id(&mut out, id::SEGMENT);
        put_id(&mut out, id::TRACK_NUMBER);
        put_id(&mut out, id::DURATION);
        assert_eq!(out, [0x18, 0x53, 0x80, 0x67, 0xD7, 0x44, 0x89]);
    }

    #[test]
    fn unsigned_integers_drop_leading_zero_bytes_but_keep_one() {
        let mut out = Vec::new();
        put_uint(&mut out, id::TRACK_NUMBER, 0);
        put_uint(&mut out, id::TIMESTAMP_SCALE, 1_000_000);
        assert_eq!(out, [0xD7, 0x81, 0x00, 0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]);
    }

    #[test]
    fn void_elements_take_exactly_the_room_asked() {
        for total in [2, 3, 8, 9, 10, 1000, 70_000] {
            let mut out = Vec::new();
            put_void(&mut out, total);
            assert_eq!(out.len(), total, "void of {total}");
            assert_eq!(out[0], 0xEC);
        }
    }
}
