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

/// Where an admin change takes a finding from `from`, or why it cannot.
pub fn admin_transition(
    from: FindingState,
    change: &AdminChange,
    note: &str,
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
        // The state moves when the agent reports the file back in place.
        AdminChange::Restore => match from {
            Quarantined => Ok(Quarantined),
            other => Err(format!(
                "the finding is {other}: only quarantined findings can be restored"
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

/// A host's place in the cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostStatus {
    NeverSwept,
    Infected,
    Cleaning,
    AwaitingVerification,
    Clean,
    Stale,
}

impl HostStatus {
    pub const ALL: [HostStatus; 6] = [
        HostStatus::NeverSwept,
        HostStatus::Infected,
        HostStatus::Cleaning,
        HostStatus::AwaitingVerification,
        HostStatus::Clean,
        HostStatus::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::NeverSwept => "never_swept",
            HostStatus::Infected => "infected",
            HostStatus::Cleaning => "cleaning",
            HostStatus::AwaitingVerification => "awaiting_verification",
            HostStatus::Clean => "clean",
            HostStatus::Stale => "stale",
        }
    }

    pub fn parse(text: &str) -> Option<HostStatus> {
        HostStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for HostStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a host's status is derived from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCleanup {
    /// Findings open or reopened.
    pub open: u64,
    pub quarantine_requested: u64,
    pub quarantined: u64,
    /// Whether any sweep of the host has been reported.
    pub swept: bool,
    pub last_seen_ms: i64,
}

impl HostCleanup {
    /// The status at `now_ms`. What needs the admin comes first: a host with open findings is
    /// infected even when it has gone quiet; otherwise a host not seen for `stale_after_ms`
    /// is stale, since its last word may be out of date.
    pub fn status(&self, now_ms: i64, stale_after_ms: i64) -> HostStatus {
        if self.open > 0 {
            HostStatus::Infected
        } else if self.quarantine_requested > 0 {
            HostStatus::Cleaning
        } else if self.quarantined > 0 {
            HostStatus::AwaitingVerification
        } else if now_ms.saturating_sub(self.last_seen_ms) > stale_after_ms {
            HostStatus::Stale
        } else if !self.swept {
            HostStatus::NeverSwept
        } else {
            HostStatus::Clean
        }
    }
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

    #[test]
    fn host_status_puts_what_needs_the_admin_first() {
        let day = 86_400_000;
        let host = |open, requested, quarantined, swept, last_seen_ms| HostCleanup {
            open,
            quarantine_requested: requested,
            quarantined,
            swept,
            last_seen_ms,
        };
        let now = 10 * day;
        let status = |h: HostCleanup| h.status(now, day);
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
