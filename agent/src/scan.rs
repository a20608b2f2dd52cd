//! The scan engine: walks roots, reads each regular file once, feeds the same bytes to SHA-256
//! and YARA-X, and checks the digest against hash IOCs.
//!
//! Per-file failures (permission denied, vanished, I/O errors, YARA timeouts, files too large
//! for YARA) are counted by kind and reported through the sink; none stops the sweep.
//! Symbolic links are not followed and special files (FIFOs, sockets, devices) are skipped.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::iocs::{Digests, HashIocs};
use crate::rules::RuleSet;

/// Paths never walked by default: kernel and device pseudo-filesystems.
pub const DEFAULT_EXCLUDES: [&str; 3] = ["/proc", "/sys", "/dev"];
/// Default upper bound for YARA scanning; larger files are still hashed.
pub const DEFAULT_MAX_YARA_SIZE: u64 = 64 * 1024 * 1024;
const READ_CHUNK: usize = 256 * 1024;
const YARA_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Yara,
    HashIoc,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Yara => "yara",
            FindingKind::HashIoc => "hash_ioc",
        }
    }
}

/// One match in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    pub sha256: [u8; 32],
    pub size: u64,
    pub kind: FindingKind,
    /// Rule identifier and namespace, for YARA findings.
    pub rule: Option<String>,
    pub namespace: Option<String>,
    /// The IOC list's comment, for hash IOC findings.
    pub ioc_comment: Option<String>,
    pub observed_at: SystemTime,
}

impl Finding {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// The JSON shape of a finding in `hygiene-agent scan --format jsonl`.
#[derive(Debug, Serialize)]
pub struct FindingJson<'a> {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub kind: FindingKind,
    pub rule: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub ioc_comment: Option<&'a str>,
}

impl<'a> From<&'a Finding> for FindingJson<'a> {
    fn from(f: &'a Finding) -> Self {
        FindingJson {
            path: f.path.to_string_lossy().into_owned(),
            sha256: f.sha256_hex(),
            size: f.size,
            kind: f.kind,
            rule: f.rule.as_deref(),
            namespace: f.namespace.as_deref(),
            ioc_comment: f.ioc_comment.as_deref(),
        }
    }
}

/// Why a file (or directory) was not fully scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanErrorKind {
    PermissionDenied,
    /// The file vanished between listing and reading.
    NotFound,
    /// Larger than the YARA size limit: hashed and IOC-checked, not YARA-scanned.
    TooLarge,
    /// YARA scanning exceeded its time limit.
    Timeout,
    /// Any other I/O or scan error.
    Io,
}

impl ScanErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanErrorKind::PermissionDenied => "permission_denied",
            ScanErrorKind::NotFound => "not_found",
            ScanErrorKind::TooLarge => "too_large",
            ScanErrorKind::Timeout => "timeout",
            ScanErrorKind::Io => "io",
        }
    }

    fn of_io(err: &std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::PermissionDenied => ScanErrorKind::PermissionDenied,
            std::io::ErrorKind::NotFound => ScanErrorKind::NotFound,
            _ => ScanErrorKind::Io,
        }
    }
}

/// A per-file failure, reported with its path.
#[derive(Debug, Clone)]
pub struct ScanError {
    pub path: PathBuf,
    pub kind: ScanErrorKind,
    pub message: String,
}

/// What a sweep produces as it goes.
pub enum SweepEvent {
    /// A file was read (hashed, and YARA-scanned unless an error for it says otherwise).
    File { bytes: u64 },
    /// One file's findings, together, so that they travel as one batch. Never empty.
    Findings(Vec<Finding>),
    /// A file or directory that was not (fully) scanned.
    Error(ScanError),
}

/// Totals of one sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub files: u64,
    pub bytes: u64,
    pub findings: u64,
    pub errors: BTreeMap<ScanErrorKind, u64>,
    /// The sweep was stopped before it finished.
    pub stopped: bool,
}

