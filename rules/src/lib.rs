//! Loading YARA rules the way people ship them: single `.yar`/`.yara` files or directories of
//! them, each file compiled into its own namespace named after the file.
//!
//! Rules are compiled with YARA-X's relaxed regular-expression syntax (what libyara accepts) and
//! with the external variables that Loki/THOR-style rule sets such as signature-base expect
//! (`filename`, `filepath`, `extension`, `filetype`, `owner`) defined as empty strings; the
//! scanner sets them per file.
//!
//! Rules that can only match files with a given header are compiled apart (see [`split`]); the
//! scanner runs them only on such files.
//!
//! The agent scans with these rule sets and the collector checks a bundle with them before it
//! publishes it, so that what the collector accepts is exactly what agents load; [`iocs`] is
//! the same for hash lists. This crate holds no allocator policy: an agent that returns freed
//! pages at once says so with [`set_memory_hooks`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::Digest;

pub mod cost;
pub mod iocs;
pub mod split;

/// What the process's allocator does around a rule compile, set once by a program that
/// tunes its allocator (the agent hands freed pages back to the system at once; a compile is a
/// burst of allocations that would fault the same pages in again and again).
#[derive(Debug, Clone, Copy)]
pub struct MemoryHooks {
    /// Keep freed pages from now on.
    pub keep_freed: fn(),
    /// Return the pages kept and go back to returning them at once.
    pub give_back: fn(),
}

static MEMORY_HOOKS: std::sync::OnceLock<MemoryHooks> = std::sync::OnceLock::new();

/// Sets the hooks for the life of the process; a second call changes nothing.
pub fn set_memory_hooks(hooks: MemoryHooks) {
    let _ = MEMORY_HOOKS.set(hooks);
}

/// Keeps freed pages until dropped (see [`MemoryHooks`]).
struct KeepFreedMemory;

impl KeepFreedMemory {
    fn start() -> Self {
        if let Some(hooks) = MEMORY_HOOKS.get() {
            (hooks.keep_freed)();
        }
        KeepFreedMemory
    }
}

impl Drop for KeepFreedMemory {
    fn drop(&mut self) {
        give_back_memory();
    }
}

fn give_back_memory() {
    if let Some(hooks) = MEMORY_HOOKS.get() {
        (hooks.give_back)();
    }
}

/// YARA-X warnings that say a rule will be slow to scan with. Not `potentially_slow_loop`:
/// it fires on loops over a file's size that sound rules use (signature-base has one), and a
/// slow loop shows in [`cost`]'s timing anyway.
pub const SLOW_WARNINGS: [&str; 1] = ["slow_pattern"];

/// A warning of the compiler's that a rule will be slow (see [`SLOW_WARNINGS`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlowWarning {
    pub path: PathBuf,
    pub line: usize,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for SlowWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} ({})",
            self.path.display(),
            self.line,
            self.message,
            self.code
        )
    }
}

/// The share of all rules (1/N) that must require the same header before they get a rule set
/// of their own. Such a set costs one more pass over each file with that header and saves a
/// little on every other file; only a large group pays for itself (in signature-base, the PE
/// rules: half the set). The ELF rules stay in the general set: on a Linux host most bytes are
/// ELF files, and a second pass over each would cost more than the 126 rules do.
const HEADER_GROUP_SHARE: usize = 4;

/// External variables every rule set may use; the agent's scanner sets them for each file.
pub const EXTERNAL_VARIABLES: [&str; 5] =
    ["filename", "filepath", "extension", "filetype", "owner"];

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{path}: cannot read rules: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Compile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no .yar or .yara files found")]
    Empty { path: PathBuf },
}

/// A compiled rule set and where it came from.
pub struct RuleSet {
    /// The rules any file may match.
    pub general: yara_x::Rules,
    /// Rules only files starting with a given header can match, compiled apart, sorted by
    /// header: a file is scanned with [`RuleSet::general`] and at most one of these.
    pub by_header: Vec<(split::Header, yara_x::Rules)>,
    /// The rule files that went in, in compile order.
    pub files: Vec<PathBuf>,
    /// The per-file rules (see [`split`]), to be compiled once more on their own when first
    /// needed: a file whose bytes were already judged needs a scan with these alone. Not
    /// counted in [`RuleSet::len`].
    pub per_file: Option<PerFileRules>,
    /// Rule files left out because they do not compile, each with its file and line.
    pub broken: Vec<RulesError>,
    /// The compiler's warnings that a rule will be slow, in file and line order.
    pub slow_warnings: Vec<SlowWarning>,
    /// SHA-256 over the namespaces and contents that went in: verdicts cached under another
    /// version are stale.
    pub version: [u8; 32],
}

