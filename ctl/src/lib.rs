//! The library side of `hygienectl`: the admin connection and listing output. It speaks the
//! protocol only (`hygiene-proto`); nothing of the collector is linked in.

pub mod config;
pub mod intel;
pub mod output;
pub mod sweep;
pub mod vuln;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hygiene_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use hygiene_proto::certs::{ADMIN_CERT_FILE, ADMIN_KEY_FILE, CA_CERT_FILE};
pub use hygiene_proto::format_ms;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The cause is said once: in the message, not again as a source.
    #[error("{path}: cannot read admin certificate material: {detail}")]
    Certs {
        path: PathBuf,
        detail: std::io::Error,
    },
    #[error("collector {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The collector's own message, once (a Status's Display repeats code and message, and
    /// as a source it would be printed twice).
    #[error("collector refused the call ({:?}): {}", .0.code(), .0.message())]
    Call(tonic::Status),
}

impl From<tonic::Status> for CtlError {
    fn from(status: tonic::Status) -> Self {
        CtlError::Call(status)
    }
}

/// The admin service client `hygienectl` calls.
pub type AdminClient = AdminServiceClient<Channel>;

/// How long an admin call may take, unless it is one that compiles or re-checks a fleet.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a publish or import may take: the collector compiles every rule (signature-base
/// takes seconds, much longer on a busy collector) or re-checks every host.
pub const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Connects to the collector's admin service with the admin certificate from `pki_dir`; each
/// call may take up to `timeout`.
pub async fn connect(
    collector: &str,
    pki_dir: &Path,
    timeout: Duration,
) -> Result<AdminClient, CtlError> {
    let read = |name: &str| {
        let path = pki_dir.join(name);
        std::fs::read(&path).map_err(|detail| CtlError::Certs { path, detail })
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(CA_CERT_FILE)?))
        .identity(Identity::from_pem(
            read(ADMIN_CERT_FILE)?,
            read(ADMIN_KEY_FILE)?,
        ));
    let connect_error = |detail: String| CtlError::Connect {
        url: collector.to_owned(),
        detail,
    };
    let channel = Endpoint::from_shared(collector.to_owned())
        .map_err(|e| connect_error(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| connect_error(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| connect_error(hygiene_proto::ErrorChain(&e).to_string()))?;
    Ok(AdminServiceClient::new(channel))
}

/// A host row of `hygienectl hosts list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostRow {
    pub host_id: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub ip_addresses: Vec<String>,
    pub agent_version: String,
    pub peer_address: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub online: bool,
    pub open_findings: u64,
    /// Open botnet list matches.
    pub botnet_matches: u64,
    /// never_swept, infected, cleaning, awaiting_verification, suspect, no_rules, outdated,
    /// clean or stale.
    pub status: String,
    /// With `--has-package` or `--package-below`: the package's installed versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub package_versions: Vec<String>,
    /// With `--removed`: when the host was decommissioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
}

/// `hosts list --has-package/--package-below`: the version each host has.
pub const HOST_PACKAGE_TABLE_COLUMNS: &[&str] = &[
    "host_id",
    "hostname",
    "os",
    "package_versions",
    "last_seen",
    "online",
    "status",
];

/// `hosts list --removed`: when each was decommissioned, if it was.
pub const HOST_REMOVED_TABLE_COLUMNS: &[&str] = &[
    "host_id",
    "hostname",
    "os",
    "last_seen",
    "status",
    "open_findings",
    "removed",
];

pub const HOST_TABLE_COLUMNS: &[&str] = &[
    "host_id",
    "hostname",
    "os",
    "ip_addresses",
    "last_seen",
    "online",
    "status",
    "open_findings",
    "botnet_matches",
];

