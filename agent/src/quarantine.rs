//! Quarantine: moving a detected file out of reach, and putting the identical bytes back.
//!
//! A file is quarantined only if it is still the file the finding named: it is re-opened
//! without following a link at any step of its path (each directory is opened from its parent
//! with `O_NOFOLLOW`, so a directory swapped for a link is refused too), it must be a regular
//! file, and its SHA-256 must still be the finding's. Its bytes are then stored in the
//! quarantine directory (mode 0700, owned by the agent's user: root) masked with a fixed byte,
//! in a file of mode 0600: the stored copy is not the program and no other scanner matches it.
//! Beside it a record keeps the original path, owner, mode and hash. Only when the copy is on
//! disk, and the directory entry still names the very file that was read, is the original
//! removed. Restore checks the stored bytes against the recorded hash and recreates the file
//! where it was, with its mode and owner, refusing to overwrite anything that took its place.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The byte stored bytes are masked with, so that the quarantined copy neither runs nor
/// matches any other scanner's signatures.
const MASK: u8 = 0xA5;

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{path}: the file changed since the finding (SHA-256 now {actual}); left in place")]
    Changed { path: PathBuf, actual: String },
    #[error("{path}: {what}; left in place")]
    NotRegular { path: PathBuf, what: String },
    #[error("{path}: no such file")]
    Missing { path: PathBuf },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: something else is there now; not overwritten")]
    Occupied { path: PathBuf },
    #[error("quarantine {dir}: no entry {id:?}")]
    NoEntry { dir: PathBuf, id: String },
    #[error("quarantine entry {id}: the stored bytes no longer match their SHA-256; not restored")]
    Damaged { id: String },
    #[error("{path}: quarantine is not supported on this platform yet")]
    Unsupported { path: PathBuf },
}

/// What is kept about a quarantined file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuarantineRecord {
    pub id: String,
    /// The original path as text, and its exact bytes when it is not UTF-8.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_raw: Option<Vec<u8>>,
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Unix ms.
    pub quarantined_ms: i64,
}

impl QuarantineRecord {
    pub fn original_path(&self) -> PathBuf {
        #[cfg(unix)]
        if let Some(raw) = &self.path_raw {
            use std::os::unix::ffi::OsStrExt;
            return PathBuf::from(std::ffi::OsStr::from_bytes(raw));
        }
        PathBuf::from(&self.path)
    }
}

/// The quarantine directory.
pub struct Quarantine {
    dir: PathBuf,
}

fn io(path: &Path, err: impl std::fmt::Display) -> QuarantineError {
    QuarantineError::Io {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

fn masked(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b ^ MASK).collect()
}

impl Quarantine {
    /// Opens (creating it, mode 0700) the quarantine directory `dir`.
    pub fn open(dir: &Path) -> Result<Quarantine, QuarantineError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io(dir, e))?;
        }
        #[cfg(windows)]
        windows::restrict_to_system(dir)?;
        Ok(Quarantine {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.bin"))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The record of entry `id`.
    pub fn record(&self, id: &str) -> Result<QuarantineRecord, QuarantineError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(QuarantineError::NoEntry {
                dir: self.dir.clone(),
                id: id.to_owned(),
            });
        }
        let path = self.record_path(id);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(QuarantineError::NoEntry {
                    dir: self.dir.clone(),
                    id: id.to_owned(),
                });
            }
            Err(e) => return Err(io(&path, e)),
        };
        serde_json::from_slice(&text).map_err(|e| io(&path, e))
    }

    /// The entry holding the file that was at `path` with this SHA-256, if any.
    pub fn find(&self, path: &Path, sha256: &str) -> Option<QuarantineRecord> {
        let entries = std::fs::read_dir(&self.dir).ok()?;
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|text| serde_json::from_slice::<QuarantineRecord>(&text).ok())
            .find(|r| r.original_path() == path && r.sha256.eq_ignore_ascii_case(sha256))
    }

    /// Writes `bytes` to `path` (mode 0600 on Unix; on Windows the directory's ACL) through a
    /// temporary name, synced.
    #[cfg(any(unix, windows))]
    fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), QuarantineError> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| io(&tmp, e))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    }

    /// Moves `path` into quarantine if its SHA-256 is still `expected_sha256`.
    pub fn quarantine(
        &self,
        path: &Path,
        expected_sha256: &str,
        now_ms: i64,
    ) -> Result<QuarantineRecord, QuarantineError> {
        #[cfg(unix)]
        {
            unix::quarantine(self, path, expected_sha256, now_ms)
        }
        #[cfg(windows)]
        {
            windows::quarantine(self, path, expected_sha256, now_ms)
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = (expected_sha256, now_ms);
            Err(QuarantineError::Unsupported {
                path: path.to_path_buf(),
            })
        }
    }

    /// Puts entry `id` back where it was; returns the path.
    pub fn restore(&self, id: &str) -> Result<PathBuf, QuarantineError> {
        let record = self.record(id)?;
        let data_path = self.data_path(id);
        let stored = std::fs::read(&data_path).map_err(|e| io(&data_path, e))?;
        let bytes = masked(&stored);
        if hex::encode(Sha256::digest(&bytes)) != record.sha256 {
            return Err(QuarantineError::Damaged { id: id.to_owned() });
        }
        let path = record.original_path();
        #[cfg(unix)]
        unix::recreate(&path, &bytes, &record)?;
        #[cfg(windows)]
        windows::recreate(&path, &bytes)?;
        #[cfg(not(any(unix, windows)))]
        return Err(QuarantineError::Unsupported { path });
        #[cfg(any(unix, windows))]
        {
            // The file is back: the entry goes (record last, so a crash leaves it restorable).
            std::fs::remove_file(&data_path).map_err(|e| io(&data_path, e))?;
            let record_path = self.record_path(id);
            std::fs::remove_file(&record_path).map_err(|e| io(&record_path, e))?;
            Ok(path)
        }
    }
}

