//! Rows of `hygienectl vuln ...`.

use hygiene_proto::v1;

use super::non_empty;

/// A CVSS score as the collector sends it (-1: none), to the one decimal CVSS gives (an f32
/// widened as is would print 6.599999904632812).
fn score(value: f32) -> Option<f64> {
    (value >= 0.0).then(|| (f64::from(value) * 10.0).round() / 10.0)
}

/// One file of `vuln import`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdvisoryImportRow {
    pub file: String,
    /// `imported`, `replaced`, `unchanged`, `older` or `refused`.
    pub outcome: String,
    pub id: String,
    pub revision: String,
    pub current_release: String,
    pub cves: u64,
    pub fixes: u64,
    pub error: Option<String>,
}

pub const ADVISORY_IMPORT_TABLE_COLUMNS: &[&str] = &[
    "file",
    "outcome",
    "id",
    "revision",
    "current_release",
    "cves",
    "fixes",
    "error",
];

impl From<v1::AdvisoryImport> for AdvisoryImportRow {
    fn from(a: v1::AdvisoryImport) -> Self {
        AdvisoryImportRow {
            file: a.file,
            outcome: a.outcome,
            id: a.id,
            revision: a.revision,
            current_release: a.current_release,
            cves: a.cves,
            fixes: a.fixes,
            error: non_empty(a.error),
        }
    }
}

/// One host of `vuln hosts`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VulnHostRow {
    pub host_id: String,
    pub hostname: String,
    pub os_product: String,
    pub build: String,
    /// `missing`, `not_assessed`, `up_to_date` or `not_applicable`.
    pub state: String,
    pub cves: u64,
    pub critical: u64,
    pub important: u64,
    pub moderate: u64,
    pub low: u64,
    pub exploited: u64,
    pub max_cvss: Option<f64>,
    /// The updates to install (a later cumulative update stands for those it replaces).
    pub kbs: Vec<String>,
    /// Microsoft products on the host that could not be checked.
    pub not_assessed: u64,
    /// Why the OS was not assessed.
    pub reason: Option<String>,
}

pub const VULN_HOST_TABLE_COLUMNS: &[&str] = &[
    "host_id",
    "state",
    "os_product",
    "build",
    "critical",
    "important",
    "cves",
    "max_cvss",
    "exploited",
    "kbs",
    "not_assessed",
    "reason",
];

impl From<v1::VulnHostRow> for VulnHostRow {
    fn from(h: v1::VulnHostRow) -> Self {
        VulnHostRow {
            host_id: h.host_id,
            hostname: h.hostname,
            os_product: h.os_product,
            build: h.build,
            state: h.state,
            cves: h.cves,
            critical: h.critical,
            important: h.important,
            moderate: h.moderate,
            low: h.low,
            exploited: h.exploited,
            max_cvss: score(h.max_cvss),
            kbs: h.kbs,
            not_assessed: h.not_assessed,
            reason: non_empty(h.reason),
        }
    }
}

/// One line of `vuln host ID`: a CVE whose fix is missing, or a product not assessed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VulnEntryRow {
    /// `missing` or `not_assessed`.
    pub state: String,
    pub cve: Option<String>,
    pub severity: Option<String>,
    pub cvss: Option<f64>,
    pub exploited: bool,
    pub product: String,
    pub kb: Option<String>,
    pub fixed_build: Option<String>,
    /// The host's build or the program's version.
    pub installed: String,
    /// `build` or `kb`: how the fix was found missing.
    pub basis: Option<String>,
    /// The update that closes it here (a later one replacing `kb`).
    pub install: Option<String>,
    pub advisory: Option<String>,
    pub title: Option<String>,
    /// Why a product was not assessed.
    pub reason: Option<String>,
}

pub const VULN_ENTRY_TABLE_COLUMNS: &[&str] = &[
    "state",
    "cve",
    "severity",
    "cvss",
    "exploited",
    "product",
    "kb",
    "fixed_build",
    "installed",
    "basis",
    "install",
    "reason",
];

impl From<v1::MissingFix> for VulnEntryRow {
    fn from(m: v1::MissingFix) -> Self {
        VulnEntryRow {
            state: "missing".into(),
            cve: Some(m.cve),
            severity: non_empty(m.severity),
            cvss: score(m.cvss),
            exploited: m.exploited,
            product: m.product,
            kb: Some(m.kb),
            fixed_build: non_empty(m.fixed_build),
            installed: m.installed,
            basis: Some(m.basis),
            install: non_empty(m.install),
            advisory: Some(m.advisory),
            title: non_empty(m.title),
            reason: None,
        }
    }
}

impl From<v1::NotAssessedProduct> for VulnEntryRow {
    fn from(n: v1::NotAssessedProduct) -> Self {
        VulnEntryRow {
            state: "not_assessed".into(),
            cve: None,
            severity: None,
            cvss: None,
            exploited: false,
            product: n.product,
            kb: None,
            fixed_build: None,
            installed: n.version,
            basis: None,
            install: None,
            advisory: None,
            title: None,
            reason: Some(n.reason),
        }
    }
}

/// One update of `vuln summary`, in patch order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KbNeedRow {
    pub order: u32,
    pub kb: String,
    /// Hosts that need it.
    pub hosts: u64,
    /// Distinct CVEs it closes on those hosts.
    pub distinct_cves: u64,
    /// Host × CVE pairs it closes, per severity (a CVE missing on ten hosts counts ten).
    pub critical_host_cves: u64,
    pub important_host_cves: u64,
    pub exploited_host_cves: u64,
    pub max_cvss: Option<f64>,
    pub products: Vec<String>,
}

pub const KB_NEED_TABLE_COLUMNS: &[&str] = &[
    "order",
    "kb",
    "hosts",
    "distinct_cves",
    "critical_host_cves",
    "important_host_cves",
    "exploited_host_cves",
    "max_cvss",
    "products",
];

impl KbNeedRow {
    pub fn new(order: u32, n: v1::KbNeed) -> Self {
        KbNeedRow {
            order,
            kb: n.kb,
            hosts: n.hosts,
            distinct_cves: n.cves,
            critical_host_cves: n.critical,
            important_host_cves: n.important,
            exploited_host_cves: n.exploited,
            max_cvss: score(n.max_cvss),
            products: n.products,
        }
    }
}
