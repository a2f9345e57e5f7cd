//! The bridge's own media path once DTLS completes (issue 15): SRTP with session keys the bridge
//! holds, per-leg header rewriting in place, and retransmissions from one ring per published
//! stream shared by all its subscribers.
//!
//! # Where the keys come from
//! `rtc` 0.21.1 runs ICE-lite, the DTLS handshake and SDP for us, but keeps the SRTP contexts it
//! builds private (`DtlsHandler::update_srtp_contexts` is `pub(crate)`, the keys travel in a
//! crate-private event) and exposes no way to reach the DTLS connection. Three ways were weighed:
//! - a public API of `rtc`: none gives the keys or the connection state;
//! - driving `rtc-dtls`'s sans-IO `Endpoint` and `rtc-ice` ourselves: it would re-implement the
//!   peer connection's ICE/DTLS/SDP wiring, which `rtc` does well and which the bridge keeps;
//! - a vendored copy of `rtc` with one public accessor added,
//!   `RTCDtlsTransport::connection_state` (workspace `Cargo.toml`, `[patch.crates-io]`).
//!
//! The third is the smallest change: with the DTLS `State` in hand, the bridge exports the
//! keying material itself (RFC 5764 §4.2, label `EXTRACTOR-dtls_srtp`, public in `rtc-dtls`)
//! and splits it into client and server master keys and salts ([`export_srtp_keys`]).
//!
//! # Who writes what
//! After the handshake `rtc` and the bridge hold the same master keys, so the rule "one writer
//! per SRTP stream" is kept by ownership: the bridge alone protects RTP on every subscriber leg's
//! SSRC ([`srtp::SrtpSendStream`], one per leg), `rtc` alone protects RTCP (SRTCP has its own
//! keys, indexes and replay state, independent of SRTP's). Inbound, the bridge alone opens a
//! published stream's RTP once the stream is bound ([`inbound`]), `rtc` what came before.
//!
//! # What of `rtc` is still on the packet path, and why
//! - **A published packet of a bound stream: nothing.** Once `rtc` has announced a publisher's
//!   track and the track's first packet named its codec, the shard binds the SSRC to the fast
//!   path ([`inbound::InboundMedia::bind`]); its later datagrams are opened in place here (one
//!   [`srtp::SrtpRecvStream`] per participant and SSRC, a 128-packet replay window, the rollover
//!   counter carried on from the packet `rtc` delivered) and go to the forwarding code with no
//!   copy, parse or allocation, and without waking any other participant's connection.
//! - **The first packet of each new SSRC**, and streams the bridge does not bind (RTX repair
//!   streams): through `rtc` as before, because binding an unknown SSRC to its m-line (MID and
//!   RID header extensions, RFC 8843/8852) and the codec behind a payload type live there. One
//!   packet per stream, plus retransmissions.
//! - **RTCP, both ways**: `rtc` unprotects and parses inbound SRTCP (`keyframe_requests.rs` hands
//!   PLI/FIR, NACK and SR to the shard) and protects what the bridge writes. One writer per SRTCP
//!   context is kept by leaving all of it to `rtc`; it is a few packets per second per stream.
//! - **DTLS and STUN**: `rtc` (ICE-lite, consent, the handshake, the key export above).
//!
//! No `rtc` interceptor runs on media any more. The receive-side RTCP toward publishers is the
//! bridge's own: RFC 3550 receiver reports every second ([`receive_stats`]), NACKs for what is
//! missing from video streams ([`nack_generator`]), transport-wide congestion feedback every
//! 100 ms for the publisher's send-side estimator ([`twcc`]); the transport-wide sequence of a
//! packet `rtc` still opens (repair streams with the publisher's probes, which `rtc` consumes)
//! counts once a copy of it authenticates with the publisher's keys, never from the clear header
//! alone (a forged one would steer the publisher's rate).

pub mod inbound;
pub mod leg;
pub mod nack_generator;
pub mod receive_stats;
pub mod retransmit;
pub mod srtp;
pub mod twcc;
pub mod tx;

