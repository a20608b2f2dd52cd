//! Rows of `hygienectl intel ...` and `hosts list --priority`.

use hygiene_proto::v1;

use super::{format_ms, non_empty};

/// A botnet IP list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IpListRow {
    pub id: i64,
    pub source: String,
    pub version: i64,
    /// `active` or `retired`.
    pub state: String,
    pub file_name: String,
    pub format: String,
    pub sha256: String,
    pub imported: String,
    pub imported_by: String,
    pub entries: u64,
    pub bad_lines: u64,
    pub domains: u64,
    pub retired: Option<String>,
    pub retired_by: Option<String>,
}

pub const IP_LIST_TABLE_COLUMNS: &[&str] = &[
    "id",
    "source",
    "version",
    "state",
    "imported",
    "entries",
    "bad_lines",
    "domains",
    "file_name",
];

impl From<v1::IpList> for IpListRow {
    fn from(l: v1::IpList) -> Self {
        IpListRow {
            id: l.id,
            source: l.source,
            version: l.version,
            state: if l.retired_ms == 0 {
                "active"
            } else {
                "retired"
            }
            .to_owned(),
            file_name: l.file_name,
            format: l.format,
            sha256: l.sha256,
            imported: format_ms(l.imported_ms),
            imported_by: l.imported_by,
            entries: l.entries,
            bad_lines: l.bad_lines,
            domains: l.domains,
            retired: (l.retired_ms != 0).then(|| format_ms(l.retired_ms)),
            retired_by: non_empty(l.retired_by),
        }
    }
}

/// A host in cleaning order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PriorityRow {
    pub rank: u32,
    pub host_id: String,
    pub hostname: String,
    pub status: String,
    /// botnet matches × 1,000,000 + open malware findings × 1,000 (each capped at 999).
    pub score: u64,
    pub botnet_matches: u64,
    pub open_findings: u64,
    pub online: bool,
    pub last_seen: String,
    /// Why the host ranks where it does.
    pub reason: String,
}

pub const PRIORITY_TABLE_COLUMNS: &[&str] = &[
    "rank",
    "host_id",
    "score",
    "botnet_matches",
    "open_findings",
    "status",
    "reason",
];

impl From<v1::PriorityHost> for PriorityRow {
    fn from(h: v1::PriorityHost) -> Self {
        PriorityRow {
            rank: h.rank,
            host_id: h.host_id,
            hostname: h.hostname,
            status: h.status,
            score: h.score,
            botnet_matches: h.botnet_matches,
            open_findings: h.open_findings,
            online: h.online,
            last_seen: format_ms(h.last_seen_ms),
            reason: h.reason,
        }
    }
}

/// The re-check an import or removal set off, for stderr.
pub fn describe_recheck(r: &v1::RecheckSummary) -> String {
    format!(
        "re-checked {} hosts in {} ms: {} on a list; {} matches new, {} again, {} resolved",
        r.hosts, r.elapsed_ms, r.matched_hosts, r.opened, r.reopened, r.resolved
    )
}
