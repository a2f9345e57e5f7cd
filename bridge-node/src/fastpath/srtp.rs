//! SRTP (RFC 3711) for RTP packets, in place, on session keys the bridge derives itself.
//!
//! Two profiles: `AEAD_AES_128_GCM` (RFC 7714) on `ring`'s AES-GCM (AES-NI/CLMUL where the CPU
//! has them), and `AES_CM_128_HMAC_SHA1_80` with AES counter mode from the `aes`/`ctr` crates
//! (AES-NI detected at run time) and `ring`'s HMAC-SHA1. Nothing here allocates: a packet is
//! transformed inside the caller's buffer, which has room for the tag.
//!
//! Keys are per session and direction ([`SrtpKeys`]); the rollover counter and replay window are
//! per SSRC ([`SrtpSendStream`], [`SrtpRecvStream`]), and the bridge keeps exactly one of each per
//! (leg, SSRC): one writer per SRTP stream.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, InnerIvInit, KeyInit, StreamCipher};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;

/// The SRTP protection profiles the bridge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpProfile {
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714): one AEAD pass, 16-byte tag.
    AeadAes128Gcm,
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 3711): AES-CTR then HMAC-SHA1, 10-byte tag.
    Aes128CmHmacSha1_80,
}

const MASTER_KEY_LEN: usize = 16;
const CM_SALT_LEN: usize = 14;
const GCM_SALT_LEN: usize = 12;
const CM_AUTH_KEY_LEN: usize = 20;
const CM_TAG_LEN: usize = 10;
const GCM_TAG_LEN: usize = 16;
/// RFC 3711 §4.3.1 labels (the RTCP ones are for when the fast path owns SRTCP too).
const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_AUTH: u8 = 0x01;
const LABEL_RTP_SALT: u8 = 0x02;
/// Packets behind the highest one received that may still arrive (once each).
const REPLAY_WINDOW: u64 = 128;
const RTP_HEADER_LEN: usize = 12;

impl SrtpProfile {
    pub fn master_key_len(self) -> usize {
        MASTER_KEY_LEN
    }

    pub fn master_salt_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes128Gcm => GCM_SALT_LEN,
            SrtpProfile::Aes128CmHmacSha1_80 => CM_SALT_LEN,
        }
    }

    /// Bytes SRTP adds to an RTP packet.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes128Gcm => GCM_TAG_LEN,
            SrtpProfile::Aes128CmHmacSha1_80 => CM_TAG_LEN,
        }
    }

    /// Length of the DTLS-SRTP exporter output (RFC 5764 §4.2): both keys, then both salts.
    pub fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    #[error("not an RTP packet, or its header runs past the datagram")]
    Malformed,
    #[error("the authentication tag does not verify")]
    BadTag,
    #[error("a replayed or too old packet")]
    Replayed,
    #[error("no room after the packet for the SRTP tag")]
    NoRoomForTag,
    #[error("wrong master key or salt length")]
    KeyLength,
}

/// Length of an RTP packet's header (fixed part, CSRCs and the extension block), checked against
/// the packet's length.
pub fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    if packet.len() < RTP_HEADER_LEN || packet[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let mut len = RTP_HEADER_LEN + 4 * usize::from(packet[0] & 0x0F);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4).ok_or(SrtpError::Malformed)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if len > packet.len() {
        return Err(SrtpError::Malformed);
    }
    Ok(len)
}

// Two per peer connection, built once and never moved on the packet path: boxing the larger
// variant would only add an indirection per packet.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Gcm(LessSafeKey),
    Cm { aes: Aes128, auth: hmac::Key },
}

/// One direction's RTP session keys (the bridge's writes to a peer, or the peer's writes to it).
pub struct SrtpKeys {
    profile: SrtpProfile,
    cipher: Cipher,
    salt: [u8; CM_SALT_LEN],
}

