//! A minimal Chromium driver for end-to-end browser tests, speaking the Chrome DevTools Protocol
//! directly to Debian's headless `chromium` (no chromedriver, no browser download, no node).
//!
//! One websocket to the browser target carries every page's traffic: pages are attached with
//! flattened sessions, so each command just carries a `sessionId`.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::netns::Netns;

mod cdp;
mod process;

use cdp::*;
use process::*;

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const CHROMIUM_ENV: &str = "BRIDGEMESH_CHROMIUM";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
const CONSOLE_RING: usize = 200;
const STDERR_RING: usize = 200;
const MAX_LINE_BYTES: usize = 4096;
const OUTGOING_QUEUE: usize = 64;

/// How [`Browser::launch_with`] starts Chromium.
#[derive(Default)]
pub struct LaunchOptions<'a> {
    /// Run inside this network namespace (DevTools is reached through it).
    pub netns: Option<&'a Netns>,
    /// PEM files of CAs the browser trusts as roots, through an NSS database in its profile, as
    /// a user's browser trusts a CA its administrator installed.
    pub trusted_ca_pems: Vec<PathBuf>,
    /// More command-line flags (`--host-resolver-rules=...`).
    pub args: Vec<String>,
}

/// A headless Chromium process plus the DevTools connection to it.
///
/// Dropping it kills the process and removes its temporary profile directory; pages still
/// alive at that point start failing with a "connection closed" error.
pub struct Browser {
    conn: Arc<Connection>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    tasks: Vec<JoinHandle<()>>,
    // Declared last so the connection tasks are gone before the process is killed and the
    // profile directory removed.
    _process: Process,
}

impl Browser {
    /// Starts Chromium (`$BRIDGEMESH_CHROMIUM`, else `/usr/bin/chromium`) with a fresh profile
    /// and connects to its DevTools endpoint.
    pub async fn launch() -> anyhow::Result<Browser> {
        Self::launch_with(LaunchOptions::default()).await
    }

