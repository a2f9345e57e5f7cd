//! A real OpenID Connect provider for the single sign-on tests: panva's `oidc-provider` (OpenID
//! Certified) run by node from `tests/oidc-provider/provider.js`, on 127.0.0.1 only, with fresh
//! keys per run and two users (alice in the group `bridgemesh-hosts`, bob not).
//! `scripts/test` installs it (`npm ci`).

use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::process::Stdio;
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
