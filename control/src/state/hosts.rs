//! Host accounts and invite links in the replicated state. Commands carry argon2id hashes made
//! by the node that took the request (never a clear password); applying them only stores,
//! compares and counts, deterministically.

use super::*;
use bridgemesh_proto::HostName;

/// Invites one room holds at once (expired ones are dropped at each tick).
pub const ROOM_INVITES_MAX: usize = 100;
/// Invites the whole cluster holds at once.
pub const INVITES_MAX: usize = 10_000;

/// One host account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// argon2id, PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub password_hash: String,
    /// Bumped by each password change: a host session names the generation it began under, so
    /// a new password ends every older session.
    pub generation: u64,
    pub created_at_ms: u64,
    pub password_changed_at_ms: u64,
}

/// One invite link's record; its token (signed, held by the guests) names it by `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub room: RoomId,
    pub created_by: HostName,
    pub expires_at_ms: u64,
    /// `None`: any number of joins while valid.
    pub max_uses: Option<u32>,
    pub uses: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostCommand {
    AddUser {
        name: HostName,
        password_hash: String,
        at_ms: u64,
    },
    SetPassword {
        name: HostName,
        password_hash: String,
        at_ms: u64,
    },
    /// Ends the account and every session of it; its invites stay valid until they expire.
    RemoveUser { name: HostName },
    CreateInvite {
        id: String,
        room: RoomId,
        /// The host minting it, with its session's password generation (checked again here).
        by: HostName,
        generation: u64,
        /// Minted by a host logged in through single sign-on: no local account to check (their
        /// session was checked by the node that took the request).
        #[serde(default)]
        sso: bool,
        expires_at_ms: u64,
        max_uses: Option<u32>,
    },
}

impl ControlState {
    pub(super) fn apply_hosts(&mut self, command: HostCommand) -> Result<Outcome, ApplyError> {
        match command {
            HostCommand::AddUser {
                name,
                password_hash,
                at_ms,
            } => {
                if self.hosts.contains_key(&name) {
                    return Err(ApplyError::UserExists(name));
                }
                if self.hosts.len() >= crate::hosts::HOST_USERS_MAX {
                    return Err(ApplyError::Invalid(format!(
                        "at most {} host accounts",
                        crate::hosts::HOST_USERS_MAX
                    )));
                }
                self.hosts.insert(
                    name,
                    HostRecord {
                        password_hash,
                        generation: 1,
                        created_at_ms: at_ms,
                        password_changed_at_ms: at_ms,
                    },
                );
                Ok(Outcome::HostsChanged)
            }
            HostCommand::SetPassword {
                name,
                password_hash,
                at_ms,
            } => {
                let record = self.hosts.get_mut(&name).ok_or(ApplyError::UnknownUser(name))?;
                record.password_hash = password_hash;
                record.generation += 1;
                record.password_changed_at_ms = at_ms;
                Ok(Outcome::HostsChanged)
            }
            HostCommand::RemoveUser { name } => {
                self.hosts.remove(&name).ok_or(ApplyError::UnknownUser(name))?;
                Ok(Outcome::HostsChanged)
            }
            HostCommand::CreateInvite {
                id,
                room,
                by,
                generation,
                sso,
                expires_at_ms,
                max_uses,
            } => {
                if !sso && self.hosts.get(&by).map(|h| h.generation) != Some(generation) {
                    return Err(ApplyError::LoginEnded);
                }
                if self.invites.contains_key(&id) {
                    return Err(ApplyError::Invalid("an invite with this id exists".into()));
                }
                let in_room = self.invites.values().filter(|i| i.room == room).count();
                if in_room >= ROOM_INVITES_MAX || self.invites.len() >= INVITES_MAX {
                    return Err(ApplyError::TooManyInvites);
                }
                self.invites.insert(
                    id,
                    InviteRecord {
                        room,
                        created_by: by,
                        expires_at_ms,
                        max_uses,
                        uses: 0,
                    },
                );
                Ok(Outcome::HostsChanged)
            }
        }
    }

    /// Whether invite `id` lets one more participant into `room` at `at_ms`.
    pub fn check_invite(&self, id: &str, room: &RoomId, at_ms: u64) -> Result<(), ApplyError> {
        // A record is dropped once expired, so a missing one is an expired (or never valid) one;
        // the token's signature was checked before the command was built.
        let invite = self.invites.get(id).ok_or(ApplyError::InviteExpired)?;
        if invite.room != *room {
            return Err(ApplyError::InviteWrongRoom);
        }
        if at_ms >= invite.expires_at_ms {
            return Err(ApplyError::InviteExpired);
        }
        if invite.max_uses.is_some_and(|max| invite.uses >= max) {
            return Err(ApplyError::InviteUsedUp);
        }
        Ok(())
    }

    pub(super) fn use_invite(&mut self, id: &str) {
        if let Some(invite) = self.invites.get_mut(id) {
            invite.uses = invite.uses.saturating_add(1);
        }
    }

    pub(super) fn drop_expired_invites(&mut self, now_ms: u64) {
        self.invites.retain(|_, invite| invite.expires_at_ms > now_ms);
    }
}

#[cfg(test)]
mod tests;
