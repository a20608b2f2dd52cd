//! `hygienectl`: the admin CLI. Data on stdout, diagnostics on stderr; exit codes 0 clean,
//! 1 findings (a listed host or finding is open), 2 error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hygiene_proto::v1;
use hygienectl::config::CtlConfig;
use hygienectl::intel::{
    ALLOW_TABLE_COLUMNS, AllowRow, BundleRow, IP_LIST_TABLE_COLUMNS, IpListRow,
    PRIORITY_TABLE_COLUMNS, PriorityRow, RULES_STATUS_TABLE_COLUMNS, RulesStatusRow,
    describe_recheck, rule_sources,
};
use hygienectl::output::{Format, render, render_record};
use hygienectl::sweep::{
    AUDIT_TABLE_COLUMNS, AuditRow, SWEEP_LIST_TABLE_COLUMNS, SweepListRow, SweepStatusView,
};
use hygienectl::vuln::{
    ADVISORY_IMPORT_TABLE_COLUMNS, AdvisoryImportRow, KB_NEED_TABLE_COLUMNS, KbNeedRow,
    VULN_ENTRY_TABLE_COLUMNS, VULN_HOST_TABLE_COLUMNS, VulnEntryRow, VulnHostRow,
};
use hygienectl::{
    self as ctl, CONNECTION_TABLE_COLUMNS, ConnectionRow, FILE_TABLE_COLUMNS,
    FINDING_HISTORY_TABLE_COLUMNS, FINDING_TABLE_COLUMNS, FileRow, FindingChangeRow, FindingRow,
    HOST_PACKAGE_TABLE_COLUMNS, HOST_TABLE_COLUMNS, HostDetailRow, HostRow, PACKAGE_TABLE_COLUMNS,
    PackageRow, ProgramRow, ProgressView, UpdateRow,
};

