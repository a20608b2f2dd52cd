//! Fleet sweeps as the admin sees them: what each targeted host is doing, the fleet's totals
//! and an estimated finish, all derived from what the store holds (the sweep, its targets, the
//! agents' progress reports and summaries) and the collector's clock. Nothing here is stored
//! state of its own: a host's sweep state is computed anew on every read, so that a deadline
//! passing needs no background job.

use std::fmt;

/// How long offline agents may still receive a sweep, unless the admin says otherwise.
pub const DEFAULT_DEADLINE_SECONDS: u64 = 7 * 24 * 3600;
/// The window within which each agent starts, unless the admin says otherwise.
pub const DEFAULT_SPLAY_SECONDS: u32 = 60;

/// Where one host is in a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostSweepState {
    /// Not reached yet, or reached and waiting out its splay.
    Pending,
    Running,
    Done,
    Failed,
    /// The deadline passed before the host started.
    Expired,
    /// The sweep was cancelled before the host finished.
    Cancelled,
}

impl HostSweepState {
    pub const ALL: [HostSweepState; 6] = [
        HostSweepState::Pending,
        HostSweepState::Running,
        HostSweepState::Done,
        HostSweepState::Failed,
        HostSweepState::Expired,
        HostSweepState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostSweepState::Pending => "pending",
            HostSweepState::Running => "running",
            HostSweepState::Done => "done",
            HostSweepState::Failed => "failed",
            HostSweepState::Expired => "expired",
            HostSweepState::Cancelled => "cancelled",
        }
    }

    /// Still to finish: the sweep is not over while a host is in one of these.
    pub fn is_open(self) -> bool {
        matches!(self, HostSweepState::Pending | HostSweepState::Running)
    }
}

impl fmt::Display for HostSweepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a whole sweep is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepState {
    /// Some host is pending or running.
    Running,
    /// Every host finished, failed or could not be reached in time (see `Expired`).
    Done,
    /// An admin cancelled it.
    Cancelled,
    /// Nothing is open any more and the deadline passed with hosts never reached.
    Expired,
}

impl SweepState {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Done => "done",
            SweepState::Cancelled => "cancelled",
            SweepState::Expired => "expired",
        }
    }
}

/// A sweep an admin asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSweep {
    pub id: String,
    pub created_ms: i64,
    /// The admin certificate's common name.
    pub created_by: String,
    pub full: bool,
    pub splay_seconds: u32,
    pub deadline_ms: i64,
    pub hosts: Vec<String>,
    /// Set off by a new bundle: each agent starts it once the bundle is applied, so no
    /// order is sent (an order could overtake the bundle and sweep with the old rules).
    pub after_bundle: bool,
}

/// What an agent is to be told when it connects: sweeps to start and sweeps to stop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepOrders {
    pub start: Vec<SweepOrder>,
    /// Cancelled sweeps the host had been sent and not finished.
    pub cancel: Vec<String>,
}

/// One sweep for one agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepOrder {
    pub sweep_id: String,
    pub full: bool,
    pub splay_seconds: u32,
    pub deadline_ms: i64,
}

/// A host's part of a sweep, as stored: the facts its state is derived from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRecord {
    pub host_id: String,
    pub online: bool,
    /// When the collector put the order on the host's stream.
    pub delivered_ms: Option<i64>,
    pub progress: Option<ProgressRecord>,
    pub report: Option<ReportRecord>,
    /// The host's previous complete sweep's totals (files, bytes): its estimate until it
    /// says better.
    pub previous: Option<(u64, u64)>,
}

/// The host's latest progress report (collector clock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressRecord {
    /// When the first report of this sweep arrived: the host's start, on the collector's clock.
    pub first_received_ms: i64,
    pub updated_ms: i64,
    pub files_done: u64,
    pub bytes_done: u64,
    pub files_estimate: u64,
    pub bytes_estimate: u64,
    pub findings: u64,
    pub errors: u64,
}

/// The host's end-of-sweep summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportRecord {
    pub received_ms: i64,
    pub files: u64,
    pub bytes: u64,
    pub findings: u64,
    pub errors: u64,
    /// Not empty: the sweep failed on the host, and why.
    pub failure: String,
    /// Of its findings, those judged false positives (last seen by this sweep).
    pub false_positives: u64,
}

/// A sweep as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepRecord {
    pub id: String,
    pub created_ms: i64,
    pub created_by: String,
    pub full: bool,
    pub splay_seconds: u32,
    pub deadline_ms: i64,
    pub cancelled: Option<(i64, String)>,
    pub targets: Vec<TargetRecord>,
}

