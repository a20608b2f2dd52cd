//! The collector's domain types. Protocol types are converted into these at the service edge,
//! so the store and the CLI never depend on generated code.

use std::collections::BTreeMap;

pub use crate::findings::FindingState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    Yara,
    HashIoc,
    /// A host's address, egress address or connection on a botnet IP list (found by the
    /// collector, not by a sweep): path is the address, namespace how it matched
    /// ([`crate::intel::MatchVia`]), rule the listed network.
    BotnetIp,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Yara => "yara",
            FindingKind::HashIoc => "hash_ioc",
            FindingKind::BotnetIp => "botnet_ip",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "yara" => Some(FindingKind::Yara),
            "hash_ioc" => Some(FindingKind::HashIoc),
            "botnet_ip" => Some(FindingKind::BotnetIp),
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
    /// The rule and IOC sets that found it (empty from older agents).
    pub rules_version: String,
    pub iocs_version: String,
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
    /// Not empty: the sweep could not be carried out, and why.
    pub failure: String,
    /// The rule and IOC sets it ran with.
    pub sets: crate::findings::RuleSets,
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
    /// When `hosts remove` decommissioned it; such hosts are listed only when asked for.
    pub removed_ms: Option<i64>,
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
    /// Malware findings (files) open or reopened.
    pub open_findings: u64,
    /// botnet_ip findings open or reopened.
    pub botnet_matches: u64,
    /// What the host's cleanup status is derived from.
    pub cleanup: crate::findings::HostCleanup,
    /// With a package filter: the filtered package's installed versions (`3.0.11-1 amd64`).
    pub package_versions: Vec<String>,
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
    pub state: FindingState,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub path_raw: Option<Vec<u8>>,
    pub state_changed_ms: i64,
    pub quarantine_id: Option<String>,
    pub remediation_error: Option<String>,
    pub restore_requested_ms: Option<i64>,
    /// The sweep that last saw it.
    pub sweep_id: String,
    /// botnet_ip: the list that listed the address, and what was seen.
    pub list_id: Option<i64>,
    pub evidence: String,
}

/// A change of a finding's state, with who made it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingChange {
    pub at_ms: i64,
    pub actor: String,
    /// `None` when the finding was first found.
    pub from_state: Option<FindingState>,
    pub to_state: FindingState,
    pub note: String,
}

/// What an agent reports of a quarantine or restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationReport {
    pub finding_id: i64,
    pub action: RemediationAction,
    pub ok: bool,
    pub reason: String,
    pub quarantine_id: String,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemediationAction {
    Quarantine,
    Restore,
}

/// What a connecting agent is still to do for the cleanup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemediationOrders {
    /// Findings whose quarantine was asked for and not yet answered.
    pub quarantine: Vec<Finding>,
    /// Findings whose restore was asked for and not yet answered.
    pub restore: Vec<Finding>,
}

#[derive(Debug, Clone, Default)]
pub struct HostFilter {
    /// Only hosts with a package of this name installed.
    pub has_package: Option<String>,
    /// Only hosts with this package installed at a version below this one, in the ordering
    /// of the host's package manager.
    pub package_below: Option<(String, String)>,
    /// Only Windows hosts whose complete list of installed updates lacks this KB.
    pub missing_kb: Option<String>,
    /// Decommissioned hosts too (`hosts remove`).
    pub include_removed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub host_id: Option<String>,
    pub state: Option<FindingState>,
    pub rule: Option<String>,
    pub sha256: Option<String>,
    pub kind: Option<FindingKind>,
}

/// An installed package as an agent's inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: Option<String>,
    /// Whose version ordering applies; `None` when the agent did not say.
    pub manager: Option<crate::version::Scheme>,
}

/// What an agent's inventory says about its operating system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsFacts {
    /// `linux` or `windows`.
    pub family: String,
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    pub kernel: String,
    pub arch: String,
    /// Seconds since the epoch.
    pub boot_time: Option<i64>,
    /// When packages last changed on the host (seconds since the epoch), as the host records it.
    pub last_package_change: Option<i64>,
    pub product_name: String,
    pub edition: String,
    pub display_version: String,
    /// Windows: `10.0.19045.3930`.
    pub build: String,
    pub installation_type: String,
}

/// An installed Windows update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hotfix {
    /// Upper case, `KB` and digits.
    pub kb: String,
    pub title: String,
    pub installed_on: Option<String>,
}

/// `KB5034441` from `KB5034441`, `kb5034441` or `5034441`; `None` for anything else.
pub fn normalise_kb(kb: &str) -> Option<String> {
    let kb = kb.trim();
    let digits = match kb.get(..2) {
        Some(prefix) if prefix.eq_ignore_ascii_case("kb") => &kb[2..],
        _ => kb,
    };
    (!digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("KB{digits}"))
}

/// An installed program.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Program {
    pub name: String,
    pub version: String,
    pub publisher: String,
}

/// A part of an inventory the agent could not collect, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InventoryGap {
    pub source: String,
    pub reason: String,
}

