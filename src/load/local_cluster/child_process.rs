//! A child process of the local cluster: started with its output in a log file, waited for,
//! and SIGKILLed (and reaped) when dropped.

use super::*;

/// A child process whose output goes to a log file, SIGKILLed (and reaped) when dropped.
pub struct ChildProcess {
    pub name: String,
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildProcess {
    /// Starts `binary args`, logging to `log_dir/{name}.log`. It stays in its parent's process
    /// group, so a Ctrl-C or a hang-up in the terminal reaches it too, even when the parent
    /// cannot clean up (a test binary interrupted by Ctrl-C).
    pub fn spawn(binary: &Path, name: &str, log_dir: &Path, args: Vec<String>) -> std::io::Result<Self> {
        let mut process = Self {
            name: name.to_owned(),
            binary: binary.to_owned(),
            args,
            child: None,
            log: log_dir.join(format!("{name}.log")),
        };
        process.start()?;
        Ok(process)
    }

    /// Starts it (again) with the same arguments, appending to its log.
    pub fn start(&mut self) -> std::io::Result<()> {
        self.kill();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            // The processes log to stdout.
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `within` for the process to exit by itself.
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Started and not killed (it may have exited by itself since).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Started, not killed, and not exited by itself: its process is there and not a zombie
    /// (read from /proc, as `try_wait` would need `&mut`).
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(|child| {
            std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                .ok()
                .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
                .unwrap_or(false)
        })
    }

    /// Whether it has exited by itself, with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(LOG_TAIL_BYTES);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
