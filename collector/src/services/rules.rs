//! Rule and IOC bundles: checking what an admin publishes, signing it, storing it as the
//! current bundle of its kind, and rolling it out to every agent (here and through the other
//! replicas), with the rescan it sets off tracked as a sweep.

use hygiene_proto::bundle::{self, BundleError};
use hygiene_proto::{now_ms, v1};

use super::{ServiceError, ServiceResult, Site, Sweeps};
use crate::agents::roll_out;
use crate::intel::bundles::{BundleInputError, CheckedFiles, check_hashes, check_rules};
use crate::model::BundleRecord;
use crate::site::SiteEvent;

/// What publishing did.
#[derive(Debug, Clone)]
pub struct Published {
    pub bundle: BundleRecord,
    /// Files left out (broken rules skipped on request), with why.
    pub skipped: Vec<String>,
    /// Rules kept although slow (on request).
    pub slow: Vec<String>,
    /// The agents connected here when it was published, to which the rollout goes.
    pub sent_to: usize,
}

#[derive(Clone)]
pub struct Rules {
    site: Site,
    sweeps: Sweeps,
    /// Signs rule and IOC bundles; `None`: publishing is refused.
    signing_key: Option<Vec<u8>>,
}

impl Rules {
    pub fn new(site: Site, signing_key: Option<Vec<u8>>) -> Self {
        Rules {
            sweeps: Sweeps::new(site.clone()),
            site,
            signing_key,
        }
    }

    /// Checks (compiles) YARA sources and publishes them as the rules bundle `name`.
    pub async fn publish_rules(
        &self,
        actor: &str,
        name: &str,
        files: Vec<(String, Vec<u8>)>,
        skip_broken: bool,
        allow_slow: bool,
    ) -> ServiceResult<Published> {
        let name = required_name(name)?;
        // Compiling signature-base takes seconds of CPU.
        let checked =
            tokio::task::spawn_blocking(move || check_rules(&files, skip_broken, allow_slow))
                .await
                .map_err(|e| ServiceError::internal(format!("the rule check failed: {e}")))?
                .map_err(input_error)?;
        self.publish(bundle::RULES, &name, actor, checked).await
    }

    /// Checks hash IOC lists and publishes them as the IOC bundle `name`.
    pub async fn publish_hashes(
        &self,
        actor: &str,
        name: &str,
        files: Vec<(String, Vec<u8>)>,
    ) -> ServiceResult<Published> {
        let name = required_name(name)?;
        let checked = check_hashes(&files).map_err(input_error)?;
        self.publish(bundle::IOCS, &name, actor, checked).await
    }

    /// Signs, stores and pushes checked files as the current bundle of `kind`.
    async fn publish(
        &self,
        kind: &str,
        name: &str,
        actor: &str,
        checked: CheckedFiles,
    ) -> ServiceResult<Published> {
        let key = self.signing_key.as_deref().ok_or_else(|| {
            ServiceError::refused(
                "the collector has no rule-signing key (PKI directory rules-signing.key); nothing is published",
            )
        })?;
        let created_ms = now_ms();
        let bytes: u64 = checked.files.iter().map(|f| f.content.len() as u64).sum();
        let files = checked.files.len() as u64;
        let members = checked.members;
        // The version `sign` puts in the payload.
        let version = bundle::version(&checked.files);
        let signed = bundle::sign(
            v1::BundlePayload {
                kind: kind.to_owned(),
                name: name.to_owned(),
                version: String::new(),
                created_ms,
                files: checked.files,
            },
            key,
        )
        .map_err(|e| match e {
            BundleError::FileName(_) => ServiceError::invalid(e.to_string()),
            e => ServiceError::internal(format!("cannot sign the bundle: {e}")),
        })?;
        // What every agent can take in one message, with room for the command around it.
        let limit = hygiene_proto::MAX_AGENT_COMMAND_SIZE - 64 * 1024;
        if signed.payload.len() > limit {
            return Err(ServiceError::invalid(format!(
                "the bundle is {} bytes, more than the {limit} an agent takes in one message: publish fewer files",
                signed.payload.len()
            )));
        }
        let stored = self
            .site
            .store
            .save_bundle(
                &BundleRecord {
                    id: 0,
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    version,
                    created_ms,
                    created_by: actor.to_owned(),
                    files,
                    items: checked.items,
                    bytes,
                    payload: signed.payload,
                    signature: signed.signature,
                },
                &members,
            )
            .await?;
        self.sweeps.track_rescan(&stored, created_ms).await?;
        // Paced: every agent at once would hold a copy of the bundle each.
        let hosts = self.site.registry.connected();
        let sent_to = hosts.len();
        tracing::info!(kind, name, version = %stored.version, sent_to, "bundle published");
        tokio::spawn(roll_out(
            self.site.store.clone(),
            self.site.registry.clone(),
            stored.clone(),
            hosts,
        ));
        self.site
            .publish(SiteEvent::BundlePublished {
                kind: kind.to_owned(),
            })
            .await;
        Ok(Published {
            bundle: stored,
            skipped: checked.skipped,
            slow: checked.slow,
            sent_to,
        })
    }
}

fn required_name(name: &str) -> ServiceResult<String> {
    match name.trim() {
        "" => Err(ServiceError::invalid("a bundle needs a name (--name)")),
        name => Ok(name.to_owned()),
    }
}

fn input_error(err: BundleInputError) -> ServiceError {
    match err {
        BundleInputError::Io(e) => ServiceError::internal(format!("cannot stage the files: {e}")),
        other => ServiceError::invalid(other.to_string()),
    }
}
