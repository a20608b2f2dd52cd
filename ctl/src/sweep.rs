//! `hygienectl sweep ...` and `audit list`: the rows they print and the progress view.

use std::io::Write;

use hygiene_proto::v1;
use serde::Serialize;

use super::format_ms;
use super::output::{Format, render, render_record};

/// `sweep status` as JSON: `{"id", "state", "hosts": [...], "totals": {...}, "eta", ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepStatusView {
    pub id: String,
    pub state: String,
    pub created: String,
    pub created_by: String,
    pub full: bool,
    pub splay_seconds: u32,
    pub deadline: String,
    pub cancelled: Option<String>,
    pub cancelled_by: Option<String>,
    pub hosts: Vec<SweepHostRow>,
    pub totals: SweepTotalsRow,
    /// Estimated finish of the whole fleet (RFC 3339); null when nothing running tells yet, or
    /// when the sweep is over (see `finished`).
    pub eta: Option<String>,
    pub finished: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepHostRow {
    pub host_id: String,
    /// pending, running, done, failed, expired or cancelled.
    pub state: String,
    pub online: bool,
    pub files_done: u64,
    pub bytes_done: u64,
    pub files_estimate: Option<u64>,
    pub bytes_estimate: Option<u64>,
    /// Share of the estimated bytes (or files) done, 0-100.
    pub percent: Option<f64>,
    pub findings: u64,
    /// Files that could not be (fully) scanned.
    pub errors: u64,
    /// Why the sweep failed on this host.
    pub error: Option<String>,
    pub delivered: Option<String>,
    pub started: Option<String>,
    pub updated: Option<String>,
    pub finished: Option<String>,
    pub eta: Option<String>,
}

pub const SWEEP_HOST_TABLE_COLUMNS: &[&str] = &[
    "host_id",
    "state",
    "online",
    "percent",
    "files_done",
    "findings",
    "errors",
    "eta",
    "error",
];

#[derive(Debug, Clone, Serialize)]
pub struct SweepTotalsRow {
    pub hosts: u32,
    pub pending: u32,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub expired: u32,
    pub cancelled: u32,
    /// Hosts done with at least one finding.
    pub infected: u32,
    pub files_done: u64,
    pub bytes_done: u64,
    pub files_estimate: u64,
    pub bytes_estimate: u64,
    pub findings: u64,
    pub errors: u64,
    pub percent: Option<f64>,
    /// Hosts counted in the estimates with their previous sweep's totals or the fleet's
    /// median, not having told theirs yet.
    pub estimated_hosts: u32,
}

/// A line of `sweep list`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepListRow {
    pub id: String,
    pub state: String,
    pub created: String,
    pub created_by: String,
    pub full: bool,
    pub hosts: u32,
    pub pending: u32,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub expired: u32,
    pub cancelled: u32,
    pub infected: u32,
    pub findings: u64,
    pub eta: Option<String>,
    pub finished: Option<String>,
}

pub const SWEEP_LIST_TABLE_COLUMNS: &[&str] = &[
    "id", "state", "created", "hosts", "pending", "running", "done", "failed", "infected",
    "findings",
];

/// A line of `audit list`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

pub const AUDIT_TABLE_COLUMNS: &[&str] = &["id", "at", "actor", "action", "target", "detail"];

impl From<v1::AuditEntry> for AuditRow {
    fn from(e: v1::AuditEntry) -> Self {
        AuditRow {
            id: e.id,
            at: format_ms(e.at_ms),
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        }
    }
}

fn when(ms: i64) -> Option<String> {
    (ms != 0).then(|| format_ms(ms))
}

fn percent(done: u64, estimate: u64) -> Option<f64> {
    (estimate > 0).then(|| ((done as f64 / estimate as f64 * 1000.0).round() / 10.0).min(100.0))
}

fn totals_row(t: Option<v1::SweepTotals>) -> SweepTotalsRow {
    let t = t.unwrap_or_default();
    SweepTotalsRow {
        hosts: t.hosts,
        pending: t.pending,
        running: t.running,
        done: t.done,
        failed: t.failed,
        expired: t.expired,
        cancelled: t.cancelled,
        infected: t.infected,
        files_done: t.files_done,
        bytes_done: t.bytes_done,
        files_estimate: t.files_estimate,
        bytes_estimate: t.bytes_estimate,
        findings: t.findings,
        errors: t.errors,
        estimated_hosts: t.estimated_hosts,
        percent: percent(t.bytes_done, t.bytes_estimate)
            .or_else(|| percent(t.files_done, t.files_estimate)),
    }
}

