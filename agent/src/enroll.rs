//! Enrollment: the agent gets its certificate with a token instead of files copied by hand.
//! It makes its own key (which never leaves the host), finds the collector's CA in the TLS
//! handshake by the fingerprint it was given with the token (no other server is trusted, so
//! the token only ever goes to that collector), then sends the token and a certificate
//! signing request over TLS checked against that CA, and writes what `run` needs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hygiene_proto::v1;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "{0:?}: not a CA fingerprint; give it as printed by `hygienectl enroll create`: SHA256: and 64 hex digits"
    )]
    Fingerprint(String),
    #[error("{0:?}: not a collector address (https://HOST:PORT)")]
    Address(String),
    #[error("collector {url}: {reason}")]
    Collector { url: String, reason: String },
    #[error("collector {url} refused the enrollment: {}", .status.message())]
    Refused { url: String, status: tonic::Status },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} exists: this host is enrolled already (remove the directory's files to enroll again)"
    )]
    Enrolled { path: PathBuf },
    #[error("cannot make the agent's key: {0}")]
    Key(String),
    #[error("no host id: {0}; give one with --host-id")]
    HostId(String),
}

/// The CA fingerprint from `SHA256:HEX` (colons between bytes and any case accepted, as
/// openssl prints them).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], EnrollError> {
    let bad = || EnrollError::Fingerprint(text.to_owned());
    let hex_part = text
        .trim()
        .strip_prefix("SHA256:")
        .or_else(|| text.trim().strip_prefix("sha256:"))
        .ok_or_else(bad)?
        .replace(':', "");
    let bytes = hex::decode(hex_part).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// A host id that stays the same across reinstalls of the agent on one machine: the host
/// name (letters, digits, `.`, `_`, `-`) and 12 hex digits of the machine's own id
/// (`/etc/machine-id`, Windows' `MachineGuid`).
pub fn default_host_id() -> Result<String, EnrollError> {
    let machine = machine_id()?;
    let digest = sha2::Sha256::digest(format!("hygiene-host:{}", machine.trim()).as_bytes());
    let host = sysinfo::System::host_name().unwrap_or_default();
    let mut name: String = host
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(48)
        .collect();
    if name.is_empty() {
        name = "host".into();
    }
    Ok(format!("{name}-{}", &hex::encode(digest)[..12]))
}

#[cfg(unix)]
fn machine_id() -> Result<String, EnrollError> {
    for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(id) = std::fs::read_to_string(path)
            && !id.trim().is_empty()
        {
            return Ok(id);
        }
    }
    Err(EnrollError::HostId(
        "/etc/machine-id is missing or empty".into(),
    ))
}

#[cfg(windows)]
fn machine_id() -> Result<String, EnrollError> {
    crate::inventory::machine_guid()
        .map_err(|e| EnrollError::HostId(format!("cannot read MachineGuid: {e}")))
}

#[cfg(not(any(unix, windows)))]
fn machine_id() -> Result<String, EnrollError> {
    Err(EnrollError::HostId(
        "the machine's id is not read on this system".into(),
    ))
}

/// Where `enroll` writes: the files `run --cert-dir` reads.
pub const CERT_FILES: [&str; 4] = ["ca.pem", "agent.pem", "agent.key", "rules-signing.pub"];