impl SrtpKeys {
    /// Derives the session keys from a master key and salt (RFC 3711 §4.3, key derivation rate 0,
    /// as RFC 5764 requires).
    pub fn new(profile: SrtpProfile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        if master_key.len() != profile.master_key_len() || master_salt.len() != profile.master_salt_len() {
            return Err(SrtpError::KeyLength);
        }
        let master = Aes128::new_from_slice(master_key).map_err(|_| SrtpError::KeyLength)?;
        let mut key = [0u8; MASTER_KEY_LEN];
        derive(&master, master_salt, LABEL_RTP_ENCRYPTION, &mut key);
        let mut salt = [0u8; CM_SALT_LEN];
        let salt_len = profile.master_salt_len();
        derive(&master, master_salt, LABEL_RTP_SALT, &mut salt[..salt_len]);
        let cipher = match profile {
            SrtpProfile::AeadAes128Gcm => {
                let unbound = UnboundKey::new(&AES_128_GCM, &key).map_err(|_| SrtpError::KeyLength)?;
                Cipher::Gcm(LessSafeKey::new(unbound))
            }
            SrtpProfile::Aes128CmHmacSha1_80 => {
                let mut auth = [0u8; CM_AUTH_KEY_LEN];
                derive(&master, master_salt, LABEL_RTP_AUTH, &mut auth);
                Cipher::Cm {
                    aes: Aes128::new_from_slice(&key).map_err(|_| SrtpError::KeyLength)?,
                    auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth),
                }
            }
        };
        Ok(Self {
            profile,
            cipher,
            salt,
        })
    }

    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Encrypts `packet[..rtp_len]` in place and writes the tag after it; returns the SRTP length.
    fn seal(&self, packet: &mut [u8], rtp_len: usize, ssrc: u32, index: u64) -> Result<usize, SrtpError> {
        let header_len = rtp_header_len(&packet[..rtp_len])?;
        let srtp_len = rtp_len + self.profile.rtp_tag_len();
        if packet.len() < srtp_len {
            return Err(SrtpError::NoRoomForTag);
        }
        match &self.cipher {
            Cipher::Gcm(key) => {
                let (header, rest) = packet.split_at_mut(header_len);
                let (payload, tail) = rest.split_at_mut(rtp_len - header_len);
                let tag = key
                    .seal_in_place_separate_tag(self.gcm_nonce(ssrc, index), Aad::from(&*header), payload)
                    .map_err(|_| SrtpError::Malformed)?;
                tail[..GCM_TAG_LEN].copy_from_slice(tag.as_ref());
            }
            Cipher::Cm { aes, auth } => {
                self.cm_keystream(aes, ssrc, index)
                    .apply_keystream(&mut packet[header_len..rtp_len]);
                let tag = cm_tag(auth, &packet[..rtp_len], (index >> 16) as u32);
                packet[rtp_len..srtp_len].copy_from_slice(&tag.as_ref()[..CM_TAG_LEN]);
            }
        }
        Ok(srtp_len)
    }

    /// Verifies and decrypts `packet` in place; returns the RTP length.
    fn open(&self, packet: &mut [u8], header_len: usize, ssrc: u32, index: u64) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_tag_len();
        let rtp_len = packet
            .len()
            .checked_sub(tag_len)
            .filter(|len| *len >= header_len)
            .ok_or(SrtpError::Malformed)?;
        match &self.cipher {
            Cipher::Gcm(key) => {
                let (header, sealed) = packet.split_at_mut(header_len);
                key.open_in_place(self.gcm_nonce(ssrc, index), Aad::from(&*header), sealed)
                    .map_err(|_| SrtpError::BadTag)?;
            }
            Cipher::Cm { aes, auth } => {
                let expected = cm_tag(auth, &packet[..rtp_len], (index >> 16) as u32);
                if !constant_time_eq(&expected.as_ref()[..CM_TAG_LEN], &packet[rtp_len..]) {
                    return Err(SrtpError::BadTag);
                }
                self.cm_keystream(aes, ssrc, index)
                    .apply_keystream(&mut packet[header_len..rtp_len]);
            }
        }
        Ok(rtp_len)
    }

    /// RFC 7714 §8.1: 00 00 || SSRC || ROC || SEQ, XOR the session salt.
    fn gcm_nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..8]);
        for (byte, salt) in iv.iter_mut().zip(&self.salt[..GCM_SALT_LEN]) {
            *byte ^= salt;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// RFC 3711 §4.1.1: (salt · 2^16) XOR (SSRC · 2^64) XOR (index · 2^16).
    fn cm_keystream(&self, aes: &Aes128, ssrc: u32, index: u64) -> ctr::Ctr128BE<Aes128> {
        let mut iv = [0u8; 16];
        iv[..CM_SALT_LEN].copy_from_slice(&self.salt);
        for (byte, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *byte ^= x;
        }
        for (byte, x) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
            *byte ^= x;
        }
        // The expanded key is copied, not expanded again: no per-packet key schedule.
        ctr::Ctr128BE::<Aes128>::from_core(ctr::CtrCore::inner_iv_init(aes.clone(), &iv.into()))
    }
}

