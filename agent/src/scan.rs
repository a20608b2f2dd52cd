//! The scan engine: walks roots, reads each regular file once, feeds the same bytes to SHA-256
//! and YARA-X, and checks the digest against hash IOCs.
//!
//! Per-file failures (permission denied, vanished, I/O errors, YARA timeouts, files too large
//! for YARA) are counted by kind and reported through the sink; none stops the sweep.
//! Symbolic links are not followed and special files (FIFOs, sockets, devices) are skipped.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cache::{self, Cache, CacheReader, CachedFile, CachedMatch, FileStamp};
use crate::externals::FileExternals;
use crate::gentle::Throttle;
use crate::iocs::{Digests, HashIocs};
use crate::rules::RuleSet;

/// Paths never walked by default: kernel and device pseudo-filesystems.
pub const DEFAULT_EXCLUDES: [&str; 3] = ["/proc", "/sys", "/dev"];
/// Default upper bound for YARA scanning; larger files are still hashed.
pub const DEFAULT_MAX_YARA_SIZE: u64 = 64 * 1024 * 1024;
const READ_CHUNK: usize = 256 * 1024;
const YARA_TIMEOUT: Duration = Duration::from_secs(60);
/// How often [`Engine::sweep_with_progress`] reports running totals.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

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
    /// The file changed while it was read; it is judged again next sweep.
    Changed,
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
            ScanErrorKind::Changed => "changed",
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

impl ScanError {
    fn io(path: &Path, err: std::io::Error) -> Self {
        ScanError {
            path: path.to_path_buf(),
            kind: ScanErrorKind::of_io(&err),
            message: err.to_string(),
        }
    }
}

/// What a sweep produces as it goes.
pub enum SweepEvent {
    /// A file was judged (hashed, and YARA-scanned unless an error for it says otherwise);
    /// `cached` when the verdict came from the cache without reading the file.
    File { bytes: u64, cached: bool },
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
    /// Files whose verdict came from the cache.
    pub cached_files: u64,
    /// The sweep was stopped before it finished.
    pub stopped: bool,
}

impl SweepStats {
    /// Counts one event into the totals.
    pub fn count(&mut self, event: &SweepEvent) {
        match event {
            SweepEvent::File { bytes, cached } => {
                self.files += 1;
                self.bytes += bytes;
                self.cached_files += u64::from(*cached);
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
    /// Ignore cached verdicts (they are still updated).
    pub full: bool,
    /// CPU budget for all scan threads together, in percent of one core.
    pub cpu_limit: Option<u32>,
    /// Run the walk and scan threads at low CPU and I/O priority.
    pub low_priority: bool,
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
            full: false,
            cpu_limit: None,
            low_priority: true,
        }
    }
}

/// Compiled rules plus IOCs: everything needed to judge a file.
#[derive(Debug)]
pub struct Engine {
    rules: Option<Arc<RuleSet>>,
    iocs: Arc<HashIocs>,
    /// The collector bundle the rules or IOCs came from; `None`: the agent's own files.
    rules_bundle: Option<String>,
    iocs_bundle: Option<String>,
}

/// Which rule and IOC sets an engine judges with, as the collector is told of them: a
/// sweep's "nothing found" means something only with the sets it ran with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetVersions {
    /// A bundle's version, `local:HEX` for the agent's own files, empty for none.
    pub rules: String,
    pub iocs: String,
    pub rule_count: u64,
    pub ioc_count: u64,
}

impl Engine {
    pub fn new(rules: Option<RuleSet>, iocs: HashIocs) -> Self {
        Engine {
            rules: rules.map(Arc::new),
            iocs: Arc::new(iocs),
            rules_bundle: None,
            iocs_bundle: None,
        }
    }

    /// This engine's IOCs with other rules: those of the collector's rule bundle `bundle`.
    pub fn with_rules(&self, rules: RuleSet, bundle: &str) -> Engine {
        Engine {
            rules: Some(Arc::new(rules)),
            iocs: self.iocs.clone(),
            rules_bundle: Some(bundle.to_owned()),
            iocs_bundle: self.iocs_bundle.clone(),
        }
    }

    /// This engine's rules with other IOCs: those of the collector's IOC bundle `bundle`.
    pub fn with_iocs(&self, iocs: HashIocs, bundle: &str) -> Engine {
        Engine {
            rules: self.rules.clone(),
            iocs: Arc::new(iocs),
            rules_bundle: self.rules_bundle.clone(),
            iocs_bundle: Some(bundle.to_owned()),
        }
    }

    /// The sets this engine judges with.
    pub fn set_versions(&self) -> SetVersions {
        let local = |version: &[u8; 32]| format!("local:{}", hex::encode(&version[..8]));
        let rules = match (&self.rules_bundle, &self.rules) {
            (Some(bundle), _) => bundle.clone(),
            (None, Some(rules)) => local(&rules.version),
            (None, None) => String::new(),
        };
        let iocs = match &self.iocs_bundle {
            Some(bundle) => bundle.clone(),
            None if self.iocs.is_empty() => String::new(),
            None => local(&self.iocs.version),
        };
        SetVersions {
            rules,
            iocs,
            rule_count: self.rule_count() as u64,
            ioc_count: self.ioc_count() as u64,
        }
    }

    pub fn rule_count(&self) -> usize {
        self.rules.as_deref().map_or(0, RuleSet::len)
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
        cache: Option<&Cache>,
        stop: &AtomicBool,
        sink: impl FnMut(SweepEvent),
    ) -> SweepStats {
        self.sweep_with_progress(roots, options, cache, stop, sink, |_| {})
    }

