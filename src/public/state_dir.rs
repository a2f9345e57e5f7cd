//! The state directory of `bridgemesh up --domain`: what a restart must find again.
//!
//! ```text
//! <state-dir>/cluster-secret      64 hex digits; signs tickets, derives the TURN secret
//! <state-dir>/admin-token         the admin API's bearer credential
//! <state-dir>/metrics-token       what /metrics on the public port demands (a scraper's bearer)
//! <state-dir>/raft/               the control node's Raft log and snapshots
//! <state-dir>/acme/account.json   the ACME account (its key included)
//! <state-dir>/acme/cert.pem       the certificate chain in use, leaf first
//! <state-dir>/acme/key.pem        its private key
//! <state-dir>/acme/cert-directory the ACME directory URL that issued it
//! ```
//!
//! Secrets are created on first use with mode 0600 and written to a temporary file first, then
//! renamed, so a crash never leaves half a file.

use anyhow::Context as _;
use rand::RngCore as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/bridgemesh";

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates the directory (mode 0700) when missing.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(root.join("acme"))
            .with_context(|| format!("cannot create the state directory {}", root.display()))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict the state directory {}", root.display()))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn raft_dir(&self) -> PathBuf {
        self.root.join("raft")
    }

    pub fn account_path(&self) -> PathBuf {
        self.root.join("acme/account.json")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.root.join("acme/cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join("acme/key.pem")
    }

    /// The ACME directory that issued `cert.pem`.
    pub fn cert_directory_path(&self) -> PathBuf {
        self.root.join("acme/cert-directory")
    }

    /// The cluster secret, made on first start.
    pub fn cluster_secret(&self) -> anyhow::Result<Vec<u8>> {
        let path = self.root.join("cluster-secret");
        let text = self.secret_text(&path, || {
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            hex::encode(secret)
        })?;
        let secret = hex::decode(text.trim()).with_context(|| format!("{}: not hex", path.display()))?;
        if secret.len() < 16 {
            anyhow::bail!("{}: the secret must be at least 16 bytes", path.display());
        }
        Ok(secret)
    }

    /// The admin API's bearer credential, made on first start.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let path = self.root.join("admin-token");
        let token = self.secret_text(&path, || {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        })?;
        Ok(token.trim().to_owned())
    }

    /// The token `/metrics` on the public port demands, made on first start.
    pub fn metrics_token(&self) -> anyhow::Result<String> {
        let token = self.secret_text(&self.metrics_token_path(), || {
            let mut bytes = [0u8; 16];
            rand::rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        })?;
        Ok(token.trim().to_owned())
    }

    pub fn metrics_token_path(&self) -> PathBuf {
        self.root.join("metrics-token")
    }

    fn secret_text(&self, path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let text = make();
                write_private(path, text.as_bytes())?;
                Ok(text)
            }
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Reads a file of the state directory; `None` when it does not exist.
    pub fn read(&self, path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file renamed over it.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_survive_a_restart_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let secret = state.cluster_secret().unwrap();
        let token = state.admin_token().unwrap();
        assert_eq!(secret.len(), 32);
        assert_eq!(token.len(), 64);
        let again = StateDir::open(dir.path()).unwrap();
        assert_eq!(again.cluster_secret().unwrap(), secret);
        assert_eq!(again.admin_token().unwrap(), token);
        let mode = fs::metadata(dir.path().join("cluster-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_secret_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cluster-secret"), "not hex").unwrap();
        let err = StateDir::open(dir.path()).unwrap().cluster_secret().unwrap_err();
        assert!(format!("{err:#}").contains("not hex"), "{err:#}");
    }
}