impl SweepStats {
    /// Counts one event into the totals.
    pub fn count(&mut self, event: &SweepEvent) {
        match event {
            SweepEvent::File { bytes } => {
                self.files += 1;
                self.bytes += bytes;
            }
            SweepEvent::Findings(findings) => self.findings += findings.len() as u64,
            SweepEvent::Error(error) => *self.errors.entry(error.kind).or_default() += 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Directories (and their subtrees) not walked.
    pub excludes: Vec<PathBuf>,
    /// Paths not walked, as globs matched against the whole path (`**/node_modules`).
    pub exclude_globs: Option<globset::GlobSet>,
    pub max_yara_size: u64,
    /// Worker threads; each has its own YARA scanner.
    pub threads: usize,
    /// Do not cross into other file systems below each root.
    pub one_file_system: bool,
}

/// Half the cores, at least one: gentle on a host that has work of its own to do.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Compiles exclusion globs; `*` does not cross `/`, `**` does.
pub fn exclude_globs(patterns: &[String]) -> Result<Option<globset::GlobSet>, globset::Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = globset::GlobSetBuilder::new();
    for pattern in patterns {
        set.add(
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()?,
        );
    }
    set.build().map(Some)
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            excludes: if cfg!(unix) {
                DEFAULT_EXCLUDES.iter().map(PathBuf::from).collect()
            } else {
                Vec::new()
            },
            exclude_globs: None,
            max_yara_size: DEFAULT_MAX_YARA_SIZE,
            threads: default_threads(),
            one_file_system: false,
        }
    }
}

/// Compiled rules plus IOCs: everything needed to judge a file.
#[derive(Debug)]
pub struct Engine {
    rules: Option<RuleSet>,
    iocs: HashIocs,
}

impl Engine {
    pub fn new(rules: Option<RuleSet>, iocs: HashIocs) -> Self {
        Engine { rules, iocs }
    }

    pub fn rule_count(&self) -> usize {
        self.rules.as_ref().map_or(0, |r| r.rules.iter().len())
    }

    pub fn ioc_count(&self) -> usize {
        self.iocs.len()
    }

    /// Rule files left out because they do not compile.
    pub fn broken_rules(&self) -> &[crate::rules::RulesError] {
        self.rules.as_ref().map_or(&[], |set| &set.broken)
    }

    /// Walks `roots` with `options.threads` workers and scans every regular file, calling `sink`
    /// (on the calling thread) for each event. Stops early (with `stats.stopped`) when `stop`
    /// becomes true.
    pub fn sweep(
        &self,
        roots: &[PathBuf],
        options: &SweepOptions,
        stop: &AtomicBool,
        mut sink: impl FnMut(SweepEvent),
    ) -> SweepStats {
        let mut stats = SweepStats::default();
        let Some((first, rest)) = roots.split_first() else {
            return stats;
        };
        let mut builder = ignore::WalkBuilder::new(first);
        for root in rest {
            builder.add(root);
        }
        let excludes = options.excludes.clone();
        let globs = options.exclude_globs.clone();
        builder
            .standard_filters(false)
            .follow_links(false)
            .same_file_system(options.one_file_system)
            .threads(options.threads.max(1))
            .filter_entry(move |entry| {
                let path = entry.path();
                !excludes.iter().any(|ex| path == ex.as_path())
                    && !globs.as_ref().is_some_and(|g| g.is_match(path))
            });
        let walker = builder.build_parallel();
        let threads = options.threads.max(1);
        // Both queues are bounded: a slow consumer slows its producers instead of piling up.
        let (events_tx, events_rx) = std::sync::mpsc::sync_channel::<SweepEvent>(1024);
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<PathBuf>(4096);
        let work_rx = std::sync::Mutex::new(work_rx);
        std::thread::scope(|scope| {
            let walker_events = events_tx.clone();
            scope.spawn(move || list_files(walker, stop, work_tx, walker_events));
            for _ in 0..threads {
                let (events_tx, work_rx) = (events_tx.clone(), &work_rx);
                scope.spawn(move || {
                    self.scan_worker(work_rx, options.max_yara_size, stop, events_tx)
                });
            }
            drop(events_tx);
            for event in events_rx {
                stats.count(&event);
                sink(event);
            }
        });
        stats.stopped = stop.load(Ordering::Relaxed);
        stats
    }