    /// [`Engine::sweep`], also calling `progress` with the running totals about every
    /// [`PROGRESS_INTERVAL`], whether or not files finish (a huge file may take a while).
    pub fn sweep_with_progress(
        &self,
        roots: &[PathBuf],
        options: &SweepOptions,
        cache: Option<&Cache>,
        stop: &AtomicBool,
        mut sink: impl FnMut(SweepEvent),
        mut progress: impl FnMut(&SweepStats),
    ) -> SweepStats {
        let mut stats = SweepStats::default();
        let Some(walker) = walker(roots, options) else {
            return stats;
        };
        let threads = options.threads.max(1);
        // Both queues are bounded: a slow consumer slows its producers instead of piling up.
        let (events_tx, events_rx) = std::sync::mpsc::sync_channel::<WorkerMessage>(1024);
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Vec<Job>>(JOB_QUEUE_BATCHES);
        let shared = WorkerShared {
            jobs: std::sync::Mutex::new(work_rx),
            large_buffers: LargeBuffers::new(
                options
                    .max_yara_size
                    .max(crate::memory::LARGE_ALLOCATION as u64),
            ),
            judged: JudgedContent::default(),
        };
        let mut cache_writes = CacheWriter {
            cache,
            pending: Vec::new(),
        };
        // Hashes of the cache keys of every file listed: what is not among them is gone.
        let mut seen: Vec<u64> = Vec::new();
        // `--full` ignores what the cache knows, but still records what it learns.
        let lookup = cache.filter(|_| !options.full);
        std::thread::scope(|scope| {
            let walker_events = events_tx.clone();
            scope.spawn(move || {
                self.list_files(walker, options, lookup, stop, work_tx, walker_events)
            });
            for _ in 0..threads {
                let (events_tx, shared) = (events_tx.clone(), &shared);
                scope.spawn(move || {
                    self.scan_worker(shared, options, cache.is_some(), stop, events_tx)
                });
            }
            drop(events_tx);
            let mut last_progress = std::time::Instant::now();
            loop {
                match events_rx.recv_timeout(PROGRESS_INTERVAL) {
                    Ok(WorkerMessage::Events(events)) => {
                        for event in events {
                            stats.count(&event);
                            sink(event);
                        }
                    }
                    Ok(WorkerMessage::Cache(entries)) => {
                        for (key, entry) in entries {
                            cache_writes.push(key, entry);
                        }
                    }
                    Ok(WorkerMessage::Seen(keys)) => seen.extend(keys),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if last_progress.elapsed() >= PROGRESS_INTERVAL {
                    progress(&stats);
                    last_progress = std::time::Instant::now();
                }
            }
        });
        cache_writes.flush();
        stats.stopped = stop.load(Ordering::Relaxed);
        // Only a sweep that walked everything knows what is gone.
        if let Some(cache) = cache_writes.cache
            && !stats.stopped
        {
            seen.sort_unstable();
            let listed = |key: &[u8]| seen.binary_search(&key_hash(key)).is_ok();
            match cache.purge(roots, listed) {
                Ok(0) => {}
                Ok(n) => tracing::debug!("{n} cache entries of files no longer listed removed"),
                Err(err) => tracing::warn!("{err}"),
            }
        }
        stats
    }

    /// One scan thread, taking paths from the shared queue until it closes.
    fn scan_worker(
        &self,
        shared: &WorkerShared,
        options: &SweepOptions,
        record: bool,
        stop: &AtomicBool,
        events: std::sync::mpsc::SyncSender<WorkerMessage>,
    ) {
        let mut worker = Worker {
            engine: self,
            scanner: self.rules.as_deref().map(Scanners::new),
            buffer: vec![0u8; READ_CHUNK],
            data: Vec::new(),
            large_buffers: &shared.large_buffers,
            judged: &shared.judged,
            record,
            max_yara_size: options.max_yara_size,
        };
        if options.low_priority {
            crate::gentle::lower_thread_priority();
        }
        let mut throttle = Throttle::new(options.cpu_limit, options.threads);
        // Batched like the walkers' events: a message (and a wake-up of the receiving thread)
        // per file costs measurable CPU on a busy 2-core host.
        let mut batch = EventBatch::new(events);
        // The rest of the batch of files taken from the queue.
        let mut taken: std::collections::VecDeque<Job> = Default::default();
        // Large files put off while the shared buffer budget was taken (see `LargeBuffers`):
        // the worker goes on with other files rather than sit idle.
        let mut deferred: std::collections::VecDeque<Job> = Default::default();
        let mut retry_next = false;
        loop {
            // New files and files put off earlier take turns.
            let retry = if retry_next {
                deferred.pop_front()
            } else {
                None
            };
            retry_next = retry.is_none();
            let (job, budget) = match retry {
                Some(job) => (job, Budget::Defer),
                None => {
                    let next = match taken.pop_front() {
                        Some(job) => Ok(job),
                        None => shared
                            .jobs
                            .lock()
                            .expect("work queue lock")
                            .recv_timeout(EventBatch::MAX_WAIT)
                            .map(|batch| {
                                taken.extend(batch);
                                taken.pop_front().expect("job batches are never empty")
                            }),
                    };
                    match next {
                        Ok(job) if deferred.len() < MAX_DEFERRED => (job, Budget::Defer),
                        Ok(job) => (job, Budget::Wait),
                        // No work for a while: what is batched goes out, for current progress.
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            if !batch.flush() {
                                return;
                            }
                            continue;
                        }
                        // No more files: what was put off waits for its turn now. Dropping
                        // the batch sends the rest.
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            match deferred.pop_front() {
                                Some(job) => (job, Budget::Wait),
                                None => return,
                            }
                        }
                    }
                }
            };
            if stop.load(Ordering::Relaxed) {
                shared.discard_until_closed();
                return;
            }
            let Job { path, known } = &job;
            let judged = match &mut throttle {
                Some(throttle) => {
                    throttle.run(|| worker.read_and_judge_within(path, *known, budget))
                }
                None => worker.read_and_judge_within(path, *known, budget),
            };
            let alive = match judged {
                Ok(Some(mut judged)) => {
                    if let Some(entry) = judged.update.take() {
                        batch.cache.push((cache::key(path), entry));
                    }
                    judged.into_events().all(|e| batch.push(e))
                }
                Ok(None) => {
                    deferred.push_back(job);
                    true
                }
                Err(error) => batch.push(SweepEvent::Error(error)),
            };
            if !alive {
                return;
            }
        }
    }

    /// What the cache says about `path` with this `stamp`, under the rules and IOCs loaded now.
    fn look_up(
        &self,
        reader: &CacheReader,
        path: &Path,
        stamp: FileStamp,
        max_yara_size: u64,
    ) -> Lookup {
        let Some(entry) = reader
            .get(cache::key_bytes(path))
            .filter(|c| c.stamp == stamp)
        else {
            return Lookup::Miss;
        };
        let iocs = &self.iocs;
        if (entry.digests.sha1.is_none() && iocs.needs_sha1())
            || (entry.digests.md5.is_none() && iocs.needs_md5())
        {
            return Lookup::Miss;
        }
        let rules_version = self.rules.as_ref().map(|r| r.version);
        // YARA's verdict stands if the rules are the same, if there are no rules, or if the
        // file was too large for YARA and still is (same stamp).
        let yara_current =
            self.rules.is_none() || entry.too_large || entry.rules_version == rules_version;
        if !yara_current {
            // The rules changed: read for YARA, keep the hashes.
            return Lookup::Rescan(entry.digests);
        }
        let with_rules = self.rules.is_some();
        let mut judged = self.verdict(
            FileVerdict {
                path,
                size: stamp.size,
                digests: &entry.digests,
                yara: if with_rules { entry.yara } else { Vec::new() },
                too_large: entry.too_large && with_rules,
            },
            max_yara_size,
        );
        judged.cached = true;
        Lookup::Settled(judged)
    }

    /// Findings from digests (matched against the IOCs now loaded) and YARA matches.
    fn verdict(&self, file: FileVerdict<'_>, max_yara_size: u64) -> Judged {
        let FileVerdict {
            path,
            size,
            digests,
            yara,
            too_large,
        } = file;
        let observed_at = SystemTime::now();
        let finding = |kind, rule, namespace, ioc_comment| Finding {
            path: path.to_path_buf(),
            sha256: digests.sha256,
            size,
            kind,
            rule,
            namespace,
            ioc_comment,
            observed_at,
        };
        let mut findings = Vec::new();
        // One hash IOC finding per file, whichever lists and algorithms matched.
        let comments = self.iocs.matches(digests);
        if !comments.is_empty() {
            findings.push(finding(
                FindingKind::HashIoc,
                None,
                None,
                Some(comments.join(" | ")),
            ));
        }
        for m in yara {
            findings.push(finding(
                FindingKind::Yara,
                Some(m.rule),
                Some(m.namespace),
                None,
            ));
        }
        let partial = too_large.then(|| ScanError {
            path: path.to_path_buf(),
            kind: ScanErrorKind::TooLarge,
            message: format!("{size} bytes exceed the YARA limit of {max_yara_size}; hashed only"),
        });
        Judged {
            size,
            findings,
            partial,
            cached: false,
            update: None,
        }
    }

    /// The walk: lists regular files. Files the cache settles are judged right here, on the
    /// walker's threads (a re-sweep of an unchanged tree is then a walk and a stat per file);
    /// the rest go to the scan workers through `work`. Walk errors (unreadable directories) go
    /// straight to `events`. Symlinks are not followed and special files are skipped.
    fn list_files(
        &self,
        walker: ignore::WalkParallel,
        options: &SweepOptions,
        cache: Option<&Cache>,
        stop: &AtomicBool,
        work: std::sync::mpsc::SyncSender<Vec<Job>>,
        events: std::sync::mpsc::SyncSender<WorkerMessage>,
    ) {
        let mut cache = cache;
        let low_priority = options.low_priority;
        walker.run(|| {
            let mut jobs = JobBatch::new(work.clone());
            let mut batch = EventBatch::new(events.clone());
            let reader = cache.and_then(|c| match c.reader() {
                Ok(reader) => Some(reader),
                Err(err) => {
                    tracing::warn!("{err}; sweeping without it");
                    cache = None;
                    None
                }
            });
            let mut thread = WalkerThread::new(low_priority);
            Box::new(move |entry| {
                if !thread.keep_going(stop) || !jobs.send_if_waited() {
                    return ignore::WalkState::Quit;
                }
                let alive = match entry {
                    Err(err) => {
                        let path = walk_error_path(&err).unwrap_or_default();
                        #[cfg(unix)]
                        if err.io_error().is_some_and(crate::deep::is_too_long) {
                            return walk_on(
                                self.list_deep(&path, options, stop, &mut jobs, &mut batch),
                            );
                        }
                        let kind = err
                            .io_error()
                            .map_or(ScanErrorKind::Io, ScanErrorKind::of_io);
                        batch.push(SweepEvent::Error(ScanError {
                            path,
                            kind,
                            message: err.to_string(),
                        }))
                    }
                    Ok(entry) if entry.file_type().is_some_and(|t| t.is_file()) => {
                        batch.seen.push(key_hash(cache::key_bytes(entry.path())));
                        // A failed stat is left to the worker, which reports it with its kind.
                        let stamp = entry
                            .metadata()
                            .map_err(|e| std::io::Error::other(e.to_string()))
                            .and_then(|meta| FileStamp::of_entry(entry.path(), &meta));
                        let lookup = match (&reader, &stamp) {
                            (Some(reader), Ok(stamp)) => {
                                self.look_up(reader, entry.path(), *stamp, options.max_yara_size)
                            }
                            _ => Lookup::Miss,
                        };
                        let known = match lookup {
                            Lookup::Settled(judged) => {
                                return walk_on(judged.into_events().all(|e| batch.push(e)));
                            }
                            Lookup::Rescan(digests) => Some(digests),
                            Lookup::Miss => None,
                        };
                        let size = stamp.as_ref().map_or(0, |stamp| stamp.size);
                        jobs.push(
                            Job {
                                path: entry.into_path(),
                                known,
                            },
                            size,
                        )
                    }
                    Ok(_) => true,
                };
                walk_on(alive)
            })
        });
    }
}

impl Engine {
    /// Lists a directory whose path is too long for the walker's calls (see [`crate::deep`])
    /// as the walker would: its files become jobs, its errors events, excludes apply. False
    /// when whoever receives the output is gone.
    #[cfg(unix)]
    fn list_deep(
        &self,
        dir: &Path,
        options: &SweepOptions,
        stop: &AtomicBool,
        jobs: &mut JobBatch,
        batch: &mut EventBatch,
    ) -> bool {
        let skip = |path: &Path| {
            options.excludes.iter().any(|ex| path == ex.as_path())
                || options
                    .exclude_globs
                    .as_ref()
                    .is_some_and(|g| g.is_match(path))
        };
        let mut alive = true;
        crate::deep::walk(dir, options.one_file_system, &skip, &mut |entry| {
            alive = match entry {
                crate::deep::DeepEntry::File { path, size } => {
                    batch.seen.push(key_hash(cache::key_bytes(&path)));
                    jobs.push(Job { path, known: None }, size)
                }
                crate::deep::DeepEntry::Error { path, err } => {
                    batch.push(SweepEvent::Error(ScanError::io(&path, err)))
                }
            };
            alive && !stop.load(Ordering::Relaxed)
        });
        alive
    }
}

/// Continue while whoever receives the walk's output is still there.
fn walk_on(alive: bool) -> ignore::WalkState {
    if alive {
        ignore::WalkState::Continue
    } else {
        ignore::WalkState::Quit
    }
}

/// What every walker thread does before each entry: lower its own priority the first time
/// (visitors are built on the calling thread but run on the walker's), then check `stop`.
struct WalkerThread {
    lowered: bool,
}

impl WalkerThread {
    fn new(low_priority: bool) -> Self {
        WalkerThread {
            lowered: !low_priority,
        }
    }

    /// False once the walk is to stop.
    fn keep_going(&mut self, stop: &AtomicBool) -> bool {
        if !self.lowered {
            crate::gentle::lower_thread_priority();
            self.lowered = true;
        }
        !stop.load(Ordering::Relaxed)
    }
}

/// A file for the scan workers, with the digests the cache still vouches for (the file is then
/// read for YARA only).
struct Job {
    path: PathBuf,
    known: Option<Digests>,
}