#[cfg(unix)]
mod unix {
    use std::ffi::OsStr;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Component, Path};

    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    use sha2::{Digest, Sha256};

    use super::{Quarantine, QuarantineError, QuarantineRecord, io, masked};

    fn errno(path: &Path, err: rustix::io::Errno) -> QuarantineError {
        match err {
            rustix::io::Errno::NOENT => QuarantineError::Missing {
                path: path.to_path_buf(),
            },
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => QuarantineError::NotRegular {
                path: path.to_path_buf(),
                what: "a link (or a link in its path)".into(),
            },
            err => io(path, std::io::Error::from(err)),
        }
    }

    /// Opens the parent directory of `path` one component at a time, never following a link,
    /// and returns it with the file's name in it.
    fn open_parent(path: &Path) -> Result<(OwnedFd, &OsStr), QuarantineError> {
        if !path.is_absolute() {
            return Err(io(path, "not an absolute path"));
        }
        let name = path.file_name().ok_or_else(|| io(path, "names no file"))?;
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir =
            rustix::fs::open("/", dir_flags, Mode::empty()).map_err(|e| errno(path, e))?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        for component in parent.components() {
            match component {
                Component::RootDir => {}
                Component::Normal(part) => {
                    dir = rustix::fs::openat(&dir, part, dir_flags, Mode::empty())
                        .map_err(|e| errno(path, e))?;
                }
                _ => return Err(io(path, "has . or .. in it")),
            }
        }
        Ok((dir, name))
    }

    pub(super) fn quarantine(
        q: &Quarantine,
        path: &Path,
        expected_sha256: &str,
        now_ms: i64,
    ) -> Result<QuarantineRecord, QuarantineError> {
        let (dir, name) = open_parent(path)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(path, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| errno(path, e))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type != FileType::RegularFile {
            return Err(QuarantineError::NotRegular {
                path: path.to_path_buf(),
                what: format!("not a regular file ({file_type:?})"),
            });
        }
        let mut bytes = Vec::with_capacity(stat.st_size.max(0) as usize);
        std::fs::File::from(fd.try_clone().map_err(|e| io(path, e))?)
            .read_to_end(&mut bytes)
            .map_err(|e| io(path, e))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected_sha256) {
            return Err(QuarantineError::Changed {
                path: path.to_path_buf(),
                actual,
            });
        }
        let id = format!("{now_ms}-{}", &actual[..16]);
        let record = QuarantineRecord {
            id: id.clone(),
            path: path.to_string_lossy().into_owned(),
            path_raw: path
                .to_str()
                .is_none()
                .then(|| path.as_os_str().as_bytes().to_vec()),
            sha256: actual,
            size: bytes.len() as u64,
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            quarantined_ms: now_ms,
        };
        q.write_private(&q.data_path(&id), &masked(&bytes))?;
        q.write_private(
            &q.record_path(&id),
            &serde_json::to_vec_pretty(&record).expect("records serialize"),
        )?;
        // The name must still be the file that was read: a swap after the read leaves both.
        let now = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW);
        let same = now.is_ok_and(|now| now.st_dev == stat.st_dev && now.st_ino == stat.st_ino);
        if !same {
            let _ = std::fs::remove_file(q.data_path(&id));
            let _ = std::fs::remove_file(q.record_path(&id));
            return Err(QuarantineError::NotRegular {
                path: path.to_path_buf(),
                what: "replaced while it was being quarantined".into(),
            });
        }
        rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| errno(path, e))?;
        Ok(record)
    }

    /// Creates `path` anew (never over something that is there) with the record's mode and
    /// owner.
    pub(super) fn recreate(
        path: &Path,
        bytes: &[u8],
        record: &QuarantineRecord,
    ) -> Result<(), QuarantineError> {
        let (dir, name) = open_parent(path)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| match e {
            rustix::io::Errno::EXIST => QuarantineError::Occupied {
                path: path.to_path_buf(),
            },
            e => errno(path, e),
        })?;
        // Owner first: a set-id bit is dropped by a later chown.
        match rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(record.uid)),
            Some(rustix::fs::Gid::from_raw(record.gid)),
        ) {
            // Not root (tests): the file stays the agent user's.
            Ok(()) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(errno(path, e)),
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(record.mode)).map_err(|e| errno(path, e))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes).map_err(|e| io(path, e))?;
        file.sync_all().map_err(|e| io(path, e))?;
        Ok(())
    }
}