const DEFAULT_COLLECTOR: &str = "https://127.0.0.1:50051";
/// The terminal's height in lines (24 where it cannot be told).
fn terminal_rows() -> usize {
    std::env::var("LINES")
        .ok()
        .and_then(|l| l.parse().ok())
        .or_else(|| {
            let out = std::process::Command::new("stty")
                .arg("size")
                .stdin(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            String::from_utf8(out.stdout)
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(24)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Prints `items` as rows of `R` on stdout; exit code 0 (a listing with nothing to judge).
fn print_rows<T, R: From<T> + serde::Serialize>(
    items: Vec<T>,
    format: Format,
    columns: &[&str],
) -> anyhow::Result<ExitCode> {
    let rows: Vec<R> = items.into_iter().map(R::from).collect();
    render(&rows, format, columns, &mut std::io::stdout().lock())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Keeps the first `limit` rows, saying on stderr how many were left out.
fn limit_rows<T>(rows: &mut Vec<T>, limit: Option<usize>) {
    if let Some(limit) = limit
        && rows.len() > limit
    {
        eprintln!("first {limit} of {} shown (--limit)", rows.len());
        rows.truncate(limit);
    }
}

/// How often `sweep status --watch` asks again.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// What `sweep start` prints: `{"id": ...}`.
#[derive(serde::Serialize)]
struct SweepId {
    id: String,
}

#[derive(Parser)]
#[command(name = "hygienectl", version, about = "Hygiene admin CLI")]
struct Cli {
    /// TOML file with `collector` and `pki`; flags and environment override it.
    #[arg(long, global = true, env = "HYGIENECTL_CONFIG")]
    config: Option<PathBuf>,
    /// Collector address [default: https://127.0.0.1:50051].
    #[arg(long, global = true, env = "HYGIENE_COLLECTOR")]
    collector: Option<String>,
    /// Directory with ca.pem, admin.pem, admin.key [default: pki].
    #[arg(long, global = true, env = "HYGIENE_PKI")]
    pki: Option<PathBuf>,
    /// Tables show every cell whole (by default they fit 120 columns, long hashes and paths
    /// shortened in the middle).
    #[arg(long, global = true)]
    wide: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hosts known to the collector.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Findings reported by agents.
    #[command(subcommand)]
    Findings(FindingsCommand),
    /// Packages installed on hosts, from their agents' inventories.
    #[command(subcommand)]
    Packages(PackagesCommand),
    /// Windows updates installed on a host, from its agent's inventory.
    #[command(subcommand)]
    Updates(UpdatesCommand),
    /// Programs installed on a Windows host, from its agent's inventory.
    #[command(subcommand)]
    Programs(ProgramsCommand),
    /// Hosts' network sockets, from their agents' latest reports.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Fleet sweeps: start one on every host or on some, watch it finish, cancel it.
    #[command(subcommand)]
    Sweep(SweepCommand),
    /// Every admin action: who (the admin certificate), when, what.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Threat intelligence: the CERT's botnet IP lists, hash IOCs for every agent.
    #[command(subcommand)]
    Intel(IntelCommand),
    /// YARA rules for every agent: publish, and check which hosts run them.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Missing Microsoft security updates, host by host, from Microsoft's monthly documents.
    #[command(subcommand)]
    Vuln(VulnCommand),
    /// The fleet-wide allowlist: files judged harmless, by content, rule or path.
    #[command(subcommand)]
    Allow(AllowCommand),
    /// Connections the collector refused: foreign, expired or missing certificates, failed
    /// handshakes, certificates of the wrong role.
    #[command(subcommand)]
    Refused(RefusedCommand),
    /// The site's collector replicas (one, on SQLite): where each listens, whether it is
    /// alive, how many agents it holds.
    #[command(subcommand)]
    Replicas(ReplicasCommand),
    /// Enrollment tokens: what agents enroll themselves with (no certificate issued per host).
    #[command(subcommand)]
    Enroll(EnrollCommand),
    /// The cleanup's progress: hosts per status, the share verified clean, day by day.
    Progress {
        /// First day of the timeline (YYYY-MM-DD) [default: 30 days ago].
        #[arg(long, value_name = "DATE", value_parser = parse_day)]
        since: Option<i64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Unix ms at the start (UTC) of a `YYYY-MM-DD` day.
fn parse_day(text: &str) -> Result<i64, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text.trim(), &format)
        .map_err(|e| format!("{text:?}: {e} (expected YYYY-MM-DD)"))?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

#[derive(Subcommand)]
enum AllowCommand {
    /// Judge files harmless: every finding the entry matches becomes a false positive, with
    /// the entry named in its history, now and in every later report; audited.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["sha256", "rule", "path"])))]
    Add {
        /// Files with this content.
        #[arg(long, value_name = "H")]
        sha256: Option<String>,
        /// Matches of this YARA rule (IDENTIFIER, or NAMESPACE:IDENTIFIER).
        #[arg(long, value_name = "R")]
        rule: Option<String>,
        /// Files whose path matches this glob (`*` within a directory, `**` across them).
        #[arg(long, value_name = "GLOB")]
        path: Option<String>,
        /// Why (required).
        #[arg(long)]
        note: String,
        /// Only this host's findings [default: every host].
        #[arg(long, value_name = "ID")]
        host: Option<String>,
        /// The entry lapses after this long (90d, 12h) [default: never].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Every entry, with whether it is in force.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Take an entry out of force (its findings stay false positives until marked open).
    Remove { id: i64 },
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Start a sweep; prints its id. Online agents get it at once, offline ones when they
    /// reconnect before the deadline.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["all", "hosts"])))]
    Start {
        /// Every host the collector knows.
        #[arg(long)]
        all: bool,
        /// These hosts (repeatable, or several after one --host).
        #[arg(long = "host", value_name = "ID", num_args = 1..)]
        hosts: Vec<String>,
        /// Agents ignore their caches and read every file again.
        #[arg(long)]
        full: bool,
        /// Each agent starts at a random moment within this many seconds (0: at once).
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        splay: u32,
        /// How long offline agents may still get the sweep when they reconnect (7d, 36h, 90m).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
        deadline: u64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Per host: pending, running (files and bytes done, estimate, errors), done (findings),
    /// failed (why), expired or cancelled; fleet totals and an estimated finish.
    Status {
        id: String,
        /// Redraw until the sweep ends (on a terminal; otherwise print once it has ended).
        #[arg(long)]
        watch: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Every sweep, newest first, with its totals.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Stop a sweep: agents running it stop, agents not reached never start it.
    Cancel { id: String },
}

#[derive(Subcommand)]
enum IntelCommand {
    /// Import a botnet IP list (addresses and CIDR ranges; plain text with `#` comments,
    /// Loki's c2-iocs.txt, or CSV with an `ip` column) as the source's next version, and
    /// re-check every host against it at once. Bad lines are reported and skipped.
    ImportIps {
        file: PathBuf,
        /// Who sent it (the CERT's name); versions are counted per source.
        #[arg(long, value_name = "NAME")]
        source: String,
        /// How the file is laid out.
        #[arg(long = "format", value_enum, default_value = "auto")]
        list_format: ListFormatArg,
        /// Retire the source's earlier lists (a monthly list that replaces the last one).
        #[arg(long)]
        replace: bool,
        /// Take ranges broader than /8 (IPv4) or /32 (IPv6); without it such a line refuses
        /// the list, since it would make every host a match.
        #[arg(long)]
        allow_broad: bool,
        /// Take private, loopback, link-local, multicast and other special-purpose ranges (an
        /// agency's own list of internal hosts; a lab). Without it they are skipped, each
        /// named with the range it falls in.
        #[arg(long)]
        allow_reserved: bool,
    },
    /// Every list, active and retired.
    Lists {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Retire a list: its entries stop matching, and hosts are re-checked.
    Remove { id: i64 },
    /// Hash IOCs for every agent (Loki `HASH;COMMENT`, one hash per line, CSV with a hash
    /// column, or STIX 2.1 bundles of file-hash indicators): read as agents read them, signed,
    /// sent to every connected agent and fetched by the others; they replace the agents' own
    /// lists.
    ImportHashes {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The bundle's name [default: the first file's name].
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Compile YARA rule files (or the .yar/.yara files under directories) as agents will,
    /// sign them, and send them to every connected agent (the others fetch them when they
    /// connect); they replace the agents' own rules. A file that does not compile refuses the
    /// publish, unless --skip-broken.
    Publish {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        name: String,
        /// Leave files that do not compile out (listed on stderr).
        #[arg(long)]
        skip_broken: bool,
        /// Publish rules that would slow every agent down (slow patterns, or far slower than
        /// the rest over a built-in sample) instead of refusing the bundle.
        #[arg(long)]
        allow_slow: bool,
    },
    /// Per host: the rule and IOC bundles it runs, since when, and whether they are the
    /// current ones. Exit code 1 while some host does not run them.
    Status {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum VulnCommand {
    /// Import MSRC CVRF documents (the monthly security updates, XML or the CVRF API's JSON).
    /// A newer revision of a month replaces the one held; a file that does not read is
    /// refused whole, naming the element. Exit code 2 when any file was refused.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Hosts that miss fixes (and hosts that could not be assessed), most critical first:
    /// counts of critical and important CVEs, the highest CVSS, the updates to install.
    /// Counts and state cover only the fixes the filters accept. Exit code 1 when a listed
    /// host misses a fix.
    Hosts {
        #[arg(long, value_enum, value_name = "SEVERITY")]
        min_severity: Option<SeverityArg>,
        #[arg(long, value_name = "SCORE")]
        min_cvss: Option<f32>,
        /// Also hosts that miss nothing.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Every CVE one host lacks the fix for (severity, CVSS, product, KB, fixed build, whether
    /// exploited), and the Microsoft products on it that could not be checked.
    Host {
        host: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Per update: how many hosts need it and what installing it closes, in the order that
    /// closes the most risk first (critical, then important, then exploited CVEs per host).
    Summary {
        #[arg(long, value_enum, value_name = "SEVERITY")]
        min_severity: Option<SeverityArg>,
        #[arg(long, value_name = "SCORE")]
        min_cvss: Option<f32>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SeverityArg {
    Critical,
    Important,
    Moderate,
    Low,
}

fn severity_name(severity: Option<SeverityArg>) -> String {
    severity.map_or_else(String::new, |s| format!("{s:?}").to_lowercase())
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ListFormatArg {
    Auto,
    Plain,
    Csv,
    /// One JSON object per line with a `cidr` or `ip` field (Spamhaus DROP's JSON form).
    Ndjson,
}

#[derive(Subcommand)]
enum EnrollCommand {
    /// Make a token; it is shown once, with the CA fingerprint agents pin.
    Create {
        /// Whose hosts it is for (an agency, a district).
        #[arg(long)]
        label: String,
        /// Hosts that may enroll with it [default: any number].
        #[arg(long, value_name = "N")]
        uses: Option<u64>,
        /// How long it stays valid: 7d, 36h, 90m [default: until revoked].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<u64>,
        /// The group its hosts join.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Every token with its state (active, used_up, expired, revoked) and uses.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Stop a token from enrolling more hosts (those enrolled keep their certificates).
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum ReplicasCommand {
    /// One row per replica, by listen address.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum RefusedCommand {
    /// One row per kind, address and certificate, the most recent first; the totals since the
    /// collector started go to stderr.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// One row per admin action, oldest first.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Seconds from `7d`, `36h`, `90m`, `1h 30m` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let seconds = match text.trim().parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => humantime::parse_duration(text.trim())
            .map_err(|e| format!("{text:?}: {e} (examples: 7d, 36h, 90m, 3600)"))?
            .as_secs(),
    };
    if seconds == 0 {
        return Err(format!("{text:?}: the deadline must be in the future"));
    }
    Ok(seconds)
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// One row per socket.
    List {
        /// Only this host's sockets.
        #[arg(long)]
        host: Option<String>,
        /// Only sockets whose remote address is this address or in this CIDR network.
        #[arg(long, value_name = "IP_OR_CIDR")]
        remote: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum PackagesCommand {
    /// One row per package installed on a host.
    List {
        #[arg(long)]
        host: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum UpdatesCommand {
    /// One row per update installed on a Windows host (KB, title, when).
    List {
        #[arg(long)]
        host: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum ProgramsCommand {
    /// One row per program installed on a Windows host (name, version, publisher).
    List {
        #[arg(long)]
        host: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum HostsCommand {
    /// One row per host.
    List {
        /// Only hosts someone must go and clean or check: `infected` and `suspect` ones.
        #[arg(long)]
        infected: bool,
        /// Only hosts with this package installed.
        #[arg(long, value_name = "NAME")]
        has_package: Option<String>,
        /// Only hosts with package NAME installed at a version below VERSION (Debian or RPM
        /// ordering, as the host's package manager orders them).
        #[arg(long, value_name = "NAME=VERSION", value_parser = parse_package_below)]
        package_below: Option<(String, String)>,
        /// Only Windows hosts that lack this update (KB5034441): where the imported Microsoft
        /// documents name it, only hosts whose Windows it is for and that have neither it, a
        /// later one that replaces it, nor a build past it.
        #[arg(long, value_name = "KB")]
        missing_kb: Option<String>,
        /// Only hosts with this status (only `clean` says a host was proven clean):
        ///   infected               open findings
        ///   suspect                on a botnet list; no complete sweep started since the match
        ///   cleaning               a quarantine asked for; the agent has not answered yet
        ///   awaiting_verification  files quarantined; no sweep since has confirmed they are gone
        ///   no_rules               the last sweep ran with no YARA rules: it proves nothing
        ///   outdated               the last sweep ran with other rules or IOCs than the current
        ///                          bundles (the agent rescans once it has them)
        ///   never_swept            no complete sweep yet
        ///   stale                  not seen for --stale-after-hours (the collector's setting)
        ///   clean                  the last complete sweep found nothing open, ran with rules
        ///                          and the current bundles, and started after every botnet match
        #[arg(long, value_name = "S", verbatim_doc_comment)]
        status: Option<String>,
        /// Every host in the order to clean it: botnet list matches first, then open malware
        /// findings, then missing critical Microsoft patches; each row gives its score and why.
        #[arg(long, conflicts_with_all = ["infected", "has_package", "package_below", "missing_kb", "status"])]
        priority: bool,
        /// Only the first N rows (the first N to clean, with --priority).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Decommissioned hosts (`hosts remove`) too, with when they were removed.
        #[arg(long, conflicts_with = "priority")]
        removed: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// One host in detail: facts, OS and build, inventory state.
    Show {
        host: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Decommission a host: cut off as `revoke` does, and left out of every list, count and
    /// sweep from now on (`hosts list --removed` shows it); its findings and history stay.
    /// A certificate issued for it later brings it back when it connects.
    Remove {
        host: String,
        /// Why; kept in the audit log.
        #[arg(long)]
        note: String,
    },
    /// Cut a host off (a stolen laptop, a decommissioned server): every certificate it was
    /// issued until now is refused from now on, and its stream closes at once. A certificate
    /// issued for it later (`pki issue-agent --force`) works.
    Revoke {
        host: String,
        /// Why; kept in the audit log.
        #[arg(long)]
        note: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn parse_package_below(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, version)) if !name.trim().is_empty() && !version.trim().is_empty() => {
            Ok((name.trim().to_owned(), version.trim().to_owned()))
        }
        _ => Err(format!(
            "{text:?}: expected NAME=VERSION, e.g. openssl=3.0.13-1"
        )),
    }
}

#[derive(Subcommand)]
enum FindingsCommand {
    /// One row per finding.
    List {
        /// Only this host's findings.
        #[arg(long)]
        host: Option<String>,
        /// Only findings in this state: open, quarantine_requested, quarantined, resolved,
        /// false_positive or reopened.
        #[arg(long, value_name = "S")]
        state: Option<String>,
        /// Only matches of this YARA rule.
        #[arg(long, value_name = "R")]
        rule: Option<String>,
        /// Only findings on files with this SHA-256.
        #[arg(long, value_name = "H")]
        sha256: Option<String>,
        /// Only findings of this kind: yara, hash_ioc or botnet_ip.
        #[arg(long, value_name = "K")]
        kind: Option<String>,
        /// One row per file (host, path, SHA-256) with its findings' ids, states and rules:
        /// quarantine and restore act on the file.
        #[arg(long)]
        by_file: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Have the host's agent move the file into its quarantine (if it still has the finding's
    /// SHA-256); the host gets the order now or when it reconnects.
    Quarantine {
        id: i64,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Have the host's agent put a quarantined file back, byte for byte.
    Restore {
        id: i64,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Set a verdict: false_positive (with --note), or open to take one back. `resolved` is
    /// earned by a sweep that no longer finds the file, never set by hand.
    Mark {
        id: i64,
        #[arg(long, value_name = "S")]
        state: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Every change of a finding's state: when, who, from what to what, why.
    History {
        id: i64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Reports a published bundle: what was left out on stderr, the bundle on stdout.
fn published(response: v1::PublishResponse, stdout: &mut dyn Write) -> anyhow::Result<ExitCode> {
    for skipped in &response.skipped {
        eprintln!("left out: {skipped}");
    }
    for slow in &response.slow {
        eprintln!("published although slow: {slow}");
    }
    let row = BundleRow::from(response.bundle.unwrap_or_default());
    eprintln!(
        "{} bundle {} ({}): {} files, {} items; going to {} connected agents ({} at a time), the others get it when they connect",
        row.kind,
        row.version,
        row.name,
        row.files,
        row.items,
        response.sent_to,
        response.sent_at_once
    );
    render_record(&row, Format::Table, stdout).context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A reader that stopped early (`| head`) is not an error of ours.
        Err(err)
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!(
                "hygienectl: error: {}",
                hygiene_proto::ErrorChain(err.as_ref())
            );
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    hygienectl::output::set_wide(cli.wide);
    let file: CtlConfig = match cli.config.clone().or_else(hygienectl::config::default_path) {
        Some(path) => CtlConfig::read(&path)?,
        None => CtlConfig::default(),
    };
    let collector = cli
        .collector
        .or(file.collector)
        .unwrap_or_else(|| DEFAULT_COLLECTOR.to_owned());
    let pki_dir = cli.pki.or(file.pki).unwrap_or_else(|| PathBuf::from("pki"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let timeout = match cli.command {
            Command::Rules(RulesCommand::Publish { .. })
            | Command::Vuln(VulnCommand::Import { .. })
            | Command::Intel(
                IntelCommand::ImportHashes { .. } | IntelCommand::ImportIps { .. },
            ) => ctl::LONG_CALL_TIMEOUT,
            _ => ctl::CALL_TIMEOUT,
        };
        let mut client = ctl::connect(&collector, &pki_dir, timeout).await?;
        let mut stdout = std::io::stdout().lock();
        match cli.command {
            Command::Hosts(HostsCommand::List {
                priority: true,
                limit,
                format,
                ..
            }) => {
                let response = client
                    .priority_hosts(v1::PriorityHostsRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?;
                let mut rows: Vec<PriorityRow> = response
                    .into_inner()
                    .hosts
                    .into_iter()
                    .map(PriorityRow::from)
                    .collect();
                let findings = rows.iter().any(|h| {
                    h.botnet_matches > 0 || h.open_findings > 0 || h.missing_critical > 0
                });
                limit_rows(&mut rows, limit);
                render(&rows, format, PRIORITY_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(exit_for(findings))
            }
            Command::Hosts(HostsCommand::List {
                infected,
                has_package,
                package_below,
                missing_kb,
                status,
                priority: false,
                limit,
                removed,
                format,
            }) => {
                let by_package = has_package.is_some() || package_below.is_some();
                let (below_name, below_version) = package_below.unwrap_or_default();
                let response = client
                    .list_hosts(v1::ListHostsRequest {
                        infected_only: infected,
                        has_package: has_package.unwrap_or_default(),
                        package_below_name: below_name,
                        package_below_version: below_version,
                        missing_kb: missing_kb.unwrap_or_default(),
                        status: status.unwrap_or_default(),
                        include_removed: removed,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let mut rows: Vec<HostRow> = response
                    .into_inner()
                    .hosts
                    .into_iter()
                    .map(HostRow::from)
                    .collect();
                let findings = rows.iter().any(|h| {
                    h.open_findings > 0 || h.status == "infected" || h.status == "suspect"
                });
                limit_rows(&mut rows, limit);
                let columns = if by_package {
                    HOST_PACKAGE_TABLE_COLUMNS
                } else if removed {
                    ctl::HOST_REMOVED_TABLE_COLUMNS
                } else {
                    HOST_TABLE_COLUMNS
                };
                render(&rows, format, columns, &mut stdout).context("cannot write to stdout")?;
                Ok(exit_for(findings))
            }
            Command::Hosts(HostsCommand::Show { host, format }) => {
                let response = client
                    .get_host(v1::GetHostRequest { host_id: host })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let row = HostDetailRow::from(response.into_inner());
                render_record(&row, format, &mut stdout).context("cannot write to stdout")?;
                Ok(exit_for(row.open_findings > 0))
            }
            Command::Hosts(HostsCommand::Remove { host, note }) => {
                let response = client
                    .remove_host(v1::RevokeHostRequest {
                        host_id: host.clone(),
                        note,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                eprintln!(
                    "{host} removed: left out of lists, counts and sweeps; its certificates are refused ({} seen so far), {} stream(s) closed; its history stays",
                    response.serials.len(),
                    response.streams_closed
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Hosts(HostsCommand::Revoke { host, note, format }) => {
                let response = client
                    .revoke_host(v1::RevokeHostRequest {
                        host_id: host.clone(),
                        note,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                eprintln!(
                    "{host} revoked: {} certificate(s) seen so far, and any issued before now, are refused; {} stream(s) closed",
                    response.serials.len(),
                    response.streams_closed
                );
                let row = serde_json::json!({
                    "host_id": host,
                    "revoked_serials": response.serials,
                    "streams_closed": response.streams_closed,
                });
                render_record(&row, format, &mut stdout).context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Connections(ConnectionsCommand::List {
                host,
                remote,
                format,
            }) => {
                let response = client
                    .list_connections(v1::ListConnectionsRequest {
                        host_id: host.unwrap_or_default(),
                        remote: remote.unwrap_or_default(),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<ConnectionRow> = response
                    .into_inner()
                    .connections
                    .into_iter()
                    .map(ConnectionRow::from)
                    .collect();
                render(&rows, format, CONNECTION_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Findings(FindingsCommand::List {
                host,
                state,
                rule,
                sha256,
                kind,
                by_file,
                format,
            }) => {
                let response = client
                    .list_findings(v1::ListFindingsRequest {
                        host_id: host.unwrap_or_default(),
                        state: state.unwrap_or_default(),
                        rule: rule.unwrap_or_default(),
                        sha256: sha256.unwrap_or_default(),
                        kind: kind.unwrap_or_default(),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<FindingRow> = response
                    .into_inner()
                    .findings
                    .into_iter()
                    .map(FindingRow::from)
                    .collect();
                if by_file {
                    let files = FileRow::group(&rows);
                    render(&files, format, FILE_TABLE_COLUMNS, &mut stdout)
                } else {
                    render(&rows, format, FINDING_TABLE_COLUMNS, &mut stdout)
                }
                .context("cannot write to stdout")?;
                Ok(exit_for(
                    rows.iter()
                        .any(|f| f.state == "open" || f.state == "reopened"),
                ))
            }
            Command::Findings(FindingsCommand::Quarantine { id, note, format }) => {
                remediate(&mut client, id, "quarantine", note, format, &mut stdout).await
            }
            Command::Findings(FindingsCommand::Restore { id, note, format }) => {
                remediate(&mut client, id, "restore", note, format, &mut stdout).await
            }
            Command::Findings(FindingsCommand::Mark {
                id,
                state,
                note,
                format,
            }) => {
                let finding = client
                    .change_finding(v1::ChangeFindingRequest {
                        id,
                        action: "mark".into(),
                        state,
                        note,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                render_record(&FindingRow::from(finding), format, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Findings(FindingsCommand::History { id, format }) => {
                let response = client
                    .finding_history(v1::FindingHistoryRequest { id })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                let rows: Vec<FindingChangeRow> = response
                    .changes
                    .into_iter()
                    .map(FindingChangeRow::from)
                    .collect();
                render(&rows, format, FINDING_HISTORY_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Progress { since, format } => {
                let response = client
                    .progress(v1::ProgressRequest {
                        since_ms: since.unwrap_or(0),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                let view = ProgressView::from(response);
                match format {
                    Format::Json => render_record(&view, format, &mut stdout),
                    Format::Csv => render(&view.day_rows(), format, &[], &mut stdout),
                    Format::Table => {
                        let counts: Vec<String> = view
                            .by_status
                            .iter()
                            .map(|(status, count)| format!("{count} {status}"))
                            .collect();
                        writeln!(
                            stdout,
                            "HOSTS     {}: {}\nVERIFIED  {:.1}% clean\n",
                            view.hosts,
                            counts.join(", "),
                            view.verified_clean_share * 100.0
                        )
                        .and_then(|()| render(&view.day_rows(), format, &[], &mut stdout))
                    }
                }
                .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Sweep(SweepCommand::Start {
                all,
                hosts,
                full,
                splay,
                deadline,
                format,
            }) => {
                let response = client
                    .start_sweep(v1::StartSweepRequest {
                        all,
                        host_ids: hosts,
                        full,
                        splay_seconds: Some(splay),
                        deadline_seconds: Some(deadline),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                eprintln!(
                    "sweep {} targets {} host(s); {} online received it at once",
                    response.id, response.hosts, response.delivered
                );
                let id = SweepId { id: response.id };
                match format {
                    Format::Table => writeln!(stdout, "{}", id.id),
                    _ => render_record(&id, format, &mut stdout),
                }
                .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Sweep(SweepCommand::Status { id, watch, format }) => {
                let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
                let redraw = watch && format == Format::Table && terminal;
                let mut last_line = String::new();
                loop {
                    let status = SweepStatusView::from(
                        client
                            .get_sweep(v1::GetSweepRequest { id: id.clone() })
                            .await
                            .map_err(ctl::CtlError::from)?
                            .into_inner(),
                    );
                    let last = !watch || !status.is_running();
                    if redraw {
                        // Home and clear, then one screen: the summary and the hosts not done.
                        // The last frame too: the full host list is `sweep status` without --watch.
                        write!(stdout, "\x1b[H\x1b[2J").context("cannot write to stdout")?;
                        status
                            .write_screen(terminal_rows(), &mut stdout)
                            .context("cannot write to stdout")?;
                    } else if watch && format == Format::Table {
                        // Into a pipe or a file: a line whenever something changed.
                        let line = status.line();
                        if line != last_line {
                            writeln!(stdout, "{} {line}", ctl::format_ms(now_ms()))
                                .context("cannot write to stdout")?;
                            last_line = line;
                        }
                        if last {
                            writeln!(stdout).context("cannot write to stdout")?;
                            status
                                .write(format, &mut stdout)
                                .context("cannot write to stdout")?;
                        }
                    } else if last {
                        status
                            .write(format, &mut stdout)
                            .context("cannot write to stdout")?;
                    }
                    stdout.flush().context("cannot write to stdout")?;
                    if last {
                        return Ok(exit_for(status.totals.findings > 0));
                    }
                    tokio::time::sleep(WATCH_INTERVAL).await;
                }
            }
            Command::Sweep(SweepCommand::List { format }) => {
                let response = client
                    .list_sweeps(v1::ListSweepsRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<SweepListRow> = response
                    .into_inner()
                    .sweeps
                    .into_iter()
                    .map(SweepListRow::from)
                    .collect();
                render(&rows, format, SWEEP_LIST_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Sweep(SweepCommand::Cancel { id }) => {
                let response = client
                    .cancel_sweep(v1::CancelSweepRequest { id: id.clone() })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                eprintln!(
                    "sweep {id} cancelled; {} host(s) had not finished",
                    response.hosts
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Enroll(EnrollCommand::Create {
                label,
                uses,
                expires,
                group,
                format,
            }) => {
                let response = client
                    .create_enroll_token(v1::CreateEnrollTokenRequest {
                        label,
                        uses,
                        expires_seconds: expires,
                        group: group.unwrap_or_default(),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                eprintln!(
                    "enrollment token {}: shown this once, keep it with the CA fingerprint",
                    response.id
                );
                let row = ctl::EnrollCreatedRow {
                    id: response.id,
                    token: response.token,
                    ca_fingerprint: response.ca_fingerprint,
                };
                render_record(&row, format, &mut stdout).context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Enroll(EnrollCommand::List { format }) => {
                let response = client
                    .list_enroll_tokens(v1::ListEnrollTokensRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<ctl::EnrollTokenRow> = response
                    .into_inner()
                    .tokens
                    .into_iter()
                    .map(ctl::EnrollTokenRow::from)
                    .collect();
                render(&rows, format, ctl::ENROLL_TOKEN_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Enroll(EnrollCommand::Revoke { id }) => {
                client
                    .revoke_enroll_token(v1::RevokeEnrollTokenRequest { id })
                    .await
                    .map_err(ctl::CtlError::from)?;
                eprintln!("enrollment token {id} revoked: it enrolls no more hosts");
                Ok(ExitCode::SUCCESS)
            }
            Command::Refused(RefusedCommand::List { format }) => {
                let response = client
                    .list_refusals(v1::ListRefusalsRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                eprintln!("{}", ctl::refusal_totals(&response));
                let rows: Vec<ctl::RefusalRow> = response
                    .groups
                    .into_iter()
                    .map(ctl::RefusalRow::from)
                    .collect();
                render(&rows, format, ctl::REFUSAL_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Replicas(ReplicasCommand::List { format }) => {
                let rows: Vec<ctl::ReplicaRow> = client
                    .list_replicas(v1::ListReplicasRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner()
                    .replicas
                    .into_iter()
                    .map(ctl::ReplicaRow::from)
                    .collect();
                render(&rows, format, ctl::REPLICA_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Audit(AuditCommand::List { format }) => {
                let response = client
                    .list_audit(v1::ListAuditRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<AuditRow> = response
                    .into_inner()
                    .entries
                    .into_iter()
                    .map(AuditRow::from)
                    .collect();
                render(&rows, format, AUDIT_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Intel(IntelCommand::ImportIps {
                file,
                source,
                list_format,
                replace,
                allow_broad,
                allow_reserved,
            }) => {
                let content = std::fs::read(&file)
                    .with_context(|| format!("{}: cannot read the list", file.display()))?;
                let file_name = file.file_name().map_or_else(
                    || file.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                let response = client
                    .import_ip_list(v1::ImportIpListRequest {
                        source,
                        file_name: file_name.clone(),
                        format: format!("{list_format:?}").to_lowercase(),
                        content,
                        replace,
                        allow_broad,
                        allow_reserved,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                const NAMED: usize = 50;
                for skipped in response.reserved.iter().take(NAMED) {
                    eprintln!(
                        "{file_name}:{}: skipped: {} (--allow-reserved takes it)",
                        skipped.line, skipped.reason
                    );
                }
                if response.reserved.len() > NAMED {
                    eprintln!(
                        "{file_name}: {} more special-purpose ranges skipped",
                        response.reserved.len() - NAMED
                    );
                }
                for bad in &response.bad_lines {
                    eprintln!(
                        "{file_name}:{}: skipped: {} ({})",
                        bad.line,
                        bad.reason,
                        bad.text.trim()
                    );
                }
                let row = IpListRow::from(response.list.unwrap_or_default());
                eprintln!(
                    "list {} ({} v{}): {} entries, {} bad lines skipped",
                    row.id, row.source, row.version, row.entries, row.bad_lines
                );
                let read = row.entries + response.reserved.len() as u64;
                match response.stated_entries {
                    Some(stated) if stated != read => eprintln!(
                        "warning: the publisher states {stated} entries; {read} were read (a download cut short?)"
                    ),
                    _ => {}
                }
                if row.entries == 0 {
                    eprintln!(
                        "the list holds no entries: the source now lists nothing{}",
                        if replace { "; its earlier lists are retired" } else { "" }
                    );
                }
                if !response.reserved.is_empty() {
                    eprintln!(
                        "{} special-purpose range(s) skipped (private, loopback, link-local, multicast, reserved): they would match ordinary hosts",
                        response.reserved.len()
                    );
                }
                if row.domains > 0 {
                    eprintln!(
                        "{} domain name(s) left out, e.g. {}: botnet matching compares IP addresses only",
                        row.domains,
                        response.domain_examples.join(", ")
                    );
                }
                if let Some(recheck) = &response.recheck {
                    eprintln!("{}", describe_recheck(recheck));
                }
                render_record(&row, Format::Table, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Intel(IntelCommand::Lists { format }) => {
                let response = client
                    .list_ip_lists(v1::ListIpListsRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<IpListRow> = response
                    .into_inner()
                    .lists
                    .into_iter()
                    .map(IpListRow::from)
                    .collect();
                render(&rows, format, IP_LIST_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Allow(AllowCommand::Add {
                sha256,
                rule,
                path,
                note,
                host,
                expires,
                format,
            }) => {
                let (kind, value) = match (sha256, rule, path) {
                    (Some(h), _, _) => ("sha256", h),
                    (_, Some(r), _) => ("rule", r),
                    (_, _, Some(p)) => ("path", p),
                    _ => unreachable!("clap requires one of --sha256, --rule, --path"),
                };
                let response = client
                    .add_allow(v1::AddAllowRequest {
                        kind: kind.to_owned(),
                        value,
                        host_id: host.unwrap_or_default(),
                        note,
                        expires_seconds: expires.unwrap_or(0),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                let row = AllowRow::from(response.entry.unwrap_or_default());
                eprintln!(
                    "allowlist entry {}: {} finding(s) now false positives",
                    row.id,
                    response.findings.len()
                );
                render_record(&row, format, &mut stdout).context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Allow(AllowCommand::List { format }) => {
                let response = client
                    .list_allow(v1::ListAllowRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<AllowRow> = response
                    .into_inner()
                    .entries
                    .into_iter()
                    .map(AllowRow::from)
                    .collect();
                render(&rows, format, ALLOW_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Allow(AllowCommand::Remove { id }) => {
                client
                    .remove_allow(v1::RemoveAllowRequest { id })
                    .await
                    .map_err(ctl::CtlError::from)?;
                eprintln!("allowlist entry {id} removed");
                Ok(ExitCode::SUCCESS)
            }
            Command::Intel(IntelCommand::Remove { id }) => {
                let response = client
                    .remove_ip_list(v1::RemoveIpListRequest { id })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                let row = IpListRow::from(response.list.unwrap_or_default());
                eprintln!("list {} ({} v{}) retired", row.id, row.source, row.version);
                if let Some(recheck) = &response.recheck {
                    eprintln!("{}", describe_recheck(recheck));
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Rules(RulesCommand::Publish {
                paths,
                name,
                skip_broken,
                allow_slow,
            }) => {
                let files = rule_sources(&paths).context("cannot read the rules")?;
                eprintln!("compiling {} rule files on the collector...", files.len());
                let response = client
                    .publish_rules(v1::PublishRulesRequest {
                        name,
                        files,
                        skip_broken,
                        allow_slow,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                published(response, &mut stdout)
            }
            Command::Intel(IntelCommand::ImportHashes { files, name }) => {
                let mut sources = Vec::new();
                for path in &files {
                    let content = std::fs::read(path)
                        .with_context(|| format!("{}: cannot read the list", path.display()))?;
                    sources.push(v1::SourceFile {
                        path: path.display().to_string(),
                        content,
                    });
                }
                let name = name.unwrap_or_else(|| {
                    files[0]
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                });
                let response = client
                    .import_hashes(v1::ImportHashesRequest {
                        name,
                        files: sources,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                published(response, &mut stdout)
            }
            Command::Rules(RulesCommand::Status { format }) => {
                let response = client
                    .rules_status(v1::RulesStatusRequest {})
                    .await
                    .map_err(ctl::CtlError::from)?
                    .into_inner();
                for bundle in [&response.rules, &response.iocs].into_iter().flatten() {
                    eprintln!(
                        "current {}: {} {} ({} items, published {} by {})",
                        bundle.kind,
                        bundle.name,
                        bundle.version,
                        bundle.items,
                        ctl::format_ms(bundle.created_ms),
                        bundle.created_by
                    );
                }
                let rows: Vec<RulesStatusRow> = response
                    .hosts
                    .into_iter()
                    .map(RulesStatusRow::from)
                    .collect();
                for line in RulesStatusRow::summary(&rows) {
                    eprintln!("{line}");
                }
                render(&rows, format, RULES_STATUS_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(exit_for(
                    rows.iter().any(|h| !h.rules_current || !h.iocs_current),
                ))
            }
            Command::Vuln(command) => vuln(&mut client, command, &mut stdout).await,
            Command::Updates(UpdatesCommand::List { host, format }) => {
                let response = client
                    .list_updates(v1::ListPackagesRequest { host_id: host })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let columns = &["kb", "installed_on", "title"];
                print_rows::<_, UpdateRow>(response.into_inner().updates, format, columns)
            }
            Command::Programs(ProgramsCommand::List { host, format }) => {
                let response = client
                    .list_programs(v1::ListPackagesRequest { host_id: host })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let columns = &["name", "version", "publisher"];
                print_rows::<_, ProgramRow>(response.into_inner().programs, format, columns)
            }
            Command::Packages(PackagesCommand::List { host, format }) => {
                let response = client
                    .list_packages(v1::ListPackagesRequest { host_id: host })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let columns = PACKAGE_TABLE_COLUMNS;
                print_rows::<_, PackageRow>(response.into_inner().packages, format, columns)
            }
        }
    })
}

/// `hygienectl vuln ...`.
async fn vuln(
    client: &mut ctl::AdminClient,
    command: VulnCommand,
    stdout: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let months = |advisories: &[String]| {
        if advisories.is_empty() {
            eprintln!("no Microsoft document imported yet: `hygienectl vuln import FILE...`");
        } else {
            eprintln!("assessed against {}", advisories.join(", "));
        }
    };
    match command {
        VulnCommand::Import { files, format } => {
            let mut sources = Vec::new();
            for path in &files {
                let content = std::fs::read(path)
                    .with_context(|| format!("{}: cannot read the document", path.display()))?;
                sources.push(v1::SourceFile {
                    path: path.display().to_string(),
                    content,
                });
            }
            let response = client
                .import_advisories(v1::ImportAdvisoriesRequest { files: sources })
                .await
                .map_err(ctl::CtlError::from)?
                .into_inner();
            let mut refused = false;
            for file in &response.files {
                match file.outcome.as_str() {
                    "refused" => {
                        refused = true;
                        eprintln!("refused, nothing imported: {}", file.error);
                    }
                    "replaced" => eprintln!(
                        "{}: {} revision {} replaces revision {}",
                        file.file, file.id, file.revision, file.other_revision
                    ),
                    "older" => eprintln!(
                        "{}: not imported: the collector holds {} revision {}, newer than this file's",
                        file.file, file.id, file.other_revision
                    ),
                    "unchanged" => eprintln!(
                        "{}: {} revision {} is held already",
                        file.file, file.id, file.revision
                    ),
                    _ => eprintln!(
                        "{}: {} revision {} imported: {} CVEs, {} fixes",
                        file.file, file.id, file.revision, file.cves, file.fixes
                    ),
                }
            }
            months(&response.advisories);
            let rows: Vec<AdvisoryImportRow> = response
                .files
                .into_iter()
                .map(AdvisoryImportRow::from)
                .collect();
            render(&rows, format, ADVISORY_IMPORT_TABLE_COLUMNS, stdout)
                .context("cannot write to stdout")?;
            Ok(if refused {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        VulnCommand::Hosts {
            min_severity,
            min_cvss,
            all,
            format,
        } => {
            let response = client
                .vuln_hosts(v1::VulnHostsRequest {
                    min_severity: severity_name(min_severity),
                    min_cvss: min_cvss.unwrap_or(0.0),
                    all,
                })
                .await
                .map_err(ctl::CtlError::from)?
                .into_inner();
            months(&response.advisories);
            let rows: Vec<VulnHostRow> =
                response.hosts.into_iter().map(VulnHostRow::from).collect();
            render(&rows, format, VULN_HOST_TABLE_COLUMNS, stdout)
                .context("cannot write to stdout")?;
            Ok(exit_for(rows.iter().any(|h| h.state == "missing")))
        }
        VulnCommand::Host { host, format } => {
            let response = client
                .vuln_host(v1::VulnHostRequest { host_id: host })
                .await
                .map_err(ctl::CtlError::from)?
                .into_inner();
            months(&response.advisories);
            let summary = VulnHostRow::from(response.host.unwrap_or_default());
            eprintln!(
                "{}: {} {}: {} ({} CVEs missing, {} critical, {} important){}",
                summary.host_id,
                summary.os_product,
                summary.build,
                summary.state,
                summary.cves,
                summary.critical,
                summary.important,
                if summary.kbs.is_empty() {
                    String::new()
                } else {
                    format!("; install {}", summary.kbs.join(" "))
                }
            );
            let rows: Vec<VulnEntryRow> = response
                .missing
                .into_iter()
                .map(VulnEntryRow::from)
                .chain(response.not_assessed.into_iter().map(VulnEntryRow::from))
                .collect();
            render(&rows, format, VULN_ENTRY_TABLE_COLUMNS, stdout)
                .context("cannot write to stdout")?;
            Ok(exit_for(summary.state == "missing"))
        }
        VulnCommand::Summary {
            min_severity,
            min_cvss,
            format,
        } => {
            let response = client
                .vuln_summary(v1::VulnSummaryRequest {
                    min_severity: severity_name(min_severity),
                    min_cvss: min_cvss.unwrap_or(0.0),
                })
                .await
                .map_err(ctl::CtlError::from)?
                .into_inner();
            months(&response.advisories);
            eprintln!(
                "{} hosts miss fixes, {} up to date, {} not assessed",
                response.hosts_missing, response.hosts_up_to_date, response.hosts_not_assessed
            );
            let rows: Vec<KbNeedRow> = response
                .kbs
                .into_iter()
                .enumerate()
                .map(|(i, n)| KbNeedRow::new(i as u32 + 1, n))
                .collect();
            render(&rows, format, KB_NEED_TABLE_COLUMNS, stdout)
                .context("cannot write to stdout")?;
            Ok(exit_for(!rows.is_empty()))
        }
    }
}

/// Asks for a quarantine or restore and prints the finding as it now stands.
async fn remediate(
    client: &mut ctl::AdminClient,
    id: i64,
    action: &str,
    note: String,
    format: Format,
    stdout: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let finding = client
        .change_finding(v1::ChangeFindingRequest {
            id,
            action: action.to_owned(),
            state: String::new(),
            note,
        })
        .await
        .map_err(ctl::CtlError::from)?
        .into_inner();
    eprintln!(
        "finding {id} on {}: {action} requested; its agent carries it out when online",
        finding.host_id
    );
    render_record(&FindingRow::from(finding), format, stdout).context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn exit_for(findings: bool) -> ExitCode {
    if findings {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
