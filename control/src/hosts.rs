//! Host accounts without a token server: logins, their sessions, and invite links. Pure: the
//! caller passes `now`, so the limiter and the token checks run under virtual time in tests.
//!
//! # Layout
//! - [`limiter`]: [`LoginLimiter`], the brute-force bound: exponential delays per address and
//!   account, per address, and per account for addresses it has never logged in from; capped,
//!   so nobody can lock a host out for longer than [`LimiterConfig::delay_max`] at a time.
//! - [`tokens`]: [`HostKeys`]: host sessions (what a login gives) and invite tokens, both signed
//!   with keys derived from the cluster secret, so every control node checks them alike.
//!
//! The accounts themselves (argon2id hashes) live in the replicated state (`state/hosts.rs`);
//! hashing and checking happen on the node that took the request (`node/hosts.rs`), never in
//! the state machine.

pub mod limiter;
pub mod tokens;

pub use limiter::{LimiterConfig, Locked, LoginLimiter};
pub use tokens::{HostKeys, HostSessionClaims, InviteClaims, TokenCheck};

use bridgemesh_proto::HostName;
use bridgemesh_proto::hosts::{HOST_PASSWORD_MAX_CHARS, HOST_PASSWORD_MIN_CHARS};

/// Most host accounts a cluster holds (each is one small record in every snapshot).
pub const HOST_USERS_MAX: usize = 1_000;

/// The `user_id` a host's participants carry: a kick bans the account from the meeting.
pub fn host_user_id(name: &HostName) -> String {
    format!("host:{name}")
}

/// Why a new password is refused.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < HOST_PASSWORD_MIN_CHARS {
        return Err(format!(
            "a host password has at least {HOST_PASSWORD_MIN_CHARS} characters"
        ));
    }
    if chars > HOST_PASSWORD_MAX_CHARS {
        return Err(format!(
            "a host password has at most {HOST_PASSWORD_MAX_CHARS} characters"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("a host password has no control characters".into());
    }
    Ok(())
}
