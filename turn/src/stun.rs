//! The STUN/TURN wire format (RFC 5389, RFC 5766): a borrowed view over one received message and
//! a writer for answers. Only what a TURN server reads and writes is here.
//!
//! Why not `rtc-stun`: its `Message` copies every attribute into a `Vec` and needs a crypto
//! provider object for MESSAGE-INTEGRITY; the server only ever needs a few attributes of each
//! request, and the relay path must not allocate (STYLE.md §4). Tests check this codec against
//! `rtc-turn`'s client, which we did not write.

use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_BYTES: usize = 20;
/// Largest STUN message or ChannelData frame accepted; a UDP datagram can hold no more.
pub const MESSAGE_MAX_BYTES: usize = 65_535 + 4;
/// Largest STUN body: the 16-bit length field, rounded down to the 4-byte alignment it must have.
pub const BODY_MAX_BYTES: usize = 0xFFFC;
/// Largest frame [`stream_frame_len`] can return: a STUN header with the largest body. A stream
/// reader's buffer must hold this much, as the length comes from the (unauthenticated) peer.
pub const STREAM_FRAME_MAX_BYTES: usize = HEADER_BYTES + BODY_MAX_BYTES;

pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

pub mod attr {
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// What the first bytes of a packet or stream frame say it is (RFC 5766 §11: the top two bits
/// tell STUN `00` from ChannelData `01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Stun,
    ChannelData,
    Other,
}

pub fn frame_kind(bytes: &[u8]) -> FrameKind {
    match bytes.first().map(|b| b >> 6) {
        Some(0) => FrameKind::Stun,
        Some(1) => FrameKind::ChannelData,
        _ => FrameKind::Other,
    }
}

/// Channel numbers a client may bind (RFC 5766 §11).
pub const CHANNEL_MIN: u16 = 0x4000;
pub const CHANNEL_MAX: u16 = 0x7FFE;

/// Splits a ChannelData message into (channel, payload). Over UDP the datagram may carry padding
/// after the payload; `length` says where the payload ends.
pub fn parse_channel_data(bytes: &[u8]) -> Option<(u16, &[u8])> {
    if bytes.len() < 4 {
        return None;
    }
    let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) || bytes.len() < 4 + length {
        return None;
    }
    Some((channel, &bytes[4..4 + length]))
}

/// How many bytes the next frame on a TCP/TLS stream takes, from its first 4 bytes; `None` when
/// the bytes are neither STUN nor ChannelData (the stream is then closed: it cannot resynchronise).
/// ChannelData is padded to a multiple of 4 on streams (RFC 5766 §11.5).
pub fn stream_frame_len(head: [u8; 4]) -> Option<usize> {
    let length = usize::from(u16::from_be_bytes([head[2], head[3]]));
    match frame_kind(&head) {
        FrameKind::Stun if length % 4 == 0 => Some(HEADER_BYTES + length),
        FrameKind::ChannelData => Some(4 + length.div_ceil(4) * 4),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("shorter than a STUN header")]
    Short,
    #[error("not a STUN message (first bits or magic cookie)")]
    NotStun,
    #[error("the length field disagrees with the packet size")]
    Length,
    #[error("an attribute runs past the end of the message")]
    Attribute,
    #[error("too many attributes")]
    TooManyAttributes,
}

/// Attributes kept per message; a request has fewer than 10, so more is an attack.
const ATTRIBUTES_MAX: usize = 32;

/// A decoded STUN message borrowing the packet it came in.
#[derive(Debug)]
pub struct Message<'a> {
    pub method: u16,
    pub class: Class,
    pub transaction_id: [u8; 12],
    raw: &'a [u8],
    /// (type, value offset, value length), in order. Offsets are `u32`: a stream frame is up to
    /// [`STREAM_FRAME_MAX_BYTES`], past what a `u16` holds.
    attributes: [(u16, u32, u16); ATTRIBUTES_MAX],
    attribute_count: usize,
}