impl From<hygiene_proto::v1::HostEntry> for HostRow {
    fn from(h: hygiene_proto::v1::HostEntry) -> Self {
        let os = if h.os_version.is_empty() {
            h.os_name
        } else {
            h.os_version
        };
        HostRow {
            host_id: h.host_id,
            hostname: h.hostname,
            os,
            kernel: h.kernel_version,
            arch: h.arch,
            ip_addresses: h.ip_addresses,
            agent_version: h.agent_version,
            peer_address: non_empty(h.peer_address),
            first_seen: format_ms(h.first_seen_ms),
            last_seen: format_ms(h.last_seen_ms),
            online: h.online,
            open_findings: h.open_findings,
            botnet_matches: h.botnet_matches,
            status: h.status,
            package_versions: h.package_versions,
            removed: h.removed_ms.map(format_ms),
        }
    }
}

/// A finding row of `hygienectl findings list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingRow {
    pub id: i64,
    pub host_id: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub kind: String,
    pub rule: Option<String>,
    pub namespace: Option<String>,
    pub ioc_comment: Option<String>,
    pub state: String,
    pub first_seen: String,
    pub last_seen: String,
    pub state_changed: String,
    /// The agent's quarantine entry while the file is quarantined.
    pub quarantine_id: Option<String>,
    /// Why the last quarantine or restore was not carried out.
    pub remediation_error: Option<String>,
    /// The sweep that last saw it.
    pub sweep_id: String,
    /// botnet_ip: the list that listed the address.
    pub list_id: Option<i64>,
    /// botnet_ip: which lists, which connections and processes.
    pub evidence: Option<String>,
}

/// A file with findings (`findings list --by-file`): every finding on one host's path with one
/// content, which a quarantine or restore moves together.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileRow {
    pub host_id: String,
    pub path: String,
    pub sha256: String,
    pub findings: usize,
    /// The findings' ids, states and rules (or IOC comments), in id order.
    pub ids: Vec<i64>,
    pub states: Vec<String>,
    pub rules: Vec<String>,
    pub last_seen: String,
}

pub const FILE_TABLE_COLUMNS: &[&str] = &[
    "host_id", "path", "sha256", "findings", "ids", "states", "rules",
];

impl FileRow {
    /// `rows` grouped by file, in the order files first appear; botnet matches (not files)
    /// are left out.
    pub fn group(rows: &[FindingRow]) -> Vec<FileRow> {
        let mut files: Vec<FileRow> = Vec::new();
        for f in rows.iter().filter(|f| f.kind != "botnet_ip") {
            let at = files
                .iter()
                .position(|g| g.host_id == f.host_id && g.path == f.path && g.sha256 == f.sha256);
            let file = match at {
                Some(i) => &mut files[i],
                None => {
                    files.push(FileRow {
                        host_id: f.host_id.clone(),
                        path: f.path.clone(),
                        sha256: f.sha256.clone(),
                        findings: 0,
                        ids: Vec::new(),
                        states: Vec::new(),
                        rules: Vec::new(),
                        last_seen: f.last_seen.clone(),
                    });
                    files.last_mut().expect("pushed")
                }
            };
            file.findings += 1;
            file.ids.push(f.id);
            if !file.states.contains(&f.state) {
                file.states.push(f.state.clone());
            }
            let rule = f
                .rule
                .clone()
                .or_else(|| f.ioc_comment.clone().map(|c| format!("IOC {c}")))
                .unwrap_or_default();
            if !rule.is_empty() && !file.rules.contains(&rule) {
                file.rules.push(rule);
            }
            if f.last_seen > file.last_seen {
                file.last_seen = f.last_seen.clone();
            }
        }
        files
    }
}

pub const FINDING_TABLE_COLUMNS: &[&str] = &[
    "id",
    "host_id",
    "state",
    "kind",
    "rule",
    "path",
    "sha256",
    "first_seen",
];