/// The rules whose verdict may differ between files with the same bytes (see [`split`]), as
/// source parts split by header like the whole set. They are compiled the first time a sweep
/// meets bytes it has already judged, on the worker that meets them: most hosts need them
/// for a few files, and compiling them with the rest would add to every start-up and to the
/// compiler's peak memory.
pub struct PerFileRules {
    general: Vec<PerFileSource>,
    by_header: Vec<(split::Header, Vec<PerFileSource>)>,
    compiled: std::sync::OnceLock<Option<PerFileSets>>,
}

/// A part of a rule file that holds per-file rules.
struct PerFileSource {
    file: PathBuf,
    namespace: String,
    code: Vec<u8>,
}

/// The per-file rules compiled, and their names.
pub struct PerFileSets {
    pub general: yara_x::Rules,
    pub by_header: Vec<(split::Header, yara_x::Rules)>,
    /// The identifiers of these rules by namespace.
    names: std::collections::HashMap<String, HashSet<String>>,
}

impl PerFileRules {
    /// The compiled sets, compiled now if this is the first call; `None` if they do not
    /// compile (they did as part of their files, so this is not expected; the error is
    /// logged, and files are then always judged in full).
    pub fn compiled(&self) -> Option<&PerFileSets> {
        self.compiled
            .get_or_init(|| match self.compile() {
                Ok(sets) => Some(sets),
                Err(err) => {
                    tracing::warn!("per-file rules left uncompiled, files judged in full: {err}");
                    None
                }
            })
            .as_ref()
    }

    /// Whether [`Self::compiled`] has run.
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    fn compile(&self) -> Result<PerFileSets, RulesError> {
        let build = |parts: &[PerFileSource]| -> Result<yara_x::Rules, RulesError> {
            let mut compiler = new_compiler();
            for part in parts {
                add_part(&mut compiler, &part.file, &part.namespace, &part.code)?;
            }
            Ok(compact(compiler.build()))
        };
        let general = build(&self.general)?;
        let by_header = self
            .by_header
            .iter()
            .map(|(header, parts)| Ok((*header, build(parts)?)))
            .collect::<Result<Vec<_>, RulesError>>()?;
        let mut names: std::collections::HashMap<String, HashSet<String>> = Default::default();
        for rule in general
            .iter()
            .chain(by_header.iter().flat_map(|(_, r)| r.iter()))
        {
            names
                .entry(rule.namespace().to_owned())
                .or_default()
                .insert(rule.identifier().to_owned());
        }
        give_back_memory();
        Ok(PerFileSets {
            general,
            by_header,
            names,
        })
    }
}

impl PerFileSets {
    /// Whether the rule `identifier` of `namespace` is one of these.
    pub fn contains(&self, namespace: &str, identifier: &str) -> bool {
        self.names
            .get(namespace)
            .is_some_and(|ids| ids.contains(identifier))
    }
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("files", &self.files.len())
            .field("rules", &self.len())
            .field("headers", &self.by_header.len())
            .finish()
    }
}

impl RuleSet {
    /// Every rule, general ones first.
    pub fn iter(&self) -> impl Iterator<Item = yara_x::Rule<'_, '_>> {
        self.general
            .iter()
            .chain(self.by_header.iter().flat_map(|(_, rules)| rules.iter()))
    }

