//! Microsoft's monthly documents as the collector applies them: the catalogue built from the
//! store's advisories, imports, and assessments of hosts when asked.

use std::sync::{Arc, RwLock};

use crate::store::{Store, StoreError};
use crate::vuln::{
    Catalogue, CvrfError, HostAssessment, ImportOutcome, StoredAdvisory, assess, cvrf,
};

#[derive(Debug, thiserror::Error)]
pub enum VulnError {
    #[error("{file}: {source}")]
    Document { file: String, source: CvrfError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The imported months as the collector applies them.
#[derive(Clone)]
pub struct Vulns {
    store: Store,
    catalogue: Arc<RwLock<Arc<Catalogue>>>,
    /// One import at a time, so that the catalogue always matches the store.
    import: Arc<tokio::sync::Mutex<()>>,
}

impl Vulns {
    /// Builds the catalogue from the store's advisories.
    pub async fn load(store: Store) -> Result<Vulns, StoreError> {
        let catalogue = Catalogue::new(store.advisories().await?);
        Ok(Vulns {
            store,
            catalogue: Arc::new(RwLock::new(Arc::new(catalogue))),
            import: Arc::default(),
        })
    }

    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.read().expect("catalogue lock").clone()
    }

    /// Reads and stores one document: a month not held, or a newer revision of one. A file
    /// that does not read is refused whole (the error names the element); nothing of it is
    /// stored.
    pub async fn import(
        &self,
        file_name: &str,
        bytes: &[u8],
        actor: &str,
        now_ms: i64,
    ) -> Result<(StoredAdvisory, ImportOutcome), VulnError> {
        let advisory = cvrf::parse(bytes).map_err(|source| VulnError::Document {
            file: file_name.to_owned(),
            source,
        })?;
        let record = StoredAdvisory {
            id: advisory.id.clone(),
            title: advisory.title.clone(),
            revision: advisory.revision.clone(),
            current_release: advisory.current_release.clone(),
            file_name: file_name.to_owned(),
            format: cvrf::format_of(bytes).to_owned(),
            sha256: crate::intel::sha256_hex(bytes),
            imported_ms: now_ms,
            imported_by: actor.to_owned(),
            cves: advisory.vulnerabilities.len() as u64,
            products: advisory.products.len() as u64,
            fixes: advisory.fix_count() as u64,
        };
        let _one_at_a_time = self.import.lock().await;
        let outcome = match self.store.advisory(&advisory.id).await? {
            None => ImportOutcome::Imported,
            Some(held) if advisory.is_newer_than(&held.revision, &held.current_release) => {
                ImportOutcome::Replaced {
                    revision: held.revision,
                }
            }
            Some(held)
                if held.revision == advisory.revision
                    && held.current_release == advisory.current_release =>
            {
                return Ok((held, ImportOutcome::Unchanged));
            }
            Some(held) => {
                let revision = held.revision.clone();
                return Ok((held, ImportOutcome::Older { revision }));
            }
        };
        self.store.save_advisory(&record, &advisory).await?;
        self.reload().await?;
        Ok((record, outcome))
    }

    /// Rebuilds the catalogue from the stored documents (after an import here or on another
    /// replica).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let catalogue = Catalogue::new(self.store.advisories().await?);
        *self.catalogue.write().expect("catalogue lock") = Arc::new(catalogue);
        Ok(())
    }

    /// Every host's result.
    pub async fn assess_all(&self) -> Result<Vec<HostAssessment>, StoreError> {
        let hosts = self.store.host_software(None).await?;
        let catalogue = self.catalogue();
        Ok(hosts.iter().map(|h| assess(&catalogue, h)).collect())
    }

    /// Of `hosts` (Windows hosts whose update list lacks `kb`), those that truly lack it: the
    /// imported documents, where they name the KB, also say whose update it is and which
    /// later KB or build brings it (see [`assess::lacks_kb`]).
    pub async fn lacking_kb(
        &self,
        kb: &str,
        hosts: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let software = self.store.host_software(None).await?;
        let catalogue = self.catalogue();
        Ok(software
            .iter()
            .filter(|h| hosts.contains(&h.host_id))
            .filter(|h| assess::lacks_kb(&catalogue, h, kb) != Some(false))
            .map(|h| h.host_id.clone())
            .collect())
    }

    /// One host's result; `None` for a host the collector has never seen.
    pub async fn assess_host(&self, host_id: &str) -> Result<Option<HostAssessment>, StoreError> {
        let hosts = self.store.host_software(Some(host_id)).await?;
        let catalogue = self.catalogue();
        Ok(hosts.first().map(|h| assess(&catalogue, h)))
    }
}