impl From<hygiene_proto::v1::FindingEntry> for FindingRow {
    fn from(f: hygiene_proto::v1::FindingEntry) -> Self {
        // A YARA match names its rule and namespace; a botnet match its listed network and how
        // it matched (host_address, egress_address, connection); a hash IOC its list comment.
        let has_rule = f.kind == "yara" || f.kind == "botnet_ip";
        let is_hash_ioc = f.kind == "hash_ioc";
        FindingRow {
            id: f.id,
            host_id: f.host_id,
            path: f.path,
            sha256: f.sha256,
            size: f.size,
            kind: f.kind,
            rule: if has_rule { non_empty(f.rule) } else { None },
            namespace: if has_rule {
                non_empty(f.namespace)
            } else {
                None
            },
            ioc_comment: is_hash_ioc.then_some(f.ioc_comment),
            list_id: (f.list_id != 0).then_some(f.list_id),
            evidence: non_empty(f.evidence),
            state: f.state,
            first_seen: format_ms(f.first_seen_ms),
            last_seen: format_ms(f.last_seen_ms),
            state_changed: format_ms(f.state_changed_ms),
            quarantine_id: non_empty(f.quarantine_id),
            remediation_error: non_empty(f.remediation_error),
            sweep_id: f.sweep_id,
        }
    }
}

/// A line of `hygienectl findings history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingChangeRow {
    pub at: String,
    /// The admin certificate's name, `agent` or `collector`.
    pub actor: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub note: String,
}

pub const FINDING_HISTORY_TABLE_COLUMNS: &[&str] =
    &["at", "actor", "from_state", "to_state", "note"];

impl From<hygiene_proto::v1::FindingChange> for FindingChangeRow {
    fn from(c: hygiene_proto::v1::FindingChange) -> Self {
        FindingChangeRow {
            at: format_ms(c.at_ms),
            actor: c.actor,
            from_state: non_empty(c.from_state),
            to_state: c.to_state,
            note: c.note,
        }
    }
}

/// `hygienectl progress`: hosts per status, the share verified clean, and the timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgressView {
    pub hosts: u32,
    /// Status -> hosts, every status named.
    pub by_status: serde_json::Map<String, serde_json::Value>,
    /// Hosts clean over all hosts, 0-1.
    pub verified_clean_share: f64,
    pub timeline: Vec<ProgressDayRow>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgressDayRow {
    pub day: String,
    pub by_status: serde_json::Map<String, serde_json::Value>,
    pub clean_share: f64,
}

fn status_map(
    counts: Vec<hygiene_proto::v1::StatusCount>,
) -> (serde_json::Map<String, serde_json::Value>, u32, u32) {
    let total = counts.iter().map(|c| c.hosts).sum();
    let clean = counts
        .iter()
        .filter(|c| c.status == "clean")
        .map(|c| c.hosts)
        .sum();
    let map = counts
        .into_iter()
        .map(|c| (c.status, serde_json::Value::from(c.hosts)))
        .collect();
    (map, total, clean)
}

fn share(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

impl From<hygiene_proto::v1::ProgressResponse> for ProgressView {
    fn from(p: hygiene_proto::v1::ProgressResponse) -> Self {
        let (by_status, _, _) = status_map(p.by_status);
        ProgressView {
            hosts: p.hosts,
            by_status,
            verified_clean_share: p.verified_clean_share,
            timeline: p
                .timeline
                .into_iter()
                .map(|d| {
                    let (by_status, total, clean) = status_map(d.by_status);
                    ProgressDayRow {
                        day: d.day,
                        by_status,
                        clean_share: share(clean, total),
                    }
                })
                .collect(),
        }
    }
}

impl ProgressView {
    /// The timeline as flat rows (CSV and tables): day, then one column per status.
    pub fn day_rows(&self) -> Vec<serde_json::Value> {
        self.timeline
            .iter()
            .map(|d| {
                let mut row = serde_json::Map::new();
                row.insert("day".into(), d.day.clone().into());
                for (status, count) in &d.by_status {
                    row.insert(status.clone(), count.clone());
                }
                row.insert(
                    "clean_share".into(),
                    ((d.clean_share * 1000.0).round() / 1000.0).into(),
                );
                serde_json::Value::Object(row)
            })
            .collect()
    }
}

/// A line of `hygienectl updates list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpdateRow {
    pub kb: String,
    pub title: String,
    pub installed_on: Option<String>,
}

