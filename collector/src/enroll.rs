//! Enrollment tokens: what lets an agent get its certificate without anyone issuing one for
//! its host. A token is random, shown once when made and stored only as its SHA-256; it may
//! be limited in uses and in time, names the group its hosts join, and can be revoked. The
//! agent pins the collector's CA by its fingerprint, which `enroll create` prints with it.

/// What every token starts with, so that one pasted in the wrong place is recognised.
pub const TOKEN_PREFIX: &str = "hyg_";

/// A new token: [`TOKEN_PREFIX`] and 32 random bytes in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hygiene_proto::bundle::hex(&bytes))
}

/// What the store keeps of a token: its SHA-256, hex (surrounding whitespace ignored, as a
/// token pasted from a mail carries some).
pub fn token_hash(token: &str) -> String {
    crate::intel::sha256_hex(token.trim().as_bytes())
}

/// The CA certificate's fingerprint as agents pin it: `SHA256:` and the SHA-256 of its DER
/// in lower-case hex. `None` when `ca_pem` holds no certificate.
pub fn ca_fingerprint(ca_pem: &str) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok()?;
    Some(format!("SHA256:{}", crate::intel::sha256_hex(&der)))
}

/// A token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollToken {
    pub id: i64,
    pub label: String,
    /// `None`: any number of hosts.
    pub uses_allowed: Option<u64>,
    pub uses: u64,
    pub expires_ms: Option<i64>,
    /// The group its hosts join.
    pub group: Option<String>,
    pub created_ms: i64,
    pub created_by: String,
    /// When and by whom, if revoked.
    pub revoked: Option<(i64, String)>,
}

/// Where a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    UsedUp,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::UsedUp => "used_up",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

impl EnrollToken {
    /// Its state at `now_ms`; revoked first, then expired, then used up.
    pub fn state(&self, now_ms: i64) -> TokenState {
        if self.revoked.is_some() {
            TokenState::Revoked
        } else if self.expires_ms.is_some_and(|at| at <= now_ms) {
            TokenState::Expired
        } else if self
            .uses_allowed
            .is_some_and(|allowed| self.uses >= allowed)
        {
            TokenState::UsedUp
        } else {
            TokenState::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrollToken {
        EnrollToken {
            id: 1,
            label: "district 3".into(),
            uses_allowed: Some(2),
            uses: 0,
            expires_ms: Some(1_000),
            group: None,
            created_ms: 0,
            created_by: "admin".into(),
            revoked: None,
        }
    }

    #[test]
    fn tokens_are_random_prefixed_and_stored_as_a_hash() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a), token_hash(&format!("  {a}\n")));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert!(!token_hash(&a).contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn a_token_is_active_until_revoked_expired_or_used_up() {
        let mut t = token();
        assert_eq!(t.state(999), TokenState::Active);
        assert_eq!(t.state(1_000), TokenState::Expired);
        t.uses = 2;
        assert_eq!(t.state(0), TokenState::UsedUp);
        t.revoked = Some((5, "admin".into()));
        assert_eq!(t.state(0), TokenState::Revoked);
        let unlimited = EnrollToken {
            uses_allowed: None,
            expires_ms: None,
            uses: 10_000,
            ..token()
        };
        assert_eq!(unlimited.state(i64::MAX), TokenState::Active);
    }

    #[test]
    fn the_ca_fingerprint_is_the_sha256_of_its_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let fingerprint = ca_fingerprint(&cert.pem()).unwrap();
        assert_eq!(
            fingerprint,
            format!("SHA256:{}", crate::intel::sha256_hex(cert.der()))
        );
        assert_eq!(fingerprint.len(), "SHA256:".len() + 64);
        assert_eq!(ca_fingerprint("not a certificate"), None);
    }
}
