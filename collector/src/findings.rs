//! The cleanup lifecycle: a finding's states and who may move it where, and a host's status
//! derived from its findings and sweeps.
//!
//! ```text
//!  found ──▶ open ──quarantine──▶ quarantine_requested ──agent moved it──▶ quarantined
//!             ▲                      │ agent refused (changed, a link, gone)  │ a sweep finished after
//!             └──────────────────────┘                                        │ it no longer finds it
//!  any ──mark false_positive (note)──▶ false_positive                          ▼
//!  resolved / false_positive (gone) ──seen again──▶ reopened ◀──────────── resolved
//! ```
//!
//! `resolved` is earned, never declared: only a sweep of the host that finished after the
//! remediation, covered the file's path and no longer reported it resolves a finding.

use std::fmt;

/// A finding's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingState {
    Open,
    QuarantineRequested,
    Quarantined,
    Resolved,
    FalsePositive,
    Reopened,
}

impl FindingState {
    pub const ALL: [FindingState; 6] = [
        FindingState::Open,
        FindingState::QuarantineRequested,
        FindingState::Quarantined,
        FindingState::Resolved,
        FindingState::FalsePositive,
        FindingState::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::Open => "open",
            FindingState::QuarantineRequested => "quarantine_requested",
            FindingState::Quarantined => "quarantined",
            FindingState::Resolved => "resolved",
            FindingState::FalsePositive => "false_positive",
            FindingState::Reopened => "reopened",
        }
    }

    pub fn parse(text: &str) -> Option<FindingState> {
        FindingState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Open or reopened: the host is infected while it has one.
    pub fn is_open(self) -> bool {
        matches!(self, FindingState::Open | FindingState::Reopened)
    }

    /// States a later sweep that no longer finds the file resolves.
    pub fn awaits_verification(self) -> bool {
        matches!(
            self,
            FindingState::Open
                | FindingState::Reopened
                | FindingState::QuarantineRequested
                | FindingState::Quarantined
        )
    }
}

impl fmt::Display for FindingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an admin asks of a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminChange {
    Quarantine,
    Restore,
    /// Set a verdict: false_positive (a note is required) or open (take a verdict back).
    Mark(FindingState),
}

/// Where an admin change takes a finding from `from`, or why it cannot. `has_copy`: the
/// agent holds the finding's file in its quarantine (it was moved, and not restored since).
pub fn admin_transition(
    from: FindingState,
    change: &AdminChange,
    note: &str,
    has_copy: bool,
) -> Result<FindingState, String> {
    use FindingState::*;
    match change {
        AdminChange::Quarantine => match from {
            // Asking again sends the order again (the agent answers for a file it already has).
            Open | Reopened | QuarantineRequested => Ok(QuarantineRequested),
            other => Err(format!(
                "the finding is {other}: only open or reopened findings can be quarantined"
            )),
        },
        // The state moves when the agent reports the file back in place. A file found to be
        // a false positive long after its quarantine was verified is still in the quarantine.
        AdminChange::Restore => match from {
            Quarantined => Ok(Quarantined),
            Resolved | FalsePositive if has_copy => Ok(from),
            other => Err(format!(
                "the finding is {other} and its file is not in the agent's quarantine: nothing to restore"
            )),
        },
        AdminChange::Mark(FalsePositive) => {
            if note.trim().is_empty() {
                Err("a false positive needs a note saying why (--note)".into())
            } else if from == FalsePositive {
                Err("the finding is already a false positive".into())
            } else {
                Ok(FalsePositive)
            }
        }
        AdminChange::Mark(Open) => match from {
            FalsePositive => Ok(Open),
            other => Err(format!(
                "the finding is {other}: only a false positive can be taken back to open"
            )),
        },
        AdminChange::Mark(Resolved) => Err(
            "resolved is earned, not declared: a sweep of the host that no longer finds the file resolves it"
                .into(),
        ),
        AdminChange::Mark(other) => Err(format!(
            "{other} is set by the cleanup itself; mark takes false_positive or open"
        )),
    }
}

