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

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::iocs::Digests;

const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files");

#[derive(Debug, thiserror::Error)]
#[error("{path}: verdict cache: {message}")]
pub struct CacheError {
    pub path: PathBuf,
    pub message: String,
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Windows: the file index is not available on stable Rust; the path key plus size, last
    /// write and creation times stand in for it.
    #[cfg(windows)]
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::windows::fs::MetadataExt;
        FileStamp {
            dev: 0,
            ino: 0,
            size: meta.file_size(),
            mtime_ns: meta.last_write_time() as i64,
            ctime_ns: meta.creation_time() as i64,
        }
    }
}

/// A cached YARA match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedMatch {
    pub rule: String,
    pub namespace: String,
}

/// What the cache knows about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    pub stamp: FileStamp,
    pub sha256: String,
    pub sha1: Option<String>,
    pub md5: Option<String>,
    /// Version of the rule set behind `yara`; `None` when YARA did not judge the file (no
    /// rules, or too large).
    pub rules_version: Option<String>,
    pub yara: Vec<CachedMatch>,
    /// The file was too large for YARA: reported again on every sweep.
    pub too_large: bool,
}

impl CachedFile {
    pub fn digests(&self) -> Option<Digests> {
        Some(Digests {
            sha256: decode(&self.sha256)?,
            sha1: match &self.sha1 {
                Some(h) => Some(decode(h)?),
                None => None,
            },
            md5: match &self.md5 {
                Some(h) => Some(decode(h)?),
                None => None,
            },
        })
    }

    pub fn set_digests(&mut self, digests: &Digests) {
        self.sha256 = hex::encode(digests.sha256);
        self.sha1 = digests.sha1.map(hex::encode);
        self.md5 = digests.md5.map(hex::encode);
    }
}

fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The key of a path: its bytes as the OS gives them.
pub fn key(path: &Path) -> Vec<u8> {
    path.as_os_str().as_encoded_bytes().to_vec()
}

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
        let db = Database::create(path).map_err(|e| fail(e.to_string()))?;
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
                let value = serde_json::to_vec(entry).expect("cache entries serialize");
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(|e| self.fail(e))?;
            }
        }
        txn.commit().map_err(|e| self.fail(e))
    }
}

pub struct CacheReader {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl CacheReader {
    /// The entry for `key`, if any and readable; an unreadable entry counts as absent.
    pub fn get(&self, key: &[u8]) -> Option<CachedFile> {
        let value = self.table.get(key).ok()??;
        serde_json::from_slice(value.value()).ok()
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
                mtime_ns: 4,
                ctime_ns: 5,
            },
            sha256: "ab".repeat(32),
            sha1: None,
            md5: Some("cd".repeat(16)),
            rules_version: Some("v1".into()),
            yara: vec![CachedMatch {
                rule: "r".into(),
                namespace: "n".into(),
            }],
            too_large: false,
        }
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
        let digests = got.digests().unwrap();
        assert_eq!(digests.sha256, [0xab; 32]);
        assert_eq!((digests.sha1, digests.md5), (None, Some([0xcd; 16])));
    }

    #[test]
    fn unusable_cache_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = Cache::open(&blocker.join("cache.redb")).err().unwrap();
        assert!(err.to_string().contains("file/cache.redb"), "{err}");
    }
}
