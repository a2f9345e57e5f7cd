//! The Chromium process: its profile directory (with the CAs it trusts), its DevTools endpoint,
//! its stderr, and killing it.

use super::*;

pub(super) struct Process {
    pub(super) child: Child,
    pub(super) user_data_dir: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        // kill_on_drop would only fire after this body; killing and reaping here first keeps
        // chromium from writing into the profile while it is being removed.
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Helper processes can outlive the browser process by a moment and still touch the
        // profile, so retry briefly instead of leaving the directory behind.
        for _ in 0..5 {
            match std::fs::remove_dir_all(&self.user_data_dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return,
            }
        }
        tracing::warn!(
            "could not remove chromium profile {}",
            self.user_data_dir.display()
        );
    }
}

pub(super) async fn wait_for_devtools_url(
    process: &mut Process,
    stderr: &Mutex<VecDeque<String>>,
) -> anyhow::Result<String> {
    let port_file = process.user_data_dir.join("DevToolsActivePort");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(url) = read_devtools_port_file(&port_file).await {
            return Ok(url);
        }
        if let Some(status) = process.child.try_wait().context("checking on chromium")? {
            // Give the stderr task a moment to drain what chromium said on its way out.
            tokio::time::sleep(Duration::from_millis(200)).await;
            bail!(
                "chromium exited during startup ({status}); stderr tail:\n{}",
                stderr_tail(stderr)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "chromium did not write {} within {STARTUP_TIMEOUT:?}; stderr tail:\n{}",
                port_file.display(),
                stderr_tail(stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn connect_devtools(
    ws_url: &str,
    netns: Option<&Netns>,
) -> anyhow::Result<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>> {
    let Some(netns) = netns else {
        let (ws, _response) = tokio_tungstenite::connect_async(ws_url).await?;
        return Ok(ws);
    };
    let url: reqwest::Url = ws_url.parse().context("parsing the DevTools URL")?;
    let port = url.port().context("the DevTools URL has a port")?;
    let tcp = netns.connect_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    tcp.set_nonblocking(true)?;
    let tcp = tokio::net::TcpStream::from_std(tcp)?;
    let (ws, _response) = tokio_tungstenite::client_async(ws_url, MaybeTlsStream::Plain(tcp)).await?;
    Ok(ws)
}

/// An NSS database at `<profile>/.pki/nssdb` trusting each CA (Debian's libnss3-tools).
pub(super) fn trust_cas(profile: &Path, pems: &[PathBuf]) -> anyhow::Result<()> {
    let db_dir = profile.join(".pki/nssdb");
    std::fs::create_dir_all(&db_dir).context("creating the profile's NSS database directory")?;
    let db = format!("sql:{}", db_dir.display());
    let certutil = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("certutil")
            .args(args)
            .output()
            .context("running certutil (Debian's libnss3-tools package)")?;
        if !out.status.success() {
            bail!(
                "certutil {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    certutil(&["-d", &db, "-N", "--empty-password"])?;
    for (index, pem) in pems.iter().enumerate() {
        let pem = pem.to_str().context("a CA path is UTF-8")?;
        certutil(&[
            "-d",
            &db,
            "-A",
            "-t",
            "C,,",
            "-n",
            &format!("test-ca-{index}"),
            "-i",
            pem,
        ])?;
    }
    Ok(())
}

/// `None` until the file is complete: chromium may be caught mid-write.
pub(super) async fn read_devtools_port_file(path: &Path) -> Option<String> {
    let contents = tokio::fs::read_to_string(path).await.ok()?;
    let mut lines = contents.lines();
    let port: u16 = lines.next()?.trim().parse().ok()?;
    let ws_path = lines.next()?.trim();
    if port == 0 || !ws_path.starts_with('/') {
        return None;
    }
    Some(format!("ws://127.0.0.1:{port}{ws_path}"))
}

pub(super) async fn drain_stderr(mut pipe: ChildStderr, ring: Arc<Mutex<VecDeque<String>>>) {
    let mut buf = [0u8; 8192];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buf[..n] {
            if byte == b'\n' {
                let line = String::from_utf8_lossy(&partial).into_owned();
                tracing::trace!(target: "chromium", "{line}");
                push_bounded(&mut lock(&ring), line, STDERR_RING);
                partial.clear();
            } else if partial.len() < MAX_LINE_BYTES {
                partial.push(byte);
            }
        }
    }
    if !partial.is_empty() {
        push_bounded(
            &mut lock(&ring),
            String::from_utf8_lossy(&partial).into_owned(),
            STDERR_RING,
        );
    }
}

pub(super) fn stderr_tail(ring: &Mutex<VecDeque<String>>) -> String {
    let ring = lock(ring);
    let skip = ring.len().saturating_sub(40);
    ring.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
}

pub(super) fn unique_temp_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "bridgemesh-chromium-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // create_dir (not create_dir_all) so a name collision fails loudly instead of sharing a
    // profile between two browsers.
    std::fs::create_dir(&dir).with_context(|| format!("creating chromium profile dir {}", dir.display()))?;
    Ok(dir)
}
