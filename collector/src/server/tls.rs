//! The collector's side of mutual TLS, done here rather than inside tonic so that every
//! refused handshake is seen: the client-certificate verifier notes what a refused peer
//! presented (subject and serial), and the handshake's outcome is recorded in
//! [`crate::refusals`] with the peer's address.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use super::ServerError;
use crate::certs::Revocations;
use crate::pki::PkiFiles;
use crate::refusals::{Presented, Refusal, RefusalKind};

/// How long a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS settings: its certificate and key, and the CA every client certificate
/// must chain to. Clients without a certificate are refused.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    revocations: Revocations,
    ca_fingerprint: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// The server's TLS settings from a PKI directory.
pub fn tls_from_pki(dir: &Path) -> Result<ServerTls, ServerError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| ServerError::Tls { path, source })
    };
    let invalid = |name: &str, reason: String| ServerError::TlsInvalid {
        path: dir.join(name),
        reason,
    };
    let certs = |name: &str| -> Result<Vec<CertificateDer<'static>>, ServerError> {
        let certs = CertificateDer::pem_slice_iter(&read(name)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(name, e.to_string()))?;
        if certs.is_empty() {
            return Err(invalid(name, "no certificate in it".into()));
        }
        Ok(certs)
    };
    let mut chain = certs(PkiFiles::SERVER_CERT)?;
    let key = PrivateKeyDer::from_pem_slice(&read(PkiFiles::SERVER_KEY)?)
        .map_err(|e| invalid(PkiFiles::SERVER_KEY, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let cas = certs(PkiFiles::CA_CERT)?;
    let ca_fingerprint = format!("SHA256:{}", crate::intel::sha256_hex(&cas[0]));
    // The CA goes with the server's certificate, so that an agent enrolling with only the
    // CA's fingerprint can find it in the handshake and check the server against it.
    if !chain.contains(&cas[0]) {
        chain.push(cas[0].clone());
    }
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| invalid(PkiFiles::CA_CERT, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A client without a certificate gets through the handshake for enrollment alone: every
    // other service requires one (`identity`), and records its absence as a refusal.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(PkiFiles::CA_CERT, e.to_string()))?;
    let revocations = Revocations::default();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(PkiFiles::SERVER_CERT, e.to_string()))?
        .with_client_cert_verifier(Arc::new(NotingVerifier {
            inner: verifier,
            revocations: revocations.clone(),
        }))
        .with_single_cert(chain, key)
        .map_err(|e| invalid(PkiFiles::SERVER_KEY, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption: a resumed session skips the client certificate's verification,
    // so a revoked certificate would get back in on a ticket from before its revocation.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(ServerTls {
        config: Arc::new(config),
        revocations,
        ca_fingerprint,
    })
}

tokio::task_local! {
    /// What the peer of the handshake running on this task presented, when refused.
    static PRESENTED: RefCell<Option<Presented>>;
}

/// The webpki verifier, refusing revoked serials too, and noting what a refused client
/// certificate says about itself.
#[derive(Debug)]
struct NotingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Revocations,
}

impl ClientCertVerifier for NotingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .and_then(|verified| {
                let serial = Presented::of_der(end_entity).serial;
                if self.revocations.is_revoked(&serial) {
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::Revoked,
                    ))
                } else {
                    Ok(verified)
                }
            });
        if verified.is_err() {
            // Outside a handshake task (never, in the server) there is nowhere to note it.
            let _ = PRESENTED.try_with(|p| *p.borrow_mut() = Some(Presented::of_der(end_entity)));
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl ServerTls {
    /// `SHA256:HEX` of the CA certificate (the first, while two are trusted), which agents
    /// pin when they enroll.
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// The revoked serials every handshake is checked against.
    pub fn revocations(&self) -> Revocations {
        self.revocations.clone()
    }

    /// Runs the server side of the handshake on `stream` from `peer`; a refusal is recorded
    /// (see [`crate::refusals`]) and `None` returned.
    pub async fn accept<IO>(
        &self,
        stream: IO,
        peer: Option<std::net::SocketAddr>,
    ) -> Option<tokio_rustls::server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let (outcome, presented) = PRESENTED
            .scope(RefCell::new(None), async {
                let outcome =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                (outcome, PRESENTED.with(|p| p.borrow_mut().take()))
            })
            .await;
        let err = match outcome {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(err)) => err,
            Err(_) => {
                crate::refusals::record(Refusal {
                    kind: RefusalKind::Handshake,
                    peer,
                    presented,
                    reason: format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
                });
                return None;
            }
        };
        let tls_error = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        let kind = match tls_error {
            Some(rustls::Error::NoCertificatesPresented) => RefusalKind::NoCertificate,
            Some(rustls::Error::InvalidCertificate(_)) => RefusalKind::Certificate,
            _ if presented.is_some() => RefusalKind::Certificate,
            _ => RefusalKind::Handshake,
        };
        let reason = match tls_error {
            Some(rustls::Error::AlertReceived(alert)) => {
                format!("client aborted ({alert:?}): does it trust this CA?")
            }
            Some(rustls::Error::InvalidCertificate(cert)) => certificate_problem(cert),
            _ => err.to_string(),
        };
        crate::refusals::record(Refusal {
            kind,
            peer,
            presented,
            reason,
        });
        None
    }
}

/// A refused certificate's problem in the admin's words.
fn certificate_problem(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match error {
        E::UnknownIssuer | E::BadSignature => "not issued by this collector's CA".into(),
        E::Expired | E::ExpiredContext { .. } => "expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => "not valid yet".into(),
        E::Revoked => "revoked".into(),
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
            "not a client certificate (key usage)".into()
        }
        other => format!("invalid certificate: {other:?}"),
    }
}
