//! The built-in PKI (rcgen): one CA that signs the collector's server certificate, the admin
//! client certificate(s) and one client certificate per agent.
//!
//! A certificate says who is talking: the subject's common name is the host id (agents) or the
//! admin's name, and the organizational unit is the role, [`AGENT_OU`] or [`ADMIN_OU`]. The
//! collector reads both from the verified peer certificate (see [`crate::identity`]) and never
//! from a message field. Private keys are written with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

/// Organizational unit of agent certificates.
pub const AGENT_OU: &str = "hygiene-agent";
/// Organizational unit of admin certificates.
pub const ADMIN_OU: &str = "hygiene-admin";
/// Common name of the admin certificate `pki init` writes.
pub const DEFAULT_ADMIN_NAME: &str = "admin";

const CA_YEARS: i64 = 10;
const LEAF_YEARS: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("{0}")]
    Certificate(#[from] rcgen::Error),
    #[error(
        "invalid host id {0:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidHostId(String),
    #[error("at least one --server-name is needed")]
    NoServerName,
    #[error("{path}: {source}")]
    SigningKey {
        path: PathBuf,
        source: hygiene_proto::bundle::BundleError,
    },
}

/// Checks that a host id is safe to use as a certificate name, a file name and a database key.
pub fn validate_host_id(id: &str) -> Result<(), PkiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidHostId(id.to_owned()))
    }
}

/// Files `pki init` writes into its directory.
pub struct PkiFiles;

impl PkiFiles {
    pub const CA_CERT: &'static str = hygiene_proto::certs::CA_CERT_FILE;
    pub const CA_KEY: &'static str = "ca.key";
    pub const SERVER_CERT: &'static str = "server.pem";
    pub const SERVER_KEY: &'static str = "server.key";
    pub const ADMIN_CERT: &'static str = hygiene_proto::certs::ADMIN_CERT_FILE;
    pub const ADMIN_KEY: &'static str = hygiene_proto::certs::ADMIN_KEY_FILE;
    /// The Ed25519 key rule and IOC bundles are signed with (PKCS#8 as hex), and its public
    /// key (hex), which `issue-agent` puts beside every agent certificate.
    pub const RULES_SIGNING_KEY: &'static str = "rules-signing.key";
    pub const RULES_SIGNING_PUB: &'static str = "rules-signing.pub";
    /// During a CA rotation ([`rotate_ca_begin`]): the new CA, which signs agent certificates
    /// while `ca.pem` trusts it beside the old one.
    pub const NEXT_CA_CERT: &'static str = "ca-next.pem";
    pub const NEXT_CA_KEY: &'static str = "ca-next.key";
}

/// The rule-signing key of `dir` (PKCS#8), created with its public key if the directory has
/// none yet (directories made before bundles existed get one on first use).
pub fn rules_signing_key(dir: &Path) -> Result<Vec<u8>, PkiError> {
    let key_path = dir.join(PkiFiles::RULES_SIGNING_KEY);
    let bad = |source| PkiError::SigningKey {
        path: key_path.clone(),
        source,
    };
    if key_path.exists() {
        let text = read(&key_path)?;
        let bytes = hygiene_proto::bundle::decode_hex(text.trim()).ok_or_else(|| {
            bad(hygiene_proto::bundle::BundleError::Key(
                "not hex-encoded PKCS#8".into(),
            ))
        })?;
        hygiene_proto::bundle::public_key(&bytes).map_err(bad)?;
        return Ok(bytes);
    }
    let (pkcs8, public) = hygiene_proto::bundle::generate_key().map_err(bad)?;
    write_private(
        &key_path,
        &format!("{}\n", hygiene_proto::bundle::hex(&pkcs8)),
    )?;
    write_public(
        &dir.join(PkiFiles::RULES_SIGNING_PUB),
        &hygiene_proto::bundle::encode_public_key(&public),
    )?;
    Ok(pkcs8)
}

