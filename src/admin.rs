//! `bridgemesh admin`: the admin API from the command line. Prints the JSON answers; an error
//! answer becomes a failed command with the API's code and message.

use anyhow::Context as _;
use reqwest::Method;
use std::time::Duration;

pub enum AdminCall {
    ClusterStatus,
    AddNode { id: u64, addr: String },
    RemoveNode { id: u64 },
    Rooms,
    Bridges,
}

impl AdminCall {
    fn request(&self) -> (Method, String, Option<serde_json::Value>) {
        match self {
            Self::ClusterStatus => (Method::GET, "/api/v1/admin/cluster".into(), None),
            Self::AddNode { id, addr } => (
                Method::POST,
                "/api/v1/admin/cluster/nodes".into(),
                Some(serde_json::json!({ "id": id, "addr": addr })),
            ),
            Self::RemoveNode { id } => (Method::DELETE, format!("/api/v1/admin/cluster/nodes/{id}"), None),
            Self::Rooms => (Method::GET, "/api/v1/admin/rooms".into(), None),
            Self::Bridges => (Method::GET, "/api/v1/admin/bridges".into(), None),
        }
    }
}

/// Sends `call` to the control node at `url`; returns the pretty-printed answer.
pub async fn run(url: &str, token: &str, call: AdminCall) -> anyhow::Result<String> {
    let (method, path, body) = call.request();
    let http = reqwest::Client::builder()
        .no_proxy()
        // Adding a node waits for it to catch up before promoting it.
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut request = http
        .request(method, format!("{}{path}", url.trim_end_matches('/')))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the control node at {url}"))?;
    let status = response.status();
    let value: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("the answer from {url} is not JSON"))?;
    if !status.is_success() {
        let code = value["error"]["code"].as_str().unwrap_or("unknown");
        let message = value["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("{status}: {code}: {message}");
    }
    Ok(serde_json::to_string_pretty(&value)?)
}