    /// Every rule as `namespace:identifier`, the per-file rules included (compiled now if they
    /// were not yet): what a finding's rule is looked up by.
    pub fn rule_keys(&self) -> Vec<String> {
        let key =
            |rule: yara_x::Rule<'_, '_>| format!("{}:{}", rule.namespace(), rule.identifier());
        let mut keys: Vec<String> = self.iter().map(key).collect();
        if let Some(sets) = self.per_file.as_ref().and_then(PerFileRules::compiled) {
            keys.extend(
                sets.general
                    .iter()
                    .chain(sets.by_header.iter().flat_map(|(_, r)| r.iter()))
                    .map(key),
            );
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.general.iter().len()
            + self
                .by_header
                .iter()
                .map(|(_, rules)| rules.iter().len())
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lists the rule files under each path: a file is taken as it is, a directory is searched
/// recursively for `.yar` and `.yara` files (sorted, so namespaces are stable).
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RulesError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| RulesError::Read {
            path: path.clone(),
            source,
        })?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in ignore::WalkBuilder::new(path)
            .standard_filters(false)
            .build()
        {
            let entry = entry.map_err(|err| RulesError::Read {
                path: path.clone(),
                source: err
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            })?;
            let is_rule = entry.path().extension().is_some_and(|ext| {
                ext.eq_ignore_ascii_case("yar") || ext.eq_ignore_ascii_case("yara")
            });
            if is_rule && entry.file_type().is_some_and(|t| t.is_file()) {
                found.push(entry.into_path());
            }
        }
        if found.is_empty() {
            return Err(RulesError::Empty { path: path.clone() });
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Compiles every rule file under `paths`. A file that does not compile is left out whole and
/// listed in [`RuleSet::broken`] with its file and line; the others keep working. A path that
/// cannot be read is an error.
pub fn load(paths: &[PathBuf]) -> Result<RuleSet, RulesError> {
    let mut sources = Vec::new();
    let mut namespaces = HashSet::new();
    for file in rule_files(paths)? {
        let source = std::fs::read(&file).map_err(|source| RulesError::Read {
            path: file.clone(),
            source,
        })?;
        let namespace = unique_namespace(&file, &mut namespaces);
        sources.push((file, namespace, source));
    }
    let kept = KeepFreedMemory::start();
    let (compiled, broken) = compile(&sources);
    drop(kept);
    let broken_paths: HashSet<&Path> = broken.iter().map(|e| e.path()).collect();
    sources.retain(|(file, _, _)| !broken_paths.contains(file.as_path()));
    let mut version = sha2::Sha256::new();
    for (_, namespace, source) in &sources {
        // Length prefixes keep (ns "a", "bc") and (ns "ab", "c") apart.
        for part in [namespace.as_bytes(), source.as_slice()] {
            version.update((part.len() as u64).to_le_bytes());
            version.update(part);
        }
    }
    let Compiled {
        general,
        by_header,
        per_file,
        slow_warnings,
    } = compiled;
    tracing::debug!(
        general = general.iter().len(),
        by_header = ?by_header
            .iter()
            .map(|(h, r)| (String::from_utf8_lossy(h).into_owned(), r.iter().len()))
            .collect::<Vec<_>>(),
        "rules compiled"
    );
    Ok(RuleSet {
        general,
        by_header,
        per_file,
        files: sources.into_iter().map(|(file, _, _)| file).collect(),
        broken,
        slow_warnings,
        version: version.finalize().into(),
    })
}

/// What [`compile`] builds.
struct Compiled {
    general: yara_x::Rules,
    /// The rules of each header group, sorted by header.
    by_header: Vec<(split::Header, yara_x::Rules)>,
    /// The per-file rules, uncompiled; `None` when no rule reads an external variable.
    per_file: Option<PerFileRules>,
    slow_warnings: Vec<SlowWarning>,
}

/// Compiles each file into its namespace, its header-bound rules into the rule set of their
/// header (see [`split`]), each rule set on a thread of its own, and sets its per-file rules
/// aside for [`PerFileRules::compiled`]. A file is broken when any of its parts fails; it is
/// then left out of every set, and its error is reported once, with the original line (parts
/// keep the file's offsets), in file order.
fn compile(sources: &[(PathBuf, String, Vec<u8>)]) -> (Compiled, Vec<RulesError>) {
    let analyses = analyse_all(sources);
    let mut group_sizes: std::collections::BTreeMap<split::Header, usize> = Default::default();
    for header in analyses
        .iter()
        .flat_map(|a| &a.rules)
        .filter_map(|r| r.movable_to)
    {
        *group_sizes.entry(header).or_default() += 1;
    }
    let analysed = analyses.iter().map(|a| a.rules.len()).sum::<usize>();
    let own: Vec<split::Header> = group_sizes
        .into_iter()
        .filter(|(_, size)| size * HEADER_GROUP_SHARE >= analysed)
        .map(|(header, _)| header)
        .collect();
    // What goes into each rule set, (file index, code): the general set and one per header,
    // for all rules and for the per-file rules (compiled later, if ever needed).
    let mut all = HeaderParts::new(own.len());
    let mut per_file = HeaderParts::new(own.len());
    for (i, ((_, _, source), analysis)) in sources.iter().zip(&analyses).enumerate() {
        let rules = &analysis.rules;
        // A file without header-bound rules goes into the general set as it is.
        let unsplit = !rules
            .iter()
            .any(|r| r.movable_to.is_some_and(|h| own.contains(&h)));
        all.add(i, source, rules, &own, unsplit, |_| true);
        per_file.add(i, source, rules, &own, analysis.whole_file_per_file, |r| {
            r.per_file
        });
    }
    let sets: Vec<Parts> = all.into_sets().collect();
    // Each broken file with its first error, from whichever set found it.
    let broken = std::sync::Mutex::new(std::collections::BTreeMap::<usize, RulesError>::new());
    let all_added = std::sync::Barrier::new(sets.len());
    let slow_warnings = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let compile_set = |parts: Parts| {
        let mut arrival = Arrival(Some(&all_added));
        let add = |compiler: &mut yara_x::Compiler, i: usize, code: &[u8]| {
            let (file, namespace, _) = &sources[i];
            add_part(compiler, file, namespace, code)
        };
        let mut compiler = new_compiler();
        let mut errors = Vec::new();
        for (i, code) in &parts {
            if let Err(err) = add(&mut compiler, *i, code) {
                errors.push((*i, err));
            }
        }
        {
            let mut broken = broken.lock().expect("broken rule files lock");
            for (i, err) in errors {
                // Several sets may fail on one file: report its first line, whichever
                // thread got here first.
                let earlier = broken.get(&i).is_some_and(|e| e.line() <= err.line());
                if !earlier {
                    broken.insert(i, err);
                }
            }
        }
        // A file broken in one set is left out of all of them: wait until every set knows.
        arrival.arrive();
        let left_out: HashSet<usize> = broken
            .lock()
            .expect("broken rule files lock")
            .keys()
            .copied()
            .collect();
        if parts.iter().any(|(i, _)| left_out.contains(i)) {
            // yara-x keeps the rules of a failing source that did compile: add the sources
            // again, without the broken files, so that each file is fully in or fully out.
            // Only adding is repeated; the costly build runs once.
            compiler = new_compiler();
            for (i, code) in parts.iter().filter(|(i, _)| !left_out.contains(i)) {
                if let Err(err) = add(&mut compiler, *i, code) {
                    tracing::warn!("a rule file that compiled alone failed with others: {err}");
                }
            }
        }
        slow_warnings
            .lock()
            .expect("slow warnings lock")
            .extend(slow_warnings_of(&compiler, sources));
        compact(compiler.build())
    };
    let mut built = std::thread::scope(|scope| {
        let compile_set = &compile_set;
        let mut sets = sets.into_iter();
        let general = sets.next().expect("there is a general set");
        let handles: Vec<_> = sets
            .map(|parts| scope.spawn(move || compile_set(parts)))
            .collect();
        // The general set, the largest, on this thread: its allocator arena is not one the
        // scan workers will take over with the compiler's leftovers in it.
        let general = compile_set(general);
        std::iter::once(general)
            .chain(
                handles
                    .into_iter()
                    .map(|handle| handle.join().expect("rule compiler thread panicked")),
            )
            .collect::<Vec<_>>()
            .into_iter()
    });
    let general = built.next().expect("a general set was built");
    let by_header = own.iter().copied().zip(built).collect();
    let broken = broken.into_inner().expect("broken rule files lock");
    let owned = |parts: Parts| -> Vec<PerFileSource> {
        parts
            .into_iter()
            .filter(|(i, _)| !broken.contains_key(i))
            .map(|(i, code)| PerFileSource {
                file: sources[i].0.clone(),
                namespace: sources[i].1.clone(),
                code: code.into_owned(),
            })
            .collect()
    };
    let per_file_general = owned(per_file.general);
    let per_file_by_header: Vec<_> = own
        .iter()
        .copied()
        .zip(per_file.by_header.into_iter().map(owned))
        .filter(|(_, parts)| !parts.is_empty())
        .collect();
    let per_file =
        (!per_file_general.is_empty() || !per_file_by_header.is_empty()).then(|| PerFileRules {
            general: per_file_general,
            by_header: per_file_by_header,
            compiled: Default::default(),
        });
    let compiled = Compiled {
        general,
        by_header,
        per_file,
        slow_warnings: slow_warnings
            .into_inner()
            .expect("slow warnings lock")
            .into_iter()
            .collect(),
    };
    (compiled, broken.into_values().collect())
}

/// The parts of rule files that go into one kind of rule set (all rules, or the per-file
/// ones): (file index, code) for the general set and for each header's set.
type Parts<'s> = Vec<(usize, std::borrow::Cow<'s, [u8]>)>;

struct HeaderParts<'s> {
    general: Parts<'s>,
    by_header: Vec<Parts<'s>>,
}

impl<'s> HeaderParts<'s> {
    fn new(headers: usize) -> Self {
        HeaderParts {
            general: Vec::new(),
            by_header: vec![Vec::new(); headers],
        }
    }