/// How many batches of files the queue to the scan workers holds: with [`JobBatch::FILES`],
/// some thousands of files listed ahead of the workers.
const JOB_QUEUE_BATCHES: usize = 128;

/// Files of one walker thread on their way to the scan workers, sent in batches. The walkers
/// list far faster than the workers scan, so the queue is full most of the time, and each file
/// taken from a full queue wakes a walker thread waiting to send: with a message per file,
/// those wake-ups cost a few percent of a sweep's CPU on a 2-core host. A batch is bounded in
/// bytes too, so that at the end of a sweep one worker does not hold much more work than the
/// other.
struct JobBatch {
    jobs: Vec<Job>,
    bytes: u64,
    since: std::time::Instant,
    tx: std::sync::mpsc::SyncSender<Vec<Job>>,
}

impl JobBatch {
    const FILES: usize = 32;
    const BYTES: u64 = 8 << 20;

    fn new(tx: std::sync::mpsc::SyncSender<Vec<Job>>) -> Self {
        JobBatch {
            jobs: Vec::with_capacity(Self::FILES),
            bytes: 0,
            since: std::time::Instant::now(),
            tx,
        }
    }

    /// Adds a file of `size` bytes; false once the workers are gone.
    fn push(&mut self, job: Job, size: u64) -> bool {
        if self.jobs.is_empty() {
            self.since = std::time::Instant::now();
        }
        self.jobs.push(job);
        self.bytes = self.bytes.saturating_add(size);
        if self.jobs.len() >= Self::FILES || self.bytes >= Self::BYTES {
            return self.send();
        }
        true
    }

    /// Sends what has waited long enough, so that files found among many already cached (a
    /// re-sweep) do not wait for the walk to end; false once the workers are gone.
    fn send_if_waited(&mut self) -> bool {
        if !self.jobs.is_empty() && self.since.elapsed() >= EventBatch::MAX_WAIT {
            return self.send();
        }
        true
    }

    fn send(&mut self) -> bool {
        if self.jobs.is_empty() {
            return true;
        }
        self.bytes = 0;
        let jobs = std::mem::replace(&mut self.jobs, Vec::with_capacity(Self::FILES));
        self.tx.send(jobs).is_ok()
    }
}

impl Drop for JobBatch {
    fn drop(&mut self) {
        self.send();
    }
}

/// What a worker does with a large file while the shared buffer budget has no room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// Wait for the room.
    Wait,
    /// Put the file off and go on with others.
    Defer,
}

/// How many large files a worker puts off at most; past that it waits. Enough for a run of
/// large files in one directory (a set of kubectl versions, say); each one tried again costs
/// an open and a stat.
const MAX_DEFERRED: usize = 16;

/// What the cache says about a file.
enum Lookup {
    /// Nothing usable: read, hash and scan.
    Miss,
    /// The hashes stand, the YARA verdict does not (new rules).
    Rescan(Digests),
    /// The whole verdict stands; the file need not be read.
    Settled(Judged),
}

/// What the scan workers share.
struct WorkerShared {
    jobs: std::sync::Mutex<std::sync::mpsc::Receiver<Vec<Job>>>,
    large_buffers: LargeBuffers,
    judged: JudgedContent,
}

impl WorkerShared {
    /// Takes and drops what the walker threads still send until they are all gone: a stopped
    /// sweep must not leave one blocked on a full queue, which held the sweep, and with it the
    /// agent's stop, until the runtime gave up on it 5 s later.
    fn discard_until_closed(&self) {
        let jobs = self.jobs.lock().expect("work queue lock");
        while jobs.recv().is_ok() {}
    }
}

/// Files at least this large have their bytes remembered for the rest of the sweep (see
/// [`JudgedContent`]). Below it, hard links and copies hold few bytes (on a Debian `/usr/lib`,
/// 20 of 371 MiB), and judging such a file again costs little.
const JUDGED_CONTENT_MIN_SIZE: u64 = 1 << 20;

/// At most this many contents are remembered per sweep (about 200 bytes each).
const JUDGED_CONTENT_MAX: usize = 16_384;

/// The verdicts on large files' bytes already judged in this sweep, by SHA-256 and by stamp.
/// Another name for the same bytes, a hard link (Mesa installs one 24 MiB library under a
/// dozen driver names) or a copy, is neither searched again by the rules that judge bytes
/// alone nor, when it is a hard link, hashed again. It is still read, for the
/// changed-while-read check and for the per-file rules (see [`crate::rules::split`]), which
/// judge it on its own.
#[derive(Default)]
struct JudgedContent {
    maps: std::sync::Mutex<JudgedContentMaps>,
}

#[derive(Default)]
struct JudgedContentMaps {
    by_stamp: std::collections::HashMap<FileStamp, [u8; 32]>,
    by_sha256: std::collections::HashMap<[u8; 32], ContentVerdict>,
}

/// What is the same for every file with the same bytes.
#[derive(Debug, Clone)]
struct ContentVerdict {
    digests: Digests,
    /// The matches of the first file judged with these bytes, per-file rules' included.
    matches: Vec<CachedMatch>,
}

impl JudgedContent {
    fn maps(&self) -> std::sync::MutexGuard<'_, JudgedContentMaps> {
        // The maps stay consistent even if a worker panicked holding the lock.
        self.maps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The verdict on a file with this stamp (another name for the same inode).
    fn by_stamp(&self, stamp: &FileStamp) -> Option<ContentVerdict> {
        let maps = self.maps();
        let sha256 = maps.by_stamp.get(stamp)?;
        maps.by_sha256.get(sha256).cloned()
    }

    /// The verdict on a file with these bytes, and the stamp of another name for them.
    fn by_sha256(&self, sha256: &[u8; 32], stamp: FileStamp) -> Option<ContentVerdict> {
        let mut maps = self.maps();
        let verdict = maps.by_sha256.get(sha256).cloned()?;
        if maps.by_stamp.len() < JUDGED_CONTENT_MAX {
            maps.by_stamp.insert(stamp, *sha256);
        }
        Some(verdict)
    }

    fn remember(&self, stamp: FileStamp, verdict: ContentVerdict) {
        let mut maps = self.maps();
        if maps.by_sha256.len() >= JUDGED_CONTENT_MAX || maps.by_stamp.len() >= JUDGED_CONTENT_MAX {
            return;
        }
        maps.by_stamp.insert(stamp, verdict.digests.sha256);
        maps.by_sha256.insert(verdict.digests.sha256, verdict);
    }
}

/// What a verdict is made of.
struct FileVerdict<'a> {
    path: &'a Path,
    size: u64,
    digests: &'a Digests,
    yara: Vec<CachedMatch>,
    too_large: bool,
}

/// Events of one walker thread, sent in batches: a cached re-sweep produces an event per file,
/// and one channel message each would cost more than the stat. A batch goes out when full, when
/// it has waited long enough for progress reports to stay current, and when the walk ends.
struct EventBatch {
    events: Vec<SweepEvent>,
    /// Verdicts to cache (scan workers), sent with the events.
    cache: Vec<(Vec<u8>, CachedFile)>,
    /// Hashes of the cache keys of the files listed (walkers), sent when the walk ends.
    seen: Vec<u64>,
    since: std::time::Instant,
    tx: std::sync::mpsc::SyncSender<WorkerMessage>,
}

impl EventBatch {
    const SIZE: usize = 512;
    const MAX_WAIT: Duration = Duration::from_millis(100);

    fn new(tx: std::sync::mpsc::SyncSender<WorkerMessage>) -> Self {
        EventBatch {
            events: Vec::new(),
            cache: Vec::new(),
            seen: Vec::new(),
            since: std::time::Instant::now(),
            tx,
        }
    }

    /// Adds an event; false once the receiving side is gone.
    fn push(&mut self, event: SweepEvent) -> bool {
        if self.events.is_empty() {
            self.since = std::time::Instant::now();
        }
        self.events.push(event);
        if self.events.len() >= Self::SIZE || self.since.elapsed() >= Self::MAX_WAIT {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if !self.cache.is_empty() {
            let cache = std::mem::take(&mut self.cache);
            if self.tx.send(WorkerMessage::Cache(cache)).is_err() {
                return false;
            }
        }
        if self.events.is_empty() {
            return true;
        }
        let events = std::mem::replace(&mut self.events, Vec::with_capacity(Self::SIZE));
        self.tx.send(WorkerMessage::Events(events)).is_ok()
    }
}

impl Drop for EventBatch {
    fn drop(&mut self) {
        if self.flush() && !self.seen.is_empty() {
            let _ = self
                .tx
                .send(WorkerMessage::Seen(std::mem::take(&mut self.seen)));
        }
    }
}

/// A 64-bit hash of a cache key. A collision only keeps a stale entry one sweep longer.
fn key_hash(key: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Batches cache entries: one redb transaction (and fsync) per batch, not per file. A cache
/// that cannot be written is reported once and then left alone; the sweep goes on.
struct CacheWriter<'c> {
    cache: Option<&'c Cache>,
    pending: Vec<(Vec<u8>, CachedFile)>,
}

impl CacheWriter<'_> {
    const BATCH: usize = 4096;