/// Creates the CA, the server certificate for `server_names` (DNS names or IP addresses) and the
/// admin certificate in `dir`. Refuses to overwrite an existing CA key.
pub fn init(dir: &Path, server_names: &[String]) -> Result<(), PkiError> {
    if server_names.is_empty() {
        return Err(PkiError::NoServerName);
    }
    create_dir(dir)?;
    let ca_key_path = dir.join(PkiFiles::CA_KEY);
    if ca_key_path.exists() {
        return Err(PkiError::Exists { path: ca_key_path });
    }
    let (ca_pem, issuer) = new_ca("Hygiene CA")?;
    write_public(&dir.join(PkiFiles::CA_CERT), &ca_pem)?;
    write_private(&ca_key_path, &issuer.key().serialize_pem())?;
    write_server_and_admin(dir, &issuer, server_names)?;
    rules_signing_key(dir)?;
    Ok(())
}

/// A self-signed CA named `common_name`: its certificate (PEM) and its issuer.
fn new_ca(common_name: &str) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name(common_name, None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca_params, CA_YEARS);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    Ok((ca_cert.pem(), Issuer::new(ca_params, ca_key)))
}

/// The server certificate for `server_names` and the admin certificate, signed by `issuer`.
fn write_server_and_admin(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    server_names: &[String],
) -> Result<(), PkiError> {
    let mut server_params = CertificateParams::new(server_names.to_vec())?;
    server_params.distinguished_name = name(&server_names[0], Some("hygiene-collector"));
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_leaf(&mut server_params);
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, issuer)?;
    let (admin_cert, admin_key) = client_cert(issuer, DEFAULT_ADMIN_NAME, ADMIN_OU)?;
    write_public(&dir.join(PkiFiles::SERVER_CERT), &server_cert.pem())?;
    write_private(&dir.join(PkiFiles::SERVER_KEY), &server_key.serialize_pem())?;
    write_public(&dir.join(PkiFiles::ADMIN_CERT), &admin_cert)?;
    write_private(&dir.join(PkiFiles::ADMIN_KEY), &admin_key)?;
    Ok(())
}

/// Starts a CA rotation: a new CA (`ca-next.pem`, `ca-next.key`) that `ca.pem` trusts beside
/// the old one. From the collector's next start, agent certificates (enrollment, renewal) are
/// signed by the new CA and come with both CAs, and agents holding an older certificate are
/// told to renew at once; the server keeps its certificate from the old CA, so every agent
/// still trusts it. Refused while a rotation is under way.
pub fn rotate_ca_begin(dir: &Path) -> Result<(), PkiError> {
    let next_key = dir.join(PkiFiles::NEXT_CA_KEY);
    if next_key.exists() {
        return Err(PkiError::Exists { path: next_key });
    }
    load_issuer(dir)?;
    let stamp = OffsetDateTime::now_utc();
    let (next_pem, next) = new_ca(&format!(
        "Hygiene CA {:04}-{:02}-{:02} {:02}{:02}{:02}",
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    ))?;
    write_public(&dir.join(PkiFiles::NEXT_CA_CERT), &next_pem)?;
    write_private(&next_key, &next.key().serialize_pem())?;
    let bundle = read(&dir.join(PkiFiles::CA_CERT))?;
    write_public(
        &dir.join(PkiFiles::CA_CERT),
        &format!("{}\n{next_pem}", bundle.trim_end()),
    )?;
    Ok(())
}

/// Ends a CA rotation once every agent has renewed: the new CA becomes the only one, with a
/// new server certificate (for the names the old one had) and admin certificate from it. An
/// agent that did not renew during the overlap no longer trusts the server and enrolls again.
pub fn rotate_ca_finish(dir: &Path) -> Result<(), PkiError> {
    let next_pem = read(&dir.join(PkiFiles::NEXT_CA_CERT))?;
    let next_key = read(&dir.join(PkiFiles::NEXT_CA_KEY))?;
    let next = Issuer::from_ca_cert_pem(&next_pem, KeyPair::from_pem(&next_key)?)?;
    let server_names = server_names(&dir.join(PkiFiles::SERVER_CERT))?;
    write_server_and_admin(dir, &next, &server_names)?;
    write_public(&dir.join(PkiFiles::CA_CERT), &next_pem)?;
    write_private(&dir.join(PkiFiles::CA_KEY), &next_key)?;
    for file in [PkiFiles::NEXT_CA_CERT, PkiFiles::NEXT_CA_KEY] {
        let path = dir.join(file);
        std::fs::remove_file(&path).map_err(|source| PkiError::Io { path, source })?;
    }
    Ok(())
}