    /// One scan thread: its own YARA scanner (scanners cannot move between threads) and read
    /// buffer, taking paths from the shared queue until it closes.
    fn scan_worker(
        &self,
        work: &std::sync::Mutex<std::sync::mpsc::Receiver<PathBuf>>,
        max_yara_size: u64,
        stop: &AtomicBool,
        events: std::sync::mpsc::SyncSender<SweepEvent>,
    ) {
        let mut scanner = self.rules.as_ref().map(|set| {
            let mut scanner = yara_x::Scanner::new(&set.rules);
            scanner.set_timeout(YARA_TIMEOUT);
            scanner
        });
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            let next = work.lock().expect("work queue lock").recv();
            let Ok(path) = next else { return };
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let send = |event| events.send(event).is_ok();
            let alive = match scan_file(
                &path,
                max_yara_size,
                &mut buffer,
                scanner.as_mut(),
                &self.iocs,
            ) {
                Ok(scanned) => {
                    let mut alive = send(SweepEvent::File {
                        bytes: scanned.size,
                    });
                    if !scanned.findings.is_empty() {
                        alive &= send(SweepEvent::Findings(scanned.findings));
                    }
                    if let Some(error) = scanned.partial {
                        alive &= send(SweepEvent::Error(error));
                    }
                    alive
                }
                Err(error) => send(SweepEvent::Error(error)),
            };
            if !alive {
                return;
            }
        }
    }
}

/// The walk: lists regular files into `work`; walk errors (unreadable directories) go straight
/// to `events`. Symlinks are not followed and special files are skipped.
fn list_files(
    walker: ignore::WalkParallel,
    stop: &AtomicBool,
    work: std::sync::mpsc::SyncSender<PathBuf>,
    events: std::sync::mpsc::SyncSender<SweepEvent>,
) {
    walker.run(|| {
        let (work, events) = (work.clone(), events.clone());
        Box::new(move |entry| {
            if stop.load(Ordering::Relaxed) {
                return ignore::WalkState::Quit;
            }
            let alive = match entry {
                Err(err) => {
                    let path = walk_error_path(&err).unwrap_or_default();
                    let kind = err
                        .io_error()
                        .map_or(ScanErrorKind::Io, ScanErrorKind::of_io);
                    events
                        .send(SweepEvent::Error(ScanError {
                            path,
                            kind,
                            message: err.to_string(),
                        }))
                        .is_ok()
                }
                Ok(entry) if entry.file_type().is_some_and(|t| t.is_file()) => {
                    work.send(entry.into_path()).is_ok()
                }
                Ok(_) => true,
            };
            if alive {
                ignore::WalkState::Continue
            } else {
                ignore::WalkState::Quit
            }
        })
    });
}

struct ScannedFile {
    size: u64,
    findings: Vec<Finding>,
    /// Set when the file was hashed but not fully judged (too large, YARA timeout).
    partial: Option<ScanError>,
}

