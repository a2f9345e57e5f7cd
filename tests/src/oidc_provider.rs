//! A real OpenID Connect provider for the single sign-on tests: panva's `oidc-provider` (OpenID
//! Certified) run by node from `tests/oidc-provider/provider.js`, on 127.0.0.1 only, with fresh
//! keys per run and two users (alice in the group `bridgemesh-hosts`, bob not).
//! `scripts/test` installs it (`npm ci`).

use anyhow::{Context as _, bail};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub const CLIENT_ID: &str = "bridgemesh";
pub const CLIENT_SECRET: &str = "bridgemesh-test-client-secret";
/// The group that makes a host in the tests' configuration.
pub const HOSTS_GROUP: &str = "bridgemesh-hosts";
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct OidcProvider {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pub port: u16,
    /// The issuer its tokens name: its own URL unless the test chose another.
    pub issuer: String,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

impl OidcProvider {
    /// Starts the provider listening; it serves once [`OidcProvider::serve`] names the redirect
    /// URL. `issuer` overrides the issuer it names (as a provider behind a proxy would).
    pub async fn spawn(issuer: Option<&str>) -> anyhow::Result<Self> {
        let dir = provider_dir();
        if !dir.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "{} has no node_modules: run `npm ci --prefix {}` (scripts/test does)",
                dir.display(),
                dir.display()
            );
        }
        let mut command = Command::new("node");
        command
            .arg(dir.join("provider.js"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(issuer) = issuer {
            command.env("ISSUER", issuer);
        }
        let mut child = command
            .spawn()
            .context("starting node (Debian's nodejs) for the OIDC provider")?;
        let stdin = child.stdin.take().context("provider stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("provider stdout")?).lines();
        let line = tokio::time::timeout(START_TIMEOUT, stdout.next_line())
            .await
            .context("the OIDC provider did not start in time")??
            .context("the OIDC provider exited before listening")?;
        let port: u16 = line
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("unexpected first line from the provider: {line:?}"))?;
        Ok(Self {
            child,
            stdin,
            stdout,
            port,
            issuer: issuer.map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_owned),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Registers the client with `redirect_url` and starts serving.
    pub async fn serve(&mut self, redirect_url: &str) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("{redirect_url}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(START_TIMEOUT, self.stdout.next_line())
            .await
            .context("the OIDC provider did not get ready in time")??
            .context("the OIDC provider exited")?;
        if !line.starts_with("ready ") {
            bail!("unexpected line from the provider: {line:?}");
        }
        Ok(())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A front for a provider on its own port, which forwards every request to it but can answer
/// `GET /jwks` itself: the provider then publishes keys other than the ones it signs with (a
/// token signed by another key), or keys it no longer uses (a rotation). The provider names the
/// front's address as its issuer, so browsers and control nodes only ever talk to the front.
pub struct ProviderFront {
    pub port: u16,
    jwks: Arc<Mutex<VecDeque<Value>>>,
    upstream: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct FrontState {
    jwks: Arc<Mutex<VecDeque<Value>>>,
    upstream: Arc<Mutex<Option<String>>>,
    client: reqwest::Client,
}

async fn forward(State(front): State<FrontState>, request: axum::extract::Request) -> Response {
    if request.uri().path() == "/jwks"
        && let Some(document) = front.jwks.lock().unwrap().pop_front()
    {
        return axum::Json(document).into_response();
    }
    let Some(upstream) = front.upstream.lock().unwrap().clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no provider behind the front yet",
        )
            .into_response();
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut out = front.client.request(parts.method, format!("{upstream}{path}"));
    // Host passes through: the provider makes its absolute URLs (the login form's address) from it.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let answer = match out.body(body).send().await {
        Ok(answer) => answer,
        Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != header::TRANSFER_ENCODING && name != header::CONTENT_LENGTH && name != header::CONNECTION {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    response.body(axum::body::Body::from(body)).unwrap()
}

impl ProviderFront {
    /// Listens on 127.0.0.1; [`ProviderFront::forward_to`] names the provider behind it.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let jwks = Arc::new(Mutex::new(VecDeque::new()));
        let upstream = Arc::new(Mutex::new(None));
        let state = FrontState {
            jwks: jwks.clone(),
            upstream: upstream.clone(),
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        };
        let router = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            port,
            jwks,
            upstream,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn forward_to(&self, provider: &OidcProvider) {
        *self.upstream.lock().unwrap() = Some(provider.url());
    }

    /// The next `GET /jwks` is answered with `document` instead of the provider's keys.
    pub fn answer_jwks_with(&self, document: Value) {
        self.jwks.lock().unwrap().push_back(document);
    }

    /// How many substitute key sets are still to be handed out.
    pub fn substitutes_left(&self) -> usize {
        self.jwks.lock().unwrap().len()
    }
}

impl Drop for ProviderFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The provider's published keys (`GET /jwks`).
pub async fn jwks_of(url: &str) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    Ok(client
        .get(format!("{url}/jwks"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}