impl From<v1::SweepHost> for SweepHostRow {
    fn from(h: v1::SweepHost) -> Self {
        SweepHostRow {
            percent: match h.state.as_str() {
                "done" => Some(100.0),
                _ => percent(h.bytes_done, h.bytes_estimate)
                    .or_else(|| percent(h.files_done, h.files_estimate)),
            },
            host_id: h.host_id,
            state: h.state,
            online: h.online,
            files_done: h.files_done,
            bytes_done: h.bytes_done,
            files_estimate: (h.files_estimate != 0).then_some(h.files_estimate),
            bytes_estimate: (h.bytes_estimate != 0).then_some(h.bytes_estimate),
            findings: h.findings,
            errors: h.errors,
            error: (!h.error.is_empty()).then_some(h.error),
            delivered: when(h.delivered_ms),
            started: when(h.started_ms),
            updated: when(h.updated_ms),
            finished: when(h.finished_ms),
            eta: when(h.eta_ms),
        }
    }
}

impl From<v1::SweepStatus> for SweepStatusView {
    fn from(s: v1::SweepStatus) -> Self {
        SweepStatusView {
            id: s.id,
            state: s.state,
            created: format_ms(s.created_ms),
            created_by: s.created_by,
            full: s.full,
            splay_seconds: s.splay_seconds,
            deadline: format_ms(s.deadline_ms),
            cancelled: when(s.cancelled_ms),
            cancelled_by: (!s.cancelled_by.is_empty()).then_some(s.cancelled_by),
            hosts: s.hosts.into_iter().map(SweepHostRow::from).collect(),
            totals: totals_row(s.totals),
            eta: when(s.eta_ms),
            finished: when(s.finished_ms),
        }
    }
}

impl From<v1::SweepStatus> for SweepListRow {
    fn from(s: v1::SweepStatus) -> Self {
        let t = s.totals.unwrap_or_default();
        SweepListRow {
            id: s.id,
            state: s.state,
            created: format_ms(s.created_ms),
            created_by: s.created_by,
            full: s.full,
            hosts: t.hosts,
            pending: t.pending,
            running: t.running,
            done: t.done,
            failed: t.failed,
            expired: t.expired,
            cancelled: t.cancelled,
            infected: t.infected,
            findings: t.findings,
            eta: when(s.eta_ms),
            finished: when(s.finished_ms),
        }
    }
}

impl SweepStatusView {
    /// Whether the sweep has anything left to do.
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// Writes the status: JSON as one object, CSV as the host lines, a table as a summary
    /// block followed by the host lines.
    pub fn write(&self, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
        match format {
            Format::Json => render_record(self, format, out),
            Format::Csv => render(&self.hosts, format, &[], out),
            Format::Table => {
                self.write_summary(out)?;
                writeln!(out)?;
                render(&self.hosts, format, SWEEP_HOST_TABLE_COLUMNS, out)
            }
        }
    }

    /// One screen of `--watch` on a terminal of `rows` lines: the summary, then the hosts not
    /// done, worst first (failed, expired, then the furthest behind), as many as fit.
    pub fn write_screen(&self, rows: usize, out: &mut dyn Write) -> std::io::Result<()> {
        let mut summary = Vec::new();
        self.write_summary(&mut summary)?;
        let summary_lines = summary.iter().filter(|b| **b == b'\n').count();
        out.write_all(&summary)?;
        writeln!(out)?;
        let mut open: Vec<&SweepHostRow> =
            self.hosts.iter().filter(|h| h.state != "done").collect();
        open.sort_by(|a, b| {
            worst_first(a)
                .partial_cmp(&worst_first(b))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.host_id.cmp(&b.host_id))
        });
        // Below the summary: a blank, the header, the line for "... more", and the line the
        // cursor rests on.
        let room = rows.saturating_sub(summary_lines + 4).max(1);
        let shown: Vec<SweepHostRow> = open.iter().take(room).map(|h| (*h).clone()).collect();
        if shown.is_empty() {
            writeln!(out, "Every host is done.")?;
        } else {
            render(&shown, Format::Table, SWEEP_HOST_TABLE_COLUMNS, out)?;
        }
        if open.len() > shown.len() {
            writeln!(
                out,
                "... and {} more host(s) not done",
                open.len() - shown.len()
            )?;
        }
        Ok(())
    }

    /// The state in one line, for `--watch` into a pipe (printed when it changes).
    pub fn line(&self) -> String {
        let t = &self.totals;
        format!(
            "{} {}: {}; {}{}{}",
            self.id,
            self.state,
            self.state_counts().join(", "),
            t.percent.map(|p| format!("{p}% of ")).unwrap_or_default(),
            if t.bytes_estimate > 0 {
                human_bytes(t.bytes_estimate)
            } else {
                format!("{} files", t.files_done)
            },
            match (&self.finished, &self.eta) {
                (Some(finished), _) => format!("; finished {finished}"),
                (None, Some(eta)) => format!("; ETA {eta}"),
                (None, None) => String::new(),
            }
        )
    }

    fn state_counts(&self) -> Vec<String> {
        let t = &self.totals;
        [
            (t.pending, "pending"),
            (t.running, "running"),
            (t.done, "done"),
            (t.failed, "failed"),
            (t.expired, "expired"),
            (t.cancelled, "cancelled"),
        ]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, name)| format!("{count} {name}"))
        .collect()
    }

    fn write_summary(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let t = &self.totals;
        writeln!(out, "SWEEP     {} ({})", self.id, self.state)?;
        writeln!(
            out,
            "STARTED   {} by {}{}, deadline {}",
            self.created,
            self.created_by,
            if self.full { ", full" } else { "" },
            self.deadline
        )?;
        if let (Some(at), Some(by)) = (&self.cancelled, &self.cancelled_by) {
            writeln!(out, "CANCELLED {at} by {by}")?;
        }
        writeln!(
            out,
            "HOSTS     {}: {}",
            t.hosts,
            self.state_counts().join(", ")
        )?;
        writeln!(
            out,
            "PROGRESS  {}{} files, {}{}{}",
            t.files_done,
            of(t.files_estimate),
            human_bytes(t.bytes_done),
            if t.bytes_estimate > 0 {
                format!(" of {}", human_bytes(t.bytes_estimate))
            } else {
                String::new()
            },
            t.percent.map(|p| format!(" ({p}%)")).unwrap_or_default(),
        )?;
        if t.estimated_hosts > 0 {
            writeln!(
                out,
                "ESTIMATE  {} host(s) not reporting yet count at their last sweep's size",
                t.estimated_hosts
            )?;
        }
        writeln!(
            out,
            "FINDINGS  {} on {} host(s); {} file(s) not scanned",
            t.findings, t.infected, t.errors
        )?;
        match (&self.finished, &self.eta) {
            (Some(finished), _) => writeln!(out, "FINISHED  {finished}")?,
            (None, Some(eta)) => writeln!(out, "ETA       {eta}")?,
            (None, None) => writeln!(out, "ETA       unknown until a host reports progress")?,
        }
        Ok(())
    }
}