impl From<hygiene_proto::v1::UpdateEntry> for UpdateRow {
    fn from(u: hygiene_proto::v1::UpdateEntry) -> Self {
        UpdateRow {
            kb: u.kb,
            title: u.title,
            installed_on: non_empty(u.installed_on),
        }
    }
}

/// A line of `hygienectl programs list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgramRow {
    pub name: String,
    pub version: String,
    pub publisher: String,
}

impl From<hygiene_proto::v1::ProgramEntry> for ProgramRow {
    fn from(p: hygiene_proto::v1::ProgramEntry) -> Self {
        ProgramRow {
            name: p.name,
            version: p.version,
            publisher: p.publisher,
        }
    }
}

/// A package row of `hygienectl packages list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackageRow {
    pub host_id: String,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: Option<String>,
    /// When the collector first saw this version on the host.
    pub installed: String,
    /// Whose version ordering applies: `dpkg`, `rpm`, or unset when the agent did not say.
    pub manager: Option<String>,
}

pub const PACKAGE_TABLE_COLUMNS: &[&str] = &["name", "version", "arch", "source", "installed"];

impl From<hygiene_proto::v1::PackageEntry> for PackageRow {
    fn from(p: hygiene_proto::v1::PackageEntry) -> Self {
        PackageRow {
            host_id: p.host_id,
            name: p.name,
            version: p.version,
            arch: p.arch,
            source: non_empty(p.source),
            installed: format_ms(p.installed_ms),
            manager: non_empty(p.manager),
        }
    }
}

/// `hygienectl hosts show`: one host's facts and the state of its inventory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostDetailRow {
    pub host_id: String,
    pub hostname: String,
    /// The host's place in the cleanup, and why.
    pub status: String,
    pub status_reason: String,
    /// The latest sweep carried out whole, when it started, and the rule and IOC sets it
    /// ran with (`rule_count` unset: the agent did not say).
    pub last_sweep: Option<String>,
    pub last_sweep_started: Option<String>,
    pub rules_version: Option<String>,
    pub rule_count: Option<u64>,
    pub iocs_version: Option<String>,
    pub ioc_count: Option<u64>,
    pub online: bool,
    pub last_seen: String,
    pub peer_address: Option<String>,
    pub ip_addresses: Vec<String>,
    pub agent_version: String,
    /// `linux` or `windows`; unset until the first inventory.
    pub os_family: Option<String>,
    /// os-release's pretty name, or Windows' product name.
    pub os: String,
    /// os-release's version id, or Windows' display version (22H2).
    pub os_version: String,
    /// Windows: the full build (10.0.19045.3930).
    pub build: Option<String>,
    pub edition: Option<String>,
    pub installation_type: Option<String>,
    pub kernel: String,
    pub arch: String,
    pub boot_time: Option<String>,
    pub inventory_collected: Option<String>,
    /// Parts of the latest inventory the agent could not collect, with the reason.
    pub inventory_partial: Vec<String>,
    pub packages: u64,
    pub hotfixes: u64,
    pub programs: u64,
    /// When the host's package database last changed, as the host records it.
    pub last_package_change: Option<String>,
    /// The latest package or update change the collector saw.
    pub last_change_seen: Option<String>,
    pub connections: u64,
    pub connections_collected: Option<String>,
    pub connections_partial: Option<String>,
    pub open_findings: u64,
    pub botnet_matches: u64,
    /// Missing Microsoft updates: `missing`, `not_assessed`, `up_to_date` or
    /// `not_applicable`.
    pub vuln_state: String,
    pub missing_cves: u64,
    pub missing_critical: u64,
    pub missing_important: u64,
    /// The updates to install.
    pub kbs_to_install: Vec<String>,
    /// Reports the agent dropped while its spool was full (never findings or summaries).
    pub spool_dropped_progress: u64,
    pub spool_dropped_connections: u64,
    pub spool_dropped_inventories: u64,
    pub spool_dropped_last: Option<String>,
}

