//! The persistent verdict cache that makes re-sweeps incremental (redb).
//!
//! One entry per path (YARA verdicts depend on the path through the `filename`/`filepath`
//! externals), valid while the file's stamp (device, inode, size, mtime, ctime) is unchanged.
//! It holds the file's digests and its verdicts, each under the version of the rule set or IOC
//! set that produced it:
//! - stamp, rule-set and IOC-set versions unchanged: the file is neither read nor hashed;
//! - only the IOCs changed: the cached digests are matched again, the file is not read;
//! - the rules changed: the file is read for YARA, its hashes are reused;
//! - the stamp changed (or `--full`): everything is done again.
//!
//! Workers read; the sweep's collecting thread writes in batches.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::iocs::Digests;

const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files");

#[derive(Debug, thiserror::Error)]
#[error("{path}: verdict cache: {message}")]
pub struct CacheError {
    pub path: PathBuf,
    pub message: String,
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStamp {
    #[cfg(unix)]
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        }
    }

    /// The stamp of a file the walk found, without reading it. Unix: from the walk's own
    /// metadata. Windows: the file index and the change time are only known from a handle,
    /// so the file is opened for its attributes alone (no read access: sharing modes and
    /// oplocks of other programs are not disturbed).
    #[cfg(unix)]
    pub fn of_entry(_path: &std::path::Path, meta: &std::fs::Metadata) -> std::io::Result<Self> {
        Ok(Self::of(meta))
    }

    /// The stamp of an open file.
    #[cfg(unix)]
    pub fn of_open(file: &std::fs::File) -> std::io::Result<Self> {
        Ok(Self::of(&file.metadata()?))
    }

    #[cfg(windows)]
    pub fn of_entry(path: &std::path::Path, _meta: &std::fs::Metadata) -> std::io::Result<Self> {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Storage::FileSystem::{
            FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES,
            FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
        };
        let file = std::fs::OpenOptions::new()
            .access_mode(FILE_READ_ATTRIBUTES)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)?;
        Self::of_open(&file)
    }

    /// Windows: volume serial number and file index for device and inode, last write and
    /// change time (which, unlike the creation time, no ordinary API can set back) in
    /// nanoseconds since 1970.
    #[cfg(windows)]
    pub fn of_open(file: &std::fs::File) -> std::io::Result<Self> {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Storage::FileSystem::{
            BY_HANDLE_FILE_INFORMATION, FILE_BASIC_INFO, FileBasicInfo, GetFileInformationByHandle,
            GetFileInformationByHandleEx,
        };
        let handle = file.as_raw_handle();
        // SAFETY: plain C structs that the calls fill in; all-zero is a valid value of each.
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        let mut basic: FILE_BASIC_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: `handle` is open for as long as `file` lives; each buffer is as large as the
        // call is told.
        let ok = unsafe {
            GetFileInformationByHandle(handle, &mut info) != 0
                && GetFileInformationByHandleEx(
                    handle,
                    FileBasicInfo,
                    (&mut basic as *mut FILE_BASIC_INFO).cast(),
                    std::mem::size_of::<FILE_BASIC_INFO>() as u32,
                ) != 0
        };
        if !ok {
            return Err(std::io::Error::last_os_error());
        }
        let join = |high: u32, low: u32| (u64::from(high) << 32) | u64::from(low);
        // FILETIME ticks (100 ns since 1601) to nanoseconds since 1970, as on Unix: in
        // nanoseconds since 1601, today's dates no longer fit an i64.
        const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
        let unix_ns = |ticks: i64| ticks.saturating_sub(UNIX_EPOCH_TICKS).saturating_mul(100);
        Ok(FileStamp {
            dev: u64::from(info.dwVolumeSerialNumber),
            ino: join(info.nFileIndexHigh, info.nFileIndexLow),
            size: join(info.nFileSizeHigh, info.nFileSizeLow),
            mtime_ns: unix_ns(basic.LastWriteTime),
            ctime_ns: unix_ns(basic.ChangeTime),
        })
    }
}

/// A cached YARA match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedMatch {
    pub rule: String,
    pub namespace: String,
}

/// What the cache knows about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    pub stamp: FileStamp,
    pub digests: Digests,
    /// Version of the rule set behind `yara`; `None` when YARA did not judge the file (no
    /// rules, or too large).
    pub rules_version: Option<[u8; 32]>,
    pub yara: Vec<CachedMatch>,
    /// The file was too large for YARA: reported again on every sweep.
    pub too_large: bool,
}

/// Layout version of encoded entries; entries of another version read as absent.
const FORMAT: u8 = 1;
const HAS_SHA1: u8 = 1;
const HAS_MD5: u8 = 2;
const HAS_RULES_VERSION: u8 = 4;
const TOO_LARGE: u8 = 8;

