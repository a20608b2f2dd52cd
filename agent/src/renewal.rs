//! Certificate renewal: agent certificates are short-lived (90 days unless the collector says
//! otherwise), and the agent asks for a new one over its mTLS connection two-thirds of the way
//! through (see [`hygiene_proto::certs::renewal_due`]), with a key it makes anew.
//!
//! The new key and certificate replace the old pair without a moment where the files on disk
//! do not match: both are written beside the old as `.new` files and synced, the key first,
//! then renamed key first. A start after a crash finishes or discards what it finds
//! ([`finish_pending`]): a `agent.pem.new` means the pair was complete.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hygiene_proto::v1;
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable certificate: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot make a new key: {0}")]
    Key(String),
    #[error("the collector refused the renewal: {}", .0.message())]
    Refused(tonic::Status),
}

/// When the certificate in `cert_dir/agent.pem` is due for renewal.
pub fn due(cert_dir: &Path) -> Result<SystemTime, RenewError> {
    let path = cert_dir.join("agent.pem");
    let pem = std::fs::read_to_string(&path).map_err(|source| RenewError::Io {
        path: path.clone(),
        source,
    })?;
    let unreadable = |reason: String| RenewError::Certificate {
        path: path.clone(),
        reason,
    };
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| unreadable(e.to_string()))?;
    let cert = block.parse_x509().map_err(|e| unreadable(e.to_string()))?;
    let at = |time: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(time.timestamp().max(0) as u64)
    };
    let validity = cert.validity();
    Ok(hygiene_proto::certs::renewal_due(
        at(validity.not_before),
        at(validity.not_after),
    ))
}

/// Asks the collector behind `channel` (an mTLS connection made with the current certificate)
/// for a new certificate over a new key, and puts both in place of the old pair.
pub async fn renew(channel: Channel, cert_dir: &Path) -> Result<(), RenewError> {
    let key = rcgen::KeyPair::generate().map_err(|e| RenewError::Key(e.to_string()))?;
    // The name is the collector's to give (the presented certificate's host id).
    let csr_pem = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|params| params.serialize_request(&key))
        .and_then(|csr| csr.pem())
        .map_err(|e| RenewError::Key(e.to_string()))?;
    let response = v1::enroll_service_client::EnrollServiceClient::new(channel)
        .renew(v1::RenewRequest { csr_pem })
        .await
        .map_err(RenewError::Refused)?
        .into_inner();
    install(cert_dir, key.serialize_pem().as_bytes(), &response)
}

fn install(
    cert_dir: &Path,
    key_pem: &[u8],
    response: &v1::EnrollResponse,
) -> Result<(), RenewError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenewError::Io { path, source }
    };
    let [key, cert, key_new, cert_new] =
        ["agent.key", "agent.pem", "agent.key.new", "agent.pem.new"].map(|n| cert_dir.join(n));
    write_synced(&key_new, key_pem, true).map_err(io(&key_new))?;
    write_synced(&cert_new, response.cert_pem.as_bytes(), false).map_err(io(&cert_new))?;
    // The CA bundle grows during a CA rotation (the new CA beside the old).
    let ca = cert_dir.join("ca.pem");
    if !response.ca_pem.is_empty()
        && std::fs::read_to_string(&ca).ok().as_deref() != Some(response.ca_pem.as_str())
    {
        let ca_new = cert_dir.join("ca.pem.new");
        write_synced(&ca_new, response.ca_pem.as_bytes(), false).map_err(io(&ca_new))?;
        std::fs::rename(&ca_new, &ca).map_err(io(&ca))?;
    }
    std::fs::rename(&key_new, &key).map_err(io(&key))?;
    std::fs::rename(&cert_new, &cert).map_err(io(&cert))?;
    sync_dir(cert_dir);
    Ok(())
}

/// Completes a renewal a crash interrupted, or discards one that had not written its
/// certificate yet.
pub fn finish_pending(cert_dir: &Path) -> Result<(), RenewError> {
    let [key, cert, key_new, cert_new] =
        ["agent.key", "agent.pem", "agent.key.new", "agent.pem.new"].map(|n| cert_dir.join(n));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenewError::Io { path, source }
    };
    if cert_new.exists() {
        if key_new.exists() {
            std::fs::rename(&key_new, &key).map_err(io(&key))?;
        }
        std::fs::rename(&cert_new, &cert).map_err(io(&cert))?;
        tracing::info!(dir = %cert_dir.display(), "finished a certificate renewal interrupted before");
    } else if key_new.exists() {
        std::fs::remove_file(&key_new).map_err(io(&key_new))?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(cert: &str) -> v1::EnrollResponse {
        v1::EnrollResponse {
            host_id: "h".into(),
            cert_pem: cert.into(),
            ca_pem: "CA2".into(),
            rules_signing_pub: String::new(),
        }
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn a_renewal_replaces_key_certificate_and_ca_and_leaves_nothing_beside() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("agent.key", "K1"), ("agent.pem", "C1"), ("ca.pem", "CA1")] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        install(dir.path(), b"K2", &response("C2")).unwrap();
        assert_eq!(read(dir.path(), "agent.key"), "K2");
        assert_eq!(read(dir.path(), "agent.pem"), "C2");
        assert_eq!(read(dir.path(), "ca.pem"), "CA2");
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["agent.key", "agent.pem", "ca.pem"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("agent.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the new key is private");
        }
    }

    #[test]
    fn an_interrupted_renewal_is_finished_when_complete_and_discarded_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        // Crashed after the key's rename, before the certificate's.
        write("agent.key", "K2");
        write("agent.pem", "C1");
        write("agent.pem.new", "C2");
        finish_pending(dir.path()).unwrap();
        assert_eq!(read(dir.path(), "agent.key"), "K2");
        assert_eq!(read(dir.path(), "agent.pem"), "C2");
        // Crashed with both written, nothing renamed.
        write("agent.key.new", "K3");
        write("agent.pem.new", "C3");
        finish_pending(dir.path()).unwrap();
        assert_eq!(read(dir.path(), "agent.key"), "K3");
        assert_eq!(read(dir.path(), "agent.pem"), "C3");
        // Crashed before the certificate was written: the old pair stays.
        write("agent.key.new", "K4");
        finish_pending(dir.path()).unwrap();
        assert_eq!(read(dir.path(), "agent.key"), "K3");
        assert!(!dir.path().join("agent.key.new").exists());
    }
}
