//! Bridge ↔ control: one WebSocket per bridge, opened by the bridge to the control leader at
//! `GET /api/v1/bridges/session` with `Authorization: Bearer <bridge credential>` (see
//! [`BRIDGE_SESSION_PATH`], `docs/regions.md`). JSON text frames tagged by `"type"`.
//!
//! The bridge says `register` first and then heartbeats; control answers `registered` (or
//! `not_leader` with where the leader is, then closes). Everything control wants a bridge to do
//! (remove a participant, move one to another bridge, end a room) arrives on the same socket.
//! A bridge whose socket drops reconnects and registers again with the participants it still
//! hosts, and control reconciles: registration is idempotent.

use crate::ids::{BridgeId, ParticipantId, RegionId, RoomId};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Where bridges open their session on a control node.
pub const BRIDGE_SESSION_PATH: &str = "/api/v1/bridges/session";
/// Largest frame either side accepts: a register message listing [`REGISTER_PARTICIPANTS_MAX`]
/// participants with ids of the longest kind (about 160 bytes each in JSON) fits.
pub const BRIDGE_MESSAGE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Participants one `register` may list.
pub const REGISTER_PARTICIPANTS_MAX: usize = 20_000;

/// The secret of a bridge's embedded TURN server (coturn's REST credentials), derived from that
/// bridge's own key, so control can issue credentials the bridge's TURN server accepts, and a
/// credential for one bridge's TURN server is worthless on another's.
pub fn turn_rest_secret(bridge_key: &[u8]) -> Vec<u8> {
    derive(bridge_key, b"bridgemesh turn rest v1")
}

/// Where TURN servers (embedded in bridges, or `bridgemesh turn --control`) read the media
/// addresses of the cluster's bridges, the only peers they relay to by default: `GET` with
/// `Authorization: Bearer <`[`turn_peers_credential`]`>`, answered with [`TurnPeers`].
pub const TURN_PEERS_PATH: &str = "/api/v1/turn/peers";
/// Addresses one [`TurnPeers`] answer lists at most.
pub const TURN_PEERS_MAX: usize = 10_000;

/// The bearer credential of [`TURN_PEERS_PATH`], derived from a TURN server's REST secret, which
/// control holds too (it issues the servers' credentials): no secret of its own to distribute.
pub fn turn_peers_credential(turn_secret: &[u8]) -> String {
    hex::encode(derive(turn_secret, b"bridgemesh turn peers v1"))
}

/// Where a standalone TURN server (`bridgemesh turn --control`) reads which participants'
/// sessions ended lately, with the [`TURN_PEERS_PATH`] credential, answered with
/// [`TurnEndedSessions`]: it refuses the credentials they were given before and ends their
/// allocations. (A bridge's embedded server hears of its own participants directly.)
pub const TURN_ENDED_SESSIONS_PATH: &str = "/api/v1/turn/ended-sessions";
/// Ended sessions one [`TurnEndedSessions`] answer lists at most, the most recent.
pub const TURN_ENDED_SESSIONS_MAX: usize = 4_096;

/// Participants whose session is over for good (left, kicked, their room ended), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnEndedSessions {
    pub sessions: Vec<EndedSession>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedSession {
    /// The participant id, which is the user of its TURN credentials.
    pub participant: crate::ParticipantId,
    /// When control saw the session end (unix seconds, control's clock).
    pub ended_at_unix_s: u64,
}

/// The cluster's bridges as TURN servers may relay to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnPeers {
    /// Every media address of every bridge that is not down, as participants reach it (the
    /// external address of a bridge behind a NAT).
    pub media_addresses: Vec<std::net::SocketAddr>,
}

fn derive(key: &[u8], label: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

/// A point on the globe, in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
}

impl GeoPoint {
    /// Latitude within ±90, longitude within ±180, both finite.
    pub fn is_valid(&self) -> bool {
        self.latitude.is_finite()
            && self.longitude.is_finite()
            && (-90.0..=90.0).contains(&self.latitude)
            && (-180.0..=180.0).contains(&self.longitude)
    }
}

/// What a bridge tells control about itself when it registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeRegistration {
    pub id: BridgeId,
    pub region: RegionId,
    /// Where the bridge is; control uses the mean of a region's bridges as the region's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    /// `ws://` or `wss://` URL of the bridge's signaling endpoint, as participants reach it.
    pub signaling_url: String,
    /// Where participants send media (`ip:port`).
    pub media_addresses: Vec<String>,
    /// The bridge's embedded TURN server (`turn:`/`turns:` URLs); empty without one.
    #[serde(default)]
    pub turn_urls: Vec<String>,
    /// Participants the bridge accepts at most.
    pub capacity: u32,
    /// Participants of one room the bridge accepts at most.
    pub max_participants_per_room: u32,
    /// Where other bridges open cascade links to this one (QUIC, `ip:port`); `None` for a bridge
    /// that does not cascade, whose rooms cannot span other bridges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade_addr: Option<std::net::SocketAddr>,
}

