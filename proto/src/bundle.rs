//! Rule and IOC bundles as they travel from the collector to the agents: a [`v1::BundlePayload`]
//! (kind, name, files) whose version is the SHA-256 of its files, signed with Ed25519 by the
//! collector's rule-signing key. The agent checks the signature against the public key it
//! was issued with before it looks at anything else.

use prost::Message;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::v1;

/// The two kinds of bundle.
pub const RULES: &str = "rules";
pub const IOCS: &str = "iocs";

/// The id of the sweep that a new bundle of `kind` sets off on every agent that applies it,
/// the same on both sides: agents run it once applied (not on an order, which could arrive
/// before the bundle), and the collector lists it as a fleet sweep like any other.
pub fn rescan_sweep_id(kind: &str, version: &str) -> String {
    let short = version.get(..12).unwrap_or(version);
    format!("rescan-{kind}-{short}")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the signature does not match the rule-signing key")]
    BadSignature,
    #[error("the payload is not a bundle: {0}")]
    Malformed(String),
    #[error("unknown bundle kind {0:?}")]
    Kind(String),
    #[error("file name {0:?} is not a plain file name")]
    FileName(String),
    #[error("the files' SHA-256 is {actual}, the bundle says {claimed}")]
    Version { claimed: String, actual: String },
    #[error("the rule-signing key is unusable: {0}")]
    Key(String),
}

/// The version of a set of files: SHA-256 over each name and content, length-prefixed.
pub fn version(files: &[v1::BundleFile]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for file in files {
        for part in [file.name.as_bytes(), file.content.as_slice()] {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
    }
    hex(context.finish().as_ref())
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string; `None` for anything else.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new Ed25519 key (PKCS#8 bytes) and its public key.
pub fn generate_key() -> Result<(Vec<u8>, Vec<u8>), BundleError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| BundleError::Key(e.to_string()))?;
    let public = public_key(pkcs8.as_ref())?;
    Ok((pkcs8.as_ref().to_vec(), public))
}

/// The public key of a PKCS#8 Ed25519 key.
pub fn public_key(pkcs8: &[u8]) -> Result<Vec<u8>, BundleError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| BundleError::Key(e.to_string()))?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// Encodes and signs `payload`, after checking its kind and file names and setting its
/// version.
pub fn sign(mut payload: v1::BundlePayload, pkcs8: &[u8]) -> Result<v1::SignedBundle, BundleError> {
    check(&payload)?;
    payload.version = version(&payload.files);
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| BundleError::Key(e.to_string()))?;
    let bytes = payload.encode_to_vec();
    let signature = pair.sign(&bytes).as_ref().to_vec();
    Ok(v1::SignedBundle {
        payload: bytes,
        signature,
    })
}

/// The payload of `bundle` if `public_key` signed it and it is well formed: a known kind, plain
/// file names, and files whose SHA-256 is the version it claims.
pub fn verify(
    bundle: &v1::SignedBundle,
    public_key: &[u8],
) -> Result<v1::BundlePayload, BundleError> {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&bundle.payload, &bundle.signature)
        .map_err(|_| BundleError::BadSignature)?;
    let payload = v1::BundlePayload::decode(bundle.payload.as_slice())
        .map_err(|e| BundleError::Malformed(e.to_string()))?;
    check(&payload)?;
    let actual = version(&payload.files);
    if actual != payload.version {
        return Err(BundleError::Version {
            claimed: payload.version,
            actual,
        });
    }
    Ok(payload)
}

fn check(payload: &v1::BundlePayload) -> Result<(), BundleError> {
    if payload.kind != RULES && payload.kind != IOCS {
        return Err(BundleError::Kind(payload.kind.clone()));
    }
    for file in &payload.files {
        if !plain_file_name(&file.name) {
            return Err(BundleError::FileName(file.name.clone()));
        }
    }
    Ok(())
}

/// A name every agent can write as a file of its own in one directory, Windows included: no
/// directory part, no character Windows forbids, no device name (`con.yar`), no leading dot,
/// no trailing dot or space.
fn plain_file_name(name: &str) -> bool {
    const DEVICES: [&str; 4] = ["con", "prn", "aux", "nul"];
    let stem = name
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let device = DEVICES.contains(&stem.as_str())
        || ((stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.ends_with(['.', ' '])
        && !name.contains(['/', '\\', ':', '<', '>', '"', '|', '?', '*'])
        && !name.chars().any(char::is_control)
        && !device
}

/// Public keys are kept as one line of hex in `rules-signing.pub`.
pub fn encode_public_key(key: &[u8]) -> String {
    format!("{}\n", hex(key))
}

pub fn decode_public_key(text: &str) -> Result<Vec<u8>, BundleError> {
    match decode_hex(text.trim()) {
        Some(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(BundleError::Key(
            "not a hex Ed25519 public key (64 hex digits)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> v1::BundlePayload {
        v1::BundlePayload {
            kind: RULES.into(),
            name: "signature-base".into(),
            version: String::new(),
            created_ms: 1,
            files: vec![v1::BundleFile {
                name: "a.yar".into(),
                content: b"rule a { condition: true }".to_vec(),
            }],
        }
    }

    #[test]
    fn a_signed_bundle_verifies_and_any_change_is_refused() {
        let (key, public) = generate_key().unwrap();
        let signed = sign(payload(), &key).unwrap();
        let verified = verify(&signed, &public).unwrap();
        assert_eq!(verified.files, payload().files);
        assert_eq!(verified.version, version(&payload().files));
        assert_eq!(verified.version.len(), 64);

        // A flipped byte anywhere in the payload, or another key, breaks the signature.
        let mut tampered = signed.clone();
        let last = tampered.payload.len() - 1;
        tampered.payload[last] ^= 1;
        assert_eq!(verify(&tampered, &public), Err(BundleError::BadSignature));
        let (_, other) = generate_key().unwrap();
        assert_eq!(verify(&signed, &other), Err(BundleError::BadSignature));

        // Paths that would leave the bundle's directory, and names Windows cannot hold, are
        // refused before signing.
        for bad in [
            "../x.yar",
            "a/b.yar",
            "con.yar",
            "COM1.yara",
            "a?.yar",
            ".hidden.yar",
            "x.yar ",
        ] {
            let mut named = payload();
            named.files[0].name = bad.into();
            assert!(
                matches!(sign(named, &key), Err(BundleError::FileName(_))),
                "{bad}"
            );
        }
        for good in ["console.yar", "com10.yar", "APT_Turla.yar"] {
            let mut named = payload();
            named.files[0].name = good.into();
            assert!(sign(named, &key).is_ok(), "{good}");
        }

        let text = encode_public_key(&public);
        assert_eq!(decode_public_key(&text).unwrap(), public);
        assert!(decode_public_key("abc").is_err());
    }
}