impl From<hygiene_proto::v1::GetHostResponse> for HostDetailRow {
    fn from(d: hygiene_proto::v1::GetHostResponse) -> Self {
        let h = d.host.unwrap_or_default();
        let i = d.inventory;
        let inv = |f: fn(&hygiene_proto::v1::HostInventory) -> &String| {
            i.as_ref().map(f).cloned().and_then(non_empty)
        };
        let windows = i.as_ref().is_some_and(|i| i.family == "windows");
        let ms = |ms: i64| (ms != 0).then(|| format_ms(ms));
        let count = |n: i64| u64::try_from(n).ok();
        HostDetailRow {
            host_id: h.host_id,
            hostname: h.hostname,
            status: h.status,
            status_reason: d.status_reason,
            last_sweep: non_empty(d.last_sweep_id),
            last_sweep_started: ms(d.last_sweep_started_ms),
            rules_version: non_empty(d.rules_version),
            rule_count: count(d.rule_count),
            iocs_version: non_empty(d.iocs_version),
            ioc_count: count(d.ioc_count),
            online: h.online,
            last_seen: format_ms(h.last_seen_ms),
            peer_address: non_empty(h.peer_address),
            ip_addresses: h.ip_addresses,
            agent_version: h.agent_version,
            os_family: inv(|i| &i.family),
            os: if windows {
                inv(|i| &i.product_name)
            } else {
                inv(|i| &i.pretty_name)
            }
            .unwrap_or(h.os_name),
            os_version: if windows {
                inv(|i| &i.display_version)
            } else {
                inv(|i| &i.version_id)
            }
            .unwrap_or(h.os_version),
            build: inv(|i| &i.build),
            edition: inv(|i| &i.edition),
            installation_type: inv(|i| &i.installation_type),
            kernel: inv(|i| &i.kernel).unwrap_or(h.kernel_version),
            arch: inv(|i| &i.arch).unwrap_or(h.arch),
            boot_time: i.as_ref().and_then(|i| ms(i.boot_time * 1000)),
            inventory_collected: i.as_ref().and_then(|i| ms(i.collected_ms)),
            inventory_partial: i.as_ref().map(|i| i.partial.clone()).unwrap_or_default(),
            packages: d.package_count,
            hotfixes: d.hotfix_count,
            programs: d.program_count,
            last_package_change: i.as_ref().and_then(|i| ms(i.last_package_change * 1000)),
            last_change_seen: ms(d.last_change_seen_ms),
            connections: d.connection_count,
            connections_collected: ms(d.connections_collected_ms),
            connections_partial: non_empty(d.connections_partial),
            open_findings: h.open_findings,
            botnet_matches: h.botnet_matches,
            vuln_state: d.vuln.as_ref().map(|v| v.state.clone()).unwrap_or_default(),
            missing_cves: d.vuln.as_ref().map_or(0, |v| v.cves),
            missing_critical: d.vuln.as_ref().map_or(0, |v| v.critical),
            missing_important: d.vuln.as_ref().map_or(0, |v| v.important),
            kbs_to_install: d.vuln.map(|v| v.kbs).unwrap_or_default(),
            spool_dropped_progress: d.spool_dropped_progress,
            spool_dropped_connections: d.spool_dropped_connections,
            spool_dropped_inventories: d.spool_dropped_inventories,
            spool_dropped_last: ms(d.spool_dropped_ms),
        }
    }
}

/// A socket row of `hygienectl connections list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionRow {
    pub host_id: String,
    pub proto: String,
    pub local_addr: String,
    pub local_port: u32,
    pub remote_addr: String,
    pub remote_port: u32,
    pub state: String,
    pub pid: Option<u32>,
    pub process: Option<String>,
    /// When the host's agent collected the list.
    pub collected: String,
}

pub const CONNECTION_TABLE_COLUMNS: &[&str] = &[
    "host_id",
    "proto",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "state",
    "pid",
    "process",
];

impl From<hygiene_proto::v1::ConnectionEntry> for ConnectionRow {
    fn from(c: hygiene_proto::v1::ConnectionEntry) -> Self {
        ConnectionRow {
            host_id: c.host_id,
            proto: c.proto,
            local_addr: c.local_addr,
            local_port: c.local_port,
            remote_addr: c.remote_addr,
            remote_port: c.remote_port,
            state: c.state,
            pid: (c.pid != 0).then_some(c.pid),
            process: non_empty(c.process),
            collected: format_ms(c.collected_ms),
        }
    }
}