/// Another bridge hosting part of a room, and where to open a cascade link to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CascadePeer {
    pub bridge: BridgeId,
    pub addr: std::net::SocketAddr,
}

/// The bridge's load, measured by the bridge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub participants: u32,
    /// Share of the machine's CPU the bridge process used over the last interval (0.0–1.0).
    pub cpu: f64,
    /// RTP/RTCP packets received plus sent per second over the last interval.
    pub packets_per_s: f64,
    /// One figure for placement: 1.0 means at the bridge's configured limit. The largest of
    /// CPU ÷ its ceiling, packet rate ÷ its ceiling, and participants ÷ capacity.
    pub stress: f64,
}

/// One participant a bridge hosts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostedParticipant {
    pub room: RoomId,
    pub participant: ParticipantId,
}

/// Updates one [`BridgeToControl::ParticipantsMedia`] carries at most.
pub const MEDIA_UPDATES_PER_MESSAGE_MAX: usize = 2_000;

/// A hosted participant's media and meeting state as its bridge sees it: what control's admin
/// API shows beside the membership Raft holds. Only the latest state matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantMedia {
    pub room: RoomId,
    pub participant: ParticipantId,
    /// When its signaling session on this bridge began (Unix ms, the bridge's clock).
    pub connected_at_ms: u64,
    pub microphone_muted: bool,
    pub camera_muted: bool,
    /// Sources whose media the bridge is forwarding.
    pub sources: Vec<crate::signaling::MediaSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_raised_at_ms: Option<u64>,
    /// The room requires end-to-end encryption: its media is ciphertext to the bridge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e2ee: bool,
}

// One `register` per session against a stream of heartbeats: boxing it would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum BridgeToControl {
    /// First message on every socket.
    Register {
        bridge: BridgeRegistration,
        /// Random per process start: control tells a restarted bridge from a reconnecting one,
        /// and two processes claiming one id from each other.
        instance: String,
        /// Participants connected to the bridge right now.
        participants: Vec<HostedParticipant>,
        load: LoadReport,
    },
    Heartbeat {
        load: LoadReport,
    },
    ParticipantJoined {
        room: RoomId,
        participant: ParticipantId,
    },
    ParticipantLeft {
        room: RoomId,
        participant: ParticipantId,
        /// The connection ended without the participant's `leave` (socket or ICE lost, replaced,
        /// moved): it may come back, so control keeps its place for a while.
        #[serde(default)]
        dropped: bool,
    },
    /// The bridge asks to be drained (it is stopping): no new participants; the ones it has are
    /// moved after `grace_ms`.
    Drain {
        grace_ms: u64,
    },
    /// The latest media state of participants whose state changed since the last such message
    /// (all of them after a registration), at most [`MEDIA_UPDATES_PER_MESSAGE_MAX`], sent with
    /// the heartbeats.
    ParticipantsMedia {
        updates: Vec<ParticipantMedia>,
    },
}

/// A bridge's status as control sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BridgeStatus {
    /// Takes new participants.
    Up,
    /// Control has stopped hearing from it: no new participants, nobody moved yet.
    Unreachable,
    /// Being emptied by an operator or because it is stopping: no new participants.
    Draining,
    /// Declared dead; its participants were moved.
    Down,
}