/// One host's line of `sweep status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSweep {
    pub host_id: String,
    pub state: HostSweepState,
    pub online: bool,
    pub files_done: u64,
    pub bytes_done: u64,
    pub files_estimate: u64,
    pub bytes_estimate: u64,
    pub findings: u64,
    pub errors: u64,
    pub error: Option<String>,
    pub delivered_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub updated_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub eta_ms: Option<i64>,
}

/// The fleet's sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepTotals {
    pub hosts: u32,
    pub by_state: [u32; 6],
    /// Hosts done with at least one finding.
    pub infected: u32,
    pub files_done: u64,
    pub bytes_done: u64,
    pub files_estimate: u64,
    pub bytes_estimate: u64,
    pub findings: u64,
    pub errors: u64,
    /// Hosts counted in the estimates with their previous sweep's totals or, lacking that,
    /// the fleet's median, because they have not told theirs yet.
    pub estimated_hosts: u32,
}

impl SweepTotals {
    pub fn count(&self, state: HostSweepState) -> u32 {
        self.by_state[state as usize]
    }
}

/// A sweep as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepView {
    pub id: String,
    pub state: SweepState,
    pub created_ms: i64,
    pub created_by: String,
    pub full: bool,
    pub splay_seconds: u32,
    pub deadline_ms: i64,
    pub cancelled: Option<(i64, String)>,
    pub hosts: Vec<HostSweep>,
    pub totals: SweepTotals,
    /// The fleet's estimated finish while hosts are open; `None` when nothing running tells.
    pub eta_ms: Option<i64>,
    /// When the last host finished, once none is open.
    pub finished_ms: Option<i64>,
}

impl SweepRecord {
    /// The admin's view at collector time `now_ms`.
    pub fn view(&self, now_ms: i64) -> SweepView {
        let hosts: Vec<HostSweep> = self
            .targets
            .iter()
            .map(|t| self.host_view(t, now_ms))
            .collect();
        let mut totals = SweepTotals {
            hosts: hosts.len() as u32,
            ..SweepTotals::default()
        };
        // A host that has not told its totals yet counts with its previous sweep's, or else
        // with the median of those known: 457 pending hosts are most of the work, not none.
        let known = |pick: fn(&HostSweep) -> u64| {
            let mut known: Vec<u64> = hosts.iter().map(pick).filter(|v| *v > 0).collect();
            known.sort_unstable();
            known.get(known.len() / 2).copied().unwrap_or(0)
        };
        let median = (known(|h| h.files_estimate), known(|h| h.bytes_estimate));
        for (h, t) in hosts.iter().zip(&self.targets) {
            totals.by_state[h.state as usize] += 1;
            if h.state == HostSweepState::Done && h.findings > 0 {
                totals.infected += 1;
            }
            totals.files_done += h.files_done;
            totals.bytes_done += h.bytes_done;
            let (files, bytes) = if h.files_estimate > 0 || h.bytes_estimate > 0 {
                (h.files_estimate, h.bytes_estimate)
            } else if h.state.is_open() {
                totals.estimated_hosts += 1;
                t.previous.unwrap_or(median)
            } else {
                (0, 0)
            };
            totals.files_estimate += files.max(h.files_done);
            totals.bytes_estimate += bytes.max(h.bytes_done);
            totals.findings += h.findings;
            totals.errors += h.errors;
        }
        let open = hosts.iter().any(|h| h.state.is_open());
        let state = if open {
            SweepState::Running
        } else if self.cancelled.is_some() {
            SweepState::Cancelled
        } else if totals.count(HostSweepState::Expired) > 0 {
            SweepState::Expired
        } else {
            SweepState::Done
        };
        let eta_ms = if open {
            let first_start = hosts.iter().filter_map(|h| h.started_ms).min();
            fleet_finish(&totals, first_start, now_ms)
                .or_else(|| hosts.iter().filter_map(|h| h.eta_ms).max())
        } else {
            None
        };
        let finished_ms = if open {
            None
        } else {
            hosts
                .iter()
                .filter_map(|h| h.finished_ms)
                .max()
                .or(self.cancelled.as_ref().map(|(at, _)| *at))
        };
        SweepView {
            id: self.id.clone(),
            state,
            created_ms: self.created_ms,
            created_by: self.created_by.clone(),
            full: self.full,
            splay_seconds: self.splay_seconds,
            deadline_ms: self.deadline_ms,
            cancelled: self.cancelled.clone(),
            hosts,
            totals,
            eta_ms,
            finished_ms,
        }
    }