    /// [`Browser::launch`] inside a network namespace, trusting extra CAs, with extra flags.
    pub async fn launch_with(options: LaunchOptions<'_>) -> anyhow::Result<Browser> {
        let binary = std::env::var_os(CHROMIUM_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
        if !binary.is_file() {
            bail!(
                "chromium not found at {} (install Debian's `chromium` package or point {CHROMIUM_ENV} \
                 at a Chromium binary)",
                binary.display()
            );
        }

        let user_data_dir = unique_temp_dir()?;
        if !options.trusted_ca_pems.is_empty()
            && let Err(e) = trust_cas(&user_data_dir, &options.trusted_ca_pems)
        {
            let _ = std::fs::remove_dir_all(&user_data_dir);
            return Err(e);
        }
        let mut cmd = match options.netns {
            Some(netns) => netns.tokio_command(&binary),
            None => Command::new(&binary),
        };
        if !options.trusted_ca_pems.is_empty() {
            // Chromium on Linux reads its certificate store from $HOME/.pki/nssdb.
            cmd.env("HOME", &user_data_dir);
        }
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-default-apps",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,800",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", user_data_dir.display()))
        .args(&options.args)
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&user_data_dir);
                return Err(e).with_context(|| format!("spawning {}", binary.display()));
            }
        };
        // From here on `process` owns cleanup, so every early return below kills chromium and
        // removes the profile.
        let mut process = Process { child, user_data_dir };

        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let mut tasks = Vec::new();
        if let Some(pipe) = process.child.stderr.take() {
            // Chromium is chatty on stderr (dbus noise etc.); an undrained pipe would eventually
            // block it.
            tasks.push(tokio::spawn(drain_stderr(pipe, stderr.clone())));
        }

        let ws_url = match wait_for_devtools_url(&mut process, &stderr).await {
            Ok(url) => url,
            Err(e) => {
                abort_all(&tasks);
                return Err(e);
            }
        };
        let ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect_devtools(&ws_url, options.netns)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                abort_all(&tasks);
                return Err(e).with_context(|| format!("connecting to DevTools at {ws_url}"));
            }
            Err(_) => {
                abort_all(&tasks);
                bail!("timed out after {CONNECT_TIMEOUT:?} connecting to DevTools at {ws_url}");
            }
        };

        let (conn, conn_tasks) = Connection::start(ws);
        tasks.extend(conn_tasks);
        Ok(Browser {
            conn,
            stderr,
            tasks,
            _process: process,
        })
    }

    /// Opens a new tab, navigates it to `url` and waits for `document.readyState == "complete"`.
    /// The tab goes in front of the window's others, which become hidden
    /// (`document.visibilityState`), as tabs behind another are for a user.
    pub async fn new_page(&self, url: &str) -> anyhow::Result<Page> {
        self.open_page(url, false).await
    }

    /// As [`Browser::new_page`], in a window of its own: the page stays visible whatever opens
    /// after it, as a participant's meeting window does (a hidden page receives no video).
    pub async fn new_window(&self, url: &str) -> anyhow::Result<Page> {
        self.open_page(url, true).await
    }

    async fn open_page(&self, url: &str, new_window: bool) -> anyhow::Result<Page> {
        // The tab starts on about:blank and is navigated only once the Runtime/Page/Log domains
        // are enabled, so console output and exceptions from the page's first script are
        // captured and the load can be awaited without racing the initial empty document.
        let created = self
            .conn
            .call(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank", "newWindow": new_window }),
            )
            .await?;
        let target_id = str_field(&created, "targetId")?.to_owned();
        let attached = match self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await
        {
            Ok(attached) => attached,
            Err(e) => {
                let _ = self
                    .conn
                    .call(None, "Target.closeTarget", json!({ "targetId": target_id }))
                    .await;
                return Err(e);
            }
        };
        let session_id = str_field(&attached, "sessionId")?.to_owned();
        let console = Arc::new(Mutex::new(VecDeque::new()));
        lock(&self.conn.shared.consoles).insert(session_id.clone(), console.clone());
        // Constructed before the remaining steps so a failure below still closes the tab.
        let page = Page {
            conn: self.conn.clone(),
            target_id,
            session_id,
            console,
            closed: false,
        };

        for method in ["Runtime.enable", "Page.enable", "Log.enable"] {
            page.call(method, json!({})).await?;
        }
        let nav = page.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            bail!("navigating to {url} failed: {err}");
        }
        page.wait_for(
            "document.readyState === 'complete'",
            PAGE_LOAD_TIMEOUT,
            "({ readyState: document.readyState, href: location.href })",
        )
        .await
        .with_context(|| format!("loading {url}"))?;
        Ok(page)
    }

    /// Every process of this browser with the CPU time it used so far (CDP
    /// `SystemInfo.getProcessInfo`): `(type, pid, cpu seconds)`, type `browser`, `renderer`,
    /// `GPU`, `utility`...; for benchmarks of what a page costs.
    pub async fn process_cpu_seconds(&self) -> anyhow::Result<Vec<(String, u64, f64)>> {
        let info = self
            .conn
            .call(None, "SystemInfo.getProcessInfo", json!({}))
            .await?;
        let processes = info
            .get("processInfo")
            .and_then(Value::as_array)
            .context("SystemInfo.getProcessInfo without processInfo")?;
        Ok(processes
            .iter()
            .map(|p| {
                (
                    p.get("type").and_then(Value::as_str).unwrap_or("?").to_owned(),
                    p.get("id").and_then(Value::as_u64).unwrap_or(0),
                    p.get("cpuTime").and_then(Value::as_f64).unwrap_or(0.0),
                )
            })
            .collect())
    }

    /// The last lines Chromium wrote to stderr, for diagnosing crashes.
    pub fn stderr_tail(&self) -> Vec<String> {
        lock(&self.stderr).iter().cloned().collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        abort_all(&self.tasks);
    }
}

/// One browser tab, attached over a flattened CDP session.
///
/// Dropping a page without [`Page::close`] still closes its tab in the background (best
/// effort), so forgotten pages do not keep running media pipelines for the rest of the test.
pub struct Page {
    conn: Arc<Connection>,
    target_id: String,
    session_id: String,
    console: Arc<Mutex<VecDeque<String>>>,
    closed: bool,
}