impl BridgeStatus {
    /// The name on the wire (and in metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Unreachable => "unreachable",
            Self::Draining => "draining",
            Self::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ControlToBridge {
    /// Registration accepted. The bridge heartbeats every `heartbeat_interval_ms` from now on.
    Registered {
        heartbeat_interval_ms: u64,
        status: BridgeStatus,
    },
    /// This control node does not lead; the session closes after this. `leader_url` is the
    /// leader's session URL when known.
    NotLeader {
        leader_url: Option<String>,
    },
    /// Registration refused (another live bridge holds this id, or the registration is invalid).
    Refused {
        code: String,
        message: String,
    },
    /// The bridge's status changed (drain started or ended).
    Status {
        status: BridgeStatus,
    },
    /// Remove the participant: a moderator kicked it, or control does not hold it.
    Kick {
        room: RoomId,
        participant: ParticipantId,
    },
    /// The participant was placed on another bridge: tell it (`bye moved`) and drop it.
    Move {
        room: RoomId,
        participant: ParticipantId,
    },
    MuteAll {
        room: RoomId,
        by: ParticipantId,
    },
    /// The operator (admin API) asks one participant to mute its microphone; not replicated: a
    /// request, like `mute_requested`, that only a connected client can act on.
    RequestMute {
        room: RoomId,
        participant: ParticipantId,
    },
    EndRoom {
        room: RoomId,
    },
    /// The other bridges that now host participants of `room` (placed or connected), each with
    /// its cascade address. Sent when the set changes and, for every room the bridge is in, after
    /// each registration. Empty: this bridge no longer shares the room with anyone.
    RoomBridges {
        room: RoomId,
        peers: Vec<CascadePeer>,
    },
    /// After a registration: every room this bridge shares with another was listed in a
    /// `room_bridges` since `registered`; any other room it linked before is shared with nobody
    /// now (a change it missed while its session was down).
    RoomBridgesComplete,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_their_documented_shape() {
        let msg = ControlToBridge::Move {
            room: RoomId::new("r").unwrap(),
            participant: ParticipantId::new("p-1").unwrap(),
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"type":"move","room":"r","participant":"p-1"}"#);
        assert_eq!(serde_json::from_str::<ControlToBridge>(&json).unwrap(), msg);
        let heartbeat: BridgeToControl = serde_json::from_str(
            r#"{"type":"heartbeat","load":{"participants":3,"cpu":0.25,"packets_per_s":1200.0,"stress":0.25}}"#,
        )
        .unwrap();
        assert_eq!(
            heartbeat,
            BridgeToControl::Heartbeat {
                load: LoadReport {
                    participants: 3,
                    cpu: 0.25,
                    packets_per_s: 1200.0,
                    stress: 0.25
                }
            }
        );
        assert!(serde_json::from_str::<BridgeToControl>(r#"{"type":"heartbeat"}"#).is_err());
        assert!(serde_json::from_str::<BridgeToControl>(r#"{"type":"kick"}"#).is_err());
    }

    #[test]
    fn a_register_listing_the_most_participants_with_the_longest_ids_fits_in_a_message() {
        let long = |n: usize| format!("{n:0>64}");
        let participants = (0..REGISTER_PARTICIPANTS_MAX)
            .map(|n| HostedParticipant {
                room: RoomId::new(long(n)).unwrap(),
                participant: ParticipantId::new(long(n)).unwrap(),
            })
            .collect();
        let register = BridgeToControl::Register {
            bridge: BridgeRegistration {
                id: BridgeId::new("x".repeat(BridgeId::MAX_LEN)).unwrap(),
                region: RegionId::new("x".repeat(RegionId::MAX_LEN)).unwrap(),
                location: Some(GeoPoint {
                    latitude: -89.123_456_789,
                    longitude: -179.123_456_789,
                }),
                // A generous registration: 64 KiB of URLs and addresses.
                signaling_url: "x".repeat(32 * 1024),
                media_addresses: vec!["x".repeat(16 * 1024)],
                turn_urls: vec!["x".repeat(16 * 1024)],
                capacity: u32::MAX,
                max_participants_per_room: u32::MAX,
                cascade_addr: None,
            },
            instance: "x".repeat(128),
            participants,
            load: LoadReport {
                participants: u32::MAX,
                cpu: 0.123_456_789_012_345_67,
                packets_per_s: 123_456_789.123_456_79,
                stress: 1.234_567_890_123_456_7,
            },
        };
        let bytes = serde_json::to_vec(&register).unwrap().len();
        assert!(bytes <= BRIDGE_MESSAGE_MAX_BYTES, "{bytes} bytes");
    }

    #[test]
    fn the_most_media_updates_with_the_longest_ids_fit_in_a_message() {
        let long = |n: usize| format!("{n:0>64}");
        let updates = (0..MEDIA_UPDATES_PER_MESSAGE_MAX)
            .map(|n| ParticipantMedia {
                room: RoomId::new(long(n)).unwrap(),
                participant: ParticipantId::new(long(n)).unwrap(),
                connected_at_ms: u64::MAX,
                microphone_muted: true,
                camera_muted: true,
                sources: crate::signaling::MediaSource::ALL.to_vec(),
                hand_raised_at_ms: Some(u64::MAX),
                e2ee: true,
            })
            .collect();
        let message = BridgeToControl::ParticipantsMedia { updates };
        let bytes = serde_json::to_vec(&message).unwrap().len();
        assert!(bytes <= BRIDGE_MESSAGE_MAX_BYTES, "{bytes} bytes");
    }

    #[test]
    fn geo_points_outside_the_globe_are_invalid() {
        assert!(
            GeoPoint {
                latitude: 50.1,
                longitude: 8.7
            }
            .is_valid()
        );
        assert!(
            !GeoPoint {
                latitude: 91.0,
                longitude: 0.0
            }
            .is_valid()
        );
        assert!(
            !GeoPoint {
                latitude: 0.0,
                longitude: f64::NAN
            }
            .is_valid()
        );
    }
}