/// What `hygienectl enroll create` prints (the contract: exactly these fields in JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnrollCreatedRow {
    pub id: i64,
    pub token: String,
    pub ca_fingerprint: String,
}

/// A row of `hygienectl enroll list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnrollTokenRow {
    pub id: i64,
    pub label: String,
    pub state: String,
    pub uses: u64,
    pub uses_allowed: Option<u64>,
    pub expires: Option<String>,
    pub group: Option<String>,
    pub created: String,
    pub created_by: String,
    pub revoked: Option<String>,
    pub revoked_by: Option<String>,
}

pub const ENROLL_TOKEN_TABLE_COLUMNS: &[&str] = &[
    "id",
    "label",
    "state",
    "uses",
    "uses_allowed",
    "expires",
    "group",
    "created",
    "created_by",
];

impl From<hygiene_proto::v1::EnrollTokenEntry> for EnrollTokenRow {
    fn from(t: hygiene_proto::v1::EnrollTokenEntry) -> Self {
        EnrollTokenRow {
            id: t.id,
            label: t.label,
            state: t.state,
            uses: t.uses,
            uses_allowed: t.uses_allowed,
            expires: t.expires_ms.map(format_ms),
            group: non_empty(t.group),
            created: format_ms(t.created_ms),
            created_by: t.created_by,
            revoked: t.revoked_ms.map(format_ms),
            revoked_by: non_empty(t.revoked_by),
        }
    }
}

/// A row of `hygienectl refused list`: refusals of one kind from one address with one
/// certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefusalRow {
    pub last: String,
    pub kind: String,
    pub count: u64,
    pub peer: Option<String>,
    pub subject: Option<String>,
    pub serial: Option<String>,
    pub reason: String,
    pub first: String,
}

pub const REFUSAL_TABLE_COLUMNS: &[&str] = &[
    "last", "kind", "count", "peer", "subject", "serial", "reason",
];

impl From<hygiene_proto::v1::RefusalGroup> for RefusalRow {
    fn from(g: hygiene_proto::v1::RefusalGroup) -> Self {
        RefusalRow {
            last: format_ms(g.last_ms),
            kind: g.kind,
            count: g.count,
            peer: non_empty(g.peer),
            subject: non_empty(g.subject),
            serial: non_empty(g.serial),
            reason: g.reason,
            first: format_ms(g.first_ms),
        }
    }
}

/// A row of `hygienectl replicas list`: one collector replica of the site.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaRow {
    pub listen: String,
    pub alive: bool,
    pub hosts: u32,
    pub started: String,
    pub seen: String,
    pub id: String,
}

pub const REPLICA_TABLE_COLUMNS: &[&str] = &["listen", "alive", "hosts", "started", "seen", "id"];

impl From<hygiene_proto::v1::Replica> for ReplicaRow {
    fn from(r: hygiene_proto::v1::Replica) -> Self {
        ReplicaRow {
            listen: r.listen,
            alive: r.alive,
            hosts: r.connected_hosts,
            started: format_ms(r.started_ms),
            seen: format_ms(r.seen_ms),
            id: r.id,
        }
    }
}

/// The totals line of `hygienectl refused list`, for stderr: `12 refused since ...: ...`.
pub fn refusal_totals(response: &hygiene_proto::v1::ListRefusalsResponse) -> String {
    let all: u64 = response.totals.iter().map(|t| t.count).sum();
    let kinds: Vec<String> = response
        .totals
        .iter()
        .filter(|t| t.count > 0)
        .map(|t| format!("{} {}", t.kind, t.count))
        .collect();
    let mut line = format!("{all} refused since {}", format_ms(response.since_ms));
    if !kinds.is_empty() {
        line.push_str(&format!(" ({})", kinds.join(", ")));
    }
    line
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}