fn scan_file(
    path: &Path,
    max_yara_size: u64,
    buffer: &mut [u8],
    scanner: Option<&mut yara_x::Scanner<'_>>,
    iocs: &HashIocs,
) -> Result<ScannedFile, ScanError> {
    let io_error = |err: std::io::Error| ScanError {
        path: path.to_path_buf(),
        kind: ScanErrorKind::of_io(&err),
        message: err.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    let declared = file.metadata().map_err(io_error)?.len();
    let keep_bytes = scanner.is_some() && declared <= max_yara_size;
    let mut data = Vec::with_capacity(if keep_bytes { declared as usize } else { 0 });
    let mut hasher = Sha256::new();
    let mut sha1 = iocs.needs_sha1().then(sha1::Sha1::new);
    let mut md5 = iocs.needs_md5().then(md5::Md5::new);
    let mut size = 0u64;
    loop {
        let n = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_error(err)),
        };
        hasher.update(&buffer[..n]);
        if let Some(sha1) = &mut sha1 {
            sha1.update(&buffer[..n]);
        }
        if let Some(md5) = &mut md5 {
            md5.update(&buffer[..n]);
        }
        if keep_bytes {
            data.extend_from_slice(&buffer[..n]);
        }
        size += n as u64;
    }
    let digests = Digests {
        sha256: hasher.finalize().into(),
        sha1: sha1.map(|h| h.finalize().into()),
        md5: md5.map(|h| h.finalize().into()),
    };
    let sha256 = digests.sha256;
    let observed_at = SystemTime::now();
    let finding = |kind,
                   rule: Option<String>,
                   namespace: Option<String>,
                   ioc_comment: Option<String>| Finding {
        path: path.to_path_buf(),
        sha256,
        size,
        kind,
        rule,
        namespace,
        ioc_comment,
        observed_at,
    };
    let mut findings = Vec::new();
    // One hash IOC finding per file, whichever lists and algorithms matched.
    let comments = iocs.matches(&digests);
    if !comments.is_empty() {
        findings.push(finding(
            FindingKind::HashIoc,
            None,
            None,
            Some(comments.join(" | ")),
        ));
    }
    let mut partial = None;
    if let Some(scanner) = scanner {
        if !keep_bytes || size > max_yara_size {
            partial = Some(ScanError {
                path: path.to_path_buf(),
                kind: ScanErrorKind::TooLarge,
                message: format!(
                    "{size} bytes exceed the YARA limit of {max_yara_size}; hashed only"
                ),
            });
        } else {
            set_file_externals(scanner, path);
            match scanner.scan(&data) {
                Ok(results) => {
                    for rule in results.matching_rules() {
                        findings.push(finding(
                            FindingKind::Yara,
                            Some(rule.identifier().to_owned()),
                            Some(rule.namespace().to_owned()),
                            None,
                        ));
                    }
                }
                Err(err) => {
                    let kind = match err {
                        yara_x::errors::ScanError::Timeout => ScanErrorKind::Timeout,
                        _ => ScanErrorKind::Io,
                    };
                    partial = Some(ScanError {
                        path: path.to_path_buf(),
                        kind,
                        message: format!("YARA scan failed: {err}"),
                    });
                }
            }
        }
    }
    Ok(ScannedFile {
        size,
        findings,
        partial,
    })
}

/// Sets the Loki/THOR external variables for one file: `filename` is the base name, `filepath`
/// the full path, `extension` the lower-cased extension with its dot (".exe").
fn set_file_externals(scanner: &mut yara_x::Scanner<'_>, path: &Path) {
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy().to_lowercase()))
        .unwrap_or_default();
    let values = [
        ("filename", filename.into_owned()),
        ("filepath", path.to_string_lossy().into_owned()),
        ("extension", extension),
    ];
    for (name, value) in values {
        // Every rule set is compiled with these globals defined (see rules::new_compiler).
        let _ = scanner.set_global(name, value.as_str());
    }
}

