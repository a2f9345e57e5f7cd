//! Host accounts on a node: logins (argon2id checked here, on the blocking pool, under the
//! brute-force limiter), host sessions on joins, the admin API's account changes, invite links.
//! The state machine only ever sees hashes.

use super::*;
use crate::hosts::{HostSessionClaims, Locked, TokenCheck, check_new_password, host_user_id};
use crate::state::HostCommand;
use bridgemesh_proto::HostName;
use bridgemesh_proto::hosts::{
    ClearPassword, CreateInvite, HOST_PASSWORD_MAX_CHARS, HOST_SESSION_TTL_S, HostLogin, HostUser,
    INVITE_USES_MAX, INVITE_VALID_MAX_S, Invite,
};
use std::sync::OnceLock;

/// A refused login, with how long to wait when it was refused by the limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginError {
    pub error: ApiError,
    pub retry_after_s: Option<u64>,
}

impl From<ApiError> for LoginError {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after_s: None,
        }
    }
}

fn login_failed() -> ApiError {
    ApiError::new(ErrorCode::LoginFailed, "wrong user name or password")
}

fn login_required(message: &str) -> ApiError {
    ApiError::new(ErrorCode::LoginRequired, message)
}

/// A hash checked when the account does not exist, so that a login for a made-up name costs as
/// long as one for a real name and the answer's timing does not tell them apart.
fn stand_in_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash("a stand-in for accounts that do not exist"))
}

fn user_name(name: &str) -> Result<HostName, ApiError> {
    HostName::new(name).map_err(|err| {
        ApiError::new(
            ErrorCode::InvalidField,
            format!("{err} (a user name is lower-case a-z, 0-9, '-', '_' or '.', up to 64)"),
        )
    })
}

/// Tries of a linearizable read before answering `no_leader`: under load, a leader's quorum
/// check can miss a heartbeat round, and like a proposal the read is worth another try.
const NEWEST_READ_ATTEMPTS: u32 = 4;
const NEWEST_READ_PAUSE: Duration = Duration::from_millis(150);

impl ControlNode {
    /// `view` of the newest committed state (see [`ClusterNode::read_linearizable`]), tried
    /// again when a quorum round was missed: for host logins and the admin API's lists.
    pub async fn read_newest<R>(&self, view: impl Fn(&ControlState) -> R) -> Result<R, ApiError> {
        let mut attempt = 1;
        loop {
            match self.cluster.read_linearizable(&view).await {
                Ok(value) => return Ok(value),
                Err(ProposeError::NoLeader(_)) if attempt < NEWEST_READ_ATTEMPTS => {
                    tokio::time::sleep(NEWEST_READ_PAUSE * attempt).await;
                    attempt += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Logs a host in from `address` (the join budget's key for the client: an IPv6 /64 as one).
    pub async fn login(
        &self,
        address: IpAddr,
        username: &str,
        password: ClearPassword,
    ) -> Result<HostLogin, LoginError> {
        let name = user_name(username.trim())?;
        let limited = self
            .login_limiter
            .lock()
            .expect("limiter lock")
            .check(address, &name, Instant::now());
        if let Err(Locked { retry_after }) = limited {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            return Err(LoginError {
                error: ApiError::new(
                    ErrorCode::LoginLocked,
                    format!("too many failed logins for this account from here; try again in {seconds} s"),
                ),
                retry_after_s: Some(seconds),
            });
        }
        // The newest committed state: an account added a moment ago through another node logs in.
        let record = self
            .read_newest(|state| {
                state
                    .hosts
                    .get(&name)
                    .map(|h| (h.password_hash.clone(), h.generation))
            })
            .await?;
        let exists = record.is_some();
        let (stored, generation) = record.unwrap_or_else(|| (stand_in_hash().to_owned(), 0));
        let matches = if password.0.chars().count() > HOST_PASSWORD_MAX_CHARS {
            false
        } else {
            let _permit = self.password_permit()?;
            tokio::task::spawn_blocking(move || password::verify(&password.0, &stored))
                .await
                .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?
        };
        let mut limiter = self.login_limiter.lock().expect("limiter lock");
        if matches && exists {
            limiter.succeeded(address, &name, Instant::now());
            drop(limiter);
            Ok(HostLogin {
                token: self
                    .host_keys
                    .issue_session(&name, generation, now_unix_ms() / 1000),
                username: name,
                expires_in_s: HOST_SESSION_TTL_S,
            })
        } else {
            limiter.failed(address, &name, exists, Instant::now());
            Err(login_failed().into())
        }
    }

    /// The host a session token belongs to, if it is one of ours (`Ok(None)`: not a host
    /// session, perhaps a join token). An expired session, or one whose account was removed or
    /// got a new password since, is refused.
    pub async fn host_session(&self, token: Option<&str>) -> Result<Option<HostSessionClaims>, ApiError> {
        let Some(token) = token else {
            return Ok(None);
        };
        let claims = match self.host_keys.check_session(token, now_unix_ms() / 1000) {
            TokenCheck::NotOurs => return Ok(None),
            TokenCheck::Expired => return Err(login_required("your host login has expired; log in again")),
            TokenCheck::Valid(claims) => claims,
        };
        if claims.sso.is_some() {
            // The provider vouched for this host at login; there is no local account to ask,
            // but single sign-on must still be on.
            if self.oidc.is_none() {
                return Err(login_required("single sign-on is off here; log in again"));
            }
            return Ok(Some(claims));
        }
        // The newest committed state, not this node's copy: a password changed or an account
        // removed through another node a moment ago ends the session here too. Host joins are
        // few (guests are many), so the leader round trip is cheap.
        let current = self
            .read_newest(|state| state.hosts.get(&claims.sub).map(|h| h.generation))
            .await?;
        if current != Some(claims.generation) {
            return Err(login_required(
                "this host login has ended (the account was removed or its password changed); log in again",
            ));
        }
        Ok(Some(claims))
    }

    /// The caller a host session makes: moderator of any room it opens or joins.
    pub(super) fn host_caller(claims: &HostSessionClaims) -> Caller {
        Caller {
            role: Role::Moderator,
            user_id: Some(claims.sso.clone().unwrap_or_else(|| host_user_id(&claims.sub))),
            invite: None,
        }
    }

    /// The invite record an invite token names, if the token is ours, unexpired and for `room`.
    /// Its uses are the state machine's to check, when the join commits: this node's copy of the
    /// state may not hold an invite minted through another node a moment ago.
    pub(super) fn invite_for(&self, room: &RoomId, token: &str) -> Result<String, ApiError> {
        let claims = match self.host_keys.check_invite(token, now_unix_ms() / 1000) {
            TokenCheck::Valid(claims) => claims,
            TokenCheck::Expired => return Err(ApiError::from(ApplyError::InviteExpired)),
            TokenCheck::NotOurs => {
                return Err(ApiError::new(
                    ErrorCode::InviteInvalid,
                    "this invite link is damaged or not from this site; copy the whole link again",
                ));
            }
        };
        if claims.room != *room {
            return Err(ApplyError::InviteWrongRoom.into());
        }
        Ok(claims.jti)
    }

    /// A logged-in host mints an invite link for `room`.
    pub async fn create_invite(
        &self,
        room: &RoomId,
        host_token: Option<&str>,
        request: CreateInvite,
    ) -> Result<Invite, ApiError> {
        let host = self
            .host_session(host_token)
            .await?
            .ok_or_else(|| login_required("only a logged-in host creates invite links"))?;
        if request.valid_for_s == 0 || request.valid_for_s > INVITE_VALID_MAX_S {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("valid_for_s is 1 to {INVITE_VALID_MAX_S}"),
            ));
        }
        if request
            .max_uses
            .is_some_and(|uses| uses == 0 || uses > INVITE_USES_MAX)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("max_uses is 1 to {INVITE_USES_MAX}"),
            ));
        }
        let id = format!("{:032x}", rand::rng().random::<u128>());
        let expires_at_ms = now_unix_ms() + request.valid_for_s * 1000;
        self.commit(Command::Hosts(HostCommand::CreateInvite {
            id: id.clone(),
            room: room.clone(),
            sso: host.sso.is_some(),
            by: host.sub,
            generation: host.generation,
            expires_at_ms,
            max_uses: request.max_uses,
        }))
        .await?;
        let expires_at_unix_s = expires_at_ms / 1000;
        let token = self.host_keys.issue_invite(&id, room, expires_at_unix_s);
        Ok(Invite {
            path: format!("/{room}#invite={token}"),
            room: room.clone(),
            token,
            expires_at_unix_s,
            max_uses: request.max_uses,
        })
    }