/// What an agent reported of a quarantine or restore of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemediationOutcome {
    Quarantined,
    QuarantineRefused,
    Restored,
    RestoreRefused,
}

/// The new state of each finding on a file when the agent reports `outcome` for that file;
/// `None`: the finding stays as it is. A quarantine and a restore act on the file, so every
/// finding on it (host, path, SHA-256) moves together.
pub fn after_remediation(from: FindingState, outcome: RemediationOutcome) -> Option<FindingState> {
    use FindingState as F;
    use RemediationOutcome as R;
    match (outcome, from) {
        (R::Quarantined, F::Open | F::Reopened | F::QuarantineRequested) => Some(F::Quarantined),
        (R::QuarantineRefused, F::QuarantineRequested) => Some(F::Open),
        // The file is back where it was: what matched it matches it again, unless an admin
        // said it is a false positive.
        (R::Restored, F::Quarantined | F::Resolved) => Some(F::Open),
        _ => None,
    }
}

/// What a sweep's finding does to the stored one it matches (same host, match and content):
/// one that was resolved, or a false positive whose file had gone, comes back — reopened, or
/// a false positive again when the allowlist covers it (`allowed`: the entry's note) — and
/// the history says why; any other state stays (an open finding seen again is still open; a
/// false positive on a file that never left stays one). `None`: no state change.
pub fn seen_again(
    state: FindingState,
    file_had_gone: bool,
    allowed: Option<&str>,
) -> Option<(FindingState, Option<String>)> {
    let comes_back =
        state == FindingState::Resolved || (state == FindingState::FalsePositive && file_had_gone);
    if !comes_back {
        return None;
    }
    Some(match allowed {
        Some(note) => (FindingState::FalsePositive, Some(note.to_owned())),
        None => (FindingState::Reopened, None),
    })
}

/// The state of a finding found for the first time, and the note of its first history entry:
/// open, or a false positive from the start when the allowlist covers it.
pub fn first_found(sweep_id: &str, allowed: Option<&str>) -> (FindingState, String) {
    match allowed {
        Some(note) => (
            FindingState::FalsePositive,
            format!("found by sweep {sweep_id}; {note}"),
        ),
        None => (FindingState::Open, format!("found by sweep {sweep_id}")),
    }
}

/// Whether two findings are on the same file: one host, one path, one content. Botnet
/// matches are not on files.
pub fn same_file(a: &crate::model::Finding, b: &crate::model::Finding) -> bool {
    use crate::model::FindingKind::BotnetIp;
    a.kind != BotnetIp
        && b.kind != BotnetIp
        && a.host_id == b.host_id
        && a.path == b.path
        && a.path_raw == b.path_raw
        && a.sha256 == b.sha256
}

/// A host's place in the cleanup. Only `Clean` says the host was proven clean; every other
/// status says what is missing (see [`HostCleanup::assess`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostStatus {
    NeverSwept,
    Infected,
    Cleaning,
    AwaitingVerification,
    /// On a botnet list (or was), and no sweep started since says the host is clean.
    Suspect,
    /// The last sweep ran with no YARA rules loaded: it proves nothing.
    NoRules,
    /// The last sweep ran with other rules or IOCs than the collector's current bundles.
    Outdated,
    Clean,
    Stale,
}

impl HostStatus {
    pub const ALL: [HostStatus; 9] = [
        HostStatus::NeverSwept,
        HostStatus::Infected,
        HostStatus::Cleaning,
        HostStatus::AwaitingVerification,
        HostStatus::Suspect,
        HostStatus::NoRules,
        HostStatus::Outdated,
        HostStatus::Clean,
        HostStatus::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::NeverSwept => "never_swept",
            HostStatus::Infected => "infected",
            HostStatus::Cleaning => "cleaning",
            HostStatus::AwaitingVerification => "awaiting_verification",
            HostStatus::Suspect => "suspect",
            HostStatus::NoRules => "no_rules",
            HostStatus::Outdated => "outdated",
            HostStatus::Clean => "clean",
            HostStatus::Stale => "stale",
        }
    }

    pub fn parse(text: &str) -> Option<HostStatus> {
        HostStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Statuses of hosts someone must go and check or clean (`hosts list --infected`).
    pub fn needs_cleaning(self) -> bool {
        matches!(self, HostStatus::Infected | HostStatus::Suspect)
    }
}

