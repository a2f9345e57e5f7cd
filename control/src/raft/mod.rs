//! The replicated control plane: openraft over a redb store, RPCs over HTTP on mutual TLS.
//!
//! # Layout
//! - [`store`]: the durable log (redb), the state machine wrapper around
//!   [`ControlState`](crate::state::ControlState), snapshots.
//! - [`network`]: the Raft RPC client (one per peer), over mutual TLS.
//! - [`server`]: the axum routes peers call (`/raft/v1/...`), including forwarded writes.
//! - [`cluster`]: starting a node, bootstrap, membership changes, proposing a command from any
//!   node (forwarded to the leader), health.

pub mod cluster;
pub mod network;
pub mod server;
pub mod store;

use crate::state::{ApplyError, Command, Outcome, Proposal};
use std::fmt;

/// Control nodes are numbered by the operator (`--id`); ids never get reused for another node.
pub type NodeId = u64;

/// What applying one command gave: the outcome, or why the state refused it.
pub type CommandResult = Result<Outcome, ApplyError>;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Proposal,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::NodeInfo,
);

pub type Raft = openraft::Raft<TypeConfig, store::StateMachineStore>;

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:x}{:x})", self.command, self.id.0, self.id.1)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: display names and password hashes stay out of Raft's logs.
        let name = match self {
            Command::RegisterBridge { registration, .. } => {
                return write!(f, "register-bridge {}", registration.id);
            }
            Command::SetBridgeStatus { bridge, status, .. } => {
                return write!(f, "set-bridge-status {bridge} {status:?}");
            }
            Command::ReportLoad { .. } => "report-load",
            Command::Drain { bridge, .. } => return write!(f, "drain {bridge}"),
            Command::Undrain { bridge, .. } => return write!(f, "undrain {bridge}"),
            Command::ForgetBridge { bridge } => return write!(f, "forget-bridge {bridge}"),
            Command::SetPlacementPolicy(_) => "set-placement-policy",
            Command::MuteAll { .. } => "mute-all",
            Command::Join(request) => return write!(f, "join {} {}", request.room, request.participant),
            Command::Confirm { .. } => "confirm",
            Command::Unconfirm { .. } => "unconfirm",
            Command::Leave { .. } => "leave",
            Command::Admit { .. } => "admit",
            Command::Deny { .. } => "deny",
            Command::Kick { .. } => "kick",
            Command::AdminKick { .. } => "admin-kick",
            Command::EndRoom { .. } => "end-room",
            Command::UpdateSettings { .. } => "update-settings",
            Command::Hosts(command) => match command {
                crate::state::HostCommand::AddUser { name, .. } => return write!(f, "add-user {name}"),
                crate::state::HostCommand::SetPassword { name, .. } => {
                    return write!(f, "set-password {name}");
                }
                crate::state::HostCommand::RemoveUser { name } => return write!(f, "remove-user {name}"),
                crate::state::HostCommand::CreateInvite { room, .. } => {
                    return write!(f, "create-invite {room}");
                }
            },
            Command::Tick { .. } => "tick",
        };
        f.write_str(name)
    }
}