/// The DNS names and addresses a server certificate is for.
fn server_names(path: &Path) -> Result<Vec<String>, PkiError> {
    use x509_parser::extensions::GeneralName;
    let pem = read(path)?;
    let invalid = |reason: String| PkiError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
    };
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    let cert = block.parse_x509().map_err(|e| invalid(e.to_string()))?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .map_err(|e| invalid(e.to_string()))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => match bytes.len() {
                        4 => Some(
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string(),
                        ),
                        16 => Some(
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?)
                                .to_string(),
                        ),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(invalid("no DNS name or address in the certificate".into()));
    }
    Ok(names)
}

/// Issues agent certificates in memory from a PKI directory's CA (for the load generator,
/// which runs many simulated agents without writing a directory for each).
pub struct AgentIssuer {
    issuer: Issuer<'static, KeyPair>,
    /// The signing CA's subject (DER): the issuer name of what it signs.
    subject_der: Vec<u8>,
    ca_pem: String,
    lifetime: std::time::Duration,
}

impl AgentIssuer {
    /// Issues certificates valid for [`hygiene_proto::certs::AGENT_LIFETIME`] (see
    /// [`AgentIssuer::with_lifetime`]); agents renew them over their stream.
    /// During a CA rotation the new CA signs; `ca_pem` is the whole trusted bundle.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(signing_ca_files(dir).0);
        let signing_pem = read(&cert_path)?;
        let issuer = load_issuer(dir)?;
        let subject_der = x509_parser::pem::parse_x509_pem(signing_pem.as_bytes())
            .ok()
            .and_then(|(_, block)| {
                block
                    .parse_x509()
                    .ok()
                    .map(|cert| cert.subject().as_raw().to_vec())
            })
            .ok_or_else(|| PkiError::Io {
                path: cert_path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a PEM certificate",
                ),
            })?;
        Ok(AgentIssuer {
            issuer,
            subject_der,
            ca_pem: read(&dir.join(PkiFiles::CA_CERT))?,
            lifetime: hygiene_proto::certs::AGENT_LIFETIME,
        })
    }

    /// Whether the certificate `der` was issued by the CA that signs now (its issuer is that
    /// CA's name): one that was not should be renewed (a CA rotation is under way).
    pub fn signed_by_current_ca(&self, der: &[u8]) -> bool {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return false;
        };
        cert.issuer().as_raw() == self.subject_der.as_slice()
    }

    pub fn with_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The CA certificate agents trust the collector by.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A certificate and key (PEM) for `host_id`.
    pub fn issue(&self, host_id: &str) -> Result<(String, String), PkiError> {
        validate_host_id(host_id)?;
        let mut params = client_params(host_id, AGENT_OU);
        set_lifetime(&mut params, self.lifetime);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// An agent certificate (PEM) for `host_id` over the key of an agent's certificate
    /// signing request (its signature checked): only the key is taken from it; the name, role
    /// and validity are the collector's, as `issue` makes them. The key never left the host.
    pub fn sign_csr(&self, host_id: &str, csr_pem: &str) -> Result<String, PkiError> {
        validate_host_id(host_id)?;
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        csr.params = client_params(host_id, AGENT_OU);
        set_lifetime(&mut csr.params, self.lifetime);
        Ok(csr.signed_by(&self.issuer)?.pem())
    }
}

/// What the collector needs to enroll agents: its CA to sign their requests, and the public
/// key agents check bundles with (`rules-signing.pub`).
pub struct Enrollment {
    pub issuer: AgentIssuer,
    pub rules_signing_pub: String,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The CA key stays out of logs.
        f.debug_struct("Enrollment").finish_non_exhaustive()
    }
}

