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
    Participants { room: String },
    KickParticipant { room: String, id: String },
    MuteParticipant { room: String, id: String },
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
            Self::Participants { room } => (
                Method::GET,
                format!("/api/v1/admin/rooms/{room}/participants"),
                None,
            ),
            Self::KickParticipant { room, id } => (
                Method::POST,
                format!("/api/v1/admin/rooms/{room}/participants/{id}/kick"),
                None,
            ),
            Self::MuteParticipant { room, id } => (
                Method::POST,
                format!("/api/v1/admin/rooms/{room}/participants/{id}/mute"),
                None,
            ),
        }
    }
}

/// Sends `call` to the control node at `url`; returns the pretty-printed answer.
pub async fn run(url: &str, token: &str, call: AdminCall) -> anyhow::Result<String> {
    let (method, path, body) = call.request();
    // Adding a node waits for it to catch up before promoting it.
    let value = request(url, token, method, &path, body, Duration::from_secs(120)).await?;
    Ok(serde_json::to_string_pretty(&value)?)
}

/// One call to the admin API at `url` with the admin `token`: the answer's JSON, or the error
/// envelope's code and message as the error.
pub async fn request(
    url: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder().no_proxy().timeout(timeout).build()?;
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
    Ok(value)
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

/// The participants answer (`GET /api/v1/admin/rooms/{room}/participants`) as a table for people.
/// Media columns are `-` until the participant's bridge has reported it.
pub fn participants_table(answer: &str) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let value: serde_json::Value =
        serde_json::from_str(answer).context("the participants answer is not JSON")?;
    let participants = value["participants"]
        .as_array()
        .context("the participants answer has no participant list")?;
    let mut table = format!(
        "{:<24} {:<20} {:<10} {:<10} {:<16} {:<20} {:<5} {:<5} {:<6} {:<4} {:<4}\n",
        "PARTICIPANT",
        "NAME",
        "ROLE",
        "STATUS",
        "BRIDGE",
        "JOINED (UTC)",
        "MIC",
        "CAM",
        "SCREEN",
        "HAND",
        "E2EE"
    );
    let on_off = |muted: Option<bool>| match muted {
        Some(true) => "off",
        Some(false) => "on",
        None => "-",
    };
    for p in participants {
        let text = |key: &str| p[key].as_str().unwrap_or("-").to_owned();
        let media = &p["media"];
        let sources: Vec<&str> = media["sources"]
            .as_array()
            .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let joined_ms = media["joined_at_ms"].as_u64().or_else(|| p["since_ms"].as_u64());
        let joined = joined_ms
            .and_then(|ms| chrono_like_utc(ms / 1000))
            .unwrap_or_else(|| "-".into());
        let screen = if media.is_null() {
            "-"
        } else if sources.contains(&"screen") {
            "yes"
        } else {
            "no"
        };
        let hand = if media.is_null() {
            "-"
        } else if media["hand_raised_at_ms"].is_u64() {
            "up"
        } else {
            "-"
        };
        let e2ee = match media["e2ee"].as_bool() {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        };
        let _ = writeln!(
            table,
            "{:<24} {:<20} {:<10} {:<10} {:<16} {:<20} {:<5} {:<5} {:<6} {:<4} {:<4}",
            text("participant_id"),
            text("display_name"),
            text("role"),
            text("status"),
            text("bridge_id"),
            joined,
            on_off(media["microphone_muted"].as_bool()),
            on_off(media["camera_muted"].as_bool()),
            screen,
            hand,
            e2ee,
        );
    }
    Ok(table
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect())
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in seconds (UTC), without a date crate.
fn chrono_like_utc(unix_s: u64) -> Option<String> {
    let days = i64::try_from(unix_s / 86_400).ok()?;
    let secs = unix_s % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_right() {
        assert_eq!(chrono_like_utc(0).unwrap(), "1970-01-01 00:00:00");
        assert_eq!(chrono_like_utc(951_782_400).unwrap(), "2000-02-29 00:00:00");
        assert_eq!(chrono_like_utc(1_796_601_599).unwrap(), "2026-12-06 23:59:59");
    }

    #[test]
    fn the_participants_table_shows_media_where_reported() {
        let answer = r#"{"room":"r","participants":[
            {"participant_id":"p-1","display_name":"Ada","role":"moderator","status":"connected","bridge_id":"b1","since_ms":0,
             "media":{"joined_at_ms":0,"microphone_muted":true,"camera_muted":false,"sources":["camera","screen"],"hand_raised_at_ms":5,"e2ee":true}},
            {"participant_id":"p-2","display_name":"Bob","role":"guest","status":"placed","bridge_id":"b2","since_ms":0,"media":null}]}"#;
        let table = participants_table(answer).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let ada: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&ada[..5], ["p-1", "Ada", "moderator", "connected", "b1"]);
        assert_eq!(&ada[7..], ["off", "on", "yes", "up", "on"]);
        assert!(lines[2].ends_with("-     -     -      -    -"), "{table}");
    }
}