fn walk_error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        ignore::Error::Partial(errs) => errs.iter().find_map(walk_error_path),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EICAR: &[u8] =
        br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn engine(dir: &Path, rule: &str, iocs: &str) -> Engine {
        let rule_file = dir.join("test.yar");
        std::fs::write(&rule_file, rule).unwrap();
        let rules = crate::rules::load(&[rule_file]).unwrap();
        let mut hash_iocs = HashIocs::default();
        hash_iocs.add_list(Path::new("iocs.txt"), iocs);
        Engine::new(Some(rules), hash_iocs)
    }

    fn sweep(
        engine: &Engine,
        root: &Path,
        options: &SweepOptions,
    ) -> (SweepStats, Vec<Finding>, Vec<ScanError>) {
        let (mut findings, mut errors) = (Vec::new(), Vec::new());
        let stats = engine.sweep(
            &[root.to_path_buf()],
            options,
            &AtomicBool::new(false),
            |event| match event {
                SweepEvent::Findings(f) => findings.extend(f),
                SweepEvent::Error(e) => errors.push(e),
                SweepEvent::File { .. } => {}
            },
        );
        (stats, findings, errors)
    }

    #[test]
    fn finds_yara_and_hash_matches_including_hidden_files() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule eicar_string { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
            &format!("{EICAR_SHA256};EICAR test file\n"),
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".hidden")).unwrap();
        std::fs::write(root.path().join(".hidden/eicar.com"), EICAR).unwrap();
        std::fs::write(root.path().join(".gitignore"), "*.com\n").unwrap();
        std::fs::write(root.path().join("clean.txt"), "nothing here").unwrap();
        let (stats, findings, errors) = sweep(&engine, root.path(), &SweepOptions::default());
        assert!(errors.is_empty());
        assert_eq!(stats.files, 3);
        assert_eq!(stats.findings, 2);
        let kinds: Vec<_> = findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![FindingKind::HashIoc, FindingKind::Yara]);
        assert!(
            findings
                .iter()
                .all(|f| f.sha256_hex() == EICAR_SHA256 && f.size == 68)
        );
        assert_eq!(findings[0].ioc_comment.as_deref(), Some("EICAR test file"));
        assert_eq!(findings[1].rule.as_deref(), Some("eicar_string"));
        assert_eq!(findings[1].namespace.as_deref(), Some("test"));
    }

    #[test]
    fn externals_are_set_per_file() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule by_name { condition: filename == \"evil.PS1\" and extension == \".ps1\" and filepath contains \"sub\" }",
            "",
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/evil.PS1"), "x").unwrap();
        std::fs::write(root.path().join("sub/good.txt"), "x").unwrap();
        let (_, findings, _) = sweep(&engine, root.path(), &SweepOptions::default());
        assert_eq!(findings.len(), 1);
        assert!(findings[0].path.ends_with("sub/evil.PS1"));
    }

    #[test]
    fn large_files_are_hashed_but_not_yara_scanned() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule always { condition: true }",
            &format!("{EICAR_SHA256};EICAR\n"),
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("eicar"), EICAR).unwrap();
        let options = SweepOptions {
            max_yara_size: 10,
            ..SweepOptions::default()
        };
        let (stats, findings, errors) = sweep(&engine, root.path(), &options);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::HashIoc);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, ScanErrorKind::TooLarge);
        assert_eq!(stats.errors.get(&ScanErrorKind::TooLarge), Some(&1));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_fifos_are_skipped_and_excludes_honoured() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(rules_dir.path(), "rule always { condition: true }", "");
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("target"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("target"), root.path().join("link"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dirlink")).unwrap();
        let fifo = root.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::create_dir(root.path().join("skipme")).unwrap();
        std::fs::write(root.path().join("skipme/file"), "x").unwrap();
        std::fs::write(root.path().join("real"), "x").unwrap();
        let options = SweepOptions {
            excludes: vec![root.path().join("skipme")],
            ..SweepOptions::default()
        };
        let (stats, findings, errors) = sweep(&engine, root.path(), &options);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(stats.files, 1);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].path.ends_with("real"));
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_file_is_counted_not_fatal() {
        use std::os::unix::fs::PermissionsExt;
        if running_as_root() {
            // root reads mode-000 files anyway; the end-to-end CLI test covers reporting.
            return;
        }
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(rules_dir.path(), "rule always { condition: true }", "");
        let root = tempfile::tempdir().unwrap();
        let locked = root.path().join("locked");
        std::fs::write(&locked, "x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::write(root.path().join("open"), "x").unwrap();
        let (stats, findings, errors) = sweep(&engine, root.path(), &SweepOptions::default());
        assert_eq!(stats.files, 1);
        assert_eq!(findings.len(), 1);
        assert_eq!(errors[0].kind, ScanErrorKind::PermissionDenied);
    }

    #[cfg(unix)]
    fn running_as_root() -> bool {
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
    }

    #[test]
    fn md5_and_sha1_iocs_match_and_make_one_finding() {
        let engine = Engine::new(None, {
            let mut iocs = HashIocs::default();
            let list = "44d88612fea8a8f36de82e1278abb02f;EICAR md5\n3395856ce81f2b7382dee72602f798b642f14140;EICAR sha1\n";
            iocs.add_list(Path::new("l"), list);
            iocs
        });
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("eicar"), EICAR).unwrap();
        std::fs::write(root.path().join("other"), "x").unwrap();
        let (_, findings, _) = sweep(&engine, root.path(), &SweepOptions::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::HashIoc);
        assert_eq!(
            findings[0].ioc_comment.as_deref(),
            Some("EICAR sha1 | EICAR md5")
        );
        assert_eq!(findings[0].sha256_hex(), EICAR_SHA256);
    }

    #[test]
    fn exclude_globs_prune_subtrees() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(rules_dir.path(), "rule always { condition: true }", "");
        let root = tempfile::tempdir().unwrap();
        for dir in ["app/node_modules/x", "app/src", "logs"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        for file in [
            "app/node_modules/x/a.js",
            "app/src/main.js",
            "logs/today.log",
            "top.log",
        ] {
            std::fs::write(root.path().join(file), "x").unwrap();
        }
        let globs = exclude_globs(&[
            "**/node_modules".to_owned(),
            format!("{}/*.log", root.path().display()),
        ])
        .unwrap();
        let options = SweepOptions {
            exclude_globs: globs,
            ..SweepOptions::default()
        };
        let (_, findings, _) = sweep(&engine, root.path(), &options);
        let mut found: Vec<String> = findings
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(root.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        found.sort();
        // `*` stays within a component: logs/today.log is not matched by ROOT/*.log.
        assert_eq!(found, vec!["app/src/main.js", "logs/today.log"]);
        assert!(exclude_globs(&["a[".to_owned()]).is_err());
    }

    #[test]
    fn many_files_over_several_threads_are_each_scanned_once() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule marked { strings: $a = \"MARK\" condition: $a }",
            "",
        );
        let root = tempfile::tempdir().unwrap();
        let mut marked = 0;
        for d in 0..20 {
            let dir = root.path().join(format!("d{d}"));
            std::fs::create_dir(&dir).unwrap();
            for f in 0..50 {
                let mark = (d * 50 + f) % 7 == 0;
                marked += usize::from(mark);
                std::fs::write(
                    dir.join(format!("f{f}")),
                    if mark { "xMARKx" } else { "plain" },
                )
                .unwrap();
            }
        }
        let options = SweepOptions {
            threads: 4,
            ..SweepOptions::default()
        };
        let (stats, findings, errors) = sweep(&engine, root.path(), &options);
        assert!(errors.is_empty());
        assert_eq!(stats.files, 1000);
        assert_eq!(findings.len(), marked);
        let unique: std::collections::HashSet<_> = findings.iter().map(|f| &f.path).collect();
        assert_eq!(unique.len(), marked);
    }

    #[test]
    fn stop_flag_ends_the_sweep() {
        let engine = Engine::new(None, HashIocs::default());
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a"), "x").unwrap();
        let stats = engine.sweep(
            &[root.path().to_path_buf()],
            &SweepOptions::default(),
            &AtomicBool::new(true),
            |_| {},
        );
        assert!(stats.stopped);
        assert_eq!(stats.files, 0);
    }
}