/// Enrolls this host with `collector` (`https://HOST:PORT`) using `token`, trusting only a
/// collector whose CA has `ca_fingerprint`; writes [`CERT_FILES`] into `cert_dir` (refused if
/// it holds a key already) and returns the host id.
pub async fn enroll(
    collector: &str,
    token: &str,
    ca_fingerprint: &str,
    cert_dir: &Path,
    host_id: Option<String>,
) -> Result<String, EnrollError> {
    let fingerprint = parse_fingerprint(ca_fingerprint)?;
    let host_id = match host_id {
        Some(id) => id,
        None => default_host_id()?,
    };
    let key_path = cert_dir.join("agent.key");
    if key_path.exists() {
        return Err(EnrollError::Enrolled { path: key_path });
    }
    let ca_der = pinned_ca(collector, fingerprint).await?;
    let ca_pem = pem::encode(&pem::Pem::new("CERTIFICATE", ca_der));
    let key = rcgen::KeyPair::generate().map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host_id.as_str());
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let collector_error = |reason: String| EnrollError::Collector {
        url: collector.to_owned(),
        reason,
    };
    let channel = Endpoint::from_shared(collector.to_owned())
        .map_err(|e| collector_error(e.to_string()))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem)))
        .map_err(|e| collector_error(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| collector_error(hygiene_proto::ErrorChain(&e).to_string()))?;
    let response = v1::enroll_service_client::EnrollServiceClient::new(channel)
        .enroll(v1::EnrollRequest {
            token: token.trim().to_owned(),
            host_id: host_id.clone(),
            csr_pem,
        })
        .await
        .map_err(|status| EnrollError::Refused {
            url: collector.to_owned(),
            status,
        })?
        .into_inner();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EnrollError::Io { path, source }
    };
    std::fs::create_dir_all(cert_dir).map_err(io(cert_dir))?;
    // The CA the collector names must be the one pinned.
    let write = |name: &str, content: &str| {
        let path = cert_dir.join(name);
        std::fs::write(&path, content).map_err(io(&path))
    };
    write("ca.pem", &ca_pem)?;
    write("agent.pem", &response.cert_pem)?;
    write("rules-signing.pub", &response.rules_signing_pub)?;
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
    Ok(response.host_id)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, bytes)
}

/// Connects to `collector` and returns the CA certificate (DER) in its handshake whose
/// SHA-256 is `fingerprint`, once the server's certificate is checked against it.
async fn pinned_ca(collector: &str, fingerprint: [u8; 32]) -> Result<Vec<u8>, EnrollError> {
    let uri: tonic::codegen::http::Uri = collector
        .parse()
        .map_err(|_| EnrollError::Address(collector.to_owned()))?;
    let host = uri
        .host()
        .ok_or_else(|| EnrollError::Address(collector.to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let collector_error = |reason: String| EnrollError::Collector {
        url: collector.to_owned(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinningVerifier {
        fingerprint,
        provider: provider.clone(),
        found: Mutex::default(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| collector_error(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| EnrollError::Address(collector.into()))?;
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| collector_error("no connection within 10 s".into()))?
    .map_err(|e| collector_error(e.to_string()))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| collector_error(e.to_string()))?;
    let found = verifier.found.lock().expect("pinning lock").take();
    found.ok_or_else(|| collector_error("the handshake did not check the certificate".into()))
}

/// Trusts a server whose certificate chains to the certificate in its own handshake that has
/// the pinned fingerprint, and remembers that certificate.
#[derive(Debug)]
struct PinningVerifier {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    found: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| sha2::Sha256::digest(cert.as_ref()).as_slice() == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "no certificate in the collector's handshake has the CA fingerprint SHA256:{}: this is not the collector the token is for",
                    hex::encode(self.fingerprint)
                ))
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified =
            webpki.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        *self.found.lock().expect("pinning lock") = Some(ca.to_vec());
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_as_printed_or_as_openssl_prints_them() {
        let hex64 = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{hex64}")).unwrap(),
            [0xab; 32]
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{colons}")).unwrap(),
            [0xab; 32]
        );
        for bad in [hex64.as_str(), "SHA256:abcd", "MD5:ab", "SHA256:zz"] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_host_id_is_stable_and_a_valid_name() {
        if machine_id().is_err() {
            // A container without a machine id: enroll says so and asks for --host-id.
            assert!(matches!(default_host_id(), Err(EnrollError::HostId(_))));
            return;
        }
        let id = default_host_id().unwrap();
        assert_eq!(id, default_host_id().unwrap());
        assert!(id.len() <= 64 && id.chars().next().unwrap().is_ascii_alphanumeric());
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "{id}"
        );
    }
}