    /// Adds the rules `keep` takes from file `i`, each to the set of its header (among `own`)
    /// or the general one; `whole` adds the file to the general set as it is.
    fn add(
        &mut self,
        i: usize,
        source: &'s [u8],
        rules: &[split::RuleSpan],
        own: &[split::Header],
        whole: bool,
        keep: impl Fn(&split::RuleSpan) -> bool,
    ) {
        if whole {
            self.general.push((i, source.into()));
            return;
        }
        let group_of = |rule: &split::RuleSpan| rule.movable_to.filter(|h| own.contains(h));
        let general = |r: &split::RuleSpan| keep(r) && group_of(r).is_none();
        if rules.iter().any(general) {
            self.general
                .push((i, split::part(source, rules, general).into()));
        }
        for (header, parts) in own.iter().zip(&mut self.by_header) {
            let in_group = |r: &split::RuleSpan| keep(r) && group_of(r) == Some(*header);
            if rules.iter().any(in_group) {
                parts.push((i, split::part(source, rules, in_group).into()));
            }
        }
    }

    /// The general set's parts, then each header's.
    fn into_sets(self) -> impl Iterator<Item = Parts<'s>> {
        std::iter::once(self.general).chain(self.by_header)
    }
}

/// A compiler thread's arrival at the barrier between adding sources and building, made also
/// when the thread panics before it: the other threads must not wait forever.
struct Arrival<'b>(Option<&'b std::sync::Barrier>);

