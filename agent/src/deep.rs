//! Files and directories whose path is longer than the system takes in one call (PATH_MAX,
//! 4,096 bytes on Linux): malware placed that deep must not be invisible. They are opened
//! one component at a time, each relative to the directory handle before it (`openat`), so
//! depth does not matter; the sweep's walker hands such directories to [`walk`], and its
//! workers open such files with [`open_file`].
//!
//! Windows needs none of this: the standard library opens long paths there itself (with the
//! `\\?\` prefix).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};

/// Whether `err` is the system's "path too long", which [`walk`] and [`open_file`] get past.
pub fn is_too_long(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENAMETOOLONG)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// Opens the directory `path`, of any length, one component at a time. Links on the way are
/// followed as a short path's would be (the walker follows none below its roots).
pub fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let mut dir: Option<OwnedFd> = None;
    for component in path.components() {
        let step: &OsStr = match component {
            Component::RootDir => OsStr::new("/"),
            Component::CurDir => continue,
            Component::ParentDir => OsStr::new(".."),
            Component::Normal(part) => part,
            Component::Prefix(_) => unreachable!("no path prefixes on Unix"),
        };
        dir = Some(match &dir {
            Some(dir) => rustix::fs::openat(dir, step, DIR_FLAGS, Mode::empty())?,
            None => rustix::fs::openat(CWD, step, DIR_FLAGS, Mode::empty())?,
        });
    }
    match dir {
        Some(dir) => Ok(dir),
        None => Ok(rustix::fs::openat(CWD, ".", DIR_FLAGS, Mode::empty())?),
    }
}

/// Opens the file `path`, of any length, for reading as the scanner does: not following a
/// link in its last component, without blocking on a FIFO that took its place.
pub fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("names no file"))?;
    let parent = path.parent().unwrap_or(Path::new("."));
    let dir = open_dir(parent)?;
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

/// What [`walk`] finds.
#[derive(Debug)]
pub enum DeepEntry {
    /// A regular file and its size when listed.
    File { path: PathBuf, size: u64 },
    /// A directory that could not be listed, or an entry that could not be examined.
    Error { path: PathBuf, err: std::io::Error },
}

/// Lists every regular file under the directory `root`, of any depth, breadth first, holding
/// one directory handle at a time. Links and special files are skipped, as the walker skips
/// them; `skip` leaves out a path and what is under it; with `one_file_system`, directories
/// on another file system than `root` are not entered. Stops when `visit` returns false.
pub fn walk(
    root: &Path,
    one_file_system: bool,
    skip: &dyn Fn(&Path) -> bool,
    visit: &mut dyn FnMut(DeepEntry) -> bool,
) {
    let mut root_dev = None;
    let mut queue = VecDeque::from([root.to_path_buf()]);
    while let Some(dir_path) = queue.pop_front() {
        let listed = open_dir(&dir_path).and_then(|dir| {
            if root_dev.is_none() {
                root_dev = Some(rustix::fs::fstat(&dir)?.st_dev);
            }
            let entries = rustix::fs::Dir::read_from(&dir)?;
            Ok((dir, entries))
        });
        let (dir, entries) = match listed {
            Ok(listed) => listed,
            Err(err) => {
                if !visit(DeepEntry::Error {
                    path: dir_path,
                    err,
                }) {
                    return;
                }
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    if !visit(DeepEntry::Error {
                        path: dir_path.clone(),
                        err: err.into(),
                    }) {
                        return;
                    }
                    break;
                }
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let path = dir_path.join(OsStr::from_bytes(name));
            if skip(&path) {
                continue;
            }
            let stat = match entry.file_type() {
                FileType::Directory | FileType::RegularFile | FileType::Unknown => {
                    rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                }
                _ => continue,
            };
            let stat = match stat {
                Ok(stat) => stat,
                Err(err) => {
                    if !visit(DeepEntry::Error {
                        path,
                        err: err.into(),
                    }) {
                        return;
                    }
                    continue;
                }
            };
            match FileType::from_raw_mode(stat.st_mode) {
                // Another file system's directory is left out when asked.
                FileType::Directory if one_file_system && Some(stat.st_dev) != root_dev => {}
                FileType::Directory => queue.push_back(path),
                FileType::RegularFile => {
                    let size = u64::try_from(stat.st_size).unwrap_or(0);
                    if !visit(DeepEntry::File { path, size }) {
                        return;
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Makes directories under `root` until the path is longer than `bytes`, and returns the
    /// deepest (made with `mkdirat`: no single call sees the whole path).
    pub(crate) fn deep_tree(root: &Path, bytes: usize) -> PathBuf {
        let name = "d".repeat(200);
        let mut dir = open_dir(root).unwrap();
        let mut path = root.to_path_buf();
        while path.as_os_str().len() <= bytes {
            rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            dir = rustix::fs::openat(&dir, name.as_str(), DIR_FLAGS, Mode::empty()).unwrap();
            path.push(&name);
        }
        path
    }

    /// Writes `content` to `path`, of any length.
    pub(crate) fn write_deep(path: &Path, content: &[u8]) {
        let dir = open_dir(path.parent().unwrap()).unwrap();
        let fd = rustix::fs::openat(
            &dir,
            path.file_name().unwrap(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        std::io::Write::write_all(&mut std::fs::File::from(fd), content).unwrap();
    }

    #[test]
    fn files_past_path_max_are_listed_and_opened() {
        let root = tempfile::tempdir().unwrap();
        let deep = deep_tree(root.path(), 5_000);
        let file = deep.join("evil.txt");
        write_deep(&file, b"deep bytes");
        // What the system's own calls say about it.
        let err = std::fs::File::open(&file).unwrap_err();
        assert!(is_too_long(&err), "{err}");
        let mut content = String::new();
        std::io::Read::read_to_string(&mut open_file(&file).unwrap(), &mut content).unwrap();
        assert_eq!(content, "deep bytes");

        let mut files = Vec::new();
        walk(root.path(), true, &|_| false, &mut |entry| {
            match entry {
                DeepEntry::File { path, size } => files.push((path, size)),
                DeepEntry::Error { path, err } => panic!("{}: {err}", path.display()),
            }
            true
        });
        assert_eq!(files, [(file.clone(), 10)]);
        // `skip` leaves a subtree out.
        let first = root.path().join("d".repeat(200));
        let mut none = 0;
        walk(root.path(), true, &|p| p == first, &mut |_| {
            none += 1;
            true
        });
        assert_eq!(none, 0);
    }
}