/// The AES-CM PRF of RFC 3711 §4.3.3 with `r = 0`: AES-CTR under the master key over
/// `(salt XOR label·2^48) · 2^16`, truncated to `out.len()`.
fn derive(master: &Aes128, master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut block = [0u8; 16];
    block[..master_salt.len()].copy_from_slice(master_salt);
    block[7] ^= label;
    for (counter, chunk) in out.chunks_mut(16).enumerate() {
        let mut input = block;
        input[14..16].copy_from_slice(&(counter as u16).to_be_bytes());
        let mut input = input.into();
        master.encrypt_block(&mut input);
        chunk.copy_from_slice(&input[..chunk.len()]);
    }
}

fn cm_tag(auth: &hmac::Key, authenticated: &[u8], roc: u32) -> hmac::Tag {
    let mut context = hmac::Context::with_key(auth);
    context.update(authenticated);
    context.update(&roc.to_be_bytes());
    context.sign()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ssrc_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]])
}

fn seq_of(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[2], packet[3]])
}

/// The 48-bit packet index (ROC · 2^16 + SEQ) nearest to `highest` for `seq` (RFC 3711
/// Appendix A, in extended arithmetic).
pub(crate) fn nearest_index(highest: u64, seq: u16) -> u64 {
    let candidate = (highest & !0xFFFF) | u64::from(seq);
    let half = 1u64 << 15;
    if candidate + half < highest {
        candidate + (1 << 16)
    } else if candidate > highest + half && candidate >= 1 << 16 {
        candidate - (1 << 16)
    } else {
        candidate
    }
}

/// The sending side of one SRTP stream (one SSRC of one leg).
pub struct SrtpSendStream {
    ssrc: u32,
    /// The highest index protected so far; retransmissions of older packets use their own ROC.
    highest: Option<u64>,
}

impl SrtpSendStream {
    pub fn new(ssrc: u32) -> Self {
        Self { ssrc, highest: None }
    }

    /// Protects the RTP packet in `packet[..rtp_len]`, whose SSRC must be this stream's; the tag
    /// goes after it, inside `packet`. Returns the SRTP length.
    pub fn protect(
        &mut self,
        keys: &SrtpKeys,
        packet: &mut [u8],
        rtp_len: usize,
    ) -> Result<usize, SrtpError> {
        if rtp_len < RTP_HEADER_LEN || rtp_len > packet.len() {
            return Err(SrtpError::Malformed);
        }
        debug_assert_eq!(ssrc_of(packet), self.ssrc, "one SRTP stream per SSRC");
        let seq = seq_of(packet);
        let index = match self.highest {
            None => u64::from(seq),
            Some(highest) => nearest_index(highest, seq),
        };
        let len = keys.seal(packet, rtp_len, self.ssrc, index)?;
        self.highest = Some(self.highest.map_or(index, |h| h.max(index)));
        Ok(len)
    }
}

/// The receiving side of one SRTP stream: rollover counter and replay window.
pub struct SrtpRecvStream {
    highest: Option<u64>,
    /// Bit `i` set: index `highest - i` was received.
    window: u128,
}