impl Arrival<'_> {
    fn arrive(&mut self) {
        if let Some(barrier) = self.0.take() {
            barrier.wait();
        }
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        self.arrive();
    }
}

/// [`split::analyse`] for every source, on as many threads as there are cores. Threads take
/// files one at a time: a few files cost most of the parsing (the rest are skipped unparsed),
/// so equal shares of files left one core idle most of the time.
fn analyse_all(sources: &[(PathBuf, String, Vec<u8>)]) -> Vec<split::Analysis> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let analysed = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(sources.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, _, source)) = sources.get(i) else {
                            return done;
                        };
                        done.push((i, split::analyse(source)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("rule analysis thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut analyses = vec![split::Analysis::default(); sources.len()];
    for (i, analysis) in analysed {
        analyses[i] = analysis;
    }
    analyses
}

impl RulesError {
    /// The line a compile error points at; 0 for the other kinds.
    fn line(&self) -> usize {
        match self {
            RulesError::Compile { line, .. } => *line,
            RulesError::Read { .. } | RulesError::Empty { .. } => 0,
        }
    }

    /// The file or directory the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            RulesError::Read { path, .. }
            | RulesError::Compile { path, .. }
            | RulesError::Empty { path } => path,
        }
    }
}

/// The same rules, in a fraction of the memory: rules fresh from the compiler keep much of
/// its working data (signature-base: about 70 MB, against 15 MB once serialized and loaded
/// back). Keeps the rules as they are should the round trip fail.
fn compact(rules: yara_x::Rules) -> yara_x::Rules {
    match rules
        .serialize()
        .and_then(|bytes| yara_x::Rules::deserialize(&bytes))
    {
        Ok(compact) => compact,
        Err(err) => {
            tracing::warn!("compiled rules kept as built, in more memory: {err}");
            rules
        }
    }
}

/// A compiler configured as every Hygiene component compiles rules.
fn new_compiler() -> yara_x::Compiler<'static> {
    let mut compiler = yara_x::Compiler::new();
    compiler.relaxed_re_syntax(true);
    for name in EXTERNAL_VARIABLES {
        compiler
            .define_global(name, "")
            .expect("a string global with a valid identifier is always accepted");
    }
    compiler
}

