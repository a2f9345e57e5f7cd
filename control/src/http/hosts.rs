//! Host accounts over HTTP (docs/hosts.md): the login, invite links, the admin API's accounts,
//! and the web client's script for them. Thin: `node/hosts.rs` decides.

use super::*;
use crate::node::LoginError;
use bridgemesh_proto::hosts::{AddHostUser, CreateInvite, LoginRequest, SetHostPassword};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/login", post(login).get(whoami))
        .route("/api/v1/rooms/{room}/invites", post(create_invite))
        .route("/api/v1/admin/users", get(list_users).post(add_user))
        .route("/api/v1/admin/users/{name}", delete(remove_user))
        .route(
            "/api/v1/admin/users/{name}/password",
            axum::routing::put(set_password),
        )
}

async fn login(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Logins spend the join budget too: no address guesses faster than it may join.
    if let Err(err) = join_budget(&api, peer, &headers) {
        return err.into_response();
    }
    let address = crate::join_key::join_budget_key(
        peer.ip(),
        &headers,
        api.node.trusted_proxies(),
        crate::join_key::JOIN_IPV6_PREFIX_LEN,
    );
    let result = async {
        let request: LoginRequest = read_json(body).await?;
        api.node.login(address, &request.username, request.password).await
    };
    let result = result.await;
    api.metrics
        .observe_login(result.as_ref().map(drop).map_err(|err| err.error.code));
    match result {
        Ok(login) => axum::Json(login).into_response(),
        Err(LoginError { error, retry_after_s }) => {
            let mut response = error.into_response();
            if let Some(seconds) = retry_after_s {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

/// Who a host session belongs to, and for how much longer.
async fn whoami(State(api): State<Api>, headers: HeaderMap) -> Response {
    let result = async {
        let token = bearer(&headers);
        let claims = api.node.host_session(token).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::LoginRequired,
                "no host login: send Authorization: Bearer <host session>",
            )
        })?;
        let now_s = crate::node::now_unix_ms() / 1000;
        Ok(bridgemesh_proto::hosts::HostLogin {
            username: claims.sub,
            token: token.unwrap_or_default().to_owned(),
            expires_in_s: claims.exp.saturating_sub(now_s),
        })
    };
    respond(result.await)
}

async fn create_invite(
    State(api): State<Api>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let room = room_id(room)?;
        let request: CreateInvite = read_json(body).await?;
        api.node.create_invite(&room, bearer(&headers), request).await
    };
    respond(result.await)
}

async fn list_users(State(api): State<Api>, headers: HeaderMap) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        api.node.users().await
    };
    respond(result.await)
}

async fn add_user(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let request: AddHostUser = read_json(body).await?;
        api.node.add_user(&request.username, request.password).await
    };
    match result.await {
        Ok(user) => (StatusCode::CREATED, axum::Json(user)).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn set_password(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let request: SetHostPassword = read_json(body).await?;
        api.node.set_user_password(&name, request.password).await
    };
    respond(result.await)
}

async fn remove_user(State(api): State<Api>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        api.node.remove_user(&name).await.map(|()| Done::ok())
    };
    respond(result.await)
}
