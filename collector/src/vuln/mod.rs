//! Missing Microsoft security updates, host by host, from Microsoft's own monthly documents.
//!
//! - [`cvrf`]: reading MSRC CVRF documents (XML and the CVRF API's JSON) into an [`Advisory`].
//! - [`product`]: naming a host's Windows and Microsoft programs as the documents do.
//! - [`assess`]: the [`Catalogue`] of imported months, and which CVEs a host still lacks.
//! - [`report`]: the views: a row per host, and the patch order.
//!
//! This module is the domain alone (no store): [`crate::services::Vulns`] holds the catalogue
//! built from the store's advisories (one per month; a newer
//! revision of a month replaces the older). Results are worked out when asked for, from the
//! hosts' latest inventories, so they follow every inventory and every import at once and
//! are never stale; assessing 10,000 hosts against a year of documents takes well under the
//! 2 s an admin would wait (see `collector/examples/vuln_bench.rs`).

pub mod assess;
pub mod cvrf;
pub mod product;
pub mod report;

pub use assess::{
    Basis, Catalogue, CveFix, HostAssessment, HostSoftware, MissingFix, NotAssessed, VulnFilter,
    VulnState, assess,
};
pub use cvrf::{Advisory, CvrfError, Severity};

/// What importing one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A month not held before.
    Imported,
    /// Replaced an older revision of the month (which one).
    Replaced { revision: String },
    /// The same revision is held already.
    Unchanged,
    /// The store holds a newer revision (which one); this file was not imported.
    Older { revision: String },
}

impl ImportOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            ImportOutcome::Imported => "imported",
            ImportOutcome::Replaced { .. } => "replaced",
            ImportOutcome::Unchanged => "unchanged",
            ImportOutcome::Older { .. } => "older",
        }
    }
}

/// A document as stored: the month, where it came from, and who imported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAdvisory {
    pub id: String,
    pub title: String,
    pub revision: String,
    pub current_release: String,
    pub file_name: String,
    /// `xml` or `json`.
    pub format: String,
    pub sha256: String,
    pub imported_ms: i64,
    pub imported_by: String,
    pub cves: u64,
    pub products: u64,
    pub fixes: u64,
}