/// The namespace for a rule file: its file stem, made unique with a numeric suffix when two
/// files in different directories share a name.
fn unique_namespace(file: &Path, taken: &mut HashSet<String>) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rules".to_owned());
    let mut candidate = stem.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{stem}_{n}");
        n += 1;
    }
    candidate
}

/// Adds `code`, a rule file or a part of one (parts keep the file's lines and offsets), into
/// `namespace`; an error names the file and its line.
fn add_part(
    compiler: &mut yara_x::Compiler,
    file: &Path,
    namespace: &str,
    code: &[u8],
) -> Result<(), RulesError> {
    compiler.new_namespace(namespace);
    let source = yara_x::SourceCode::from(code).with_origin(file.display().to_string());
    compiler
        .add_source(source)
        .map(|_| ())
        .map_err(|err| compile_error(file, code, &err))
}

/// The compiler's [`SLOW_WARNINGS`], each with its file (the source's origin, see
/// [`add_part`]) and line.
fn slow_warnings_of(
    compiler: &yara_x::Compiler,
    sources: &[(PathBuf, String, Vec<u8>)],
) -> Vec<SlowWarning> {
    compiler
        .warnings()
        .iter()
        .filter(|w| SLOW_WARNINGS.contains(&w.code()))
        .filter_map(|w| {
            let label = w.labels().next()?;
            let (path, _, source) = sources
                .iter()
                .find(|(path, _, _)| Some(path.display().to_string().as_str()) == label.origin())?;
            let offset = label.span().start().min(source.len());
            Some(SlowWarning {
                path: path.clone(),
                line: source[..offset].iter().filter(|&&b| b == b'\n').count() + 1,
                code: w.code().to_owned(),
                message: format!("{}: {}", w.title(), label.text()),
            })
        })
        .collect()
}

