//! Who is on the other end of a connection, read from its verified client certificate.
//!
//! TLS has already checked the chain against the Hygiene CA when this runs; this module only
//! reads the role (organizational unit) and name (common name) out of the leaf certificate.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::{ADMIN_OU, AGENT_OU};
use crate::refusals::{Presented, Refusal, RefusalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Admin,
}

/// A peer's identity: an agent's host id, or an admin's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub role: Role,
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("no client certificate")]
    NoCertificate,
    #[error("client certificate cannot be parsed")]
    Unparsable,
    #[error("client certificate has no Hygiene role (organizational unit)")]
    NoRole,
    #[error("client certificate has no usable common name")]
    NoName,
}

/// Reads the identity from the peer's certificate chain (leaf first).
pub fn identify<C: AsRef<[u8]>>(chain: &[C]) -> Result<PeerIdentity, IdentityError> {
    let leaf = chain.first().ok_or(IdentityError::NoCertificate)?;
    let (_, cert) =
        X509Certificate::from_der(leaf.as_ref()).map_err(|_| IdentityError::Unparsable)?;
    let subject = cert.subject();
    let role = subject
        .iter_organizational_unit()
        .find_map(|ou| match ou.as_str().ok()? {
            AGENT_OU => Some(Role::Agent),
            ADMIN_OU => Some(Role::Admin),
            _ => None,
        })
        .ok_or(IdentityError::NoRole)?;
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|name| crate::pki::validate_host_id(name).is_ok())
        .ok_or(IdentityError::NoName)?;
    Ok(PeerIdentity {
        role,
        name: name.to_owned(),
    })
}

/// The identity of a tonic request's peer, or `Unauthenticated`; a certificate without a
/// Hygiene identity is recorded as a refusal.
pub fn of_request<T>(request: &tonic::Request<T>) -> Result<PeerIdentity, tonic::Status> {
    let Some(certs) = request.peer_certs() else {
        crate::refusals::record(Refusal {
            kind: RefusalKind::NoCertificate,
            peer: request.remote_addr(),
            presented: None,
            reason: "no client certificate".into(),
        });
        return Err(tonic::Status::unauthenticated(
            IdentityError::NoCertificate.to_string(),
        ));
    };
    identify(&certs).map_err(|err| {
        refuse(request, RefusalKind::NoIdentity, &certs, err.to_string());
        tonic::Status::unauthenticated(err.to_string())
    })
}

/// The admin service's interceptor: every call, whatever its method, needs an admin
/// certificate. Checked once here; the handlers read who it was with [`admin_of`].
pub fn require_admin(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let admin = require(&request, Role::Admin)?;
    request.extensions_mut().insert(Admin(admin));
    Ok(request)
}

/// The admin behind a call of the admin service (see [`require_admin`]).
pub fn admin_of<T>(request: &tonic::Request<T>) -> Result<PeerIdentity, tonic::Status> {
    request
        .extensions()
        .get::<Admin>()
        .map(|admin| admin.0.clone())
        .ok_or_else(|| {
            tonic::Status::unauthenticated("the admin service is served without its interceptor")
        })
}

/// What [`require_admin`] found, carried in the request's extensions.
#[derive(Clone)]
struct Admin(PeerIdentity);

/// The identity of the peer if it has `role`, or `PermissionDenied` naming what it is (and
/// recorded as a refusal).
pub fn require<T>(request: &tonic::Request<T>, role: Role) -> Result<PeerIdentity, tonic::Status> {
    let identity = of_request(request)?;
    if identity.role == role {
        Ok(identity)
    } else {
        let message = format!(
            "certificate of {:?} {:?} is not allowed here; this service needs a {:?} certificate",
            identity.role, identity.name, role
        );
        if let Some(certs) = request.peer_certs() {
            refuse(request, RefusalKind::WrongRole, &certs, message.clone());
        }
        Err(tonic::Status::permission_denied(message))
    }
}

fn refuse<T>(
    request: &tonic::Request<T>,
    kind: RefusalKind,
    certs: &[rustls::pki_types::CertificateDer<'static>],
    reason: String,
) {
    crate::refusals::record(Refusal {
        kind,
        peer: request.remote_addr(),
        presented: certs.first().map(|leaf| Presented::of_der(leaf)),
        reason,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_chain_and_garbage_are_refused() {
        assert_eq!(identify::<Vec<u8>>(&[]), Err(IdentityError::NoCertificate));
        assert_eq!(identify(&[vec![1u8, 2, 3]]), Err(IdentityError::Unparsable));
    }
}