    fn host_view(&self, t: &TargetRecord, now_ms: i64) -> HostSweep {
        let state = match (&t.report, &t.progress) {
            (Some(report), _) if !report.failure.is_empty() => HostSweepState::Failed,
            (Some(_), _) => HostSweepState::Done,
            (None, _) if self.cancelled.is_some() => HostSweepState::Cancelled,
            (None, Some(_)) => HostSweepState::Running,
            (None, None) if self.deadline_ms > 0 && now_ms >= self.deadline_ms => {
                HostSweepState::Expired
            }
            (None, None) => HostSweepState::Pending,
        };
        let p = t.progress.clone().unwrap_or_default();
        let mut view = HostSweep {
            host_id: t.host_id.clone(),
            state,
            online: t.online,
            files_done: p.files_done,
            bytes_done: p.bytes_done,
            files_estimate: p.files_estimate,
            bytes_estimate: p.bytes_estimate,
            findings: p.findings,
            errors: p.errors,
            error: None,
            delivered_ms: t.delivered_ms,
            started_ms: t.progress.as_ref().map(|p| p.first_received_ms),
            updated_ms: t.progress.as_ref().map(|p| p.updated_ms),
            finished_ms: None,
            eta_ms: None,
        };
        if let Some(report) = &t.report {
            // The summary's counts are final; the estimate becomes what was found.
            view.files_done = report.files;
            view.bytes_done = report.bytes;
            view.files_estimate = report.files;
            view.bytes_estimate = report.bytes;
            // A false positive is not a finding the admin has to act on.
            view.findings = report.findings.saturating_sub(report.false_positives);
            view.errors = report.errors;
            view.finished_ms = Some(report.received_ms);
            view.error = Some(report.failure.clone()).filter(|f| !f.is_empty());
        }
        if state == HostSweepState::Running {
            view.eta_ms = estimate_finish(&p);
        }
        view
    }
}

/// When the whole fleet should finish at the pace it has kept since the first host started:
/// the work left (bytes, or files where no byte estimate exists) over the work done per
/// millisecond. `None` until some work is done.
pub fn fleet_finish(totals: &SweepTotals, first_start_ms: Option<i64>, now_ms: i64) -> Option<i64> {
    finish_at(
        (totals.bytes_done, totals.bytes_estimate),
        (totals.files_done, totals.files_estimate),
        first_start_ms?,
        now_ms,
    )
}

/// When a running host should finish at the pace it has kept: elapsed time scaled by the bytes
/// still to read (files where no byte estimate exists). `None` until there is a pace to go by.
pub fn estimate_finish(p: &ProgressRecord) -> Option<i64> {
    finish_at(
        (p.bytes_done, p.bytes_estimate),
        (p.files_done, p.files_estimate),
        p.first_received_ms,
        p.updated_ms,
    )
}

/// The time `at_ms` plus what is left of `(done, estimate)` bytes (or files, where no byte
/// estimate exists) at the pace kept since `started_ms`.
fn finish_at(bytes: (u64, u64), files: (u64, u64), started_ms: i64, at_ms: i64) -> Option<i64> {
    let elapsed = at_ms.checked_sub(started_ms)?;
    let (done, estimate) = if bytes.1 > 0 && bytes.0 > 0 {
        bytes
    } else if files.1 > 0 && files.0 > 0 {
        files
    } else {
        return None;
    };
    if elapsed <= 0 {
        return None;
    }
    let remaining = estimate.saturating_sub(done) as f64 / done as f64 * elapsed as f64;
    Some(at_ms + remaining.round() as i64)
}

