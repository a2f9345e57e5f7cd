//! Certificate files (`--tls-cert/--tls-key`) renewed by something else (certbot, a secrets
//! agent): checked every few seconds and swapped in when they change, as ACME renewals are.

use crate::public::certificate::{CertificateSlot, LoadedCertificate};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub domain: String,
}

impl CertificateFiles {
    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let cert = std::fs::metadata(&self.cert).and_then(|m| m.modified()).ok()?;
        let key = std::fs::metadata(&self.key).and_then(|m| m.modified()).ok()?;
        Some((cert, key))
    }

    pub fn load(&self) -> anyhow::Result<LoadedCertificate> {
        use anyhow::Context as _;
        let chain =
            std::fs::read(&self.cert).with_context(|| format!("cannot read {}", self.cert.display()))?;
        let key = std::fs::read(&self.key).with_context(|| format!("cannot read {}", self.key.display()))?;
        LoadedCertificate::from_pem(&chain, &key, Some(&self.domain))
            .with_context(|| format!("{} / {}", self.cert.display(), self.key.display()))
    }
}

/// Reloads the files into `slot` whenever their modification times change, until `stopped`
/// changes. A file that does not load (half written, wrong name) is logged and the certificate
/// in use is kept; the next change is tried again.
pub async fn watch_files(
    files: CertificateFiles,
    every: Duration,
    slot: Arc<CertificateSlot>,
    issued: watch::Sender<Option<LoadedCertificate>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut seen = files.modified();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        let now = files.modified();
        if now == seen {
            continue;
        }
        seen = now;
        match files.load() {
            Ok(certificate) => {
                tracing::info!(serial = %certificate.serial_hex, "certificate files changed: reloaded");
                slot.replace(certificate.clone());
                let _ = issued.send(Some(certificate));
            }
            Err(err) => {
                tracing::warn!(err = %format!("{err:#}"), "certificate files changed but do not load; keeping the current certificate")
            }
        }
    }
}