use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::dtls::state::State;
use srtp::{SrtpError, SrtpKeys, SrtpProfile};

/// The profiles the bridge offers in DTLS, in its order of preference: GCM costs one AEAD pass
/// per packet where CM-HMAC costs a cipher pass and a hash pass.
pub const SRTP_PROFILES: [SrtpProtectionProfile; 2] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
];

/// The RTP keys of one peer connection: what the bridge writes and what the peer writes.
pub struct SessionKeys {
    pub local: SrtpKeys,
    pub remote: SrtpKeys,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyExportError {
    #[error("DTLS negotiated an SRTP profile the bridge does not speak: {0:?}")]
    Profile(SrtpProtectionProfile),
    #[error("exporting the keying material failed: {0}")]
    Export(String),
    #[error(transparent)]
    Keys(#[from] SrtpError),
}

/// The profile DTLS negotiated, as the fast path names it.
pub fn profile_of(negotiated: SrtpProtectionProfile) -> Result<SrtpProfile, KeyExportError> {
    match negotiated {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Ok(SrtpProfile::AeadAes128Gcm),
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Ok(SrtpProfile::Aes128CmHmacSha1_80),
        other => Err(KeyExportError::Profile(other)),
    }
}

/// Exports the SRTP master keys from a completed DTLS handshake (RFC 5764 §4.2: client key,
/// server key, client salt, server salt) and derives the RTP session keys of both directions.
pub fn export_srtp_keys(state: &State) -> Result<SessionKeys, KeyExportError> {
    let profile = profile_of(state.srtp_protection_profile())?;
    let material = state
        .export_keying_material(
            rtc::srtp::config::LABEL_EXTRACTOR_DTLS_SRTP,
            &[],
            profile.keying_material_len(),
        )
        .map_err(|err| KeyExportError::Export(err.to_string()))?;
    split_keying_material(profile, material.as_ref(), state.is_client())
}

pub(crate) fn split_keying_material(
    profile: SrtpProfile,
    material: &[u8],
    is_client: bool,
) -> Result<SessionKeys, KeyExportError> {
    let (key_len, salt_len) = (profile.master_key_len(), profile.master_salt_len());
    if material.len() != profile.keying_material_len() {
        return Err(SrtpError::KeyLength.into());
    }
    let client_key = &material[..key_len];
    let server_key = &material[key_len..2 * key_len];
    let client_salt = &material[2 * key_len..2 * key_len + salt_len];
    let server_salt = &material[2 * key_len + salt_len..];
    let client = SrtpKeys::new(profile, client_key, client_salt)?;
    let server = SrtpKeys::new(profile, server_key, server_salt)?;
    Ok(if is_client {
        SessionKeys {
            local: client,
            remote: server,
        }
    } else {
        SessionKeys {
            local: server,
            remote: client,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use srtp::{SrtpRecvStream, SrtpSendStream};

    /// What one side protects with its `local` keys, the other opens with its `remote` keys.
    #[test]
    fn client_and_server_split_the_material_into_mirrored_keys() {
        for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            let client = split_keying_material(profile, &material, true).unwrap();
            let server = split_keying_material(profile, &material, false).unwrap();
            let mut packet = vec![0x80, 0x60, 0, 1, 0, 0, 0, 9, 0, 0, 0, 5, 1, 2, 3, 4];
            let rtp_len = packet.len();
            packet.resize(rtp_len + profile.rtp_tag_len(), 0);
            SrtpSendStream::new(5)
                .protect(&client.local, &mut packet, rtp_len)
                .unwrap();
            let mut wrong = packet.clone();
            assert!(
                SrtpRecvStream::new()
                    .unprotect(&client.remote, &mut wrong)
                    .is_err()
            );
            assert_eq!(
                SrtpRecvStream::new().unprotect(&server.remote, &mut packet),
                Ok(rtp_len)
            );
            assert_eq!(&packet[12..rtp_len], &[1, 2, 3, 4]);
        }
        assert!(split_keying_material(SrtpProfile::AeadAes128Gcm, &[0; 10], true).is_err());
    }
}