    fn push(&mut self, key: Vec<u8>, entry: CachedFile) {
        if self.cache.is_some() {
            self.pending.push((key, entry));
            if self.pending.len() >= Self::BATCH {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if let Some(cache) = self.cache
            && let Err(err) = cache.write(&self.pending)
        {
            tracing::warn!("{err}; not caching the rest of this sweep");
            self.cache = None;
        }
        self.pending.clear();
    }
}

/// What workers send to the collecting thread.
enum WorkerMessage {
    /// Events, in order.
    Events(Vec<SweepEvent>),
    /// Hashes of the cache keys of files a walker thread listed.
    Seen(Vec<u64>),
    /// Verdicts to cache, by cache key.
    Cache(Vec<(Vec<u8>, CachedFile)>),
}

/// The walker over `roots` every sweep uses: no ignore-file filters (hidden and git-ignored files
/// are where malware hides), symlinks not followed, exclusions pruned. `None` without roots.
fn walker(roots: &[PathBuf], options: &SweepOptions) -> Option<ignore::WalkParallel> {
    let (first, rest) = roots.split_first()?;
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
    Some(builder.build_parallel())
}

/// Counts the regular files under `roots` and their bytes, without reading them: the estimate
/// for a first sweep. Walks exactly what [`Engine::sweep`] walks, at low priority; gives up
/// (returning what it counted) when `stop` becomes true.
pub fn precount(roots: &[PathBuf], options: &SweepOptions, stop: &AtomicBool) -> (u64, u64) {
    use std::sync::atomic::AtomicU64;
    let (files, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    if let Some(walker) = walker(roots, options) {
        walker.run(|| {
            let (files, bytes) = (&files, &bytes);
            let mut thread = WalkerThread::new(options.low_priority);
            Box::new(move |entry| {
                if !thread.keep_going(stop) {
                    return ignore::WalkState::Quit;
                }
                if let Ok(entry) = entry
                    && entry.file_type().is_some_and(|t| t.is_file())
                {
                    files.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(entry.metadata().map_or(0, |m| m.len()), Ordering::Relaxed);
                }
                ignore::WalkState::Continue
            })
        });
    }
    (files.into_inner(), bytes.into_inner())
}

/// The outcome of judging one file.
struct Judged {
    size: u64,
    findings: Vec<Finding>,
    /// Set when the file was hashed but not fully judged (too large, YARA timeout).
    partial: Option<ScanError>,
    /// The verdict came from the cache; the file was not read.
    cached: bool,
    /// What to store in the cache, when something new was learned.
    update: Option<CachedFile>,
}

impl Judged {
    /// The events that report this verdict, in order: the file, its findings, what was missed.
    fn into_events(self) -> impl Iterator<Item = SweepEvent> {
        let file = SweepEvent::File {
            bytes: self.size,
            cached: self.cached,
        };
        let findings = Some(self.findings)
            .filter(|f| !f.is_empty())
            .map(SweepEvent::Findings);
        let partial = self.partial.map(SweepEvent::Error);
        std::iter::once(file).chain(findings).chain(partial)
    }
}

/// The digests a file is checked with: SHA-256 always, SHA-1 and MD5 only when a loaded IOC
/// list holds such hashes.
struct Hashers {
    sha256: Sha256,
    sha1: Option<sha1::Sha1>,
    md5: Option<md5::Md5>,
}

impl Hashers {
    fn new(iocs: &HashIocs) -> Self {
        Hashers {
            sha256: Sha256::new(),
            sha1: iocs.needs_sha1().then(sha1::Sha1::new),
            md5: iocs.needs_md5().then(md5::Md5::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        let Hashers { sha256, sha1, md5 } = self;
        let Some(md5) = md5 else {
            sha256.update(bytes);
            if let Some(sha1) = sha1 {
                sha1.update(bytes);
            }
            return;
        };
        // MD5 is one chain of dependent steps that leaves most of the core idle. Fed block
        // by block, the SHA digests (SHA-NI where the CPU has it) run in those gaps: the
        // three together went from 390 to 540 MiB/s against one after another.
        for block in bytes.chunks(64) {
            md5.update(block);
            if let Some(sha1) = sha1 {
                sha1.update(block);
            }
            sha256.update(block);
        }
    }

    fn finish(self) -> Digests {
        Digests {
            sha256: self.sha256.finalize().into(),
            sha1: self.sha1.map(|h| h.finalize().into()),
            md5: self.md5.map(|h| h.finalize().into()),
        }
    }
}

/// The whole-file buffers larger than [`crate::memory::LARGE_ALLOCATION`] that the workers
/// share, within a byte budget: without it, each worker reading a file near the YARA size limit
/// at once would hold that much memory. A worker waits (or puts the file off) until the bytes
/// are free.
///
/// A buffer given back is kept for the next large file of the sweep, within the same budget,
/// and dropped when the sweep ends: a new buffer for every large file cost a page fault and a
/// zeroed page per 4 KiB, and an unmapping that stops the other core to flush its TLB (about 2%
/// of a first sweep's CPU on a Debian `/usr/lib`, by perf).
struct LargeBuffers {
    state: std::sync::Mutex<LargeBufferState>,
    freed: std::sync::Condvar,
    limit: u64,
}

#[derive(Default)]
struct LargeBufferState {
    /// Bytes lent out, by the capacity each buffer had or was granted.
    lent: u64,
    /// Buffers given back, kept for the next large file.
    idle: Vec<Vec<u8>>,
}

impl LargeBufferState {
    fn idle_bytes(&self) -> u64 {
        self.idle.iter().map(|b| b.capacity() as u64).sum()
    }
}

impl LargeBuffers {
    fn new(limit: u64) -> Self {
        LargeBuffers {
            state: Default::default(),
            freed: std::sync::Condvar::new(),
            limit,
        }
    }

    /// Waits until a buffer of `bytes` fits in the budget (or nothing else is lent) and takes
    /// it.
    fn acquire(&self, bytes: u64) -> LargeBuffer<'_> {
        let mut state = self.state.lock().expect("large buffers lock");
        loop {
            if let Some(buffer) = self.lend(&mut state, bytes) {
                return buffer;
            }
            state = self.freed.wait(state).expect("large buffers lock");
        }
    }

    /// Takes a buffer of `bytes` if it fits in the budget now.
    fn try_acquire(&self, bytes: u64) -> Option<LargeBuffer<'_>> {
        let mut state = self.state.lock().expect("large buffers lock");
        self.lend(&mut state, bytes)
    }

    /// An idle buffer that holds `bytes` already, or else room for them: anything fits when
    /// nothing is lent. Room is made by growing the largest idle buffer and dropping the other
    /// idle ones as far as the budget needs. The buffer may still need to grow to `bytes`.
    fn lend(&self, state: &mut LargeBufferState, bytes: u64) -> Option<LargeBuffer<'_>> {
        let fitting = (state.idle.iter().enumerate())
            .filter(|(_, b)| b.capacity() as u64 >= bytes)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = fitting {
            let buffer = state.idle.swap_remove(i);
            let capacity = buffer.capacity() as u64;
            state.lent += capacity;
            return Some(self.lent_out(buffer, capacity));
        }
        if state.lent != 0 && state.lent + bytes > self.limit {
            return None;
        }
        // Every idle buffer is smaller than `bytes`: the largest grows into the new one.
        state.idle.sort_by_key(|b| b.capacity());
        let buffer = state.idle.pop().unwrap_or_default();
        while !state.idle.is_empty() && state.lent + state.idle_bytes() + bytes > self.limit {
            state.idle.remove(0);
        }
        state.lent += bytes;
        Some(self.lent_out(buffer, bytes))
    }

    /// Drops the idle buffers: before a burst of other allocations, so that the peak stays low.
    fn drop_idle(&self) {
        let idle = std::mem::take(&mut self.state.lock().expect("large buffers lock").idle);
        drop(idle);
    }

    fn lent_out(&self, buffer: Vec<u8>, granted: u64) -> LargeBuffer<'_> {
        LargeBuffer {
            pool: self,
            granted,
            buffer,
        }
    }
}

/// A buffer lent by [`LargeBuffers`], given back when dropped.
struct LargeBuffer<'b> {
    pool: &'b LargeBuffers,
    /// The bytes counted as lent for it.
    granted: u64,
    buffer: Vec<u8>,
}

impl Drop for LargeBuffer<'_> {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        let mut state = self.pool.state.lock().expect("large buffers lock");
        state.lent -= self.granted;
        if buffer.capacity() > 0 {
            state.idle.push(buffer);
        }
        drop(state);
        self.pool.freed.notify_all();
    }
}

/// One worker's YARA scanners (scanners cannot move between threads): for all rules and for
/// the per-file rules again (see [`crate::rules::split`]).
struct Scanners<'r> {
    set: &'r RuleSet,
    all: HeaderScanners<'r>,
    /// Made when first needed, like the per-file rules themselves.
    per_file: Option<HeaderScanners<'r>>,
}

/// Scanners for a rule set split by header: one for the general rules and one per header.
struct HeaderScanners<'r> {
    general: yara_x::Scanner<'r>,
    by_header: Vec<(crate::rules::split::Header, yara_x::Scanner<'r>)>,
}

impl<'r> Scanners<'r> {
    fn new(set: &'r RuleSet) -> Self {
        Scanners {
            set,
            all: HeaderScanners::new(&set.general, &set.by_header),
            per_file: None,
        }
    }

    /// The rules that match `data`.
    fn scan(
        &mut self,
        data: &[u8],
        externals: &FileExternals,
    ) -> Result<Vec<CachedMatch>, yara_x::errors::ScanError> {
        self.all.scan(data, externals)
    }

    /// The matches of the per-file rules on `data`, and the rest of `content` (the verdict on
    /// the same bytes under another name): the whole verdict. `None` when the per-file rules
    /// are not at hand (they did not compile) and `data` must be judged in full.
    fn scan_per_file(
        &mut self,
        data: &[u8],
        externals: &FileExternals,
        content: &[CachedMatch],
    ) -> Option<Result<Vec<CachedMatch>, yara_x::errors::ScanError>> {
        let Some(per_file) = &self.set.per_file else {
            // No rule reads externals: the verdict on the bytes is the whole verdict.
            return Some(Ok(content.to_vec()));
        };
        let sets = per_file.compiled()?;
        let scanners = self
            .per_file
            .get_or_insert_with(|| HeaderScanners::new(&sets.general, &sets.by_header));
        Some(scanners.scan(data, externals).map(|mut matches| {
            matches.extend(
                content
                    .iter()
                    .filter(|m| !sets.contains(&m.namespace, &m.rule))
                    .cloned(),
            );
            matches
        }))
    }
}