/// A new sweep id: the creation time to the second and 32 random bits, so that ids sort by age
/// and two admins starting a sweep in the same second still get two sweeps.
pub fn new_sweep_id(now_ms: i64, random: u32) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "sw-{:04}{:02}{:02}-{:02}{:02}{:02}-{random:08x}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(targets: Vec<TargetRecord>) -> SweepRecord {
        SweepRecord {
            id: "sw".into(),
            created_ms: 1_000,
            created_by: "admin".into(),
            full: false,
            splay_seconds: 0,
            deadline_ms: 100_000,
            cancelled: None,
            targets,
        }
    }

    fn target(host: &str) -> TargetRecord {
        TargetRecord {
            host_id: host.into(),
            ..TargetRecord::default()
        }
    }

    fn progress(done: u64, estimate: u64, first: i64, updated: i64) -> ProgressRecord {
        ProgressRecord {
            first_received_ms: first,
            updated_ms: updated,
            files_done: done,
            bytes_done: done * 10,
            files_estimate: estimate,
            bytes_estimate: estimate * 10,
            ..ProgressRecord::default()
        }
    }

    #[test]
    fn host_states_follow_reports_cancel_and_deadline() {
        let mut running = target("running");
        running.progress = Some(progress(25, 100, 2_000, 3_000));
        let mut done = target("done");
        done.report = Some(ReportRecord {
            received_ms: 5_000,
            files: 7,
            findings: 2,
            ..ReportRecord::default()
        });
        let mut failed = target("failed");
        failed.report = Some(ReportRecord {
            failure: "sweep crashed".into(),
            ..ReportRecord::default()
        });
        let sweep = record(vec![target("pending"), running, done, failed]);

        let view = sweep.view(10_000);
        let states: Vec<_> = view.hosts.iter().map(|h| h.state).collect();
        use HostSweepState::*;
        assert_eq!(states, [Pending, Running, Done, Failed]);
        assert_eq!(view.state, SweepState::Running);
        assert_eq!(view.totals.count(Done), 1);
        assert_eq!(view.totals.infected, 1);
        assert_eq!(view.totals.findings, 2);
        assert_eq!(view.hosts[3].error.as_deref(), Some("sweep crashed"));
        // 25 of 100 in 1 s: 3 s to go.
        assert_eq!(view.hosts[1].eta_ms, Some(6_000));
        // The pending host counts with the median of the known estimates (100 files, 1,000
        // bytes), not as nothing: 250 of 2,000 bytes done in the 8 s since the first host
        // started, so 56 s to go for the fleet.
        assert_eq!(view.totals.estimated_hosts, 1);
        assert_eq!(view.totals.bytes_estimate, 2_000);
        assert_eq!(view.totals.files_estimate, 207);
        assert_eq!(view.eta_ms, Some(66_000));
        assert_eq!(view.finished_ms, None);
        // Findings judged false positives are not counted, nor is a host with only those.
        let mut judged = sweep.clone();
        judged.targets[2].report.as_mut().unwrap().false_positives = 2;
        let view = judged.view(10_000);
        assert_eq!((view.totals.findings, view.totals.infected), (0, 0));
        // With its previous sweep's totals, those count instead.
        let mut known = sweep.clone();
        known.targets[0].previous = Some((50, 3_000));
        assert_eq!(known.view(10_000).totals.bytes_estimate, 4_000);

        // Past the deadline the host never reached expires; a running one keeps running.
        let late = sweep.view(100_000);
        assert_eq!(late.hosts[0].state, Expired);
        assert_eq!(late.hosts[1].state, Running);

        // Cancelled: what had not finished is cancelled, what had stays as it was.
        let mut cancelled = sweep.clone();
        cancelled.cancelled = Some((8_000, "admin".into()));
        let view = cancelled.view(10_000);
        let states: Vec<_> = view.hosts.iter().map(|h| h.state).collect();
        assert_eq!(states, [Cancelled, Cancelled, Done, Failed]);
        assert_eq!(view.state, SweepState::Cancelled);
        assert_eq!(view.finished_ms, Some(5_000));
    }

    #[test]
    fn a_sweep_ends_done_or_expired() {
        let mut done = target("a");
        done.report = Some(ReportRecord {
            received_ms: 4_000,
            ..ReportRecord::default()
        });
        let sweep = record(vec![done.clone()]);
        assert_eq!(sweep.view(5_000).state, SweepState::Done);
        assert_eq!(sweep.view(5_000).finished_ms, Some(4_000));
        let sweep = record(vec![done, target("never")]);
        assert_eq!(sweep.view(5_000).state, SweepState::Running);
        assert_eq!(sweep.view(100_000).state, SweepState::Expired);
        // No deadline: a host never reached stays pending.
        let mut forever = sweep.clone();
        forever.deadline_ms = 0;
        assert_eq!(forever.view(i64::MAX).state, SweepState::Running);
    }

    #[test]
    fn finish_estimates_need_a_pace() {
        assert_eq!(estimate_finish(&progress(0, 100, 0, 1_000)), None);
        assert_eq!(estimate_finish(&progress(10, 0, 0, 1_000)), None);
        assert_eq!(estimate_finish(&progress(10, 100, 1_000, 1_000)), None);
        assert_eq!(estimate_finish(&progress(50, 100, 0, 1_000)), Some(2_000));
        // Past its estimate: about to finish.
        assert_eq!(estimate_finish(&progress(150, 100, 0, 1_000)), Some(1_000));
    }

    #[test]
    fn sweep_ids_sort_by_time() {
        let a = new_sweep_id(1_700_000_000_000, 0xdead_beef);
        assert_eq!(a, "sw-20231114-221320-deadbeef");
        let b = new_sweep_id(1_700_000_001_000, 0);
        assert!(a < b);
    }
}
