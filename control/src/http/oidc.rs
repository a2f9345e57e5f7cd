//! Single sign-on over HTTP (docs/hosts.md#single-sign-on): whether it is on, the start of a
//! login (a redirect to the provider with the flow's cookie), and the callback (a redirect to
//! the page the login began on, the host session in the fragment; or a page saying what went
//! wrong). Thin: `oidc.rs` and `node/sso.rs` decide.

use super::*;
use crate::oidc::{CallbackQuery, FLOW_COOKIE, FLOW_COOKIE_PATH, FLOW_TTL_S};
use axum::extract::Query;

/// Longest query string a callback may have (a code and a state are a few hundred bytes).
const CALLBACK_QUERY_MAX_BYTES: usize = 8 * 1024;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/v1/oidc/config", get(sso_config))
        .route("/api/v1/oidc/start", get(start))
        .route(crate::oidc::CALLBACK_PATH, get(callback))
}

#[derive(Serialize)]
struct SsoConfig {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    button_label: Option<String>,
}

/// What the web client asks to show its "Log in with SSO" button.
async fn sso_config(State(api): State<Api>) -> Response {
    let oidc = api.node.oidc();
    axum::Json(SsoConfig {
        enabled: oidc.is_some(),
        button_label: oidc.map(|o| o.config().button_label.clone()),
    })
    .into_response()
}

#[derive(Deserialize)]
struct StartQuery {
    return_to: Option<String>,
}

fn flow_cookie(value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    // Lax: the provider's redirect back is a top-level GET, which carries it.
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Max-Age={max_age_s}; Path={FLOW_COOKIE_PATH}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("a JWT and fixed attributes are a valid header value")
}

fn presented_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(FLOW_COOKIE)?.strip_prefix('='))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page that says why the login did not work, with a way back.
fn failure_page(status: u16, message: &str, secure: bool) -> Response {
    let message = html_escape(message);
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Single sign-on failed</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em\">\
         <h1>Single sign-on failed</h1><p id=\"sso-error\">{message}</p>\
         <p><a href=\"/\">Back to the start page</a></p></body></html>\n"
    );
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(headers);
    // The login is over either way: the cookie is of no further use.
    headers.insert(header::SET_COOKIE, flow_cookie("", 0, secure));
    response
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The callback's address holds the code: it goes to no other site as a referrer.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn redirect(location: &str, cookie: HeaderValue) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(value) => headers.insert(header::LOCATION, value),
        Err(_) => headers.insert(header::LOCATION, HeaderValue::from_static("/")),
    };
    headers.insert(header::SET_COOKIE, cookie);
    no_store(headers);
    response
}

/// Sends the browser to the provider, the login's state in a cookie.
async fn start(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Query<StartQuery>,
) -> Response {
    let Some(oidc) = api.node.oidc() else {
        return ApiError::new(ErrorCode::NotFound, "single sign-on is not configured here").into_response();
    };
    let secure = oidc.config().secure_cookies();
    // Each start is a request to the provider (its metadata, when not cached) and a cookie.
    if let Err(err) = join_budget(&api, peer, &headers) {
        return failure_page(429, &err.message, secure);
    }
    let now_s = crate::node::now_unix_ms() / 1000;
    match oidc.start(query.return_to.as_deref(), now_s).await {
        Ok((url, cookie)) => redirect(&url, flow_cookie(&cookie, FLOW_TTL_S, secure)),
        Err(err) => {
            tracing::warn!(%err, "OIDC: cannot start a login");
            failure_page(err.status(), &err.to_string(), secure)
        }
    }
}

/// The provider sent the browser back with a code (or a refusal).
async fn callback(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let Some(oidc) = api.node.oidc() else {
        return ApiError::new(ErrorCode::NotFound, "single sign-on is not configured here").into_response();
    };
    let secure = oidc.config().secure_cookies();
    if let Err(err) = join_budget(&api, peer, &headers) {
        return failure_page(429, &err.message, secure);
    }
    let raw = uri.query().unwrap_or("");
    if raw.len() > CALLBACK_QUERY_MAX_BYTES {
        return failure_page(400, "the provider's answer is too long", secure);
    }
    let mut query = CallbackQuery::default();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let field = match key.as_ref() {
            "code" => &mut query.code,
            "state" => &mut query.state,
            "error" => &mut query.error,
            "error_description" => &mut query.error_description,
            _ => continue,
        };
        *field = Some(value.into_owned());
    }
    match api.node.sso_login(&query, presented_cookie(&headers)).await {
        Ok((login, return_to)) => {
            api.metrics.observe_login(Ok(()));
            // The fragment never reaches a server; hosts.js takes the session from it.
            let location = format!("{return_to}#host_login={}", login.token);
            redirect(&location, flow_cookie("", 0, secure))
        }
        Err(err) => {
            tracing::info!(%err, "OIDC: a login was refused");
            failure_page(err.status(), &err.to_string(), secure)
        }
    }
}