impl<'r> HeaderScanners<'r> {
    fn new(
        general: &'r yara_x::Rules,
        by_header: &'r [(crate::rules::split::Header, yara_x::Rules)],
    ) -> Self {
        let scanner = |rules| {
            let mut scanner = yara_x::Scanner::new(rules);
            scanner.set_timeout(YARA_TIMEOUT);
            // Verdicts need one match per pattern, not every offset.
            scanner.fast_scan(true);
            scanner
        };
        HeaderScanners {
            general: scanner(general),
            by_header: by_header
                .iter()
                .map(|(header, rules)| (*header, scanner(rules)))
                .collect(),
        }
    }

    /// The rules that match `data`: the general ones and those of its header's group.
    fn scan(
        &mut self,
        data: &[u8],
        externals: &FileExternals,
    ) -> Result<Vec<CachedMatch>, yara_x::errors::ScanError> {
        let header = data.get(..2);
        let group = self
            .by_header
            .iter_mut()
            .find(|(h, _)| Some(&h[..]) == header)
            .map(|(_, scanner)| scanner);
        let mut matches = Vec::new();
        for scanner in std::iter::once(&mut self.general).chain(group) {
            matches.extend(Self::scan_with(scanner, data, externals)?);
        }
        Ok(matches)
    }

    fn scan_with(
        scanner: &mut yara_x::Scanner<'_>,
        data: &[u8],
        externals: &FileExternals,
    ) -> Result<Vec<CachedMatch>, yara_x::errors::ScanError> {
        externals.apply(scanner);
        let results = scanner.scan(data)?;
        let matches = results
            .matching_rules()
            .map(|rule| CachedMatch {
                rule: rule.identifier().to_owned(),
                namespace: rule.namespace().to_owned(),
            })
            .collect();
        if data.len() > crate::memory::LARGE_ALLOCATION {
            // A scanner keeps its modules' output (the `pe` module's for a large DLL runs
            // to megabytes) until its next scan: scan nothing now to let it go.
            let _ = scanner.scan(&[]);
        }
        Ok(matches)
    }
}

/// Per-worker tools: YARA scanners and a read buffer.
struct Worker<'e> {
    engine: &'e Engine,
    scanner: Option<Scanners<'e>>,
    /// The chunk buffer for files read without keeping their bytes.
    buffer: Vec<u8>,
    /// Whole-file buffer kept from file to file, for files up to
    /// [`crate::memory::LARGE_ALLOCATION`]; larger ones get a buffer of their own.
    data: Vec<u8>,
    large_buffers: &'e LargeBuffers,
    judged: &'e JudgedContent,
    /// Whether verdicts are sent back to be cached (a cache exists, `--full` or not).
    record: bool,
    max_yara_size: u64,
}

/// Opens `path` for reading only if it is still a regular file. The walk saw a regular file,
/// but something else may have taken its place since: a FIFO opened the usual way blocks
/// until a writer comes (forever, holding the worker and the sweep), so the open never
/// blocks, and the opened handle itself must be a regular file.
fn open_regular(path: &Path) -> Result<std::fs::File, ScanError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        // Deeper than the system takes in one call: one component at a time.
        #[cfg(unix)]
        Err(err) if crate::deep::is_too_long(&err) => {
            crate::deep::open_file(path).map_err(|err| ScanError::io(path, err))?
        }
        Err(err) => return Err(ScanError::io(path, err)),
    };
    let meta = file.metadata().map_err(|err| ScanError::io(path, err))?;
    if !meta.is_file() {
        return Err(ScanError {
            path: path.to_path_buf(),
            kind: ScanErrorKind::Changed,
            message:
                "no longer a regular file (a FIFO, device or directory took its place); not read"
                    .into(),
        });
    }
    Ok(file)
}

