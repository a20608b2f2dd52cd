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
    /// botnet matches × 1,000,000 + open malware findings × 1,000 + missing critical patches
    /// (each capped at 999).
    pub score: u64,
    pub botnet_matches: u64,
    pub open_findings: u64,
    pub missing_critical: u64,
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
    "missing_critical",
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
            missing_critical: h.missing_critical,
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

/// A published bundle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub version: String,
    pub created: String,
    pub created_by: String,
    pub files: u64,
    /// Rules compiled, or hashes listed.
    pub items: u64,
    pub bytes: u64,
}

impl From<v1::Bundle> for BundleRow {
    fn from(b: v1::Bundle) -> Self {
        BundleRow {
            id: b.id,
            kind: b.kind,
            name: b.name,
            version: b.version,
            created: format_ms(b.created_ms),
            created_by: b.created_by,
            files: b.files,
            items: b.items,
            bytes: b.bytes,
        }
    }
}

/// One host's rules and IOCs (`rules status`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RulesStatusRow {
    pub host_id: String,
    pub online: bool,
    /// The rule bundle it runs (`null`: its own configured files).
    pub rules_version: Option<String>,
    pub rules_since: Option<String>,
    /// Whether it runs the current rule bundle (true when none is published).
    pub rules_current: bool,
    pub iocs_version: Option<String>,
    pub iocs_since: Option<String>,
    pub iocs_current: bool,
    /// Why it refused the last bundle.
    pub error: Option<String>,
    /// Where the current bundle's rollout stands on the host: `no_bundle`, `queued`, `sent`,
    /// `applied`, or `refused (why)`.
    pub rules: String,
    pub iocs: String,
}

pub const RULES_STATUS_TABLE_COLUMNS: &[&str] = &[
    "host_id",
    "online",
    "rules",
    "iocs",
    "rules_version",
    "rules_since",
    "iocs_version",
];

impl RulesStatusRow {
    /// Per kind, how many hosts are in each rollout state: `rules: 3 applied, 1 refused`.
    pub fn summary(rows: &[RulesStatusRow]) -> Vec<String> {
        let mut lines = Vec::new();
        for (kind, pick) in [
            (
                "rules",
                (|r: &RulesStatusRow| &r.rules) as fn(&RulesStatusRow) -> &String,
            ),
            ("iocs", |r: &RulesStatusRow| &r.iocs),
        ] {
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for row in rows {
                let state = pick(row).split(' ').next().unwrap_or_default();
                match counts.iter_mut().find(|(s, _)| *s == state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((state, 1)),
                }
            }
            let order = ["applied", "sent", "queued", "refused", "no_bundle"];
            counts.sort_by_key(|(s, _)| order.iter().position(|o| o == s).unwrap_or(9));
            let text: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            lines.push(format!("{kind}: {}", text.join(", ")));
        }
        lines
    }
}

fn state_text(state: String, refused: String) -> String {
    if refused.is_empty() {
        state
    } else {
        format!("{state} ({refused})")
    }
}

impl From<v1::HostBundles> for RulesStatusRow {
    fn from(h: v1::HostBundles) -> Self {
        let since = |ms: i64| (ms != 0).then(|| format_ms(ms));
        RulesStatusRow {
            host_id: h.host_id,
            online: h.online,
            rules_version: non_empty(h.rules_version),
            rules_since: since(h.rules_since_ms),
            rules_current: h.rules_current,
            iocs_version: non_empty(h.iocs_version),
            iocs_since: since(h.iocs_since_ms),
            iocs_current: h.iocs_current,
            error: non_empty(h.error),
            rules: state_text(h.rules_state, h.rules_refused),
            iocs: state_text(h.iocs_state, h.iocs_refused),
        }
    }
}

/// The files a `rules publish` argument names: a file, or the `.yar`/`.yara` files under a
/// directory, sorted.
pub fn rule_sources(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<v1::SourceFile>> {
    let mut found = Vec::new();
    for path in paths {
        collect(path, true, &mut found)?;
    }
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let content = std::fs::read(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(v1::SourceFile {
                path: path.display().to_string(),
                content,
            })
        })
        .collect()
}

fn collect(
    path: &std::path::Path,
    named: bool,
    found: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), false, found)?;
        }
    } else {
        let rules = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("yar") || e.eq_ignore_ascii_case("yara"));
        // A file named on the command line goes in whatever its name; the collector says
        // what it thinks of it.
        if named || rules {
            found.push(path.to_path_buf());
        }
    }
    Ok(())
}

/// A line of `allow list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllowRow {
    pub id: i64,
    /// In force now (not removed, not expired).
    pub active: bool,
    /// sha256, rule or path.
    pub kind: String,
    pub value: String,
    /// `null`: every host.
    pub host_id: Option<String>,
    pub note: String,
    pub created: String,
    pub created_by: String,
    pub expires: Option<String>,
    pub removed: Option<String>,
    pub removed_by: Option<String>,
}

pub const ALLOW_TABLE_COLUMNS: &[&str] = &[
    "id",
    "active",
    "kind",
    "value",
    "host_id",
    "note",
    "created_by",
    "expires",
];

impl From<v1::AllowEntry> for AllowRow {
    fn from(e: v1::AllowEntry) -> Self {
        let when = |ms: i64| (ms != 0).then(|| format_ms(ms));
        AllowRow {
            id: e.id,
            active: e.active,
            kind: e.kind,
            value: e.value,
            host_id: non_empty(e.host_id),
            note: e.note,
            created: format_ms(e.created_ms),
            created_by: e.created_by,
            expires: when(e.expires_ms),
            removed: when(e.removed_ms),
            removed_by: non_empty(e.removed_by),
        }
    }
}