/// An inventory as an agent reports it. A list is `None` when the agent could not collect it
/// whole: the store then keeps the list it had rather than take a part for the whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryReport {
    pub collected_ms: i64,
    pub os: OsFacts,
    pub packages: Option<Vec<InstalledPackage>>,
    pub hotfixes: Option<Vec<Hotfix>>,
    pub programs: Option<Vec<Program>>,
    pub gaps: Vec<InventoryGap>,
    /// The agent's digest of its complete lists after this report; `None` when one was partial.
    pub digest: Option<Vec<u8>>,
    /// Set when the lists above are only what appeared or changed since the lists with
    /// `base_digest`.
    pub delta: Option<InventoryDelta>,
}

/// What left a host's lists since the base of a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryDelta {
    pub base_digest: Vec<u8>,
    /// Packages by name and arch.
    pub removed_packages: Vec<(String, String)>,
    pub removed_hotfixes: Vec<String>,
    pub removed_programs: Vec<Program>,
}

/// A socket on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConnection {
    /// `tcp` or `udp`.
    pub proto: String,
    pub local_addr: String,
    pub local_port: u16,
    pub remote_addr: String,
    pub remote_port: u16,
    pub state: String,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

/// A host's socket list as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionReport {
    pub collected_ms: i64,
    pub connections: Vec<NetConnection>,
    /// Why the list is not complete; `None` when it is.
    pub partial_reason: Option<String>,
}

/// A stored socket and the host it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConnection {
    pub host_id: String,
    pub connection: NetConnection,
    /// When the host's agent collected it.
    pub collected_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub host_id: Option<String>,
    /// Only connections whose remote address is in this network (a single address is a /32
    /// or /128).
    pub remote: Option<ipnet::IpNet>,
}

/// Everything the collector knows about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDetail {
    pub host: Host,
    /// `None` until the host's first inventory.
    pub inventory: Option<StoredInventory>,
    pub package_count: u64,
    pub hotfix_count: u64,
    pub program_count: u64,
    /// The latest package or update change the collector saw (Unix ms).
    pub last_change_seen_ms: Option<i64>,
    pub connection_count: u64,
    /// When the host's latest socket list was collected, and why it was partial.
    pub connections_collected_ms: Option<i64>,
    pub connections_partial: Option<String>,
    /// What the agent's full spool dropped, as it last said.
    pub spool_dropped: SpoolDropped,
}

/// Messages an agent dropped because its spool of unacknowledged messages was full: running
/// totals since the agent's spool was created. Findings and summaries are never among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolDropped {
    pub progress: u64,
    pub connections: u64,
    pub inventories: u64,
    /// When the agent last dropped a message; `None`: never.
    pub last_dropped_ms: Option<i64>,
}

/// A host's latest inventory facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInventory {
    pub os: OsFacts,
    pub collected_ms: i64,
    pub received_ms: i64,
    pub gaps: Vec<InventoryGap>,
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

/// An entry of the admin audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// The admin certificate's common name.
    pub actor: String,
    /// `sweep.start`, `sweep.cancel`, ...
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// An admin action to record in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// A botnet IP list as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpList {
    pub id: i64,
    pub source: String,
    /// 1, 2, ... per source.
    pub version: i64,
    pub file_name: String,
    pub format: String,
    pub sha256: String,
    pub imported_ms: i64,
    pub imported_by: String,
    pub entries: u64,
    pub bad_lines: u64,
    pub domains: u64,
    pub retired_ms: Option<i64>,
    pub retired_by: Option<String>,
}

impl IpList {
    /// `source vN`.
    pub fn label(&self) -> String {
        format!("{} v{}", self.source, self.version)
    }
}

/// A list about to be imported (its entries travel beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIpList {
    pub source: String,
    pub file_name: String,
    pub format: String,
    pub sha256: String,
    pub bad_lines: u64,
    pub domains: u64,
    /// Retire the source's earlier lists (a monthly list that replaces the last one).
    pub replace: bool,
    pub actor: String,
}

/// What applying a re-check's matches changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BotnetChanges {
    pub opened: u64,
    pub reopened: u64,
    pub resolved: u64,
}

/// A rule or IOC bundle as signed and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRecord {
    /// 0 before it is stored.
    pub id: i64,
    /// `rules` or `iocs`.
    pub kind: String,
    pub name: String,
    pub version: String,
    pub created_ms: i64,
    pub created_by: String,
    pub files: u64,
    pub items: u64,
    pub bytes: u64,
    /// The encoded payload and its signature, as agents get them.
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// What an agent said of a bundle kind: what it runs, and whether it took the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// `rules`, `iocs`, or empty when the agent could not even read the kind (bad signature).
    pub kind: String,
    /// The bundle offered (when refused).
    pub version: String,
    pub ok: bool,
    pub reason: String,
    pub active_version: String,
    pub active_since_ms: i64,
}

/// One host's bundles, as the collector last heard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostBundleState {
    pub host_id: String,
    pub online: bool,
    /// (version, since) per kind; version empty: the agent's own files.
    pub rules: Option<(String, i64)>,
    pub iocs: Option<(String, i64)>,
    /// The versions this host refused, per kind, and the last refusal's reason.
    pub refused_rules: String,
    pub refused_iocs: String,
    pub error: String,
    /// The version last put on the host's stream, per kind.
    pub offered_rules: String,
    pub offered_iocs: String,
}