impl fmt::Display for HostStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule and IOC sets an agent judged with, as it reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSets {
    /// A bundle's version, `local:HEX` for the agent's own files, empty for none.
    pub rules_version: String,
    pub iocs_version: String,
    /// `None`: an agent older than these fields; its sets are unknown.
    pub rule_count: Option<u64>,
    pub ioc_count: Option<u64>,
}

/// The collector's current bundles (`None`: none of that kind was ever published).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentBundles {
    pub rules: Option<String>,
    pub iocs: Option<String>,
}

/// A host's latest sweep carried out whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteSweep {
    pub sweep_id: String,
    /// On the collector's clock (its first progress report).
    pub started_ms: i64,
    pub sets: RuleSets,
}

/// Whether a sweep summary is one a host's status may rest on: the agent carried it out
/// (no failure) and listed every path it could not read.
pub fn sweep_is_complete(failure: &str, failures_truncated: bool) -> bool {
    failure.is_empty() && !failures_truncated
}

/// How a botnet list match concerns a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotnetLead {
    /// Open or reopened now.
    pub open: bool,
    /// The match is on the host's own or egress address (true for as long as the host keeps
    /// it), not on a connection it made.
    pub own_address: bool,
    /// When the match was found (or last reopened).
    pub since_ms: i64,
    /// When it was last seen to hold.
    pub last_seen_ms: i64,
}

impl BotnetLead {
    /// Since when a sweep must have started to count as checking the host after this lead:
    /// for an address the host still has, from when the match was made (it stays true every
    /// day the address does); otherwise from when it was last seen to hold (a connection to a
    /// listed address, or a match since resolved).
    fn check_after_ms(&self) -> i64 {
        if self.open && self.own_address {
            self.since_ms
        } else {
            self.last_seen_ms
        }
    }
}

/// What a host's status is derived from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCleanup {
    /// Findings open or reopened.
    pub open: u64,
    pub quarantine_requested: u64,
    pub quarantined: u64,
    /// The latest sweep carried out whole, if any.
    pub last_complete: Option<CompleteSweep>,
    /// Its botnet list matches, open or resolved (false positives left out).
    pub botnet: Vec<BotnetLead>,
    pub last_seen_ms: i64,
}

impl HostCleanup {
    /// The status at `now_ms`.
    pub fn status(&self, now_ms: i64, stale_after_ms: i64, current: &CurrentBundles) -> HostStatus {
        self.assess(now_ms, stale_after_ms, current).0
    }