impl Enrollment {
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let public =
            hygiene_proto::bundle::public_key(&rules_signing_key(dir)?).map_err(|source| {
                PkiError::SigningKey {
                    path: dir.join(PkiFiles::RULES_SIGNING_KEY),
                    source,
                }
            })?;
        Ok(Enrollment {
            issuer: AgentIssuer::load(dir)?,
            rules_signing_pub: hygiene_proto::bundle::encode_public_key(&public),
        })
    }
}

/// Issues an agent certificate for `host_id` into `out` (`ca.pem`, `agent.pem`, `agent.key`,
/// and `rules-signing.pub`, the key the agent checks bundles with). Refuses to overwrite an
/// existing `agent.key` unless `force`.
pub fn issue_agent(dir: &Path, host_id: &str, out: &Path, force: bool) -> Result<(), PkiError> {
    validate_host_id(host_id)?;
    let issuer = AgentIssuer::load(dir)?;
    create_dir(out)?;
    let key_path = out.join("agent.key");
    if key_path.exists() && !force {
        return Err(PkiError::Exists { path: key_path });
    }
    let (cert, key) = issuer.issue(host_id)?;
    write_public(&out.join("ca.pem"), issuer.ca_pem())?;
    write_public(&out.join("agent.pem"), &cert)?;
    write_private(&key_path, &key)?;
    let public = hygiene_proto::bundle::public_key(&rules_signing_key(dir)?).map_err(|source| {
        PkiError::SigningKey {
            path: dir.join(PkiFiles::RULES_SIGNING_KEY),
            source,
        }
    })?;
    write_public(
        &out.join(PkiFiles::RULES_SIGNING_PUB),
        &hygiene_proto::bundle::encode_public_key(&public),
    )?;
    Ok(())
}

/// Issues an additional admin certificate `NAME.pem`/`NAME.key` into `out`; the name is what
/// the collector records as the acting admin.
/// Issues an admin certificate for `admin_name` into `out`, laid out as `hygienectl --pki`
/// reads it: `ca.pem`, `admin.pem`, `admin.key` (the name is in the certificate).
pub fn issue_admin(dir: &Path, admin_name: &str, out: &Path) -> Result<(), PkiError> {
    validate_host_id(admin_name)?;
    let issuer = load_issuer(dir)?;
    create_dir(out)?;
    let key_path = out.join(PkiFiles::ADMIN_KEY);
    if key_path.exists() {
        return Err(PkiError::Exists { path: key_path });
    }
    let (cert, key) = client_cert(&issuer, admin_name, ADMIN_OU)?;
    write_public(
        &out.join(PkiFiles::CA_CERT),
        &read(&dir.join(PkiFiles::CA_CERT))?,
    )?;
    write_public(&out.join(PkiFiles::ADMIN_CERT), &cert)?;
    write_private(&key_path, &key)?;
    Ok(())
}

/// The CA that signs client certificates now: the new one during a rotation.
fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let (cert, key) = signing_ca_files(dir);
    let ca_key = KeyPair::from_pem(&read(&dir.join(key))?)?;
    Ok(Issuer::from_ca_cert_pem(&read(&dir.join(cert))?, ca_key)?)
}

/// `(certificate, key)` file names of the CA that signs now.
fn signing_ca_files(dir: &Path) -> (&'static str, &'static str) {
    if dir.join(PkiFiles::NEXT_CA_KEY).exists() {
        (PkiFiles::NEXT_CA_CERT, PkiFiles::NEXT_CA_KEY)
    } else {
        (PkiFiles::CA_CERT, PkiFiles::CA_KEY)
    }
}

fn client_params(common_name: &str, ou: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, Some(ou));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_leaf(&mut params);
    params
}