impl Worker<'_> {
    /// Reads, hashes (unless the digests are `known`) and YARA-scans one file.
    #[cfg(test)]
    fn read_and_judge(&mut self, path: &Path, known: Option<Digests>) -> Result<Judged, ScanError> {
        self.read_and_judge_within(path, known, Budget::Wait)
            .map(|judged| judged.expect("a worker that waits judges every file"))
    }

    /// Reads, hashes (unless the digests are `known`) and YARA-scans one file; `None` when the
    /// file needs a large buffer, the budget has no room for it now, and `budget` says to put
    /// it off.
    fn read_and_judge_within(
        &mut self,
        path: &Path,
        known: Option<Digests>,
        budget: Budget,
    ) -> Result<Option<Judged>, ScanError> {
        let rules_version = self.engine.rules.as_ref().map(|r| r.version);
        let io_error = |err: std::io::Error| ScanError::io(path, err);
        let mut file = open_regular(path)?;
        let stamp = FileStamp::of_open(&file).map_err(io_error)?;
        let keep_bytes = self.scanner.is_some() && stamp.size <= self.max_yara_size;
        // Above LARGE_ALLOCATION the bytes get a buffer of their own, within the shared budget.
        let large = keep_bytes && stamp.size > crate::memory::LARGE_ALLOCATION as u64;
        let mut large_buffer = match (large, budget) {
            (false, _) => None,
            (true, Budget::Wait) => Some(self.large_buffers.acquire(stamp.size + 1)),
            (true, Budget::Defer) => match self.large_buffers.try_acquire(stamp.size + 1) {
                Some(buffer) => Some(buffer),
                None => return Ok(None),
            },
        };
        // Large bytes already judged in this sweep under another name (see `JudgedContent`).
        let remember = keep_bytes && stamp.size >= JUDGED_CONTENT_MIN_SIZE;
        let mut judged_before = remember.then(|| self.judged.by_stamp(&stamp)).flatten();
        let known = known.or(judged_before.as_ref().map(|before| before.digests));
        let mut hashers = known.is_none().then(|| Hashers::new(&self.engine.iocs));
        // One byte more than the file had when opened: enough to see that it grew, and a file
        // that keeps growing (a busy log) is not followed.
        let mut reader = std::io::Read::take(&mut file, stamp.size.saturating_add(1));
        let size = if keep_bytes {
            let data = match &mut large_buffer {
                Some(large) => &mut large.buffer,
                None => &mut self.data,
            };
            data.clear();
            if data.capacity() < stamp.size as usize + 1 {
                // Nothing in it is kept: growing it would copy the old bytes and, for a moment,
                // hold old and new together.
                *data = Vec::new();
            }
            data.try_reserve_exact(stamp.size as usize + 1)
                .map_err(|err| ScanError {
                    path: path.to_path_buf(),
                    kind: ScanErrorKind::Io,
                    message: format!("cannot allocate {} bytes to read it: {err}", stamp.size),
                })?;
            reader.read_to_end(data).map_err(io_error)?;
            if let Some(hashers) = &mut hashers {
                hashers.update(data);
            }
            data.len() as u64
        } else {
            let mut size = 0u64;
            loop {
                let n = match reader.read(&mut self.buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(io_error(err)),
                };
                if let Some(hashers) = &mut hashers {
                    hashers.update(&self.buffer[..n]);
                }
                size += n as u64;
            }
            size
        };
        let data: &[u8] = match &large_buffer {
            Some(large) => &large.buffer,
            None => &self.data,
        };
        // A file written to while we read it gives a verdict about bytes that no longer exist.
        #[cfg(unix)]
        let (after, uid) = {
            let meta = file.metadata().map_err(io_error)?;
            (
                FileStamp::of(&meta),
                std::os::unix::fs::MetadataExt::uid(&meta),
            )
        };
        #[cfg(not(unix))]
        let after = FileStamp::of_open(&file).map_err(io_error)?;
        if after.size != stamp.size || after.mtime_ns != stamp.mtime_ns || size != stamp.size {
            return Err(ScanError {
                path: path.to_path_buf(),
                kind: ScanErrorKind::Changed,
                message: format!(
                    "changed while read ({} bytes when opened, {size} read)",
                    stamp.size
                ),
            });
        }
        let digests = match (known, hashers) {
            (Some(known), _) => known,
            (None, Some(hashers)) => hashers.finish(),
            (None, None) => unreachable!("hashers exist unless the digests are known"),
        };
        if remember && judged_before.is_none() {
            judged_before = self.judged.by_sha256(&digests.sha256, stamp);
        }
        let mut yara = Vec::new();
        let mut failure = None;
        let too_large = self.scanner.is_some() && !keep_bytes;
        if let (Some(scanner), true) = (self.scanner.as_mut(), keep_bytes) {
            #[cfg(unix)]
            let owner = crate::externals::owner_name(uid);
            #[cfg(windows)]
            let owner = crate::externals::owner_of_file(&file);
            #[cfg(not(any(unix, windows)))]
            let owner = String::new();
            let externals = FileExternals::of(path, data, owner);
            let compiles_per_file = judged_before.is_some()
                && (scanner.set.per_file.as_ref()).is_some_and(|rules| !rules.is_compiled());
            if compiles_per_file {
                // The compiler's scratch memory would come on top of the idle buffers.
                self.large_buffers.drop_idle();
            }
            let scanned = match judged_before
                .as_ref()
                .and_then(|before| scanner.scan_per_file(data, &externals, &before.matches))
            {
                Some(scanned) => scanned,
                None => {
                    let scanned = scanner.scan(data, &externals);
                    if let (true, Ok(matches)) = (remember, &scanned) {
                        // Per-file matches are filtered out when the verdict is reused.
                        let verdict = ContentVerdict {
                            digests,
                            matches: matches.clone(),
                        };
                        self.judged.remember(stamp, verdict);
                    }
                    scanned
                }
            };
            match scanned {
                Ok(matches) => yara = matches,
                Err(err) => {
                    let kind = match err {
                        yara_x::errors::ScanError::Timeout => ScanErrorKind::Timeout,
                        _ => ScanErrorKind::Io,
                    };
                    failure = Some(ScanError {
                        path: path.to_path_buf(),
                        kind,
                        message: format!("YARA scan failed: {err}"),
                    });
                }
            }
        }
        if large {
            // What scanning a large file allocated is free now (but the buffer, kept for the
            // next large file): give it back to the system.
            drop(large_buffer);
            crate::memory::release_free_memory();
        }
        // A YARA failure is not a verdict: nothing is cached, so the next sweep tries again.
        let update = (self.record && failure.is_none()).then(|| CachedFile {
            stamp,
            digests,
            rules_version: if keep_bytes { rules_version } else { None },
            yara: yara.clone(),
            too_large,
        });
        let mut judged = self.engine.verdict(
            FileVerdict {
                path,
                size,
                digests: &digests,
                yara,
                too_large,
            },
            self.max_yara_size,
        );
        judged.update = update;
        if failure.is_some() {
            judged.partial = failure;
        }
        Ok(Some(judged))
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
        sweep_cached(engine, root, options, None)
    }

    fn sweep_cached(
        engine: &Engine,
        root: &Path,
        options: &SweepOptions,
        cache: Option<&Cache>,
    ) -> (SweepStats, Vec<Finding>, Vec<ScanError>) {
        let (mut findings, mut errors) = (Vec::new(), Vec::new());
        let stats = engine.sweep(
            &[root.to_path_buf()],
            options,
            cache,
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
    fn header_bound_rules_run_on_files_with_that_header_only() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule pe_named { strings: $a = \"EVIL\" condition: uint16(0) == 0x5a4d and $a and \
             extension == \".exe\" }\n\
             rule anywhere { strings: $a = \"EVIL\" condition: $a }\n",
            "",
        );
        let set = engine.rules.as_ref().unwrap();
        assert_eq!(set.by_header.len(), 1, "the PE rule is compiled apart");
        assert_eq!(engine.rule_count(), 2);
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.exe"), b"MZ\x90\x00 EVIL").unwrap();
        std::fs::write(root.path().join("b.exe"), b"ZM\x90\x00 EVIL").unwrap();
        std::fs::write(root.path().join("c.txt"), b"MZ\x90\x00 EVIL").unwrap();
        let (_, findings, errors) = sweep(&engine, root.path(), &SweepOptions::default());
        assert!(errors.is_empty());
        assert_eq!(
            names(&findings),
            vec![
                "a.exe:anywhere",
                "a.exe:pe_named",
                "b.exe:anywhere",
                "c.txt:anywhere"
            ]
        );
        assert!(
            findings
                .iter()
                .all(|f| f.namespace.as_deref() == Some("test"))
        );
    }

    /// An engine whose one rule matches "TAIL-MARK" anywhere in a file.
    fn tail_mark_engine(rules_dir: &Path) -> Engine {
        engine(
            rules_dir,
            "rule tail { strings: $a = \"TAIL-MARK\" condition: $a }",
            "",
        )
    }

    /// Contents above the reused read buffer, with "TAIL-MARK" as their last bytes.
    fn large_file_with_tail_mark() -> Vec<u8> {
        let mut big = vec![b'x'; crate::memory::LARGE_ALLOCATION + 4096];
        big.extend_from_slice(b"TAIL-MARK");
        big
    }

    #[test]
    fn files_above_the_reused_buffer_are_scanned_whole() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = tail_mark_engine(rules_dir.path());
        let root = tempfile::tempdir().unwrap();
        let big = large_file_with_tail_mark();
        std::fs::write(root.path().join("big"), &big).unwrap();
        std::fs::write(root.path().join("small"), b"TAIL-MARK").unwrap();
        let (stats, findings, errors) = sweep(&engine, root.path(), &SweepOptions::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(stats.bytes, big.len() as u64 + 9);
        assert_eq!(names(&findings), vec!["big:tail", "small:tail"]);
        let big_finding = findings.iter().find(|f| f.path.ends_with("big")).unwrap();
        assert_eq!(big_finding.sha256, <[u8; 32]>::from(Sha256::digest(&big)));
    }

    #[test]
    fn large_files_beyond_the_budget_are_put_off_and_all_scanned() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = tail_mark_engine(rules_dir.path());
        let root = tempfile::tempdir().unwrap();
        let big = large_file_with_tail_mark();
        for i in 0..6 {
            std::fs::write(root.path().join(format!("big{i}")), &big).unwrap();
            std::fs::write(root.path().join(format!("small{i}")), b"TAIL-MARK").unwrap();
        }
        // Room for one large buffer at a time: one worker holds it, the other puts its large
        // files off and goes on with the small ones.
        let options = SweepOptions {
            threads: 2,
            max_yara_size: big.len() as u64 + 1,
            ..SweepOptions::default()
        };
        let (stats, findings, errors) = sweep(&engine, root.path(), &options);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(stats.files, 12);
        assert_eq!(findings.len(), 12, "{:?}", names(&findings));

        // One worker, the budget taken: the file is put off, then judged once there is room.
        let budget = LargeBuffers::new(big.len() as u64);
        let mut worker = bare_worker(&engine);
        worker.scanner = engine.rules.as_deref().map(Scanners::new);
        worker.large_buffers = &budget;
        let path = root.path().join("big0");
        let held = budget.acquire(1);
        assert!(
            worker
                .read_and_judge_within(&path, None, Budget::Defer)
                .unwrap()
                .is_none()
        );
        drop(held);
        let judged = worker
            .read_and_judge_within(&path, None, Budget::Defer)
            .unwrap()
            .expect("judged once the budget has room");
        assert_eq!(judged.findings.len(), 1, "the mark at the end is found");
    }

    #[test]
    fn large_buffer_budget_lends_only_what_fits() {
        let budget = LargeBuffers::new(100);
        let first = budget.try_acquire(60).expect("room for 60");
        assert!(
            budget.try_acquire(50).is_none(),
            "60 + 50 exceed the budget of 100"
        );
        let second = budget.try_acquire(40).expect("60 + 40 fit");
        drop((first, second));
        assert!(
            budget.try_acquire(500).is_some(),
            "anything fits when nothing is held"
        );
    }

    #[test]
    fn large_buffer_budget_waits_for_bytes_to_be_freed() {
        let budget = LargeBuffers::new(100);
        let first = budget.acquire(60);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let _second = budget.acquire(50);
                budget.state.lock().unwrap().lent
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "60 + 50 exceed the budget of 100");
            drop(first);
            assert_eq!(waiter.join().unwrap(), 50);
        });
        assert_eq!(budget.state.lock().unwrap().lent, 0);
        // Larger than the whole budget, yet granted when nothing else is held.
        let _all = budget.acquire(500);
    }

    #[test]
    fn large_buffers_given_back_are_reused_within_the_budget() {
        let budget = LargeBuffers::new(100);
        let grown = |bytes: usize| {
            let mut lent = budget.try_acquire(bytes as u64).expect("room");
            lent.buffer.reserve_exact(bytes);
            lent
        };
        let first = grown(60);
        let address = first.buffer.as_ptr();
        drop(first);
        // The idle 60 are kept: a smaller file takes that very buffer.
        let again = budget.try_acquire(30).expect("the idle buffer");
        assert_eq!(again.buffer.as_ptr(), address);
        assert!(again.buffer.capacity() >= 60);
        assert!(
            budget.try_acquire(50).is_none(),
            "lent by capacity: 60 + 50 exceed 100"
        );
        drop(again);
        // Two idle buffers (60 and 30) and a request for 80: the larger grows into it, the
        // smaller is dropped, and the budget holds.
        let (sixty, thirty) = (grown(60), grown(30));
        assert_eq!(sixty.buffer.as_ptr(), address);
        drop((sixty, thirty));
        assert_eq!(budget.state.lock().unwrap().idle.len(), 2);
        let mut larger = budget
            .try_acquire(80)
            .expect("room once the idle ones give way");
        assert_eq!(
            larger.buffer.capacity(),
            60,
            "the larger idle buffer, to grow"
        );
        larger.buffer.reserve_exact(80);
        let state = budget.state.lock().unwrap();
        assert_eq!(state.lent, 80);
        assert!(state.idle.is_empty(), "30 idle + 80 would exceed 100");
        drop(state);
        drop(larger);
        let state = budget.state.lock().unwrap();
        assert_eq!((state.lent, state.idle.len()), (0, 1));
        drop(state);
        // Before a burst of other allocations: the idle buffers go, what is lent stays lent.
        let lent = grown(10);
        drop(grown(20));
        budget.drop_idle();
        let state = budget.state.lock().unwrap();
        assert_eq!(
            (state.lent as usize, state.idle.len()),
            (lent.buffer.capacity(), 0)
        );
    }

    #[test]
    fn externals_are_set_per_file() {
        let rules_dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let sub = root.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("evil.PS1"), b"MZ\x90\x00").unwrap();
        std::fs::write(sub.join("good.txt"), b"MZ\x90\x00").unwrap();
        #[cfg(unix)]
        let owner = crate::externals::owner_name(std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata(root.path()).unwrap(),
        ));
        #[cfg(windows)]
        let owner =
            crate::externals::owner_of_file(&std::fs::File::open(sub.join("evil.PS1")).unwrap());
        let rule = format!(
            "rule by_name {{ condition: filename == \"evil.PS1\" and extension == \".ps1\" and \
             filepath == \"{}\" and filetype == \"EXE\" and owner == \"{owner}\" }}",
            sub.display().to_string().replace('\\', "\\\\")
        );
        let engine = engine(rules_dir.path(), &rule, "");
        let (_, findings, _) = sweep(&engine, root.path(), &SweepOptions::default());
        assert_eq!(findings.len(), 1);
        assert!(findings[0].path.ends_with("sub/evil.PS1"));
    }

    /// Rules for judged-content tests: one reads the bytes alone, two are per-file.
    const CONTENT_AND_PER_FILE_RULES: &str = r#"
