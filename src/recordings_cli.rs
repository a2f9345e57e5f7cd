//! `bridgemesh admin recordings`: a bridge's recordings from the command line, through the
//! bridge's own admin API (the files are on the bridge): list, start, stop, download.

use anyhow::Context as _;
use reqwest::Method;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum RecordingsCommand {
    /// The bridge's recordings, newest first (file, room, state, length, size, tracks).
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start recording ROOM on this bridge (it must host participants of the room; a room
    /// spread over bridges is recorded whole on any one of them).
    Start { room: String },
    /// Stop recording ROOM; the file is finished and listed as complete.
    Stop { room: String },
    /// Download FILE (a name from `list`) to --out (default: FILE in the current directory).
    Download {
        file: String,
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

/// Runs `command` against the bridge at `bridge_url` (its signaling listener, e.g.
/// `http://127.0.0.1:8081`) with the admin `token`; what to print.
pub async fn run(bridge_url: &str, token: &str, command: RecordingsCommand) -> anyhow::Result<String> {
    let base = bridge_url.trim_end_matches('/');
    match command {
        RecordingsCommand::List { json } => {
            let answer = call(base, token, Method::GET, "/bridge/v1/admin/recordings").await?;
            if json {
                Ok(serde_json::to_string_pretty(&answer)?)
            } else {
                recordings_table(&answer)
            }
        }
        RecordingsCommand::Start { room } => {
            let path = format!("/bridge/v1/admin/rooms/{room}/recording/start");
            Ok(serde_json::to_string_pretty(
                &call(base, token, Method::POST, &path).await?,
            )?)
        }
        RecordingsCommand::Stop { room } => {
            let path = format!("/bridge/v1/admin/rooms/{room}/recording/stop");
            Ok(serde_json::to_string_pretty(
                &call(base, token, Method::POST, &path).await?,
            )?)
        }
        RecordingsCommand::Download { file, out } => {
            let out = out.unwrap_or_else(|| PathBuf::from(&file));
            let bytes = download(base, token, &file, &out).await?;
            Ok(format!("{} ({bytes} bytes)", out.display()))
        }
    }
}

async fn call(base: &str, token: &str, method: Method, path: &str) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let response = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the bridge at {base}"))?;
    let status = response.status();
    let value: serde_json::Value = response.json().await.with_context(|| {
        format!("the answer from {base} is not JSON (is it a bridge with --admin-token-file?)")
    })?;
    if !status.is_success() {
        let code = value["error"]["code"].as_str().unwrap_or("unknown");
        let message = value["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("{status}: {code}: {message}");
    }
    Ok(value)
}

async fn download(base: &str, token: &str, file: &str, out: &std::path::Path) -> anyhow::Result<u64> {
    // No overall timeout: a long recording takes a while; a stalled read still fails.
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()?;
    let mut response = http
        .get(format!("{base}/bridge/v1/admin/recordings/{file}"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the bridge at {base}"))?;
    let status = response.status();
    if !status.is_success() {
        let value: serde_json::Value = response.json().await.unwrap_or_default();
        let code = value["error"]["code"].as_str().unwrap_or("unknown");
        let message = value["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("{status}: {code}: {message}");
    }
    let mut written = 0u64;
    let mut target =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    while let Some(chunk) = response.chunk().await.context("the download broke off")? {
        target.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    target.sync_all()?;
    Ok(written)
}

/// The list answer as a table for people.
pub fn recordings_table(answer: &serde_json::Value) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let recordings = answer["recordings"]
        .as_array()
        .context("the answer has no recording list")?;
    let mut table = format!(
        "{:<52} {:<16} {:<12} {:>9} {:>11} {:>6} {:<10} {}\n",
        "FILE", "ROOM", "STATE", "LENGTH", "BYTES", "TRACKS", "MEDIA", "ENDED"
    );
    for recording in recordings {
        let text = |key: &str| recording[key].as_str().unwrap_or("-").to_owned();
        let _ = writeln!(
            table,
            "{:<52} {:<16} {:<12} {:>8.1}s {:>11} {:>6} {:<10} {}",
            text("file"),
            text("room"),
            text("state"),
            recording["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
            recording["bytes"].as_u64().unwrap_or(0),
            recording["tracks"].as_array().map_or(0, |t| t.len()),
            // An end-to-end encrypted room's recording is ciphertext no player decodes.
            if recording["encrypted"] == true {
                "ciphertext"
            } else {
                "plain"
            },
            text("end_reason"),
        );
    }
    Ok(table)
}