fn compile_error(file: &Path, source: &[u8], err: &yara_x::errors::CompileError) -> RulesError {
    let offset = err
        .labels()
        .next()
        .map(|label| label.span().start())
        .unwrap_or(0);
    let line = source[..offset.min(source.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    let detail: Vec<String> = err.labels().map(|label| label.text().to_owned()).collect();
    let message = if detail.is_empty() {
        err.title().to_owned()
    } else {
        format!("{}: {}", err.title(), detail.join("; "))
    };
    RulesError::Compile {
        path: file.to_path_buf(),
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_files_get_their_own_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yar"), "rule same { condition: true }").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/b.yara"),
            "rule same { condition: true }",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(set.files.len(), 2);
        let namespaces: HashSet<_> = set.iter().map(|r| r.namespace().to_owned()).collect();
        assert_eq!(namespaces, HashSet::from(["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn broken_rule_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken.yar");
        std::fs::write(
            &file,
            "rule ok { condition: true }\n\nrule bad {\n  condition: nosuchthing\n}\n",
        )
        .unwrap();
        let set = load(std::slice::from_ref(&file)).unwrap();
        assert_eq!(set.broken.len(), 1);
        let err = &set.broken[0];
        match err {
            RulesError::Compile { path, line, .. } => {
                assert_eq!(path, &file);
                assert_eq!(*line, 4);
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(
            err.to_string()
                .starts_with(&format!("{}:4: ", file.display()))
        );
    }

    #[test]
    fn broken_file_is_left_out_whole_and_the_rest_work() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.yar"), "rule good { condition: true }").unwrap();
        std::fs::write(
            dir.path().join("half.yar"),
            "rule half_ok { condition: true }\nrule half_bad { condition: nosuch }\n",
        )
        .unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = set.iter().map(|r| r.identifier()).collect();
        assert_eq!(names, vec!["good"]);
        assert_eq!(set.files, vec![dir.path().join("good.yar")]);
        assert_eq!(set.broken.len(), 1);
        assert_eq!(set.broken[0].path(), dir.path().join("half.yar"));
        // The version covers only what went in: dropping the broken file changes nothing.
        std::fs::remove_file(dir.path().join("half.yar")).unwrap();
        assert_eq!(
            load(&[dir.path().to_path_buf()]).unwrap().version,
            set.version
        );
        std::fs::write(
            dir.path().join("good.yar"),
            "rule good { condition: false }",
        )
        .unwrap();
        assert_ne!(
            load(&[dir.path().to_path_buf()]).unwrap().version,
            set.version
        );
    }

    #[test]
    fn a_broken_header_bound_rule_breaks_its_file_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pe.yar");
        std::fs::write(
            &file,
            "rule ok { condition: true }\n\nrule bad {\n  condition: uint16(0) == 0x5a4d and nosuch\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("other.yar"),
            "rule pe { condition: uint16(0) == 0x5a4d }\nrule fine { condition: true }\n",
        )
        .unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(set.broken.len(), 1);
        assert!(
            set.broken[0]
                .to_string()
                .starts_with(&format!("{}:4: ", file.display())),
            "{}",
            set.broken[0]
        );
        let mut names: Vec<&str> = set.iter().map(|r| r.identifier()).collect();
        names.sort();
        assert_eq!(names, vec!["fine", "pe"]);
        assert_eq!(set.by_header.len(), 1);
        assert_eq!(set.by_header[0].0, *b"MZ");
    }

    #[test]
    fn a_file_broken_in_both_parts_reports_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("both.yar");
        std::fs::write(
            &file,
            "rule a { condition: nosuch }\n\nrule b { condition: uint16(0) == 0x5a4d and nosuch }\n",
        )
        .unwrap();
        for _ in 0..5 {
            let broken = load(&[dir.path().to_path_buf()]).unwrap().broken;
            assert_eq!(broken.len(), 1);
            assert!(
                broken[0]
                    .to_string()
                    .starts_with(&format!("{}:1: ", file.display())),
                "{}",
                broken[0]
            );
        }
    }

    #[test]
    fn rules_importing_a_module_left_out_of_the_build_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vt.yar"),
            "import \"vt\"\nrule v { condition: true }\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pe.yar"),
            "import \"pe\"\nrule p { condition: pe.is_pe }\n",
        )
        .unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(set.broken.len(), 1);
        assert!(
            set.broken[0].to_string().contains("vt.yar:1: "),
            "{}",
            set.broken[0]
        );
        assert_eq!(
            set.iter().map(|r| r.identifier()).collect::<Vec<_>>(),
            vec!["p"]
        );
    }

    #[test]
    fn missing_path_and_empty_directory_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(&[dir.path().join("nope.yar")]),
            Err(RulesError::Read { .. })
        ));
        assert!(matches!(
            load(&[dir.path().to_path_buf()]),
            Err(RulesError::Empty { .. })
        ));
    }

    #[test]
    fn externals_are_defined() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ext.yar");
        std::fs::write(
            &file,
            "rule e { condition: filename == \"x\" and extension == \".exe\" }",
        )
        .unwrap();
        load(&[file]).unwrap();
    }

    #[test]
    fn per_file_rules_are_compiled_again_on_their_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mixed.yar"),
            "private rule helper { condition: filesize > 0 }\n\
             rule by_name { condition: filename == \"x.exe\" and helper }\n\
             rule by_content { strings: $a = \"abc\" condition: $a }\n\
             rule pe_by_name { condition: uint16(0) == 0x5a4d and filename == \"x.exe\" }\n\
             rule pe_by_owner { condition: uint16(0) == 0x5a4d and owner == \"nobody\" }\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("plain.yar"),
            "rule plain { condition: true }",
        )
        .unwrap();
        // A broken file takes its per-file rules out with it.
        std::fs::write(
            dir.path().join("broken.yar"),
            "rule gone { condition: owner == \"root\" and nosuch }",
        )
        .unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(set.broken.len(), 1);
        assert_eq!(set.len(), 6, "the per-file set is not counted again");
        let per_file = set.per_file.as_ref().expect("a rule reads `filename`");
        let per_file = per_file.compiled().expect("per-file rules compile");
        let names = |rules: &yara_x::Rules| {
            let mut names: Vec<String> = rules
                .iter()
                .map(|r| format!("{}:{}", r.namespace(), r.identifier()))
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names(&per_file.general),
            vec!["mixed:by_name", "mixed:helper"]
        );
        // Split by header like the whole set: a per-file PE rule is only run on PE files.
        assert_eq!(per_file.by_header.len(), 1);
        assert_eq!(per_file.by_header[0].0, *b"MZ");
        assert_eq!(
            names(&per_file.by_header[0].1),
            vec!["mixed:pe_by_name", "mixed:pe_by_owner"]
        );
        assert!(per_file.contains("mixed", "by_name") && !per_file.contains("mixed", "by_content"));
        assert!(!per_file.contains("plain", "by_name"));

        std::fs::remove_file(dir.path().join("mixed.yar")).unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        assert!(set.per_file.is_none(), "no rule left reads an external");
    }
}
