//! The order in which to clean hosts (`hygienectl hosts list --priority`).
//!
//! The score ranks by three counts in turn, each capped at 999 so that one never spills into
//! the next:
//!
//! ```text
//! score = botnet_matches × 1,000,000 + open_malware_findings × 1,000 + missing_critical
//! ```
//!
//! - `botnet_matches`: open `botnet_ip` findings (the directive: hosts on the CERT's botnet list
//!   are cleaned first);
//! - `open_malware_findings`: open or reopened YARA and hash-IOC findings;
//! - `missing_critical`: critical CVEs of Microsoft's imported documents whose fix the host
//!   lacks (see [`crate::vuln`]).
//!
//! Equal scores are ordered by status (infected, suspect, cleaning, awaiting verification, no
//! rules, never swept, outdated, stale, clean: a host nobody has truly looked at before one
//! found clean), then by host id.

use std::collections::HashMap;

use crate::findings::HostStatus;
use crate::model::{Finding, Host};

/// Each count's weight in the score.
const BOTNET_WEIGHT: u64 = 1_000_000;
const MALWARE_WEIGHT: u64 = 1_000;
const PATCH_WEIGHT: u64 = 1;
const CAP: u64 = 999;

/// A host's place in the cleaning order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedHost {
    pub rank: u32,
    pub host_id: String,
    pub hostname: String,
    pub status: HostStatus,
    pub score: u64,
    pub botnet_matches: u64,
    pub open_findings: u64,
    /// Critical CVEs whose fix the host lacks.
    pub missing_critical: u64,
    pub online: bool,
    pub last_seen_ms: i64,
    /// Why it ranks where it does.
    pub reason: String,
}

pub fn score(botnet_matches: u64, open_findings: u64, missing_critical: u64) -> u64 {
    botnet_matches.min(CAP) * BOTNET_WEIGHT
        + open_findings.min(CAP) * MALWARE_WEIGHT
        + missing_critical.min(CAP) * PATCH_WEIGHT
}

fn status_order(status: HostStatus) -> u8 {
    match status {
        HostStatus::Infected => 0,
        HostStatus::Suspect => 1,
        HostStatus::Cleaning => 2,
        HostStatus::AwaitingVerification => 3,
        HostStatus::NoRules => 4,
        HostStatus::NeverSwept => 5,
        HostStatus::Outdated => 6,
        HostStatus::Stale => 7,
        HostStatus::Clean => 8,
    }
}