/// Sort key of a host not done: failed and expired first, then running ones from the least
/// done, then those not started.
fn worst_first(h: &SweepHostRow) -> (u8, f64) {
    match h.state.as_str() {
        "failed" => (0, 0.0),
        "expired" => (1, 0.0),
        "running" => (2, h.percent.unwrap_or(0.0)),
        "pending" => (3, 0.0),
        _ => (4, 0.0),
    }
}

fn of(estimate: u64) -> String {
    if estimate > 0 {
        format!(" of {estimate}")
    } else {
        String::new()
    }
}

/// Bytes in binary units, one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> v1::SweepStatus {
        v1::SweepStatus {
            id: "sw-1".into(),
            state: "running".into(),
            created_ms: 1_700_000_000_000,
            created_by: "admin".into(),
            deadline_ms: 1_700_600_000_000,
            hosts: vec![
                v1::SweepHost {
                    host_id: "a".into(),
                    state: "running".into(),
                    files_done: 10,
                    bytes_done: 512,
                    bytes_estimate: 2048,
                    eta_ms: 1_700_000_100_000,
                    ..Default::default()
                },
                v1::SweepHost {
                    host_id: "b".into(),
                    state: "failed".into(),
                    error: "sweep crashed".into(),
                    ..Default::default()
                },
            ],
            totals: Some(v1::SweepTotals {
                hosts: 2,
                running: 1,
                failed: 1,
                bytes_done: 512,
                bytes_estimate: 2048,
                ..Default::default()
            }),
            eta_ms: 1_700_000_100_000,
            ..Default::default()
        }
    }

    #[test]
    fn status_json_has_the_contract_fields() {
        let view = SweepStatusView::from(status());
        let mut out = Vec::new();
        view.write(Format::Json, &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for key in ["id", "state", "hosts", "totals", "eta"] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        let host = &json["hosts"][0];
        for key in [
            "host_id",
            "state",
            "files_done",
            "bytes_done",
            "findings",
            "error",
        ] {
            assert!(host.get(key).is_some(), "{key} missing: {host}");
        }
        assert_eq!(host["percent"], 25.0);
        assert!(host["error"].is_null());
        assert_eq!(json["hosts"][1]["error"], "sweep crashed");
        assert_eq!(json["totals"]["percent"], 25.0);
        assert_eq!(json["eta"], "2023-11-14T22:15:00Z");
    }

    #[test]
    fn status_table_summarises_then_lists_hosts() {
        let mut out = Vec::new();
        SweepStatusView::from(status())
            .write(Format::Table, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("HOSTS     2: 1 running, 1 failed"), "{text}");
        assert!(text.contains("512 B of 2.0 KiB (25%)"), "{text}");
        assert!(text.contains("sweep crashed"), "{text}");
    }

    #[test]
    fn bytes_read_as_people_read_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
