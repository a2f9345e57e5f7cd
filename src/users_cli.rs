//! `bridgemesh users`: host accounts through the admin API (docs/hosts.md). The password is read
//! from the terminal without echo, or from stdin with `--password-stdin`; never from a flag,
//! which would leave it in the shell's history and in `ps`.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct UsersArgs {
    /// Any control node.
    #[arg(long, env = "BRIDGEMESH_CONTROL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin token (prefer the environment variable or --token-file).
    #[arg(long, env = "BRIDGEMESH_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a host: they log in in the web client to open rooms and moderate them.
    Add {
        /// Lower-case a-z, 0-9, '-', '_' or '.', up to 64.
        name: String,
        /// Read the password from the first line of stdin instead of asking for it.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a host a new password; their sessions on every device end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a host; their sessions end.
    Remove { name: String },
    /// The hosts, with when they were added and last changed their password.
    List {
        /// The admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: UsersArgs) -> anyhow::Result<()> {
    let token = match (args.token, args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => {
            anyhow::bail!("the admin token is missing: --token, BRIDGEMESH_ADMIN_TOKEN or --token-file")
        }
    };
    let (method, path, body) = match &args.command {
        UsersCommand::Add { name, password_stdin } => (
            Method::POST,
            "/api/v1/admin/users".to_owned(),
            Some(serde_json::json!({ "username": name, "password": read_password(name, *password_stdin)? })),
        ),
        UsersCommand::Passwd { name, password_stdin } => (
            Method::PUT,
            format!("/api/v1/admin/users/{name}/password"),
            Some(serde_json::json!({ "password": read_password(name, *password_stdin)? })),
        ),
        UsersCommand::Remove { name } => (Method::DELETE, format!("/api/v1/admin/users/{name}"), None),
        UsersCommand::List { .. } => (Method::GET, "/api/v1/admin/users".to_owned(), None),
    };
    let answer = call(&args.url, &token, method, &path, body).await?;
    match args.command {
        UsersCommand::List { json: false } => print!("{}", users_table(&answer)?),
        UsersCommand::List { json: true } => println!("{}", serde_json::to_string_pretty(&answer)?),
        UsersCommand::Add { name, .. } => println!("added host {name}"),
        UsersCommand::Passwd { name, .. } => println!("new password set for {name}; their sessions ended"),
        UsersCommand::Remove { name } => println!("removed host {name}"),
    }
    Ok(())
}

async fn call(
    url: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    crate::admin::request(url, token, method, path, body, Duration::from_secs(30)).await
}

/// `GET /api/v1/admin/users` as a table for people.
pub fn users_table(answer: &serde_json::Value) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let users = answer.as_array().context("the users answer is not a list")?;
    let mut table = format!("{:<24} {:<22} {:<22}\n", "USER", "ADDED", "PASSWORD CHANGED");
    let time = |value: &serde_json::Value| {
        value
            .as_u64()
            .map(|ms| format!("unix {}", ms / 1000))
            .unwrap_or_else(|| "-".into())
    };
    for user in users {
        let _ = writeln!(
            table,
            "{:<24} {:<22} {:<22}",
            user["username"].as_str().unwrap_or("-"),
            time(&user["created_at_ms"]),
            time(&user["password_changed_at_ms"]),
        );
    }
    Ok(table)
}

/// The new password: the first line of stdin, or typed twice at the terminal without echo.
fn read_password(name: &str, from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if from_stdin || !rustix::termios::isatty(&stdin) {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on stdin");
        return Ok(password);
    }
    let first = prompt_hidden(&format!("New password for {name}: "))?;
    let second = prompt_hidden("Again: ")?;
    anyhow::ensure!(first == second, "the two passwords differ");
    Ok(first)
}

fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let saved = rustix::termios::tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
        .context("cannot turn the terminal's echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // Echo back on whatever happened to the read.
    let restored = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
    writeln!(stderr)?;
    read.context("cannot read the password")?;
    restored.context("cannot turn the terminal's echo back on")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// `--guest-policy` of `bridgemesh up`: `open`, `after_moderator` (after a logged-in host) or
/// `none` (hosts and invitees only).
pub fn parse_guest_policy(text: &str) -> Result<bridgemesh_control::auth::GuestPolicy, String> {
    serde_json::from_value(serde_json::Value::String(text.replace('-', "_")))
        .map_err(|_| format!("{text:?} is not a guest policy: open, after_moderator or none"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_control::auth::GuestPolicy;

    #[test]
    fn guest_policies_parse_by_their_config_names() {
        assert_eq!(
            parse_guest_policy("after_moderator"),
            Ok(GuestPolicy::AfterModerator)
        );
        assert_eq!(
            parse_guest_policy("after-moderator"),
            Ok(GuestPolicy::AfterModerator)
        );
        assert_eq!(parse_guest_policy("none"), Ok(GuestPolicy::None));
        assert!(parse_guest_policy("sometimes").is_err());
    }

    #[test]
    fn the_users_table_never_has_more_than_names_and_times() {
        let answer = serde_json::json!([
            {"username": "ada", "created_at_ms": 1_800_000_000_000u64, "password_changed_at_ms": 1_800_000_100_000u64}
        ]);
        let table = users_table(&answer).unwrap();
        assert!(
            table.contains("ada") && table.contains("unix 1800000000"),
            "{table}"
        );
    }
}