impl Page {
    /// Runtime.evaluate with awaitPromise=true, returnByValue=true; JS exceptions become Err with
    /// the exception text.
    ///
    /// `undefined` becomes `null`; values JSON cannot represent (NaN, Infinity, -0, bigints)
    /// come back as their string form, e.g. `"NaN"`.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let resp = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "awaitPromise": true,
                    "returnByValue": true,
                    // Lets pages under test call APIs gated on user activation (play(), etc.).
                    "userGesture": true,
                }),
            )
            .await?;
        if let Some(details) = resp.get("exceptionDetails") {
            bail!(
                "JS exception evaluating `{}`: {}",
                abbreviate(expression),
                exception_text(details)
            );
        }
        let result = resp.get("result").unwrap_or(&Value::Null);
        if let Some(value) = result.get("value") {
            return Ok(value.clone());
        }
        if let Some(unser) = result.get("unserializableValue").and_then(Value::as_str) {
            return Ok(Value::String(unser.to_owned()));
        }
        Ok(Value::Null)
    }

    /// Resizes the page's window, as a user dragging its corner does: the layout follows.
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        let window = self
            .conn
            .call(
                None,
                "Browser.getWindowForTarget",
                json!({ "targetId": self.target_id }),
            )
            .await?;
        let window_id = window
            .get("windowId")
            .and_then(Value::as_u64)
            .context("Browser.getWindowForTarget gave no windowId")?;
        self.conn
            .call(
                None,
                "Browser.setWindowBounds",
                json!({ "windowId": window_id, "bounds": { "width": width, "height": height } }),
            )
            .await?;
        Ok(())
    }

    /// Polls `expression` (every 100 ms) until it evaluates to JSON true or the timeout passes;
    /// on timeout Err includes the last value and `describe` (a JS expression evaluated once for
    /// diagnostics, e.g. dumping state).
    ///
    /// Exceptions while polling count as "not yet" (the app under test may still be booting or
    /// navigating); only a dead browser connection aborts early.
    pub async fn wait_for(&self, expression: &str, timeout: Duration, describe: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("<never evaluated>");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.eval(expression)).await {
                Ok(Ok(Value::Bool(true))) => return Ok(()),
                Ok(Ok(value)) => last = abbreviate(&value.to_string()),
                Ok(Err(e)) => {
                    if let Some(reason) = self.conn.closed_reason() {
                        return Err(e).context(format!("browser connection lost: {reason}"));
                    }
                    last = format!("error: {}", abbreviate(&format!("{e:#}")));
                }
                Err(_) => break,
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            tokio::time::sleep(remaining.min(POLL_INTERVAL)).await;
        }
        let described = match tokio::time::timeout(DESCRIBE_TIMEOUT, self.eval(describe)).await {
            Ok(Ok(value)) => abbreviate(&value.to_string()),
            Ok(Err(e)) => format!("<describe failed: {}>", abbreviate(&format!("{e:#}"))),
            Err(_) => format!("<describe timed out after {DESCRIBE_TIMEOUT:?}>"),
        };
        bail!(
            "timed out after {timeout:?} waiting for `{}`; last value: {last}; {}: {described}",
            abbreviate(expression),
            abbreviate(describe)
        )
    }

    /// Page.captureScreenshot of the viewport, as PNG bytes.
    pub async fn screenshot_png(&self) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        base64_decode(str_field(&resp, "data")?).context("decoding screenshot")
    }

    /// The last 200 console messages, uncaught exceptions and browser log entries of this page,
    /// oldest first, for printing when a test fails.
    pub fn console_log(&self) -> Vec<String> {
        lock(&self.console).iter().cloned().collect()
    }

    /// Closes the tab.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.closed = true;
        self.conn
            .call(None, "Target.closeTarget", json!({ "targetId": self.target_id }))
            .await
            .map(drop)
    }

    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.conn.call(Some(&self.session_id), method, params).await
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        lock(&self.conn.shared.consoles).remove(&self.session_id);
        if self.closed || self.conn.closed_reason().is_some() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let conn = self.conn.clone();
            let target_id = std::mem::take(&mut self.target_id);
            handle.spawn(async move {
                let _ = conn
                    .call(None, "Target.closeTarget", json!({ "targetId": target_id }))
                    .await;
            });
        }
    }
}

type Reply = Result<Value, String>;
type ConsoleRing = Arc<Mutex<VecDeque<String>>>;

fn str_field<'a>(value: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("CDP reply lacks `{field}`: {value}"))
}

fn push_bounded(ring: &mut VecDeque<String>, line: String, cap: usize) {
    while ring.len() >= cap {
        ring.pop_front();
    }
    ring.push_back(line);
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Keeps error messages readable when an expression or value is a page of JSON.
fn abbreviate(s: &str) -> String {
    truncate(s.to_owned(), 500)
}

fn abort_all(tasks: &[JoinHandle<()>]) {
    for task in tasks {
        task.abort();
    }
}

// A poisoned lock only means another thread panicked mid-update of a log ring or the pending
// table; the data is still usable and the panic is reported on its own.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn base64_decode(input: &str) -> anyhow::Result<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let data = input.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, &c) in data.iter().enumerate() {
        let v = sextet(c).ok_or_else(|| anyhow!("invalid base64 byte {c:#04x} at offset {i}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        bail!("truncated base64 input");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_and_unpadded_input() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(base64_decode("Zm9v!").is_err());
        assert!(base64_decode("Z").is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo".to_owned(), 2), "h…");
        assert_eq!(truncate("abc".to_owned(), 10), "abc");
    }
}