impl<'a> Message<'a> {
    pub fn decode(raw: &'a [u8]) -> Result<Self, DecodeError> {
        if raw.len() < HEADER_BYTES {
            return Err(DecodeError::Short);
        }
        let kind = u16::from_be_bytes([raw[0], raw[1]]);
        let length = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
        if kind & 0xC000 != 0 || u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) != MAGIC_COOKIE {
            return Err(DecodeError::NotStun);
        }
        // A UDP datagram may not carry trailing bytes; a stream frame was cut to size already.
        if length % 4 != 0 || HEADER_BYTES + length != raw.len() {
            return Err(DecodeError::Length);
        }
        let class = match ((kind >> 7) & 0x2) | ((kind >> 4) & 0x1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        let method = (kind & 0x000F) | ((kind >> 1) & 0x0070) | ((kind >> 2) & 0x0F80);
        let mut message = Message {
            method,
            class,
            transaction_id: raw[8..20].try_into().expect("12 bytes"),
            raw,
            attributes: [(0, 0, 0); ATTRIBUTES_MAX],
            attribute_count: 0,
        };
        let mut at = HEADER_BYTES;
        while at < raw.len() {
            if at + 4 > raw.len() {
                return Err(DecodeError::Attribute);
            }
            let typ = u16::from_be_bytes([raw[at], raw[at + 1]]);
            let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
            let value_at = at + 4;
            if value_at + len > raw.len() {
                return Err(DecodeError::Attribute);
            }
            if message.attribute_count == ATTRIBUTES_MAX {
                return Err(DecodeError::TooManyAttributes);
            }
            message.attributes[message.attribute_count] = (typ, value_at as u32, len as u16);
            message.attribute_count += 1;
            at = value_at + len.div_ceil(4) * 4;
        }
        Ok(message)
    }

    /// The attributes a reader may act on. Those after MESSAGE-INTEGRITY (other than FINGERPRINT)
    /// are not covered by it, so anyone on the path could have appended them: they are ignored,
    /// as RFC 5389 §15.4 requires.
    fn covered(&self) -> &[(u16, u32, u16)] {
        let attributes = &self.attributes[..self.attribute_count];
        let mut after_integrity = false;
        for (i, &(t, _, _)) in attributes.iter().enumerate() {
            if after_integrity && t != attr::FINGERPRINT {
                return &attributes[..i];
            }
            after_integrity |= t == attr::MESSAGE_INTEGRITY;
        }
        attributes
    }

    fn value(&self, at: u32, len: u16) -> &'a [u8] {
        let at = at as usize;
        &self.raw[at..at + usize::from(len)]
    }

    /// The first value of attribute `typ`, among the [`covered`](Self::covered) ones.
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.covered()
            .iter()
            .find(|(t, _, _)| *t == typ)
            .map(|&(_, at, len)| self.value(at, len))
    }

    /// Every covered value of attribute `typ` (CREATE-PERMISSION may carry several
    /// XOR-PEER-ADDRESSes).
    pub fn get_all(&self, typ: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.covered()
            .iter()
            .filter(move |(t, _, _)| *t == typ)
            .map(|&(_, at, len)| self.value(at, len))
    }

    /// Covered comprehension-required attributes (type < 0x8000) this server does not know.
    pub fn unknown_required(&self) -> impl Iterator<Item = u16> + '_ {
        self.covered()
            .iter()
            .map(|(t, _, _)| *t)
            .filter(|t| *t < 0x8000 && !KNOWN_REQUIRED.contains(t))
    }

    pub fn has(&self, typ: u16) -> bool {
        self.get(typ).is_some()
    }

    pub fn text(&self, typ: u16) -> Option<&'a str> {
        self.get(typ).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn xor_address(&self, value: &[u8]) -> Option<SocketAddr> {
        decode_xor_address(value, &self.transaction_id)
    }

    /// Checks MESSAGE-INTEGRITY against `key` (RFC 5389 §15.4): the HMAC covers the message up
    /// to the attribute, with the header length counting up to and including it.
    pub fn integrity_ok(&self, key: &[u8]) -> bool {
        let Some(&(_, at, len)) = self.attributes[..self.attribute_count]
            .iter()
            .find(|(t, _, _)| *t == attr::MESSAGE_INTEGRITY)
        else {
            return false;
        };
        if len != 20 {
            return false;
        }
        let at = at as usize;
        let start = at - 4;
        let mut header = [0u8; 4];
        header.copy_from_slice(&self.raw[..4]);
        header[2..4].copy_from_slice(&((start + 24 - HEADER_BYTES) as u16).to_be_bytes());
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&header);
        mac.update(&self.raw[4..start]);
        mac.verify_slice(&self.raw[at..at + 20]).is_ok()
    }
}

const KNOWN_REQUIRED: &[u16] = &[
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::CHANNEL_NUMBER,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::REALM,
    attr::NONCE,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::EVEN_PORT,
    attr::REQUESTED_TRANSPORT,
    attr::DONT_FRAGMENT,
    attr::RESERVATION_TOKEN,
    attr::XOR_MAPPED_ADDRESS,
];