rule by_content { strings: $m = "MARKER" condition: $m }
rule by_name { strings: $m = "MARKER" condition: $m and filename == "b.bin" }
private rule big { condition: filesize > 1MB }
rule by_extension { condition: big and extension == ".bin" }
"#;

    /// A file over `JUDGED_CONTENT_MIN_SIZE` with "MARKER" inside.
    fn large_marked_bytes() -> Vec<u8> {
        let mut data = vec![b'.'; (JUDGED_CONTENT_MIN_SIZE + 4096) as usize];
        data[1000..1006].copy_from_slice(b"MARKER");
        data
    }

    #[test]
    fn hard_links_and_copies_of_large_files_get_each_their_own_per_file_verdict() {
        let rules_dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a.bin");
        std::fs::write(&a, large_marked_bytes()).unwrap();
        std::fs::hard_link(&a, root.path().join("b.bin")).unwrap();
        std::fs::copy(&a, root.path().join("c.bin")).unwrap();
        std::fs::hard_link(&a, root.path().join("d.dat")).unwrap();
        let engine = engine(rules_dir.path(), CONTENT_AND_PER_FILE_RULES, "");
        for threads in [1, 2] {
            let options = SweepOptions {
                threads,
                ..SweepOptions::default()
            };
            let (stats, findings, errors) = sweep(&engine, root.path(), &options);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(stats.files, 4);
            assert_eq!(
                names(&findings),
                vec![
                    "a.bin:by_content",
                    "a.bin:by_extension",
                    "b.bin:by_content",
                    "b.bin:by_extension",
                    "b.bin:by_name",
                    "c.bin:by_content",
                    "c.bin:by_extension",
                    "d.dat:by_content",
                ],
                "{threads} threads"
            );
        }
    }

    #[test]
    fn another_name_for_judged_bytes_takes_their_content_verdict() {
        let rules_dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a.bin");
        std::fs::write(&a, large_marked_bytes()).unwrap();
        let b = root.path().join("b.bin");
        std::fs::hard_link(&a, &b).unwrap();
        let c = root.path().join("c.bin");
        std::fs::copy(&a, &c).unwrap();
        let engine = engine(rules_dir.path(), CONTENT_AND_PER_FILE_RULES, "");
        let mut worker = bare_worker(&engine);
        worker.scanner = engine.rules.as_deref().map(Scanners::new);
        let stamp_of =
            |path: &Path| FileStamp::of_open(&std::fs::File::open(path).unwrap()).unwrap();
        // A verdict planted for a's inode, with digests no file has: b, a name of that inode,
        // takes both, and runs its per-file rules itself.
        let planted = |sha256| ContentVerdict {
            digests: Digests {
                sha256,
                sha1: None,
                md5: None,
            },
            matches: vec![CachedMatch {
                rule: "planted".into(),
                namespace: "test".into(),
            }],
        };
        worker.judged.remember(stamp_of(&a), planted([7; 32]));
        let judged = worker.read_and_judge(&b, None).unwrap();
        assert_eq!(
            names(&judged.findings),
            vec!["b.bin:by_extension", "b.bin:by_name", "b.bin:planted"]
        );
        assert!(judged.findings.iter().all(|f| f.sha256 == [7; 32]));
        // c is a copy: hashed, then found by its SHA-256.
        let sha256: [u8; 32] = Sha256::digest(large_marked_bytes()).into();
        worker.judged.remember(stamp_of(&a), planted(sha256));
        let judged = worker.read_and_judge(&c, None).unwrap();
        assert_eq!(
            names(&judged.findings),
            vec!["c.bin:by_extension", "c.bin:planted"]
        );
        // Small files are judged in full every time.
        let small = root.path().join("small.bin");
        std::fs::write(&small, b"MARKER").unwrap();
        worker.judged.remember(stamp_of(&small), planted([8; 32]));
        let judged = worker.read_and_judge(&small, None).unwrap();
        assert_eq!(names(&judged.findings), vec!["small.bin:by_content"]);
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
    fn files_deeper_than_path_max_are_scanned() {
        use crate::deep::tests::{deep_tree, write_deep};
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule eicar_string { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
            &format!("{EICAR_SHA256};EICAR test file\n"),
        );
        let root = tempfile::tempdir().unwrap();
        // A file whose own path is too long, in a directory the walker can still list...
        let shallow = deep_tree(root.path(), 4_000);
        let long_name = shallow.join("e".repeat(200));
        write_deep(&long_name, EICAR);
        // ...and files in directories it cannot list, one of them excluded.
        let deep = deep_tree(&shallow, 9_000);
        write_deep(&deep.join("eicar.com"), EICAR);
        write_deep(&deep.join("skipped.com"), EICAR);
        write_deep(&deep.join("clean.txt"), b"nothing");
        let options = SweepOptions {
            exclude_globs: exclude_globs(&["**/skipped.com".to_owned()]).unwrap(),
            ..SweepOptions::default()
        };
        let (stats, findings, errors) = sweep(&engine, root.path(), &options);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(stats.files, 3);
        let mut paths: Vec<&Path> = findings.iter().map(|f| f.path.as_path()).collect();
        paths.sort();
        paths.dedup();
        let deep_file = deep.join("eicar.com");
        let mut expected = [long_name.as_path(), deep_file.as_path()];
        expected.sort();
        // Compared whole, but not printed: the paths are kilobytes long.
        assert!(paths == expected, "{} paths with findings", paths.len());
        assert_eq!(findings.len(), 4, "a hash and a rule match each");
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
                let relative = f.path.strip_prefix(root.path()).unwrap();
                // Compared with `/` on every platform.
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                parts.join("/")
            })
            .collect();
        found.sort();
        // `*` stays within a component: logs/today.log is not matched by ROOT/*.log.
        assert_eq!(found, vec!["app/src/main.js", "logs/today.log"]);
        assert!(exclude_globs(&["a[".to_owned()]).is_err());
    }

    #[test]
    fn job_batches_go_out_when_full_large_or_old_and_at_the_end() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let job = |name: &str| Job {
            path: PathBuf::from(name),
            known: None,
        };
        let names = |batch: Vec<Job>| -> Vec<String> {
            batch
                .into_iter()
                .map(|j| j.path.display().to_string())
                .collect()
        };
        let mut batch = JobBatch::new(tx);
        for i in 0..JobBatch::FILES - 1 {
            assert!(batch.push(job(&format!("f{i}")), 1));
        }
        assert!(rx.try_recv().is_err(), "a batch short of full waits");
        assert!(batch.push(job("last"), 1));
        assert_eq!(rx.try_recv().unwrap().len(), JobBatch::FILES);

        assert!(batch.push(job("small"), 1));
        assert!(batch.push(job("large"), JobBatch::BYTES));
        assert_eq!(names(rx.try_recv().unwrap()), ["small", "large"]);

        assert!(batch.push(job("lonely"), 1));
        assert!(batch.send_if_waited());
        assert!(rx.try_recv().is_err(), "a fresh batch is not sent early");
        std::thread::sleep(EventBatch::MAX_WAIT);
        assert!(batch.send_if_waited());
        assert_eq!(names(rx.try_recv().unwrap()), ["lonely"]);

        assert!(batch.push(job("at the end"), 1));
        drop(batch);
        assert_eq!(names(rx.try_recv().unwrap()), ["at the end"]);
        assert!(rx.try_recv().is_err(), "no empty batch is ever sent");
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

    /// A worker without scanner or cache, for judging single paths.
    fn bare_worker(engine: &Engine) -> Worker<'_> {
        Worker {
            engine,
            scanner: None,
            buffer: vec![0; READ_CHUNK],
            data: Vec::new(),
            large_buffers: Box::leak(Box::new(LargeBuffers::new(DEFAULT_MAX_YARA_SIZE))),
            judged: Box::leak(Box::default()),
            record: false,
            max_yara_size: DEFAULT_MAX_YARA_SIZE,
        }
    }

    /// Rules that report every file and one marked file, and EICAR as a SHA-256 IOC.
    fn cache_fixture() -> (tempfile::TempDir, tempfile::TempDir, Cache) {
        let root = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(root.path().join(format!("f{i}")), format!("file {i}")).unwrap();
        }
        std::fs::write(root.path().join("eicar"), EICAR).unwrap();
        let state = tempfile::tempdir().unwrap();
        let cache = Cache::open(&state.path().join("cache.redb")).unwrap();
        (root, state, cache)
    }

    fn names(findings: &[Finding]) -> Vec<String> {
        let mut names: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f.path.file_name().unwrap().to_string_lossy(),
                    f.rule.as_deref().unwrap_or("ioc")
                )
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn unchanged_tree_is_served_from_the_cache() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule eicar { strings: $a = \"EICAR\" condition: $a }",
            &format!("{EICAR_SHA256};E\n"),
        );
        let (root, _state, cache) = cache_fixture();
        let options = SweepOptions::default();
        let (first, first_findings, _) = sweep_cached(&engine, root.path(), &options, Some(&cache));
        assert_eq!((first.files, first.cached_files), (21, 0));
        let (second, second_findings, _) =
            sweep_cached(&engine, root.path(), &options, Some(&cache));
        assert_eq!(
            (second.files, second.cached_files, second.bytes),
            (21, 21, first.bytes)
        );
        assert_eq!(names(&first_findings), names(&second_findings));
        assert_eq!(names(&second_findings), vec!["eicar:eicar", "eicar:ioc"]);
        // --full ignores the cache.
        let full = SweepOptions {
            full: true,
            ..SweepOptions::default()
        };
        assert_eq!(
            sweep_cached(&engine, root.path(), &full, Some(&cache))
                .0
                .cached_files,
            0
        );
    }

    #[test]
    fn files_gone_from_a_root_leave_the_cache_and_other_roots_keep_theirs() {
        let engine = Engine::new(None, HashIocs::default());
        let (root, _state, cache) = cache_fixture();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("kept"), "other root").unwrap();
        let options = SweepOptions::default();
        sweep_cached(&engine, root.path(), &options, Some(&cache));
        sweep_cached(&engine, other.path(), &options, Some(&cache));
        let cached = |path: &Path| {
            cache
                .reader()
                .unwrap()
                .get(cache::key_bytes(path))
                .is_some()
        };
        assert!(cached(&root.path().join("f3")) && cached(&other.path().join("kept")));
        std::fs::remove_file(root.path().join("f3")).unwrap();
        // A stopped sweep has not seen everything: it removes nothing.
        let stop = AtomicBool::new(true);
        let stats = engine.sweep(
            &[root.path().to_path_buf()],
            &options,
            Some(&cache),
            &stop,
            |_| {},
        );
        assert!(stats.stopped);
        assert!(cached(&root.path().join("f3")));
        let (stats, _, _) = sweep_cached(&engine, root.path(), &options, Some(&cache));
        assert_eq!((stats.files, stats.cached_files), (20, 20));
        assert!(!cached(&root.path().join("f3")));
        assert!(cached(&root.path().join("f4")));
        assert!(
            cached(&other.path().join("kept")),
            "another root's entries stay"
        );
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(
            rules_dir.path(),
            "rule marked { strings: $a = \"MARK\" condition: $a }",
            "",
        );
        let (root, _state, cache) = cache_fixture();
        sweep_cached(&engine, root.path(), &SweepOptions::default(), Some(&cache));
        // Same size, new content: the ctime (and mtime) change gives it away.
        std::fs::write(root.path().join("f3"), "MARK 3").unwrap();
        let (stats, findings, _) =
            sweep_cached(&engine, root.path(), &SweepOptions::default(), Some(&cache));
        assert_eq!(stats.cached_files, 20);
        assert_eq!(names(&findings), vec!["f3:marked"]);
    }

    #[test]
    fn new_rules_rescan_and_new_iocs_match_without_reading() {
        let rules_dir = tempfile::tempdir().unwrap();
        let (root, _state, cache) = cache_fixture();
        let old = engine(
            rules_dir.path(),
            "rule old { strings: $a = \"file 7\" condition: $a }",
            "",
        );
        let (_, findings, _) =
            sweep_cached(&old, root.path(), &SweepOptions::default(), Some(&cache));
        assert_eq!(names(&findings), vec!["f7:old"]);
        // New rules: every file is read again for YARA.
        let new = engine(
            rules_dir.path(),
            "rule new { strings: $a = \"file 2\" condition: $a }",
            "",
        );
        let (stats, findings, _) =
            sweep_cached(&new, root.path(), &SweepOptions::default(), Some(&cache));
        assert_eq!(stats.cached_files, 0);
        assert_eq!(names(&findings), vec!["f2:new"]);
        // Same rules, a new IOC list: matched from the cached hashes, nothing is read.
        let with_iocs = engine(
            rules_dir.path(),
            "rule new { strings: $a = \"file 2\" condition: $a }",
            &format!("{EICAR_SHA256};E\n"),
        );
        let (stats, findings, _) = sweep_cached(
            &with_iocs,
            root.path(),
            &SweepOptions::default(),
            Some(&cache),
        );
        assert_eq!(stats.cached_files, 21);
        assert_eq!(names(&findings), vec!["eicar:ioc", "f2:new"]);
        // An MD5 list needs a digest the cache lacks: those files are read once more.
        let mut md5_iocs = HashIocs::default();
        md5_iocs.add_list(Path::new("l"), "44d88612fea8a8f36de82e1278abb02f;md5\n");
        let md5_engine = Engine::new(
            crate::rules::load(&[rules_dir.path().join("test.yar")]).ok(),
            md5_iocs,
        );
        let (stats, findings, _) = sweep_cached(
            &md5_engine,
            root.path(),
            &SweepOptions::default(),
            Some(&cache),
        );
        assert_eq!(stats.cached_files, 0);
        assert_eq!(names(&findings), vec!["eicar:ioc", "f2:new"]);
        let (stats, _, _) = sweep_cached(
            &md5_engine,
            root.path(),
            &SweepOptions::default(),
            Some(&cache),
        );
        assert_eq!(stats.cached_files, 21);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_not_followed() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(rules_dir.path(), "rule always { condition: true }", "");
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        std::fs::write(root.path().join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink(root.path(), root.path().join("a/loop")).unwrap();
        std::os::unix::fs::symlink("self", root.path().join("self")).unwrap();
        let (stats, findings, errors) = sweep(&engine, root.path(), &SweepOptions::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((stats.files, findings.len()), (1, 1));
    }

    #[test]
    fn a_file_gone_between_listing_and_reading_is_not_found() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(rules_dir.path(), "rule always { condition: true }", "");
        let mut worker = bare_worker(&engine);
        let dir = tempfile::tempdir().unwrap();
        // The walker listed it; it is deleted before the worker gets to it.
        let path = dir.path().join("vanished");
        std::fs::write(&path, "x").unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = worker.read_and_judge(&path, None).err().unwrap();
        assert_eq!(err.kind, ScanErrorKind::NotFound);
        assert_eq!(err.path, path);
    }

    /// A regular file replaced by a FIFO between the walk's stat and the worker's open: the
    /// open does not wait for a writer (which blocked the worker, and the sweep, forever).
    #[cfg(unix)]
    #[test]
    fn a_fifo_in_place_of_a_listed_file_is_not_read_and_does_not_block() {
        let engine = Engine::new(None, HashIocs::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("was-a-file");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let judged_path = path.clone();
        std::thread::spawn(move || {
            let mut worker = bare_worker(&engine);
            let result = worker.read_and_judge(&judged_path, None).err();
            let _ = done_tx.send(result);
        });
        let err = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO blocked the worker")
            .expect("a FIFO is not judged");
        assert_eq!(err.kind, ScanErrorKind::Changed);
        assert!(err.message.contains("FIFO"), "{}", err.message);
    }

    /// A file whose bytes outgrow the size it had when opened (appended to while read) gives no
    /// verdict and is not cached. /proc files are regular files that stat as 0 bytes and read
    /// as more: the same situation, deterministically.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_that_grows_while_read_is_reported_as_changed() {
        let engine = Engine::new(None, HashIocs::default());
        let mut worker = bare_worker(&engine);
        let path = Path::new("/proc/self/status");
        let err = worker.read_and_judge(path, None).err().unwrap();
        assert_eq!(err.kind, ScanErrorKind::Changed, "{}", err.message);
        assert!(
            err.message.contains("changed while read"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_sparse_file_over_the_yara_limit_is_hashed_only() {
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(rules_dir.path(), "rule always { condition: true }", "");
        let root = tempfile::tempdir().unwrap();
        let sparse = std::fs::File::create(root.path().join("sparse.img")).unwrap();
        sparse.set_len(200 * 1024 * 1024).unwrap();
        let options = SweepOptions {
            max_yara_size: 1024 * 1024,
            ..SweepOptions::default()
        };
        let (stats, findings, errors) = sweep(&engine, root.path(), &options);
        assert!(findings.is_empty());
        assert_eq!(stats.bytes, 200 * 1024 * 1024);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, ScanErrorKind::TooLarge);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_are_scanned_and_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let rules_dir = tempfile::tempdir().unwrap();
        let engine = engine(rules_dir.path(), "rule always { condition: true }", "");
        let root = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.exe");
        std::fs::write(root.path().join(name), "x").unwrap();
        let (_, findings, errors) = sweep(&engine, root.path(), &SweepOptions::default());
        assert!(errors.is_empty());
        assert_eq!(
            findings[0].path.file_name().unwrap().as_bytes(),
            b"caf\xe9.exe"
        );
    }

    #[test]
    fn a_big_flat_directory_is_scanned_completely() {
        // The million-entry directory, scaled down to what CI affords.
        let engine = Engine::new(None, HashIocs::default());
        let root = tempfile::tempdir().unwrap();
        for i in 0..20_000 {
            std::fs::write(root.path().join(format!("{i:05}")), "").unwrap();
        }
        let options = SweepOptions {
            threads: 2,
            ..SweepOptions::default()
        };
        let (stats, _, errors) = sweep(&engine, root.path(), &options);
        assert!(errors.is_empty());
        assert_eq!(stats.files, 20_000);
    }

    #[test]
    fn precount_counts_what_a_sweep_reads() {
        let engine = Engine::new(None, HashIocs::default());
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/.hidden")).unwrap();
        std::fs::write(root.path().join("a/.hidden/x"), "12345").unwrap();
        std::fs::write(root.path().join("a/y"), "123").unwrap();
        std::fs::create_dir_all(root.path().join("skip")).unwrap();
        std::fs::write(root.path().join("skip/z"), "1").unwrap();
        let options = SweepOptions {
            excludes: vec![root.path().join("skip")],
            ..SweepOptions::default()
        };
        let counted = precount(
            &[root.path().to_path_buf()],
            &options,
            &AtomicBool::new(false),
        );
        let (stats, _, _) = sweep(&engine, root.path(), &options);
        assert_eq!(counted, (stats.files, stats.bytes));
        assert_eq!(counted, (2, 8));
    }

    #[test]
    fn stop_flag_ends_the_sweep() {
        let engine = Engine::new(None, HashIocs::default());
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a"), "x").unwrap();
        let stats = engine.sweep(
            &[root.path().to_path_buf()],
            &SweepOptions::default(),
            None,
            &AtomicBool::new(true),
            |_| {},
        );
        assert!(stats.stopped);
        assert_eq!(stats.files, 0);
    }

    /// Stopped while the walker waits on a full queue (far more files listed than the queue
    /// holds, one slow worker): the sweep still returns.
    #[test]
    fn a_sweep_stopped_with_the_queue_full_returns() {
        let root = tempfile::tempdir().unwrap();
        let files = JOB_QUEUE_BATCHES * JobBatch::FILES * 2;
        for i in 0..files {
            std::fs::write(root.path().join(format!("f{i}")), "x").unwrap();
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let root_path = root.path().to_path_buf();
        std::thread::spawn(move || {
            let engine = Engine::new(None, HashIocs::default());
            let stop = AtomicBool::new(false);
            // One worker held to 1% of a core: the walker fills the queue long before the
            // first file's event arrives and stops the sweep.
            let options = SweepOptions {
                threads: 1,
                cpu_limit: Some(1),
                ..SweepOptions::default()
            };
            let stats = engine.sweep(&[root_path], &options, None, &stop, |_| {
                stop.store(true, Ordering::Relaxed)
            });
            let _ = done_tx.send(stats);
        });
        // Not a timing: a sweep that never returns is the failure.
        let stats = done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the stopped sweep returned");
        assert!(stats.stopped);
        assert!(stats.files < files as u64, "{stats:?}");
    }
}