fn client_cert(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    ou: &str,
) -> Result<(String, String), PkiError> {
    let params = client_params(common_name, ou);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn name(common_name: &str, ou: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Hygiene");
    if let Some(ou) = ou {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_leaf(params: &mut CertificateParams) {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(params, LEAF_YEARS);
}

pub use hygiene_proto::certs::BACKDATE;

fn set_validity(params: &mut CertificateParams, years: i64) {
    set_lifetime(
        params,
        std::time::Duration::from_secs(365 * 24 * 3600 * years as u64),
    );
}

fn set_lifetime(params: &mut CertificateParams, lifetime: std::time::Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a private key readable by its owner only. The mode is set at creation, so the key is
/// never briefly world-readable.
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path).map_err(io)?;
        // An existing file keeps its old mode on open; tighten it explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        file.write_all(contents.as_bytes()).map_err(io)
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path).map_err(io)?;
        file.write_all(contents.as_bytes()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, identify};

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    #[test]
    fn init_then_issue_agent_gives_identities_with_roles() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        for file in [
            "ca.pem",
            "ca.key",
            "server.pem",
            "server.key",
            "admin.pem",
            "admin.key",
        ] {
            assert!(dir.path().join(file).exists(), "{file}");
        }
        let out = dir.path().join("agent-1");
        issue_agent(dir.path(), "web-01.example", &out, false).unwrap();
        let agent = std::fs::read_to_string(out.join("agent.pem")).unwrap();
        let id = identify(&[der(&agent)]).unwrap();
        assert_eq!(id.role, Role::Agent);
        assert_eq!(id.name, "web-01.example");
        let admin = std::fs::read_to_string(dir.path().join("admin.pem")).unwrap();
        let id = identify(&[der(&admin)]).unwrap();
        assert_eq!((id.role, id.name.as_str()), (Role::Admin, "admin"));
        assert_eq!(
            std::fs::read(out.join("ca.pem")).unwrap(),
            std::fs::read(dir.path().join("ca.pem")).unwrap()
        );
        // The server certificate has no client role.
        let server = std::fs::read_to_string(dir.path().join("server.pem")).unwrap();
        assert!(identify(&[der(&server)]).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["localhost".into()]).unwrap();
        issue_agent(dir.path(), "h1", &dir.path().join("h1"), false).unwrap();
        for key in [
            "ca.key",
            "server.key",
            "admin.key",
            "rules-signing.key",
            "h1/agent.key",
        ] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        // The agent gets the public half of the rule-signing key, and it is that key's.
        let public = std::fs::read_to_string(dir.path().join("h1/rules-signing.pub")).unwrap();
        let key = rules_signing_key(dir.path()).unwrap();
        assert_eq!(
            hygiene_proto::bundle::decode_public_key(&public).unwrap(),
            hygiene_proto::bundle::public_key(&key).unwrap()
        );
    }

    #[test]
    fn a_pki_directory_without_a_signing_key_gets_one_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["localhost".into()]).unwrap();
        std::fs::remove_file(dir.path().join(PkiFiles::RULES_SIGNING_KEY)).unwrap();
        let made = rules_signing_key(dir.path()).unwrap();
        assert_eq!(rules_signing_key(dir.path()).unwrap(), made);
        std::fs::write(dir.path().join(PkiFiles::RULES_SIGNING_KEY), "zz\n").unwrap();
        let err = rules_signing_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("rules-signing.key"), "{err}");
    }

    #[test]
    fn refuses_to_overwrite_and_rejects_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["localhost".into()]).unwrap();
        assert!(matches!(
            init(dir.path(), &["localhost".into()]),
            Err(PkiError::Exists { .. })
        ));
        let out = dir.path().join("h");
        issue_agent(dir.path(), "h", &out, false).unwrap();
        assert!(matches!(
            issue_agent(dir.path(), "h", &out, false),
            Err(PkiError::Exists { .. })
        ));
        issue_agent(dir.path(), "h", &out, true).unwrap();
        for bad in ["", "../etc", "a b", "-x", &"a".repeat(65)] {
            assert!(
                matches!(
                    issue_agent(dir.path(), bad, &out, true),
                    Err(PkiError::InvalidHostId(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            init(&dir.path().join("new"), &[]),
            Err(PkiError::NoServerName)
        ));
        let missing = issue_agent(&dir.path().join("nope"), "h", &out, true).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