    /// The status at `now_ms` and why. What needs the admin comes first: a host with open
    /// findings is infected even when it has gone quiet; one on a botnet list is suspect
    /// until a complete sweep started after the match; otherwise a host not seen for
    /// `stale_after_ms` is stale, since its last word may be out of date. A host is clean
    /// only when its last complete sweep found nothing open, ran with at least one rule and
    /// with the current bundles, and started after every botnet lead.
    pub fn assess(
        &self,
        now_ms: i64,
        stale_after_ms: i64,
        current: &CurrentBundles,
    ) -> (HostStatus, String) {
        if self.open > 0 {
            return (
                HostStatus::Infected,
                format!("{} open finding(s)", self.open),
            );
        }
        if self.quarantine_requested > 0 {
            return (
                HostStatus::Cleaning,
                format!(
                    "{} finding(s) waiting for the agent to quarantine the file",
                    self.quarantine_requested
                ),
            );
        }
        if self.quarantined > 0 {
            return (
                HostStatus::AwaitingVerification,
                format!(
                    "{} file(s) quarantined; a complete sweep started after it will verify",
                    self.quarantined
                ),
            );
        }
        let checked_since = self.last_complete.as_ref().map(|s| s.started_ms);
        let unchecked_leads = self
            .botnet
            .iter()
            .filter(|lead| checked_since.is_none_or(|started| started <= lead.check_after_ms()))
            .count();
        if unchecked_leads > 0 {
            return (
                HostStatus::Suspect,
                format!(
                    "{unchecked_leads} botnet list match(es) and no complete sweep started since"
                ),
            );
        }
        if now_ms.saturating_sub(self.last_seen_ms) > stale_after_ms {
            return (
                HostStatus::Stale,
                format!(
                    "not seen for more than {} hours",
                    stale_after_ms / 3_600_000
                ),
            );
        }
        let Some(last) = &self.last_complete else {
            return (
                HostStatus::NeverSwept,
                "no complete sweep reported yet".into(),
            );
        };
        let sets = &last.sets;
        let Some(rule_count) = sets.rule_count else {
            return (
                HostStatus::Outdated,
                format!(
                    "sweep {} came from an agent that does not say which rules it ran",
                    last.sweep_id
                ),
            );
        };
        if rule_count == 0 {
            return (
                HostStatus::NoRules,
                format!("sweep {} ran with no YARA rules loaded", last.sweep_id),
            );
        }
        for (kind, ran, current) in [
            ("rule", &sets.rules_version, &current.rules),
            ("IOC", &sets.iocs_version, &current.iocs),
        ] {
            if let Some(current) = current
                && ran != current
            {
                return (
                    HostStatus::Outdated,
                    format!(
                        "sweep {} ran with {kind} set {}, not the current bundle {}",
                        last.sweep_id,
                        short_version(ran),
                        short_version(current)
                    ),
                );
            }
        }
        (
            HostStatus::Clean,
            format!(
                "sweep {} found nothing open with {rule_count} rules",
                last.sweep_id
            ),
        )
    }
}

/// A set version short enough for a sentence.
fn short_version(version: &str) -> &str {
    if version.is_empty() {
        "(none)"
    } else {
        version.get(..18).unwrap_or(version)
    }
}

/// What a sweep's silence about a finding can be weighed against: the set the finding was
/// made with, and the set the sweep ran with.
#[derive(Debug, Clone, Copy)]
pub struct SilenceCheck<'a> {
    /// The finding's kind, and its rule as `namespace:identifier` (YARA) or its file's
    /// SHA-256 (hash IOC).
    pub hash_ioc: bool,
    pub key: &'a str,
    /// The set version that made the finding; empty from agents older than the field.
    pub found_with: &'a str,
    /// The set version the sweep ran with.
    pub swept_with: &'a str,
    /// What that set holds, when the collector published it; `None`: unknown (the agent's
    /// own files).
    pub swept_members: Option<&'a std::collections::HashSet<String>>,
}

/// Whether a complete sweep that no longer reports a finding proves it gone. Absence proves
/// something only when what found it was in the set that looked: the same set, or a
/// published one that still holds its rule (or, for a hash IOC, the file's SHA-256: the file
/// was then not there with those bytes). A rule bundle that drops a rule says nothing of
/// the files that rule found.
pub fn silence_proves_gone(check: &SilenceCheck<'_>) -> bool {
    if check.found_with.is_empty() || check.found_with == check.swept_with {
        return true;
    }
    check.swept_members.is_some_and(|members| {
        if check.hash_ioc {
            members.contains(&check.key.to_ascii_lowercase())
        } else {
            members.contains(check.key)
        }
    })
}