    async fn hash_new_password(&self, password: ClearPassword) -> Result<String, ApiError> {
        check_new_password(&password.0).map_err(|message| ApiError::new(ErrorCode::InvalidField, message))?;
        // Account changes wait their turn instead of being refused like a guesser's login.
        let _permit = self
            .password_checks
            .acquire()
            .await
            .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
        tokio::task::spawn_blocking(move || password::hash(&password.0))
            .await
            .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))
    }

    pub async fn add_user(&self, username: &str, password: ClearPassword) -> Result<HostUser, ApiError> {
        let name = user_name(username)?;
        let password_hash = self.hash_new_password(password).await?;
        self.commit(Command::Hosts(HostCommand::AddUser {
            name: name.clone(),
            password_hash,
            at_ms: now_unix_ms(),
        }))
        .await?;
        self.user(&name).await
    }

    pub async fn set_user_password(
        &self,
        username: &str,
        password: ClearPassword,
    ) -> Result<HostUser, ApiError> {
        let name = user_name(username)?;
        let password_hash = self.hash_new_password(password).await?;
        self.commit(Command::Hosts(HostCommand::SetPassword {
            name: name.clone(),
            password_hash,
            at_ms: now_unix_ms(),
        }))
        .await?;
        self.user(&name).await
    }

    pub async fn remove_user(&self, username: &str) -> Result<(), ApiError> {
        let name = user_name(username)?;
        self.commit(Command::Hosts(HostCommand::RemoveUser { name }))
            .await
    }

    /// Every account, as the admin API shows them (never a hash).
    pub async fn users(&self) -> Result<Vec<HostUser>, ApiError> {
        self.read_newest(|state| {
            state
                .hosts
                .iter()
                .map(|(name, record)| HostUser {
                    username: name.clone(),
                    created_at_ms: record.created_at_ms,
                    password_changed_at_ms: record.password_changed_at_ms,
                })
                .collect()
        })
        .await
    }

    async fn user(&self, name: &HostName) -> Result<HostUser, ApiError> {
        self.users()
            .await?
            .into_iter()
            .find(|user| user.username == *name)
            .ok_or_else(|| ApplyError::UnknownUser(name.clone()).into())
    }
}
