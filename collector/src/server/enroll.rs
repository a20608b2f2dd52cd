//! The enrollment service: an agent without a certificate sends a token and a certificate
//! signing request, and gets an agent certificate for the host id it asked for. The agent
//! trusts the collector by the CA fingerprint it was given with the token, so the token only
//! ever goes to this collector. A host that enrolls again (a reinstall) gets a newer
//! certificate, which supersedes its older ones when it connects (see [`crate::certs`]).
//!
//! Renewal is the same signing over an agent's mTLS connection: the host is the presented
//! certificate's, which must be one the stream would admit (not revoked, not superseded).

use std::sync::Arc;

use hygiene_proto::v1;
use tonic::{Request, Response, Status};

use crate::certs::{CertVerdict, Revocations};
use crate::enroll::{TokenState, token_hash};
use crate::identity::{self, Role};
use crate::pki::Enrollment;
use crate::store::Store;

pub struct EnrollEndpoint {
    store: Store,
    /// `None`: the PKI directory has no CA key here, and enrollment is refused.
    enrollment: Option<Arc<Enrollment>>,
    revocations: Revocations,
}

impl EnrollEndpoint {
    pub fn new(
        store: Store,
        enrollment: Option<Arc<Enrollment>>,
        revocations: Revocations,
    ) -> Self {
        EnrollEndpoint {
            store,
            enrollment,
            revocations,
        }
    }

    fn enrollment(&self) -> Result<&Enrollment, Status> {
        self.enrollment.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this collector cannot sign certificates (no CA key in its PKI directory)",
            )
        })
    }
}

#[tonic::async_trait]
impl v1::enroll_service_server::EnrollService for EnrollEndpoint {
    async fn enroll(
        &self,
        request: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let r = request.into_inner();
        let enrollment = self.enrollment()?;
        crate::pki::validate_host_id(&r.host_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // The request is checked before the token is used up on it.
        rcgen::CertificateSigningRequestParams::from_pem(&r.csr_pem).map_err(|e| {
            Status::invalid_argument(format!("the certificate signing request is not valid: {e}"))
        })?;
        let now = super::now_ms();
        let token = self
            .store
            .consume_enroll_token(&token_hash(&r.token), &r.host_id, now)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let token = match token {
            Ok(token) => token,
            Err(state) => {
                let why = match state {
                    None => "is not known here",
                    Some(TokenState::Revoked) => "was revoked",
                    Some(TokenState::Expired) => "has expired",
                    Some(TokenState::UsedUp) => "has enrolled all the hosts it may",
                    Some(TokenState::Active) => "is active",
                };
                tracing::warn!(host = %r.host_id, ?peer, "enrollment refused: the token {why}");
                return Err(Status::permission_denied(format!(
                    "the enrollment token {why}"
                )));
            }
        };
        let cert_pem = enrollment
            .issuer
            .sign_csr(&r.host_id, &r.csr_pem)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(host = %r.host_id, token = token.id, label = %token.label, ?peer, "host enrolled");
        Ok(Response::new(v1::EnrollResponse {
            host_id: r.host_id,
            cert_pem,
            ca_pem: enrollment.issuer.ca_pem().to_owned(),
            rules_signing_pub: enrollment.rules_signing_pub.clone(),
        }))
    }

    async fn renew(
        &self,
        request: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        let peer = identity::require(&request, Role::Agent)?;
        let leaf = request
            .peer_certs()
            .and_then(|chain| chain.first().map(|leaf| leaf.to_vec()))
            .unwrap_or_default();
        let cert = crate::certs::host_cert_of_der(&leaf)
            .ok_or_else(|| Status::unauthenticated("the client certificate cannot be read"))?;
        let enrollment = self.enrollment()?;
        let r = request.into_inner();
        let host = &peer.name;
        // Only a certificate the stream would admit is renewed: a revoked or superseded one
        // (a stolen copy, an old install) gets nothing newer.
        let refused = |reason: String| {
            tracing::warn!(host = %host, serial = %cert.serial, "renewal refused: {reason}");
            Status::permission_denied(reason)
        };
        if self.revocations.is_revoked(&cert.serial) {
            return Err(refused(format!("certificate {} is revoked", cert.serial)));
        }
        let internal = |e: crate::store::StoreError| Status::internal(e.to_string());
        let known = self.store.host_certs(host).await.map_err(internal)?;
        let revoked_before = self
            .store
            .certs_revoked_before(host)
            .await
            .map_err(internal)?;
        if let CertVerdict::Refuse { reason, .. } =
            crate::certs::judge(&known, revoked_before, &cert)
        {
            return Err(refused(reason));
        }
        let cert_pem = enrollment
            .issuer
            .sign_csr(host, &r.csr_pem)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(host = %host, replaces = %cert.serial, "agent certificate renewed");
        Ok(Response::new(v1::EnrollResponse {
            host_id: host.clone(),
            cert_pem,
            ca_pem: enrollment.issuer.ca_pem().to_owned(),
            rules_signing_pub: enrollment.rules_signing_pub.clone(),
        }))
    }
}