/// Whether `path` lies under one of `roots` (the roots a sweep walked), comparing whole
/// components with either separator.
pub fn under_roots(path: &str, roots: &[String]) -> bool {
    roots.iter().any(|root| {
        let root = root.trim_end_matches(['/', '\\']);
        if root.is_empty() {
            // "/" itself.
            return path.starts_with('/');
        }
        path == root
            || path
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('\\'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_seen_again_comes_back_only_from_resolved_or_from_a_gone_false_positive() {
        use FindingState as F;
        assert_eq!(
            seen_again(F::Resolved, false, None),
            Some((F::Reopened, None))
        );
        assert_eq!(
            seen_again(F::FalsePositive, true, None),
            Some((F::Reopened, None))
        );
        assert_eq!(
            seen_again(F::Resolved, true, Some("allowlist entry 3")),
            Some((F::FalsePositive, Some("allowlist entry 3".into())))
        );
        for stays in [
            F::Open,
            F::Reopened,
            F::QuarantineRequested,
            F::Quarantined,
            F::FalsePositive,
        ] {
            assert_eq!(seen_again(stays, false, None), None, "{stays}");
        }
        assert_eq!(
            first_found("s1", None),
            (F::Open, "found by sweep s1".into())
        );
        assert_eq!(
            first_found("s1", Some("allowed")),
            (F::FalsePositive, "found by sweep s1; allowed".into())
        );
    }
    use FindingState::*;

    #[test]
    fn states_round_trip_as_text() {
        for state in FindingState::ALL {
            assert_eq!(FindingState::parse(state.as_str()), Some(state));
        }
        for status in HostStatus::ALL {
            assert_eq!(HostStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(FindingState::parse("fixed"), None);
    }

    #[test]
    fn admins_move_findings_only_where_the_lifecycle_allows() {
        let admin_transition =
            |from, change: &AdminChange, note| super::admin_transition(from, change, note, false);
        let q = AdminChange::Quarantine;
        assert_eq!(admin_transition(Open, &q, ""), Ok(QuarantineRequested));
        assert_eq!(admin_transition(Reopened, &q, ""), Ok(QuarantineRequested));
        assert_eq!(
            admin_transition(QuarantineRequested, &q, ""),
            Ok(QuarantineRequested)
        );
        for from in [Quarantined, Resolved, FalsePositive] {
            assert!(admin_transition(from, &q, "").is_err(), "{from}");
        }
        assert_eq!(
            admin_transition(Quarantined, &AdminChange::Restore, ""),
            Ok(Quarantined)
        );
        assert!(admin_transition(Open, &AdminChange::Restore, "").is_err());
        // Restored long after the quarantine was verified, from the copy still held.
        assert!(admin_transition(Resolved, &AdminChange::Restore, "").is_err());
        for from in [Resolved, FalsePositive] {
            assert_eq!(
                super::admin_transition(from, &AdminChange::Restore, "", true),
                Ok(from)
            );
        }
        use RemediationOutcome as R;
        assert_eq!(after_remediation(Open, R::Quarantined), Some(Quarantined));
        assert_eq!(
            after_remediation(QuarantineRequested, R::Quarantined),
            Some(Quarantined)
        );
        assert_eq!(after_remediation(FalsePositive, R::Quarantined), None);
        assert_eq!(
            after_remediation(QuarantineRequested, R::QuarantineRefused),
            Some(Open)
        );
        assert_eq!(after_remediation(Open, R::QuarantineRefused), None);
        assert_eq!(after_remediation(Resolved, R::Restored), Some(Open));
        assert_eq!(after_remediation(Quarantined, R::Restored), Some(Open));
        assert_eq!(after_remediation(FalsePositive, R::Restored), None);
        assert_eq!(after_remediation(Quarantined, R::RestoreRefused), None);

        let fp = AdminChange::Mark(FalsePositive);
        let err = admin_transition(Open, &fp, "  ").unwrap_err();
        assert!(err.contains("note"), "{err}");
        assert_eq!(
            admin_transition(Quarantined, &fp, "vendor tool"),
            Ok(FalsePositive)
        );
        assert!(admin_transition(FalsePositive, &fp, "again").is_err());
        let err = admin_transition(Quarantined, &AdminChange::Mark(Resolved), "done").unwrap_err();
        assert!(err.contains("earned"), "{err}");
        assert!(admin_transition(Open, &AdminChange::Mark(Reopened), "x").is_err());
        assert_eq!(
            admin_transition(FalsePositive, &AdminChange::Mark(Open), ""),
            Ok(Open)
        );
        assert!(admin_transition(Open, &AdminChange::Mark(Open), "").is_err());
    }

    fn sweep(started_ms: i64, rules: &str, rule_count: Option<u64>) -> CompleteSweep {
        CompleteSweep {
            sweep_id: format!("s{started_ms}"),
            started_ms,
            sets: RuleSets {
                rules_version: rules.into(),
                iocs_version: String::new(),
                rule_count,
                ioc_count: Some(0),
            },
        }
    }

    #[test]
    fn host_status_puts_what_needs_the_admin_first() {
        let day = 86_400_000;
        let now = 10 * day;
        let host = |open, requested, quarantined, swept: bool, last_seen_ms| HostCleanup {
            open,
            quarantine_requested: requested,
            quarantined,
            last_complete: swept.then(|| sweep(now - 1000, "local:ab", Some(5))),
            botnet: Vec::new(),
            last_seen_ms,
        };
        let none = CurrentBundles::default();
        let status = |h: HostCleanup| h.status(now, day, &none);
        assert_eq!(status(host(0, 0, 0, false, now)), HostStatus::NeverSwept);
        assert_eq!(status(host(2, 1, 1, true, now)), HostStatus::Infected);
        assert_eq!(status(host(0, 1, 1, true, now)), HostStatus::Cleaning);
        assert_eq!(
            status(host(0, 0, 1, true, now)),
            HostStatus::AwaitingVerification
        );
        assert_eq!(status(host(0, 0, 0, true, now)), HostStatus::Clean);
        assert_eq!(
            status(host(0, 0, 0, true, now - 2 * day)),
            HostStatus::Stale
        );
        assert_eq!(
            status(host(0, 0, 0, false, now - 2 * day)),
            HostStatus::Stale
        );
        // Infected outranks stale: the admin must still go and clean it.
        assert_eq!(
            status(host(1, 0, 0, true, now - 2 * day)),
            HostStatus::Infected
        );
    }

    #[test]
    fn clean_needs_rules_and_the_current_bundles() {
        let now = 1_000_000;
        let host = |last: CompleteSweep| HostCleanup {
            last_complete: Some(last),
            last_seen_ms: now,
            ..HostCleanup::default()
        };
        let none = CurrentBundles::default();
        let (status, why) = host(sweep(10, "", Some(0))).assess(now, now, &none);
        assert_eq!(status, HostStatus::NoRules, "{why}");
        assert!(why.contains("no YARA rules"), "{why}");
        // An older agent that does not say what it ran with proves nothing either.
        assert_eq!(
            host(sweep(10, "", None)).status(now, now, &none),
            HostStatus::Outdated
        );
        assert_eq!(
            host(sweep(10, "local:ab", Some(3))).status(now, now, &none),
            HostStatus::Clean
        );
        let published = CurrentBundles {
            rules: Some("f00d".into()),
            iocs: None,
        };
        let (status, why) = host(sweep(10, "local:ab", Some(3))).assess(now, now, &published);
        assert_eq!(status, HostStatus::Outdated, "{why}");
        assert!(why.contains("f00d") && why.contains("local:ab"), "{why}");
        assert_eq!(
            host(sweep(10, "f00d", Some(3))).status(now, now, &published),
            HostStatus::Clean
        );
        let with_iocs = CurrentBundles {
            rules: Some("f00d".into()),
            iocs: Some("beef".into()),
        };
        assert_eq!(
            host(sweep(10, "f00d", Some(3))).status(now, now, &with_iocs),
            HostStatus::Outdated
        );
    }

    #[test]
    fn botnet_leads_keep_a_host_suspect_until_a_sweep_started_after_them() {
        let now = 1_000_000;
        let none = CurrentBundles::default();
        let host = |swept_at: Option<i64>, lead: BotnetLead| HostCleanup {
            last_complete: swept_at.map(|t| sweep(t, "local:ab", Some(3))),
            botnet: vec![lead],
            last_seen_ms: now,
            ..HostCleanup::default()
        };
        let own = BotnetLead {
            open: true,
            own_address: true,
            since_ms: 500,
            last_seen_ms: now,
        };
        assert_eq!(host(None, own).status(now, now, &none), HostStatus::Suspect);
        assert_eq!(
            host(Some(400), own).status(now, now, &none),
            HostStatus::Suspect
        );
        // The host keeps its listed address, but was swept after the match: checked.
        assert_eq!(
            host(Some(600), own).status(now, now, &none),
            HostStatus::Clean
        );
        // A connection to a listed address seen after the sweep started: not checked.
        let connection = BotnetLead {
            open: true,
            own_address: false,
            since_ms: 500,
            last_seen_ms: 700,
        };
        assert_eq!(
            host(Some(600), connection).status(now, now, &none),
            HostStatus::Suspect
        );
        // Resolved (the list was retired) but never checked by a sweep: still suspect.
        let resolved = BotnetLead {
            open: false,
            ..connection
        };
        assert_eq!(
            host(Some(600), resolved).status(now, now, &none),
            HostStatus::Suspect
        );
        assert_eq!(
            host(Some(800), resolved).status(now, now, &none),
            HostStatus::Clean
        );
        assert!(HostStatus::Suspect.needs_cleaning() && HostStatus::Infected.needs_cleaning());
        assert!(!HostStatus::Outdated.needs_cleaning());
    }

    #[test]
    fn silence_proves_something_only_under_a_set_that_holds_the_rule() {
        let members: std::collections::HashSet<String> =
            ["web.yar:Webshell_A".to_owned(), "ab".repeat(32)].into();
        fn check(
            hash_ioc: bool,
            key: &str,
            found_with: &str,
            swept_with: &str,
            members: Option<&std::collections::HashSet<String>>,
        ) -> bool {
            silence_proves_gone(&SilenceCheck {
                hash_ioc,
                key,
                found_with,
                swept_with,
                swept_members: members,
            })
        }
        // The same set looked.
        assert!(check(false, "web.yar:Gone", "v1", "v1", None));
        // A newer bundle that still holds the rule looked.
        assert!(check(
            false,
            "web.yar:Webshell_A",
            "v1",
            "v2",
            Some(&members)
        ));
        // A newer bundle without the rule: its silence says nothing.
        assert!(!check(
            false,
            "web.yar:Webshell_B",
            "v1",
            "v2",
            Some(&members)
        ));
        // Other local files, whose contents the collector does not know.
        assert!(!check(
            false,
            "web.yar:Webshell_A",
            "local:1",
            "local:2",
            None
        ));
        // A hash list that still holds the file's hash.
        assert!(check(true, &"AB".repeat(32), "v1", "v2", Some(&members)));
        assert!(!check(true, &"cd".repeat(32), "v1", "v2", Some(&members)));
        // Findings from before sets were reported: as before.
        assert!(check(false, "x:y", "", "v2", None));
    }

    #[test]
    fn paths_are_under_roots_by_whole_components() {
        let roots = vec!["/srv/data".to_owned(), "C:\\Users\\".to_owned()];
        assert!(under_roots("/srv/data/x", &roots));
        assert!(under_roots("/srv/data", &roots));
        assert!(!under_roots("/srv/database/x", &roots));
        assert!(under_roots("C:\\Users\\bob\\evil.exe", &roots));
        assert!(!under_roots("D:\\evil.exe", &roots));
        assert!(under_roots("/anything", &["/".to_owned()]));
    }
}
