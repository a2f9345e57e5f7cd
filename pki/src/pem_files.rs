//! PEM encoding and the small files the CA and identities live in.

use crate::ca::PkiError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::path::Path;

/// PEM files we read are small; a larger file is not one of ours.
const MAX_PEM_FILE_BYTES: u64 = 64 * 1024;

pub(crate) fn parse_pem_cert(what: &'static str, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem {
        what,
        reason: e.to_string(),
    })
}

pub(crate) fn parse_pem_certs(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn read_pem_file(path: &Path) -> Result<String, PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_PEM_FILE_BYTES {
        return Err(PkiError::Pem {
            what: "file",
            reason: format!("{} is {len} bytes, too large", path.display()),
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Writes `contents` to `path`; `secret` files are readable by their owner only.
pub(crate) fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    use std::io::Write as _;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        let file = options.open(path).map_err(io)?;
        // `mode` applies only to a file this call creates; an existing one keeps its permissions.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        return (&file)
            .write_all(contents.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io);
    }
    let _ = secret;
    let file = options.open(path).map_err(io)?;
    (&file)
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })
}