impl Default for SrtpRecvStream {
    fn default() -> Self {
        Self::new()
    }
}

impl SrtpRecvStream {
    pub fn new() -> Self {
        Self {
            highest: None,
            window: 0,
        }
    }

    /// A stream whose packets up to `seq` (rollover counter 0) were opened elsewhere: the next
    /// ones are indexed from it, and `seq` itself counts as received.
    pub fn after(seq: u16) -> Self {
        Self {
            highest: Some(u64::from(seq)),
            window: 1,
        }
    }

    /// Verifies and decrypts the SRTP packet in place; returns the RTP length. The stream's state
    /// changes only for a packet that verifies.
    pub fn unprotect(&mut self, keys: &SrtpKeys, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let header_len = rtp_header_len(packet)?;
        let seq = seq_of(packet);
        let index = match self.highest {
            None => u64::from(seq),
            Some(highest) => nearest_index(highest, seq),
        };
        if let Some(highest) = self.highest
            && index <= highest
        {
            let behind = highest - index;
            if behind >= REPLAY_WINDOW || self.window & (1u128 << behind) != 0 {
                return Err(SrtpError::Replayed);
            }
        }
        let len = keys.open(packet, header_len, ssrc_of(packet), index)?;
        match self.highest {
            Some(highest) if index <= highest => self.window |= 1u128 << (highest - index),
            Some(highest) => {
                let ahead = index - highest;
                self.window = if ahead >= REPLAY_WINDOW {
                    1
                } else {
                    (self.window << ahead) | 1
                };
                self.highest = Some(index);
            }
            None => {
                self.highest = Some(index);
                self.window = 1;
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    const KEY: [u8; 16] = [
        0xE1, 0xF9, 0x7A, 0x0D, 0x3E, 0x01, 0x8B, 0xE0, 0xD6, 0x4F, 0xA3, 0x2C, 0x06, 0xDE, 0x41, 0x39,
    ];
    const SALT: [u8; 14] = [
        0x0E, 0xC6, 0x75, 0xAD, 0x49, 0x8A, 0xFE, 0xEB, 0xB6, 0x96, 0x0B, 0x3A, 0xAB, 0xE6,
    ];

    fn profiles() -> [(SrtpProfile, ProtectionProfile); 2] {
        [
            (SrtpProfile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm),
            (
                SrtpProfile::Aes128CmHmacSha1_80,
                ProtectionProfile::Aes128CmHmacSha1_80,
            ),
        ]
    }

    fn reference(profile: ProtectionProfile, salt_len: usize) -> Context {
        let provider = rtc::crypto::default_provider().unwrap();
        Context::new(&KEY, &SALT[..salt_len], profile, None, None, provider.crypto()).unwrap()
    }

    /// An RTP packet with a CSRC and a one-byte header extension, so the header is not the
    /// fixed 12 bytes.
    fn rtp(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
        let mut packet = vec![0x91, 0x60];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&0xCAFE_BABEu32.to_be_bytes());
        packet.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0x7F, 0x00, 0x00]);
        packet.extend((0..payload_len).map(|i| i as u8));
        packet
    }

    #[test]
    fn header_length_counts_csrcs_and_extension_and_rejects_lies() {
        assert_eq!(rtp_header_len(&rtp(1, 2, 10)), Ok(12 + 4 + 8));
        let mut lying = rtp(1, 2, 0);
        lying[18] = 0xFF; // extension length far past the end
        assert_eq!(rtp_header_len(&lying), Err(SrtpError::Malformed));
        assert_eq!(rtp_header_len(&[0x80; 11]), Err(SrtpError::Malformed));
        assert_eq!(rtp_header_len(&[0x40; 12]), Err(SrtpError::Malformed));
    }

