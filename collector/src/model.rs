//! The collector's domain types. Protocol types are converted into these at the service edge,
//! so the store and the CLI never depend on generated code.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    Yara,
    HashIoc,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Yara => "yara",
            FindingKind::HashIoc => "hash_ioc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "yara" => Some(FindingKind::Yara),
            "hash_ioc" => Some(FindingKind::HashIoc),
            _ => None,
        }
    }
}

/// What an agent's Hello tells about its host, plus where the collector saw it connect from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostHello {
    pub host_id: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub ip_addresses: Vec<String>,
    pub agent_version: String,
    pub boot_time: i64,
    pub peer_address: Option<String>,
}

/// A finding as reported by an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFinding {
    pub sweep_id: String,
    pub kind: FindingKind,
    pub path: String,
    pub path_raw: Option<Vec<u8>>,
    pub sha256: String,
    pub size: u64,
    pub rule: String,
    pub namespace: String,
    pub ioc_comment: String,
    pub observed_at_ms: i64,
}

/// The end-of-sweep summary an agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub sweep_id: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub files: u64,
    pub bytes: u64,
    pub findings: u64,
    pub errors: BTreeMap<String, u64>,
    pub roots: Vec<String>,
    /// Paths not (fully) scanned, as many as the agent sent.
    pub failures: Vec<FailedPath>,
    /// The agent left some failures out of `failures`.
    pub failures_truncated: bool,
}

/// A path a sweep could not (fully) scan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedPath {
    pub path: String,
    pub kind: String,
    pub message: String,
}

/// A running sweep's latest progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepProgress {
    pub sweep_id: String,
    pub started_at_ms: i64,
    pub files_done: u64,
    pub bytes_done: u64,
    /// Expected totals (from the host's previous sweep); 0 when unknown.
    pub files_estimate: u64,
    pub bytes_estimate: u64,
    pub findings: u64,
    pub errors: BTreeMap<String, u64>,
}

/// A host as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub host_id: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub ip_addresses: Vec<String>,
    pub agent_version: String,
    pub peer_address: Option<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub online: bool,
    pub open_findings: u64,
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: i64,
    pub host_id: String,
    pub kind: FindingKind,
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub rule: String,
    pub namespace: String,
    pub ioc_comment: String,
    pub state: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct HostFilter {
    /// Only hosts with open findings.
    pub infected_only: bool,
}

#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub host_id: Option<String>,
}

/// An installed package as an agent's inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: Option<String>,
}

/// A stored package: what a host has installed now, and since when (this version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPackage {
    pub host_id: String,
    pub package: InstalledPackage,
    pub installed_ms: i64,
}

/// A package version that appeared on (`old_version` none) or left (`new_version` none) a
/// host, or replaced another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageChange {
    pub host_id: String,
    pub name: String,
    pub arch: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub changed_ms: i64,
}
