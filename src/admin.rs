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
    DrainBridge { id: String, grace_s: u64 },
    UndrainBridge { id: String },
    ForgetBridge { id: String },
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
            Self::DrainBridge { id, grace_s } => (
                Method::POST,
                format!("/api/v1/admin/bridges/{id}/drain"),
                Some(serde_json::json!({ "grace_s": grace_s })),
            ),
            Self::UndrainBridge { id } => (Method::POST, format!("/api/v1/admin/bridges/{id}/undrain"), None),
            Self::ForgetBridge { id } => (Method::DELETE, format!("/api/v1/admin/bridges/{id}"), None),
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

/// The bridges answer (`GET /api/v1/admin/bridges`) as a table for people.
pub fn bridges_table(answer: &str) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let bridges: Vec<serde_json::Value> =
        serde_json::from_str(answer).context("the bridges answer is not a list")?;
    let mut table = format!(
        "{:<20} {:<14} {:<12} {:>12} {:>7} {:>6} {:>7} {:>10}\n",
        "BRIDGE", "REGION", "STATUS", "PARTICIPANTS", "ROOMS", "CPU", "STRESS", "PACKETS/S"
    );
    for bridge in &bridges {
        let text = |key: &str| bridge[key].as_str().unwrap_or("-").to_owned();
        let load = &bridge["load"];
        let _ = writeln!(
            table,
            "{:<20} {:<14} {:<12} {:>5}/{:<6} {:>7} {:>5.0}% {:>7.2} {:>10.0}",
            text("id"),
            text("region"),
            text("status"),
            bridge["participants"].as_u64().unwrap_or(0),
            bridge["capacity"].as_u64().unwrap_or(0),
            bridge["rooms"].as_u64().unwrap_or(0),
            load["cpu"].as_f64().unwrap_or(0.0) * 100.0,
            bridge["effective_stress"].as_f64().unwrap_or(0.0),
            load["packets_per_s"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(table)
}