/// Windows: only SYSTEM and the Administrators group may open `dir` and what is in it.
#[cfg(windows)]
pub(crate) use windows::restrict_to_system;

#[cfg(windows)]
mod windows {
    use std::io::{Read, Write};
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
    use std::os::windows::io::AsRawHandle;
    use std::path::{Path, PathBuf};

    use sha2::{Digest, Sha256};
    use windows_sys::Win32::Foundation::{GENERIC_READ, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
        SetFileSecurityW,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        DELETE, FILE_ATTRIBUTE_REPARSE_POINT, FILE_DISPOSITION_INFO, FILE_FLAG_OPEN_REPARSE_POINT,
        FILE_NAME_NORMALIZED, FILE_SHARE_READ, FileDispositionInfo, GetFinalPathNameByHandleW,
        SetFileInformationByHandle,
    };

    use super::{Quarantine, QuarantineError, QuarantineRecord, io, masked};

    fn wide(path: &Path) -> Vec<u16> {
        path.as_os_str().encode_wide().chain([0]).collect()
    }

    /// Only SYSTEM and the Administrators group may open the quarantine directory and what is
    /// in it; nothing is inherited from above.
    pub(crate) fn restrict_to_system(dir: &Path) -> Result<(), QuarantineError> {
        let sddl: Vec<u16> = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)\0"
            .encode_utf16()
            .collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated; the descriptor the call allocates is freed below.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io(dir, std::io::Error::last_os_error()));
        }
        let path = wide(dir);
        // SAFETY: `path` is NUL-terminated and `descriptor` a valid descriptor until freed.
        let set = unsafe {
            let set = SetFileSecurityW(
                path.as_ptr(),
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                descriptor,
            );
            LocalFree(descriptor);
            set
        };
        if set == 0 {
            return Err(io(dir, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The path Windows resolved the open handle to, without the `\\?\` prefix.
    fn final_path(file: &std::fs::File, path: &Path) -> Result<PathBuf, QuarantineError> {
        let mut buffer = vec![0u16; 1024];
        loop {
            // SAFETY: the handle is open while `file` lives; the buffer is as long as stated.
            let len = unsafe {
                GetFinalPathNameByHandleW(
                    file.as_raw_handle(),
                    buffer.as_mut_ptr(),
                    buffer.len() as u32,
                    FILE_NAME_NORMALIZED,
                )
            } as usize;
            if len == 0 {
                return Err(io(path, std::io::Error::last_os_error()));
            }
            if len < buffer.len() {
                let text = String::from_utf16_lossy(&buffer[..len]);
                let text = text
                    .strip_prefix(r"\\?\UNC\")
                    .map(|rest| format!(r"\\{rest}"))
                    .unwrap_or_else(|| text.strip_prefix(r"\\?\").unwrap_or(&text).to_owned());
                return Ok(PathBuf::from(text));
            }
            buffer.resize(len + 1, 0);
        }
    }

    fn same_path(a: &Path, b: &Path) -> bool {
        a.to_string_lossy()
            .trim_end_matches('\\')
            .eq_ignore_ascii_case(b.to_string_lossy().trim_end_matches('\\'))
    }

    pub(super) fn quarantine(
        q: &Quarantine,
        path: &Path,
        expected_sha256: &str,
        now_ms: i64,
    ) -> Result<QuarantineRecord, QuarantineError> {
        if !path.is_absolute() {
            return Err(io(path, "not an absolute path"));
        }
        // Opened for reading and deleting, the link itself if it is one, and shared for
        // reading only: nobody writes to it between the hash and the removal.
        let file = std::fs::OpenOptions::new()
            .access_mode(GENERIC_READ | DELETE)
            .share_mode(FILE_SHARE_READ)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => QuarantineError::Missing {
                    path: path.to_path_buf(),
                },
                _ => io(path, e),
            })?;
        let meta = file.metadata().map_err(|e| io(path, e))?;
        if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
            return Err(QuarantineError::NotRegular {
                path: path.to_path_buf(),
                what: "a link (a reparse point)".into(),
            });
        }
        if !meta.is_file() {
            return Err(QuarantineError::NotRegular {
                path: path.to_path_buf(),
                what: "not a regular file".into(),
            });
        }
        // A junction or directory link on the way shows as another final path.
        let resolved = final_path(&file, path)?;
        if !same_path(&resolved, path) {
            return Err(QuarantineError::NotRegular {
                path: path.to_path_buf(),
                what: format!("a link in its path (it leads to {})", resolved.display()),
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&file).read_to_end(&mut bytes).map_err(|e| io(path, e))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected_sha256) {
            return Err(QuarantineError::Changed {
                path: path.to_path_buf(),
                actual,
            });
        }
        let id = format!("{now_ms}-{}", &actual[..16]);
        let record = QuarantineRecord {
            id: id.clone(),
            path: path.to_string_lossy().into_owned(),
            path_raw: None,
            sha256: actual,
            size: bytes.len() as u64,
            mode: meta.file_attributes(),
            uid: 0,
            gid: 0,
            quarantined_ms: now_ms,
        };
        q.write_private(&q.data_path(&id), &masked(&bytes))?;
        q.write_private(
            &q.record_path(&id),
            &serde_json::to_vec_pretty(&record).expect("records serialize"),
        )?;
        // Deleting through the handle removes the very file that was read and hashed.
        let disposition = FILE_DISPOSITION_INFO { DeleteFile: true };
        // SAFETY: the handle is open with DELETE access; the struct is as large as stated.
        let ok = unsafe {
            SetFileInformationByHandle(
                file.as_raw_handle(),
                FileDispositionInfo,
                (&disposition as *const FILE_DISPOSITION_INFO).cast(),
                std::mem::size_of::<FILE_DISPOSITION_INFO>() as u32,
            )
        };
        if ok == 0 {
            let err = std::io::Error::last_os_error();
            let _ = std::fs::remove_file(q.data_path(&id));
            let _ = std::fs::remove_file(q.record_path(&id));
            return Err(io(path, err));
        }
        drop(file);
        Ok(record)
    }

    /// Creates `path` anew, never over something that is there; it takes its directory's
    /// permissions.
    pub(super) fn recreate(path: &Path, bytes: &[u8]) -> Result<(), QuarantineError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => QuarantineError::Occupied {
                    path: path.to_path_buf(),
                },
                _ => io(path, e),
            })?;
        file.write_all(bytes).map_err(|e| io(path, e))?;
        file.sync_all().map_err(|e| io(path, e))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn setup() -> (tempfile::TempDir, Quarantine, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(&dir.path().join("state/quarantine")).unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        (dir, q, files)
    }

    #[test]
    fn quarantine_then_restore_gives_back_identical_bytes_mode_and_name() {
        let (_dir, q, files) = setup();
        let path = files.join("evil.sh");
        let content = b"#!/bin/sh\necho EICAR-STANDARD-ANTIVIRUS-TEST-FILE\n\x00\xff";
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o751)).unwrap();

        let record = q.quarantine(&path, &sha(content), 42).unwrap();
        assert!(!path.exists(), "moved out");
        assert_eq!(record.mode, 0o751);
        assert_eq!(record.sha256, sha(content));
        assert_eq!(q.record(&record.id).unwrap(), record);
        // The stored copy is neither the bytes nor runnable, and only its owner can read it.
        let stored_path = q.dir().join(format!("{}.bin", record.id));
        let stored = std::fs::read(&stored_path).unwrap();
        assert_ne!(stored.as_slice(), content.as_slice());
        assert!(!stored.windows(5).any(|w| w == b"EICAR"));
        let mode = std::fs::metadata(&stored_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(q.dir()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        assert_eq!(q.restore(&record.id).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), content);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o751);
        assert!(matches!(
            q.record(&record.id),
            Err(QuarantineError::NoEntry { .. })
        ));
    }

    #[test]
    fn a_changed_file_a_link_and_a_linked_directory_are_left_alone() {
        let (dir, q, files) = setup();
        let path = files.join("x.bin");
        std::fs::write(&path, b"first").unwrap();
        let err = q.quarantine(&path, &sha(b"other"), 1).unwrap_err();
        assert!(matches!(err, QuarantineError::Changed { .. }), "{err}");
        assert!(err.to_string().contains("changed since the finding"));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");

        // The file swapped for a link to it after detection.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"first").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = q.quarantine(&path, &sha(b"first"), 2).unwrap_err();
        assert!(matches!(err, QuarantineError::NotRegular { .. }), "{err}");
        assert!(target.exists() && path.is_symlink());

        // A directory on the way swapped for a link.
        let real = dir.path().join("real");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("y.bin"), b"first").unwrap();
        let linked = files.join("sub");
        std::os::unix::fs::symlink(&real, &linked).unwrap();
        let err = q
            .quarantine(&linked.join("y.bin"), &sha(b"first"), 3)
            .unwrap_err();
        assert!(matches!(err, QuarantineError::NotRegular { .. }), "{err}");
        assert!(real.join("y.bin").exists());

        // Gone, or not a file.
        let err = q
            .quarantine(&files.join("gone"), &sha(b"first"), 4)
            .unwrap_err();
        assert!(matches!(err, QuarantineError::Missing { .. }), "{err}");
        let err = q.quarantine(&files, &sha(b"first"), 5).unwrap_err();
        assert!(matches!(err, QuarantineError::NotRegular { .. }), "{err}");
        assert_eq!(std::fs::read_dir(q.dir()).unwrap().count(), 0);
    }

    #[test]
    fn restore_refuses_to_overwrite_and_damaged_entries() {
        let (_dir, q, files) = setup();
        let path = files.join("z.bin");
        std::fs::write(&path, b"payload").unwrap();
        let record = q.quarantine(&path, &sha(b"payload"), 7).unwrap();
        std::fs::write(&path, b"new file in its place").unwrap();
        let err = q.restore(&record.id).unwrap_err();
        assert!(matches!(err, QuarantineError::Occupied { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"new file in its place");
        std::fs::remove_file(&path).unwrap();

        let stored = q.dir().join(format!("{}.bin", record.id));
        std::fs::write(&stored, b"tampered").unwrap();
        let err = q.restore(&record.id).unwrap_err();
        assert!(matches!(err, QuarantineError::Damaged { .. }), "{err}");
        assert!(!path.exists());
        for bad in ["", "../x", "nope"] {
            assert!(matches!(
                q.restore(bad),
                Err(QuarantineError::NoEntry { .. })
            ));
        }
    }
}

/// What holds on every platform (run under Wine for Windows in CI).
#[cfg(all(test, any(unix, windows)))]
mod portable_tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_file_goes_into_quarantine_and_comes_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(&dir.path().join("quarantine")).unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        let path = std::path::absolute(files.join("evil.exe")).unwrap();
        let content = b"MZ\x90\x00EICAR-STANDARD-ANTIVIRUS-TEST-FILE\r\n\xff";
        std::fs::write(&path, content).unwrap();

        let err = q.quarantine(&path, &sha(b"something else"), 1).unwrap_err();
        assert!(matches!(err, QuarantineError::Changed { .. }), "{err}");
        assert!(path.exists());

        let record = q.quarantine(&path, &sha(content), 2).unwrap();
        assert!(!path.exists(), "moved out");
        assert_eq!(q.find(&path, &sha(content)).unwrap().id, record.id);
        let stored = std::fs::read(q.dir().join(format!("{}.bin", record.id))).unwrap();
        assert!(!stored.windows(5).any(|w| w == b"EICAR"));

        std::fs::write(&path, b"took its place").unwrap();
        let err = q.restore(&record.id).unwrap_err();
        assert!(matches!(err, QuarantineError::Occupied { .. }), "{err}");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(q.restore(&record.id).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), content);
        assert!(q.find(&path, &sha(content)).is_none());
        let err = q
            .quarantine(&files.join("gone.exe"), &sha(content), 3)
            .unwrap_err();
        assert!(matches!(err, QuarantineError::Missing { .. }), "{err}");
    }
}