impl CachedFile {
    /// A compact binary form: a re-sweep decodes one entry per file, so no text format.
    /// `FORMAT`, the stamp (5 x 8 bytes, little endian), flags, SHA-256, the optional SHA-1,
    /// MD5 and rule-set version, then the matches as length-prefixed strings.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(FORMAT);
        let s = &self.stamp;
        for field in [s.dev, s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        let d = &self.digests;
        let flags = (if d.sha1.is_some() { HAS_SHA1 } else { 0 })
            | (if d.md5.is_some() { HAS_MD5 } else { 0 })
            | (if self.rules_version.is_some() {
                HAS_RULES_VERSION
            } else {
                0
            })
            | (if self.too_large { TOO_LARGE } else { 0 });
        out.push(flags);
        out.extend_from_slice(&d.sha256);
        out.extend_from_slice(d.sha1.as_ref().map_or(&[][..], |h| &h[..]));
        out.extend_from_slice(d.md5.as_ref().map_or(&[][..], |h| &h[..]));
        out.extend_from_slice(self.rules_version.as_ref().map_or(&[][..], |v| &v[..]));
        out.extend_from_slice(&(self.yara.len() as u32).to_le_bytes());
        for m in &self.yara {
            for text in [&m.rule, &m.namespace] {
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    /// The entry encoded in `bytes`; `None` for anything malformed or of another format.
    pub fn decode(bytes: &[u8]) -> Option<CachedFile> {
        let mut r = Reader(bytes);
        if r.take::<1>()?[0] != FORMAT {
            return None;
        }
        let mut u64s = [0u64; 5];
        for field in &mut u64s {
            *field = u64::from_le_bytes(r.take()?);
        }
        let [dev, ino, size, mtime, ctime] = u64s;
        let flags = r.take::<1>()?[0];
        let sha256 = r.take::<32>()?;
        let sha1 = if flags & HAS_SHA1 != 0 {
            Some(r.take::<20>()?)
        } else {
            None
        };
        let md5 = if flags & HAS_MD5 != 0 {
            Some(r.take::<16>()?)
        } else {
            None
        };
        let rules_version = if flags & HAS_RULES_VERSION != 0 {
            Some(r.take::<32>()?)
        } else {
            None
        };
        let count = u32::from_le_bytes(r.take()?) as usize;
        let mut yara = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            yara.push(CachedMatch {
                rule: r.text()?,
                namespace: r.text()?,
            });
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(CachedFile {
            stamp: FileStamp {
                dev,
                ino,
                size,
                mtime_ns: mtime as i64,
                ctime_ns: ctime as i64,
            },
            digests: Digests { sha256, sha1, md5 },
            rules_version,
            yara,
            too_large: flags & TOO_LARGE != 0,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn text(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take()?) as usize;
        let bytes = self.0.get(..len)?;
        self.0 = &self.0[len..];
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// The key of a path: its bytes as the OS gives them.
pub fn key(path: &Path) -> Vec<u8> {
    key_bytes(path).to_vec()
}

/// [`key`], borrowed: lookups need no allocation.
pub fn key_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

/// The memory redb may hold for the cache file's pages. Its default (1 GiB) lets the agent's
/// resident memory grow with the number of files swept: every page written stays cached, about
/// 14 MB for a 62,000-file `/usr/lib`, hundreds on a file server. A re-sweep reads the entries
/// in walk order, which is close to key order, so a small cache serves it as fast (0.21 s
/// either way on that tree).
const CACHE_MEMORY: usize = 16 << 20;

pub struct Cache {
    db: Database,
    path: PathBuf,
}

impl Cache {
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let fail = |message: String| CacheError {
            path: path.to_path_buf(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create directory: {e}")))?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_MEMORY)
            .create(path)
            .map_err(|e| fail(e.to_string()))?;
        // Create the table up front so that readers never meet a missing table.
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        txn.open_table(FILES).map_err(|e| fail(e.to_string()))?;
        txn.commit().map_err(|e| fail(e.to_string()))?;
        Ok(Cache {
            db,
            path: path.to_path_buf(),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> CacheError {
        CacheError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// A reader for one worker thread; it sees the cache as it was when it began.
    pub fn reader(&self) -> Result<CacheReader, CacheError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(FILES).map_err(|e| self.fail(e))?;
        Ok(CacheReader { table })
    }

    /// Stores entries in one transaction.
    pub fn write(&self, entries: &[(Vec<u8>, CachedFile)]) -> Result<(), CacheError> {
        if entries.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = txn.open_table(FILES).map_err(|e| self.fail(e))?;
            for (key, entry) in entries {
                let value = entry.encode();
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(|e| self.fail(e))?;
            }
        }
        txn.commit().map_err(|e| self.fail(e))
    }
}

impl Cache {
    /// Removes the entries of paths under `roots` (a root itself included) that `listed`
    /// rejects: files deleted, moved or excluded since they were cached. Returns how many.
    pub fn purge(
        &self,
        roots: &[PathBuf],
        mut listed: impl FnMut(&[u8]) -> bool,
    ) -> Result<u64, CacheError> {
        let roots: Vec<&[u8]> = roots.iter().map(|root| key_bytes(root)).collect();
        let under_a_root = |key: &[u8]| {
            roots.iter().any(|root| {
                key.strip_prefix(*root).is_some_and(|rest| {
                    rest.is_empty()
                        || std::path::is_separator(rest[0] as char)
                        || root
                            .last()
                            .is_some_and(|&b| std::path::is_separator(b as char))
                })
            })
        };
        // Find them with a reader first: a write transaction, even one that changes nothing,
        // costs a commit and redb's reclaiming of the pages earlier writes freed.
        let mut stale: Vec<Vec<u8>> = Vec::new();
        {
            let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
            let table = txn.open_table(FILES).map_err(|e| self.fail(e))?;
            for entry in table.iter().map_err(|e| self.fail(e))? {
                let (key, _) = entry.map_err(|e| self.fail(e))?;
                let key = key.value();
                if under_a_root(key) && !listed(key) {
                    stale.push(key.to_vec());
                }
            }
        }
        if stale.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = txn.open_table(FILES).map_err(|e| self.fail(e))?;
            for key in &stale {
                table.remove(key.as_slice()).map_err(|e| self.fail(e))?;
            }
        }
        txn.commit().map_err(|e| self.fail(e))?;
        Ok(stale.len() as u64)
    }
}

pub struct CacheReader {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl CacheReader {
    /// The entry for `key`, if any and readable; an unreadable entry counts as absent.
    pub fn get(&self, key: &[u8]) -> Option<CachedFile> {
        let value = self.table.get(key).ok()??;
        CachedFile::decode(value.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CachedFile {
        CachedFile {
            stamp: FileStamp {
                dev: 1,
                ino: 2,
                size: 3,
                mtime_ns: -4,
                ctime_ns: 5,
            },
            digests: Digests {
                sha256: [0xab; 32],
                sha1: None,
                md5: Some([0xcd; 16]),
            },
            rules_version: Some([7; 32]),
            yara: vec![CachedMatch {
                rule: "r".into(),
                namespace: "n\u{e9}".into(),
            }],
            too_large: false,
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let e = entry();
        assert_eq!(CachedFile::decode(&e.encode()), Some(e.clone()));
        let bare = CachedFile {
            rules_version: None,
            yara: vec![],
            too_large: true,
            digests: Digests {
                sha1: Some([1; 20]),
                md5: None,
                ..e.digests
            },
            ..e.clone()
        };
        assert_eq!(CachedFile::decode(&bare.encode()), Some(bare));
        let bytes = e.encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                CachedFile::decode(&bytes[..cut]),
                None,
                "truncated at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(CachedFile::decode(&longer), None);
        let mut other_format = bytes;
        other_format[0] = 99;
        assert_eq!(CachedFile::decode(&other_format), None);
    }

    #[test]
    fn a_file_replaced_under_the_same_size_and_times_gets_another_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"clean").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let before = FileStamp::of_entry(&path, &meta).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(FileStamp::of_open(&file).unwrap(), before);
        drop(file);
        assert_eq!(before.size, 5);
        // Nanoseconds since 1970, on every platform: after 2020, before 2100.
        for ns in [before.mtime_ns, before.ctime_ns] {
            assert!(
                (1_577_836_800_000_000_000..4_102_444_800_000_000_000).contains(&ns),
                "{ns}"
            );
        }
        // What a dropper does to hide: same size, the old file's times put back, moved over it.
        let evil = dir.path().join("evil.tmp");
        std::fs::write(&evil, b"evil!").unwrap();
        let times = std::fs::FileTimes::new()
            .set_modified(meta.modified().unwrap())
            .set_accessed(meta.accessed().unwrap());
        std::fs::File::options()
            .write(true)
            .open(&evil)
            .unwrap()
            .set_times(times)
            .unwrap();
        std::fs::rename(&evil, &path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let after = FileStamp::of_entry(&path, &meta).unwrap();
        assert_eq!((after.size, after.mtime_ns), (before.size, before.mtime_ns));
        assert_ne!(after, before);
        assert_ne!(
            after.ino, before.ino,
            "the file index tells the files apart"
        );
    }

    #[test]
    fn round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.redb");
        let cache = Cache::open(&path).unwrap();
        assert!(cache.reader().unwrap().get(b"/x").is_none());
        cache.write(&[(b"/x".to_vec(), entry())]).unwrap();
        drop(cache);
        let cache = Cache::open(&path).unwrap();
        let got = cache.reader().unwrap().get(b"/x").unwrap();
        assert_eq!(got, entry());
    }

    #[test]
    fn unusable_cache_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let path = blocker.join("cache.redb");
        let err = Cache::open(&path).err().unwrap();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