    /// Our output decrypts with `rtc`'s SRTP (which interoperates with browsers), and
    /// `rtc`'s output decrypts with ours, across a rollover of the sequence number.
    #[test]
    fn interoperates_with_rtc_srtp_in_both_directions_and_both_profiles() {
        for (profile, theirs) in profiles() {
            let salt_len = profile.master_salt_len();
            let keys = SrtpKeys::new(profile, &KEY, &SALT[..salt_len]).unwrap();
            let mut their_decrypt = reference(theirs, salt_len);
            let mut their_encrypt = reference(theirs, salt_len);
            let mut send = SrtpSendStream::new(0x1122_3344);
            let mut recv = SrtpRecvStream::new();
            for seq in (0..40u16).map(|i| 65_520u16.wrapping_add(i)) {
                let plain = rtp(seq, 0x1122_3344, 100 + usize::from(seq % 7));
                let mut buf = plain.clone();
                buf.resize(plain.len() + profile.rtp_tag_len(), 0);
                let len = send.protect(&keys, &mut buf, plain.len()).unwrap();
                assert_eq!(len, buf.len());
                let decrypted = their_decrypt.decrypt_rtp(&buf).unwrap();
                assert_eq!(&decrypted[..], &plain[..], "{profile:?} seq {seq}");

                let mut theirs = their_encrypt.encrypt_rtp(&plain).unwrap().to_vec();
                assert_eq!(theirs, buf, "{profile:?}: both sides produce the same bytes");
                let len = recv.unprotect(&keys, &mut theirs).unwrap();
                assert_eq!(&theirs[..len], &plain[..]);
            }
        }
    }

    #[test]
    fn a_bad_tag_or_a_replay_is_refused_and_leaves_the_stream_usable() {
        for (profile, _) in profiles() {
            let keys = SrtpKeys::new(profile, &KEY, &SALT[..profile.master_salt_len()]).unwrap();
            let mut send = SrtpSendStream::new(7);
            let mut recv = SrtpRecvStream::new();
            let protect = |send: &mut SrtpSendStream, seq| {
                let plain = rtp(seq, 7, 50);
                let mut buf = plain.clone();
                buf.resize(plain.len() + profile.rtp_tag_len(), 0);
                send.protect(&keys, &mut buf, plain.len()).unwrap();
                buf
            };
            let first = protect(&mut send, 10);
            let mut tampered = first.clone();
            *tampered.last_mut().unwrap() ^= 1;
            assert_eq!(recv.unprotect(&keys, &mut tampered), Err(SrtpError::BadTag));
            let mut payload_flipped = first.clone();
            payload_flipped[30] ^= 1;
            assert_eq!(
                recv.unprotect(&keys, &mut payload_flipped),
                Err(SrtpError::BadTag)
            );
            assert!(recv.unprotect(&keys, &mut first.clone()).is_ok());
            assert_eq!(
                recv.unprotect(&keys, &mut first.clone()),
                Err(SrtpError::Replayed)
            );
            // Out of order inside the window is fine, once.
            let later = protect(&mut send, 12);
            let between = protect(&mut send, 11);
            assert!(recv.unprotect(&keys, &mut later.clone()).is_ok());
            assert!(recv.unprotect(&keys, &mut between.clone()).is_ok());
            assert_eq!(
                recv.unprotect(&keys, &mut between.clone()),
                Err(SrtpError::Replayed)
            );
        }
    }

    #[test]
    fn wrong_key_lengths_and_missing_tag_room_are_errors() {
        assert!(matches!(
            SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &KEY, &SALT),
            Err(SrtpError::KeyLength)
        ));
        let keys = SrtpKeys::new(SrtpProfile::Aes128CmHmacSha1_80, &KEY, &SALT).unwrap();
        let mut packet = rtp(1, 9, 20);
        let len = packet.len();
        assert_eq!(
            SrtpSendStream::new(9).protect(&keys, &mut packet, len),
            Err(SrtpError::NoRoomForTag)
        );
    }

    #[test]
    fn the_index_follows_rollovers_both_ways() {
        assert_eq!(nearest_index(65_535, 0), 65_536);
        assert_eq!(nearest_index(65_536 + 5, 65_530), 65_530);
        assert_eq!(nearest_index(10, 65_530), 65_530);
        assert_eq!(nearest_index(3 << 16 | 100, 90), 3 << 16 | 90);
    }
}