/// Ranks `hosts`; `botnet` holds the open `botnet_ip` findings (of any host),
/// `missing_critical` each host's count of critical CVEs it lacks the fix for.
pub fn rank(
    hosts: Vec<(Host, HostStatus)>,
    botnet: &[Finding],
    missing_critical: &HashMap<String, u64>,
) -> Vec<RankedHost> {
    let mut ranked: Vec<RankedHost> = hosts
        .into_iter()
        .map(|(host, status)| {
            let matches: Vec<&Finding> = botnet
                .iter()
                .filter(|f| f.host_id == host.host_id && f.state.is_open())
                .collect();
            let botnet_matches = matches.len() as u64;
            let critical = missing_critical.get(&host.host_id).copied().unwrap_or(0);
            RankedHost {
                rank: 0,
                score: score(botnet_matches, host.open_findings, critical),
                reason: reason(&matches, host.open_findings, critical, status),
                botnet_matches,
                open_findings: host.open_findings,
                missing_critical: critical,
                online: host.online,
                last_seen_ms: host.last_seen_ms,
                host_id: host.host_id,
                hostname: host.hostname,
                status,
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(status_order(a.status).cmp(&status_order(b.status)))
            .then(a.host_id.cmp(&b.host_id))
    });
    for (i, host) in ranked.iter_mut().enumerate() {
        host.rank = i as u32 + 1;
    }
    ranked
}

fn reason(
    botnet: &[&Finding],
    open_findings: u64,
    missing_critical: u64,
    status: HostStatus,
) -> String {
    let mut parts = Vec::new();
    if !botnet.is_empty() {
        let listed: Vec<String> = botnet
            .iter()
            .map(|f| {
                let via = match f.namespace.as_str() {
                    "host_address" => "address",
                    "egress_address" => "egress",
                    "connection" => "connection to",
                    other => other,
                };
                match f.list_id {
                    Some(list) => format!("{via} {} (list {list})", f.path),
                    None => format!("{via} {}", f.path),
                }
            })
            .collect();
        parts.push(format!(
            "{} botnet match{}: {}",
            botnet.len(),
            if botnet.len() == 1 { "" } else { "es" },
            listed.join(", ")
        ));
    }
    if open_findings > 0 {
        parts.push(format!(
            "{open_findings} open malware finding{}",
            if open_findings == 1 { "" } else { "s" }
        ));
    }
    if missing_critical > 0 {
        parts.push(format!(
            "{missing_critical} critical CVE{} unpatched",
            if missing_critical == 1 { "" } else { "s" }
        ));
    }
    if parts.is_empty() {
        parts.push("nothing open".into());
    }
    parts.push(format!("status {status}"));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{FindingState, HostCleanup};
    use crate::model::FindingKind;

    fn host(id: &str, open_findings: u64) -> Host {
        Host {
            host_id: id.into(),
            removed_ms: None,
            hostname: id.into(),
            os_name: String::new(),
            os_version: String::new(),
            kernel_version: String::new(),
            arch: String::new(),
            ip_addresses: Vec::new(),
            agent_version: String::new(),
            peer_address: None,
            first_seen_ms: 0,
            last_seen_ms: 0,
            online: true,
            open_findings,
            botnet_matches: 0,
            cleanup: HostCleanup::default(),
            package_versions: Vec::new(),
        }
    }

    fn botnet(host: &str, via: &str, address: &str, state: FindingState) -> Finding {
        Finding {
            id: 1,
            host_id: host.into(),
            kind: FindingKind::BotnetIp,
            path: address.into(),
            sha256: String::new(),
            size: 0,
            rule: format!("{address}/32"),
            namespace: via.into(),
            ioc_comment: String::new(),
            state,
            first_seen_ms: 0,
            last_seen_ms: 0,
            path_raw: None,
            state_changed_ms: 0,
            quarantine_id: None,
            remediation_error: None,
            restore_requested_ms: None,
            sweep_id: String::new(),
            list_id: Some(3),
            evidence: String::new(),
        }
    }

    #[test]
    fn botnet_matches_rank_before_malware_and_malware_before_nothing() {
        let hosts = vec![
            (host("a-clean", 0), HostStatus::Clean),
            (host("b-malware", 40), HostStatus::Infected),
            (host("c-botnet", 0), HostStatus::Suspect),
            (host("d-never", 0), HostStatus::NeverSwept),
            (host("e-both", 1), HostStatus::Infected),
        ];
        let findings = vec![
            botnet(
                "c-botnet",
                "egress_address",
                "192.0.2.44",
                FindingState::Open,
            ),
            botnet(
                "e-both",
                "connection",
                "198.51.100.9",
                FindingState::Reopened,
            ),
            // Resolved matches do not count.
            botnet(
                "a-clean",
                "connection",
                "198.51.100.9",
                FindingState::Resolved,
            ),
        ];
        let patches = HashMap::from([("a-clean".to_owned(), 3), ("d-never".to_owned(), 2000)]);
        let ranked = rank(hosts, &findings, &patches);
        let order: Vec<(&str, u64)> = ranked
            .iter()
            .map(|r| (r.host_id.as_str(), r.score))
            .collect();
        assert_eq!(
            order,
            [
                ("e-both", 1_001_000),
                ("c-botnet", 1_000_000),
                ("b-malware", 40_000),
                ("d-never", 999),
                ("a-clean", 3),
            ]
        );
        assert_eq!(ranked[0].rank, 1);
        assert_eq!(
            ranked[0].reason,
            "1 botnet match: connection to 198.51.100.9 (list 3); 1 open malware finding; status infected"
        );
        assert_eq!(
            ranked[1].reason,
            "1 botnet match: egress 192.0.2.44 (list 3); status suspect"
        );
        assert_eq!(ranked[4].reason, "3 critical CVEs unpatched; status clean");
        // A thousand malware findings never outweigh one botnet match, nor a thousand
        // missing patches one malware finding.
        assert!(score(1, 0, 0) > score(0, 5000, 5000));
        assert!(score(0, 1, 0) > score(0, 0, 5000));
    }
}
