//! TCP 80: answers ACME http-01 challenges and sends everything else to `https://<domain>`.
//! The redirect names the configured domain, never the request's Host header, so this server
//! cannot be used to redirect anywhere else.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Challenges of orders in progress at once; an order for one domain has one.
const CHALLENGES_MAX: usize = 16;
/// Longest path and query copied into a redirect.
const REDIRECT_PATH_MAX_BYTES: usize = 2048;

/// The key authorizations the ACME server may ask for, by token.
#[derive(Debug, Default, Clone)]
pub struct Http01Challenges {
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl Http01Challenges {
    /// Publishes a challenge's answer; false (and nothing published) when too many are already.
    pub fn publish(&self, token: &str, key_authorization: &str) -> bool {
        let mut tokens = self.tokens.lock().expect("challenges lock");
        if tokens.len() >= CHALLENGES_MAX && !tokens.contains_key(token) {
            return false;
        }
        tokens.insert(token.to_owned(), key_authorization.to_owned());
        true
    }

    pub fn withdraw(&self, token: &str) {
        self.tokens.lock().expect("challenges lock").remove(token);
    }

    fn answer(&self, token: &str) -> Option<String> {
        self.tokens.lock().expect("challenges lock").get(token).cloned()
    }
}

#[derive(Clone)]
struct RedirectState {
    domain: String,
    /// `:port` when HTTPS is not on 443.
    https_port_suffix: String,
    challenges: Http01Challenges,
}

pub fn router(domain: &str, https_port: u16, challenges: Http01Challenges) -> Router {
    let state = RedirectState {
        domain: domain.to_owned(),
        https_port_suffix: if https_port == 443 {
            String::new()
        } else {
            format!(":{https_port}")
        },
        challenges,
    };
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(state)
}

async fn challenge(State(state): State<RedirectState>, Path(token): Path<String>) -> Response {
    match state.challenges.answer(&token) {
        Some(answer) => ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response(),
        None => (StatusCode::NOT_FOUND, "no such challenge").into_response(),
    }
}

async fn redirect(State(state): State<RedirectState>, uri: Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.len() > REDIRECT_PATH_MAX_BYTES {
        "/"
    } else {
        path
    };
    let location = format!("https://{}{}{path}", state.domain, state.https_port_suffix);
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response()
}
