//! The ticket control hands a participant for one bridge. It is an HS256 JWT signed with that
//! bridge's own key, which control derives from the cluster secret and the bridge's id (bridges
//! never hold the cluster secret: see `bridge_key` in control's `node.rs`), so a bridge can check
//! its own tickets and sign none another bridge accepts. The bridge accepts each `jti` once and
//! only before `exp`.

use crate::ids::{BridgeId, ParticipantId, RoomId};
use serde::{Deserialize, Serialize};

/// How long a ticket stays valid after it is issued.
pub const TICKET_TTL_S: u64 = 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// The bridge this ticket is for (the JWT `aud`).
    pub aud: BridgeId,
    /// Unique ticket id; a bridge refuses a second use.
    pub jti: String,
    pub exp: u64,
    pub iat: u64,
    pub room: RoomId,
    pub participant_id: ParticipantId,
    pub display_name: String,
    #[serde(default)]
    pub moderator: bool,
}