fn decode_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match (value[1], value.len()) {
        (0x01, 8) => {
            let mut ip = [0u8; 4];
            for i in 0..4 {
                ip[i] = value[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let mut ip = [0u8; 16];
            for i in 0..16 {
                let mask = if i < 4 { cookie[i] } else { transaction_id[i - 4] };
                ip[i] = value[4 + i] ^ mask;
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Writes one STUN message into a caller-owned buffer. `finish_*` fixes the header length.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    transaction_id: [u8; 12],
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut Vec<u8>, method: u16, class: Class, transaction_id: [u8; 12]) -> Self {
        let class_bits: u16 = match class {
            Class::Request => 0x000,
            Class::Indication => 0x010,
            Class::Success => 0x100,
            Class::Error => 0x110,
        };
        let kind = (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class_bits;
        buf.clear();
        buf.extend_from_slice(&kind.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&transaction_id);
        Self { buf, transaction_id }
    }

    pub fn attribute(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        assert!(value.len() <= usize::from(u16::MAX), "attribute too long");
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let padding = value.len().div_ceil(4) * 4 - value.len();
        self.buf.extend_from_slice(&[0u8; 3][..padding]);
        self.set_length();
        self
    }

    pub fn u32_attribute(&mut self, typ: u16, value: u32) -> &mut Self {
        self.attribute(typ, &value.to_be_bytes())
    }

    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let cookie = MAGIC_COOKIE.to_be_bytes();
        let port = (addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes();
        match addr.ip() {
            IpAddr::V4(ip) => {
                let mut value = [0u8; 8];
                value[1] = 0x01;
                value[2..4].copy_from_slice(&port);
                for (i, b) in ip.octets().iter().enumerate() {
                    value[4 + i] = b ^ cookie[i];
                }
                self.attribute(typ, &value)
            }
            IpAddr::V6(ip) => {
                let mut value = [0u8; 20];
                value[1] = 0x02;
                value[2..4].copy_from_slice(&port);
                for (i, b) in ip.octets().iter().enumerate() {
                    let mask = if i < 4 {
                        cookie[i]
                    } else {
                        self.transaction_id[i - 4]
                    };
                    value[4 + i] = b ^ mask;
                }
                self.attribute(typ, &value)
            }
        }
    }

    /// ERROR-CODE with its standard reason phrase.
    pub fn error_code(&mut self, code: u16) -> &mut Self {
        let reason = reason_phrase(code);
        let mut value = Vec::with_capacity(4 + reason.len());
        value.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        value.extend_from_slice(reason.as_bytes());
        self.attribute(attr::ERROR_CODE, &value)
    }

    /// Callers size what they write (see [`data_indication_fits`]): a length that wrapped would
    /// desynchronise a stream's framing, so it is a programmer error, not a truncation.
    fn set_length(&mut self) {
        let length = self.buf.len() - HEADER_BYTES;
        assert!(length <= BODY_MAX_BYTES, "STUN message body of {length} bytes");
        self.buf[2..4].copy_from_slice(&(length as u16).to_be_bytes());
    }

    /// Adds MESSAGE-INTEGRITY keyed with `key`, then FINGERPRINT if `fingerprint`.
    pub fn finish_with_integrity(&mut self, key: &[u8], fingerprint: bool) {
        let length = (self.buf.len() + 24 - HEADER_BYTES) as u16;
        self.buf[2..4].copy_from_slice(&length.to_be_bytes());
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(self.buf);
        let tag = mac.finalize().into_bytes();
        self.attribute(attr::MESSAGE_INTEGRITY, &tag);
        if fingerprint {
            self.finish_with_fingerprint();
        }
    }

    pub fn finish_with_fingerprint(&mut self) {
        let length = (self.buf.len() + 8 - HEADER_BYTES) as u16;
        self.buf[2..4].copy_from_slice(&length.to_be_bytes());
        let crc = CRC32.checksum(self.buf) ^ 0x5354_554E;
        self.u32_attribute(attr::FINGERPRINT, crc);
    }
}

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}

/// Whether a Data indication carrying `payload_len` bytes from `peer` fits one STUN message;
/// a larger datagram (possible over IPv6) cannot be passed to the client and is dropped.
pub fn data_indication_fits(peer: SocketAddr, payload_len: usize) -> bool {
    let address_len = if peer.is_ipv4() { 8 } else { 20 };
    4 + address_len + 4 + payload_len.div_ceil(4) * 4 <= BODY_MAX_BYTES
}

/// Writes a ChannelData frame header + payload into `buf`; `pad` adds the 4-byte padding that
/// streams require (RFC 5766 §11.5).
pub fn write_channel_data(buf: &mut Vec<u8>, channel: u16, payload: &[u8], pad: bool) {
    assert!(
        payload.len() <= usize::from(u16::MAX),
        "ChannelData payload too long"
    );
    buf.clear();
    buf.extend_from_slice(&channel.to_be_bytes());
    buf.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    buf.extend_from_slice(payload);
    if pad {
        let padding = payload.len().div_ceil(4) * 4 - payload.len();
        buf.extend_from_slice(&[0u8; 3][..padding]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_message_decodes_with_its_attributes_and_integrity() {
        let tid = [7u8; 12];
        let mut buf = Vec::new();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let peer6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let mut w = Writer::new(&mut buf, method::CREATE_PERMISSION, Class::Request, tid);
        w.xor_address(attr::XOR_PEER_ADDRESS, peer)
            .xor_address(attr::XOR_PEER_ADDRESS, peer6)
            .attribute(attr::USERNAME, b"123:ada");
        w.finish_with_integrity(b"key", true);
        let m = Message::decode(&buf).unwrap();
        assert_eq!((m.method, m.class), (method::CREATE_PERMISSION, Class::Request));
        assert_eq!(m.text(attr::USERNAME), Some("123:ada"));
        let peers: Vec<_> = m
            .get_all(attr::XOR_PEER_ADDRESS)
            .map(|v| m.xor_address(v).unwrap())
            .collect();
        assert_eq!(peers, vec![peer, peer6]);
        assert!(m.integrity_ok(b"key"));
        assert!(!m.integrity_ok(b"other key"));
        let mut tampered = buf.clone();
        tampered[HEADER_BYTES + 7] ^= 1;
        assert!(!Message::decode(&tampered).unwrap().integrity_ok(b"key"));
    }

    #[test]
    fn fingerprint_matches_rfc5769_sample_request() {
        // RFC 5769 §2.1 sample request: the fingerprint we compute over the same bytes must match.
        let sample: [u8; 108] = [
            0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
            0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
            0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
            0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
            0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
            0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
            0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
        ];
        let m = Message::decode(&sample).unwrap();
        assert!(
            m.integrity_ok(b"VOkJxbRl1RmTxUk/WvJxBt"),
            "short-term key of RFC 5769"
        );
        let crc = CRC32.checksum(&sample[..100]) ^ 0x5354_554E;
        assert_eq!(crc.to_be_bytes(), sample[104..108]);
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        assert_eq!(Message::decode(&[0; 4]).unwrap_err(), DecodeError::Short);
        let mut buf = Vec::new();
        Writer::new(&mut buf, method::BINDING, Class::Request, [1; 12]).attribute(attr::SOFTWARE, b"x");
        let mut bad = buf.clone();
        bad[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(Message::decode(&bad).unwrap_err(), DecodeError::Length);
        let mut bad = buf.clone();
        bad[HEADER_BYTES + 3] = 40; // attribute length past the end
        assert_eq!(Message::decode(&bad).unwrap_err(), DecodeError::Attribute);
        let mut bad = buf;
        bad[4] ^= 0xff;
        assert_eq!(Message::decode(&bad).unwrap_err(), DecodeError::NotStun);
        // Every truncation of a valid message is an error, never a panic.
        let mut full = Vec::new();
        let mut w = Writer::new(&mut full, method::ALLOCATE, Class::Request, [3; 12]);
        w.u32_attribute(attr::REQUESTED_TRANSPORT, 17 << 24);
        w.finish_with_integrity(b"k", true);
        for cut in 0..full.len() {
            let _ = Message::decode(&full[..cut]);
        }
    }

    #[test]
    fn stream_frames_are_sized_with_channel_data_padding() {
        assert_eq!(stream_frame_len([0x40, 0x00, 0x00, 0x05]), Some(12));
        assert_eq!(stream_frame_len([0x40, 0x00, 0x00, 0x08]), Some(12));
        assert_eq!(stream_frame_len([0x00, 0x01, 0x00, 0x08]), Some(28));
        assert_eq!(stream_frame_len([0x00, 0x01, 0x00, 0x07]), None);
        assert_eq!(stream_frame_len([0x80, 0x00, 0x00, 0x00]), None);
        let mut buf = Vec::new();
        write_channel_data(&mut buf, 0x4001, b"hello", true);
        assert_eq!(buf.len(), 12);
        assert_eq!(parse_channel_data(&buf), Some((0x4001, &b"hello"[..])));
        assert_eq!(
            parse_channel_data(&[0x3f, 0xff, 0, 0]),
            None,
            "not a channel number"
        );
    }

    #[test]
    fn no_stream_header_announces_more_than_a_stream_buffer_holds() {
        // The largest STUN length a peer may announce: 0xFFFC, 4-aligned.
        assert_eq!(
            stream_frame_len([0x00, 0x01, 0xFF, 0xFC]),
            Some(STREAM_FRAME_MAX_BYTES)
        );
        assert_eq!(stream_frame_len([0x7F, 0xFE, 0xFF, 0xFF]), Some(4 + 0x1_0000));
        for first in [0x00, 0x3F, 0x40, 0x7F] {
            for length in 0..=u16::MAX {
                let [hi, lo] = length.to_be_bytes();
                if let Some(len) = stream_frame_len([first, 0x00, hi, lo]) {
                    assert!(len <= STREAM_FRAME_MAX_BYTES, "{first:#x} {length}: {len}");
                }
            }
        }
    }

    #[test]
    fn attributes_past_64_kib_into_a_frame_are_read_where_they_are() {
        // A frame of STREAM_FRAME_MAX_BYTES whose last attribute starts past offset 65,535: with
        // 16-bit offsets it would be read from the wrong place.
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, method::BINDING, Class::Request, [5; 12]);
        let filler = BODY_MAX_BYTES - 2 * 4 - 8;
        w.attribute(attr::SOFTWARE, &vec![b's'; filler])
            .attribute(attr::USERNAME, b"12345678");
        assert_eq!(buf.len(), STREAM_FRAME_MAX_BYTES);
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.text(attr::USERNAME), Some("12345678"));
    }

    #[test]
    fn attributes_appended_after_message_integrity_are_ignored() {
        let tid = [9u8; 12];
        let covered_peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let appended_peer: SocketAddr = "198.51.100.7:53".parse().unwrap();
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, method::CREATE_PERMISSION, Class::Request, tid);
        w.xor_address(attr::XOR_PEER_ADDRESS, covered_peer);
        w.finish_with_integrity(b"key", true);
        // What an on-path attacker could add without the key: another peer and an unknown
        // comprehension-required attribute, after MESSAGE-INTEGRITY and FINGERPRINT.
        let mut w = Writer {
            buf: &mut buf,
            transaction_id: tid,
        };
        w.xor_address(attr::XOR_PEER_ADDRESS, appended_peer)
            .attribute(0x7FFF, b"x");
        let m = Message::decode(&buf).unwrap();
        assert!(m.integrity_ok(b"key"), "the covered part is intact");
        let peers: Vec<_> = m
            .get_all(attr::XOR_PEER_ADDRESS)
            .map(|v| m.xor_address(v).unwrap())
            .collect();
        assert_eq!(peers, vec![covered_peer]);
        assert_eq!(m.unknown_required().count(), 0);
        assert!(
            m.has(attr::FINGERPRINT),
            "FINGERPRINT after MESSAGE-INTEGRITY still counts"
        );
        // Without MESSAGE-INTEGRITY every attribute is visible.
        let mut plain = Vec::new();
        Writer::new(&mut plain, method::BINDING, Class::Request, tid).attribute(0x7FFF, b"x");
        assert_eq!(
            Message::decode(&plain)
                .unwrap()
                .unknown_required()
                .collect::<Vec<_>>(),
            [0x7FFF]
        );
    }

    #[test]
    fn data_indications_that_cannot_fit_a_stun_message_are_refused() {
        let v4: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        for peer in [v4, v6] {
            let largest = (0..=usize::from(u16::MAX))
                .rev()
                .find(|&len| data_indication_fits(peer, len))
                .unwrap();
            // The largest that fits is written without tripping the length assertion.
            let mut buf = Vec::new();
            Writer::new(&mut buf, method::DATA, Class::Indication, [0; 12])
                .xor_address(attr::XOR_PEER_ADDRESS, peer)
                .attribute(attr::DATA, &vec![0; largest]);
            assert!(buf.len() <= STREAM_FRAME_MAX_BYTES);
            assert!(!data_indication_fits(peer, largest + 1));
        }
        // An IPv6 UDP datagram can carry 65,527 bytes: more than a Data indication holds.
        assert!(!data_indication_fits(v6, 65_527));
    }

    #[test]
    #[should_panic(expected = "STUN message body")]
    fn a_body_past_the_length_field_is_a_programmer_error() {
        let mut buf = Vec::new();
        Writer::new(&mut buf, method::DATA, Class::Indication, [0; 12])
            .attribute(attr::DATA, &vec![0; 65_530])
            .attribute(attr::DATA, b"wrap");
    }
}
