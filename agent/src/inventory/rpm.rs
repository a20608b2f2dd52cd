//! Installed packages from RPM.
//!
//! `rpm -qa` with a query format that puts one package per line is the first choice: it
//! reads every database backend rpm knows. Where `rpm` is absent (minimal and distroless
//! images keep the database but drop the tool) or fails, the SQLite database that RPM 4.16
//! and later write (Fedora 33+, RHEL 9, Amazon Linux 2023) or the Berkeley DB `Packages` file
//! of older releases (RHEL 7 and 8, Amazon Linux 2; see [`bdb`]) is read directly: one header
//! blob per package, decoded by [`Header`]. SUSE's `Packages.db` (ndb) without rpm is
//! reported as partial, never as "nothing installed".

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{Package, Partial};

pub mod bdb;

/// Tab-separated: name, epoch, version, release, arch, source RPM, install time.
pub const QUERY_FORMAT: &str =
    "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{INSTALLTIME}\\n";

/// Where distributions keep the database, relative to the root. Fedora 36+ and openSUSE moved
/// it to `usr/lib/sysimage/rpm` and left `var/lib/rpm` as a link; only rpm versions that use
/// the new place write there, so a database found there is the live one even if an old file
/// lingers in `var/lib/rpm`.
const DB_DIRS: [&str; 2] = ["usr/lib/sysimage/rpm", "var/lib/rpm"];

/// The database files rpm's backends write, newest first.
const DB_FILES: [(&str, DbFormat); 3] = [
    ("rpmdb.sqlite", DbFormat::Sqlite),
    ("Packages.db", DbFormat::Ndb),
    ("Packages", DbFormat::BerkeleyDb),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFormat {
    Sqlite,
    Ndb,
    BerkeleyDb,
}

/// An RPM database found under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// The directory, relative to the root (rpm's `--dbpath`).
    pub dir: &'static str,
    /// The database file itself.
    pub file: PathBuf,
    pub format: DbFormat,
}

/// The RPM database under `root`, if there is one. An empty `var/lib/rpm` (Debian ships
/// one) is not a database.
pub fn find_database(root: &Path) -> Option<Database> {
    DB_DIRS.iter().find_map(|dir| {
        DB_FILES.iter().find_map(|(name, format)| {
            let file = root.join(dir).join(name);
            file.is_file().then_some(Database {
                dir,
                file,
                format: *format,
            })
        })
    })
}

/// Why the database could not be read directly.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path}: {source}")]
    BerkeleyDb {
        path: PathBuf,
        #[source]
        source: bdb::BdbError,
    },
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the {format} format is read only through rpm, which is not available")]
    Unsupported { path: PathBuf, format: &'static str },
}

/// How long `rpm -qa` may take. It waits for the database lock, and a package transaction
/// that hangs would otherwise hang the inventory with it.
const RPM_TIMEOUT: Duration = Duration::from_secs(120);

/// Packages and the latest install time; nothing when this is not an RPM system.
pub fn collect(root: &Path, partial: &mut Vec<Partial>) -> (Vec<Package>, Option<i64>) {
    collect_with(root, Path::new("rpm"), RPM_TIMEOUT, partial)
}

/// [`collect`] with the rpm program to run and its time limit (for tests).
fn collect_with(
    root: &Path,
    rpm: &Path,
    limit: Duration,
    partial: &mut Vec<Partial>,
) -> (Vec<Package>, Option<i64>) {
    let Some(db) = find_database(root) else {
        return (Vec::new(), None);
    };
    let mut query = Command::new(rpm);
    query
        .arg("--root")
        .arg(root)
        .args(["--dbpath", &format!("/{}", db.dir)])
        .args(["-qa", "--queryformat", QUERY_FORMAT]);
    let rpm_failure = match output_within(&mut query, limit) {
        Ok(Some(out)) if out.status.success() => {
            let found = parse_query(&String::from_utf8_lossy(&out.stdout));
            // An RPM system without a single package is a query that went wrong (another
            // database, an unreadable backend): look at the file itself before believing it.
            if !found.0.is_empty() {
                return found;
            }
            "rpm -qa listed no package".to_owned()
        }
        Ok(Some(out)) => format!(
            "rpm -qa failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(None) => format!("rpm -qa gave no answer within {} s", limit.as_secs()),
        Err(err) => format!("rpm cannot be run: {err}"),
    };
    match read_database(&db) {
        Ok(read) if read.packages.is_empty() && read.skipped.is_empty() => {
            partial.push(Partial::new(
                "packages",
                format!(
                    "{rpm_failure}; {} holds no package either",
                    db.file.display()
                ),
            ));
            (Vec::new(), None)
        }
        Ok(read) => {
            // Complete but for the headers named here.
            partial.extend(
                read.skipped
                    .into_iter()
                    .map(|r| Partial::new("packages", r)),
            );
            (read.packages, read.latest_install)
        }
        Err(err) => {
            partial.push(Partial::new(
                "packages",
                format!("{rpm_failure}; reading the database directly: {err}"),
            ));
            (Vec::new(), None)
        }
    }
}

/// The command's output, or `None` when it did not finish within `limit` (it is then killed).
fn output_within(command: &mut Command, limit: Duration) -> std::io::Result<Option<Output>> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // The waiting thread reaps the child in either case; after a kill it ends at once.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.map(Some),
        Err(_) => {
            #[cfg(unix)]
            // SAFETY: kill only sends a signal. The pid is our child's: its waiting thread had
            // not reaped it when the wait timed out, and reuse within that instant is remote.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            #[cfg(not(unix))]
            let _ = pid;
            Ok(None)
        }
    }
}

/// What [`read_database`] found.
#[derive(Debug, Default)]
pub struct DbRead {
    pub packages: Vec<Package>,
    pub latest_install: Option<i64>,
    /// One reason per package header that could not be decoded.
    pub skipped: Vec<String>,
}

/// Packages straight from the database file, without rpm.
pub fn read_database(db: &Database) -> Result<DbRead, DbError> {
    let read = std::cell::RefCell::new(DbRead::default());
    let visit = |key: i64, blob: &[u8]| {
        let mut read = read.borrow_mut();
        match Header::parse(blob).and_then(|h| h.package()) {
            Ok((package, installed)) => {
                read.latest_install = read.latest_install.max(installed);
                // rpm -qa lists the imported signing keys as packages too; so do we.
                read.packages.push(package);
            }
            Err(err) => read.skipped.push(format!(
                "{}: package header {key} skipped: {err}",
                db.file.display()
            )),
        }
    };
    let skip = |reason: String| {
        read.borrow_mut()
            .skipped
            .push(format!("{}: {reason}", db.file.display()))
    };
    match db.format {
        DbFormat::Sqlite => {
            for (key, blob) in sqlite_blobs(&db.file)? {
                visit(key, &blob);
            }
        }
        DbFormat::BerkeleyDb => {
            let file = std::fs::File::open(&db.file).map_err(|source| DbError::Open {
                path: db.file.clone(),
                source,
            })?;
            bdb::visit_blobs(file, visit, skip).map_err(|source| DbError::BerkeleyDb {
                path: db.file.clone(),
                source,
            })?;
        }
        DbFormat::Ndb => {
            return Err(DbError::Unsupported {
                path: db.file.clone(),
                format: "ndb (Packages.db)",
            });
        }
    }
    Ok(read.into_inner())
}

/// `(hnum, blob)` for every row of rpm's `Packages` table.
#[cfg(unix)]
fn sqlite_blobs(path: &Path) -> Result<Vec<(i64, Vec<u8>)>, DbError> {
    use rusqlite::{Connection, OpenFlags};
    let wrap = |err: rusqlite::Error| DbError::Sqlite {
        path: path.to_owned(),
        source: Box::new(err),
    };
    // Read-only, so a scan can never disturb the package manager's own database.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(wrap)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(wrap)?;
    let mut stmt = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(wrap)?;
    let rows = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(wrap)?;
    rows.collect::<Result<_, _>>().map_err(wrap)
}

#[cfg(not(unix))]
fn sqlite_blobs(path: &Path) -> Result<Vec<(i64, Vec<u8>)>, DbError> {
    Err(DbError::Unsupported {
        path: path.to_owned(),
        format: "SQLite",
    })
}

/// Why a package header could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("{0} bytes is too short for a header")]
    TooShort(usize),
    #[error("{entries} index entries and {data} data bytes do not fit in {len} bytes")]
    BadSize {
        entries: usize,
        data: usize,
        len: usize,
    },
    #[error("tag {0} is missing")]
    Missing(u32),
    #[error("tag {tag} has type {kind} where {expected} was expected")]
    WrongType { tag: u32, kind: u32, expected: u32 },
    #[error("tag {0} points outside the header's data")]
    OutOfBounds(u32),
}

/// rpm's tag numbers (`rpmtag.h`).
mod tag {
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const INSTALLTIME: u32 = 1008;
    pub const ARCH: u32 = 1022;
    pub const SOURCERPM: u32 = 1044;
}

/// rpm's data types (`rpmtag.h`, `rpmTagType`).
mod kind {
    pub const INT32: u32 = 4;
    pub const STRING: u32 = 6;
    pub const STRING_ARRAY: u32 = 8;
    pub const I18NSTRING: u32 = 9;
}

/// A package header as rpm stores it in its database: the index length and data length
/// (big-endian `u32`s), that many 16-byte index entries (tag, type, offset, count), then
/// the data they point into.
pub struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

/// rpm refuses headers beyond these (`header_internal.h`), and so do we.
const MAX_INDEX_ENTRIES: usize = 0xffff;
const MAX_DATA_BYTES: usize = 256 << 20;

impl<'a> Header<'a> {
    pub fn parse(blob: &'a [u8]) -> Result<Self, HeaderError> {
        if blob.len() < 8 {
            return Err(HeaderError::TooShort(blob.len()));
        }
        let entries = be32(blob, 0) as usize;
        let data = be32(blob, 4) as usize;
        let index_end = 8 + entries * 16;
        if entries > MAX_INDEX_ENTRIES || data > MAX_DATA_BYTES || index_end + data > blob.len() {
            return Err(HeaderError::BadSize {
                entries,
                data,
                len: blob.len(),
            });
        }
        Ok(Header {
            index: &blob[8..index_end],
            data: &blob[index_end..index_end + data],
        })
    }

    /// `(type, offset, count)` of the first entry for `tag`.
    fn entry(&self, tag: u32) -> Option<(u32, usize, usize)> {
        self.index
            .chunks_exact(16)
            .find(|e| be32(e, 0) == tag)
            .map(|e| (be32(e, 4), be32(e, 8) as usize, be32(e, 12) as usize))
    }

    /// A string tag; the first element of a string array or translated string.
    pub fn string(&self, tag: u32) -> Result<Option<&'a str>, HeaderError> {
        let Some((kind, offset, _)) = self.entry(tag) else {
            return Ok(None);
        };
        if !matches!(kind, kind::STRING | kind::STRING_ARRAY | kind::I18NSTRING) {
            return Err(HeaderError::WrongType {
                tag,
                kind,
                expected: kind::STRING,
            });
        }
        let rest = self
            .data
            .get(offset..)
            .ok_or(HeaderError::OutOfBounds(tag))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(HeaderError::OutOfBounds(tag))?;
        std::str::from_utf8(&rest[..end])
            .map(Some)
            .map_err(|_| HeaderError::OutOfBounds(tag))
    }

    /// The first value of an `INT32` tag.
    pub fn int32(&self, tag: u32) -> Result<Option<u32>, HeaderError> {
        let Some((kind, offset, count)) = self.entry(tag) else {
            return Ok(None);
        };
        if kind != kind::INT32 {
            return Err(HeaderError::WrongType {
                tag,
                kind,
                expected: kind::INT32,
            });
        }
        if count == 0 || offset + 4 > self.data.len() {
            return Err(HeaderError::OutOfBounds(tag));
        }
        Ok(Some(be32(self.data, offset)))
    }

    /// The package this header describes, and its install time; the same fields and
    /// spelling as [`QUERY_FORMAT`] through [`parse_query`].
    pub fn package(&self) -> Result<(Package, Option<i64>), HeaderError> {
        let name = self
            .string(tag::NAME)?
            .ok_or(HeaderError::Missing(tag::NAME))?;
        let version = self
            .string(tag::VERSION)?
            .ok_or(HeaderError::Missing(tag::VERSION))?;
        let release = self.string(tag::RELEASE)?.unwrap_or_default();
        let epoch = self.int32(tag::EPOCH)?;
        let package = Package {
            name: name.to_owned(),
            version: evr(epoch.map(|e| e.to_string()).as_deref(), version, release),
            arch: self.string(tag::ARCH)?.unwrap_or_default().to_owned(),
            source: self.string(tag::SOURCERPM)?.and_then(source_name),
            manager: "rpm",
        };
        Ok((package, self.int32(tag::INSTALLTIME)?.map(i64::from)))
    }
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// `epoch:version-release`, the epoch left out when there is none or it is 0, as rpm
/// itself prints and compares versions.
fn evr(epoch: Option<&str>, version: &str, release: &str) -> String {
    let release = if release.is_empty() {
        String::new()
    } else {
        format!("-{release}")
    };
    match epoch {
        None | Some("(none)" | "" | "0") => format!("{version}{release}"),
        Some(epoch) => format!("{epoch}:{version}{release}"),
    }
}

/// Packages from [`QUERY_FORMAT`] output, and the latest install time among them.
pub fn parse_query(text: &str) -> (Vec<Package>, Option<i64>) {
    let mut latest = None;
    let packages = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, epoch, version, release, arch, source, installed] = fields[..] else {
                return None;
            };
            if name.is_empty() || version.is_empty() {
                return None;
            }
            if let Ok(time) = installed.parse::<i64>() {
                latest = latest.max(Some(time));
            }
            Some(Package {
                name: name.to_owned(),
                version: evr(Some(epoch), version, release),
                // rpm prints "(none)" for a missing tag, as for the gpg-pubkey entries.
                arch: if arch == "(none)" { "" } else { arch }.to_owned(),
                source: source_name(source),
                manager: "rpm",
            })
        })
        .collect();
    (packages, latest)
}

/// `openssl-3.0.7-25.el9.src.rpm` → `openssl`: the source package's name.
fn source_name(source_rpm: &str) -> Option<String> {
    let base = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    // name-version-release: the name is what is left after the last two dashes.
    let (rest, _release) = base.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value for [`header_blob`].
    enum Value<'a> {
        Str(&'a str),
        Int32(u32),
    }

    /// A header blob in rpm's database layout, for tests without rpm.
    fn header_blob(entries: &[(u32, Value)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, value) in entries {
            let (kind, bytes) = match value {
                Value::Str(s) => (kind::STRING, [s.as_bytes(), b"\0"].concat()),
                Value::Int32(n) => {
                    while data.len() % 4 != 0 {
                        data.push(0);
                    }
                    (kind::INT32, n.to_be_bytes().to_vec())
                }
            };
            for word in [*tag, kind, data.len() as u32, 1] {
                index.extend(word.to_be_bytes());
            }
            data.extend(bytes);
        }
        let mut blob = Vec::new();
        blob.extend((entries.len() as u32).to_be_bytes());
        blob.extend((data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    fn openssl_blob() -> Vec<u8> {
        header_blob(&[
            (tag::NAME, Value::Str("openssl-libs")),
            (tag::VERSION, Value::Str("3.0.7")),
            (tag::RELEASE, Value::Str("25.el9_3")),
            (tag::EPOCH, Value::Int32(1)),
            (tag::INSTALLTIME, Value::Int32(1_700_000_000)),
            (tag::ARCH, Value::Str("x86_64")),
            (tag::SOURCERPM, Value::Str("openssl-3.0.7-25.el9_3.src.rpm")),
        ])
    }

    #[test]
    fn query_output_with_and_without_epoch() {
        let text = "openssl-libs\t1\t3.0.7\t25.el9_3\tx86_64\topenssl-3.0.7-25.el9_3.src.rpm\t1700000000\n\
                    bash\t(none)\t5.1.8\t6.el9_1\tx86_64\tbash-5.1.8-6.el9_1.src.rpm\t1690000000\n\
                    gpg-pubkey\t(none)\t3228467c\t613798eb\t(none)\t(none)\t1600000000\n\
                    truncated\tline\n";
        let (packages, latest) = parse_query(text);
        assert_eq!(packages.len(), 3);
        assert_eq!(packages[0].name, "openssl-libs");
        assert_eq!(packages[0].version, "1:3.0.7-25.el9_3");
        assert_eq!(packages[0].source.as_deref(), Some("openssl"));
        assert_eq!(packages[1].version, "5.1.8-6.el9_1");
        assert_eq!(packages[2].source, None);
        assert_eq!(packages[2].arch, "");
        assert_eq!(latest, Some(1700000000));
    }

    #[test]
    fn header_blob_decodes_like_the_query_output() {
        let blob = openssl_blob();
        let (package, installed) = Header::parse(&blob).unwrap().package().unwrap();
        let (expected, latest) = parse_query(
            "openssl-libs\t1\t3.0.7\t25.el9_3\tx86_64\topenssl-3.0.7-25.el9_3.src.rpm\t1700000000\n",
        );
        assert_eq!(package, expected[0]);
        assert_eq!(installed, latest);

        // A signing key: no epoch, no arch, no source.
        let key = header_blob(&[
            (tag::NAME, Value::Str("gpg-pubkey")),
            (tag::VERSION, Value::Str("3228467c")),
            (tag::RELEASE, Value::Str("613798eb")),
        ]);
        let (package, installed) = Header::parse(&key).unwrap().package().unwrap();
        assert_eq!(package.version, "3228467c-613798eb");
        assert_eq!(
            (package.arch.as_str(), package.source, installed),
            ("", None, None)
        );
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        let good = openssl_blob();
        assert_eq!(
            Header::parse(&good[..5]).err(),
            Some(HeaderError::TooShort(5))
        );
        // Every truncation either fails to parse or fails to decode; none panics.
        for len in 8..good.len() {
            let result = Header::parse(&good[..len]).and_then(|h| h.package());
            assert!(result.is_err(), "truncated to {len} bytes");
        }
        // An offset pointing past the data.
        let mut bad = good.clone();
        bad[8 + 8..8 + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = Header::parse(&bad).unwrap().package().unwrap_err();
        assert_eq!(err, HeaderError::OutOfBounds(tag::NAME));
        // A name stored as a number.
        let wrong = header_blob(&[(tag::NAME, Value::Int32(7))]);
        assert!(matches!(
            Header::parse(&wrong).unwrap().package(),
            Err(HeaderError::WrongType { tag: tag::NAME, .. })
        ));
        let nameless = header_blob(&[(tag::VERSION, Value::Str("1"))]);
        assert_eq!(
            Header::parse(&nameless).unwrap().package().unwrap_err(),
            HeaderError::Missing(tag::NAME)
        );
        // Sizes beyond what rpm accepts.
        let mut huge = good;
        huge[0..4].copy_from_slice(&0x0100_0000u32.to_be_bytes());
        assert!(matches!(
            Header::parse(&huge),
            Err(HeaderError::BadSize { .. })
        ));
    }

    /// A root whose `var/lib/rpm/rpmdb.sqlite` holds one package, and that directory.
    #[cfg(unix)]
    fn root_with_openssl_db() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var/lib/rpm");
        std::fs::create_dir_all(&dir).unwrap();
        write_sqlite(&dir.join("rpmdb.sqlite"), &[openssl_blob()]);
        (root, dir)
    }

    /// A database laid out as rpm 4.16+ writes it (`Packages(hnum, blob)`).
    #[cfg(unix)]
    fn write_sqlite(path: &Path, blobs: &[Vec<u8>]) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)",
        )
        .unwrap();
        for blob in blobs {
            conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])
                .unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn sqlite_database_read_without_rpm_keeps_good_headers_and_names_bad_ones() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib/sysimage/rpm")).unwrap();
        // An old Berkeley DB file left in var/lib/rpm is not the live database.
        std::fs::create_dir_all(root.path().join("var/lib/rpm")).unwrap();
        std::fs::write(root.path().join("var/lib/rpm/Packages"), b"stale").unwrap();
        let file = root.path().join("usr/lib/sysimage/rpm/rpmdb.sqlite");
        write_sqlite(&file, &[openssl_blob(), b"garbage".to_vec()]);
        let db = find_database(root.path()).unwrap();
        assert_eq!(
            (db.dir, db.format),
            ("usr/lib/sysimage/rpm", DbFormat::Sqlite)
        );
        let read = read_database(&db).unwrap();
        assert_eq!(read.packages.len(), 1);
        assert_eq!(read.packages[0].version, "1:3.0.7-25.el9_3");
        assert_eq!(read.latest_install, Some(1_700_000_000));
        assert_eq!(read.skipped.len(), 1);
        assert!(
            read.skipped[0].contains("package header 2 skipped"),
            "{:?}",
            read.skipped
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_rpm_that_hangs_is_killed_and_the_database_read_instead() {
        use std::os::unix::fs::PermissionsExt;
        let (root, dir) = root_with_openssl_db();
        // An rpm stuck on the database lock.
        let rpm = root.path().join("rpm");
        std::fs::write(&rpm, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&rpm, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another test thread forking while the script was open for writing can leave it
        // "text file busy" for a moment: wait until it runs.
        for _ in 0..100 {
            match Command::new(&rpm).spawn() {
                Ok(mut child) => {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    break;
                }
                Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(err) => panic!("{err}"),
            }
        }
        let started = std::time::Instant::now();
        let mut partial = Vec::new();
        let (packages, _) =
            collect_with(root.path(), &rpm, Duration::from_millis(300), &mut partial);
        // Waited for the limit, not for sleep.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        assert_eq!(packages.len(), 1);
        assert!(partial.is_empty(), "{partial:?}");
        // With nothing to fall back on, the reason names the time limit.
        std::fs::write(dir.join("rpmdb.sqlite"), b"not a database").unwrap();
        let mut partial = Vec::new();
        collect_with(root.path(), &rpm, Duration::from_millis(300), &mut partial);
        assert!(
            partial[0].reason.contains("no answer within"),
            "{partial:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_empty_answer_from_rpm_is_checked_against_the_database() {
        let (root, dir) = root_with_openssl_db();
        // `true` accepts any arguments and prints nothing: an rpm looking elsewhere.
        let mut partial = Vec::new();
        let (packages, _) = collect_with(root.path(), Path::new("true"), RPM_TIMEOUT, &mut partial);
        assert_eq!(packages.len(), 1);
        assert!(partial.is_empty(), "{partial:?}");
        // A database without packages: partial, never "nothing installed".
        std::fs::remove_file(dir.join("rpmdb.sqlite")).unwrap();
        write_sqlite(&dir.join("rpmdb.sqlite"), &[]);
        let mut partial = Vec::new();
        let (packages, _) = collect_with(root.path(), Path::new("true"), RPM_TIMEOUT, &mut partial);
        assert!(packages.is_empty());
        assert!(
            partial[0].reason.contains("listed no package"),
            "{partial:?}"
        );
        assert!(
            partial[0].reason.contains("holds no package"),
            "{partial:?}"
        );
    }

    #[test]
    fn corrupt_or_unsupported_databases_are_errors_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var/lib/rpm");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("rpmdb.sqlite"),
            b"not a database at all, just text",
        )
        .unwrap();
        let err = read_database(&find_database(root.path()).unwrap()).unwrap_err();
        assert!(err.to_string().contains("rpmdb.sqlite"), "{err}");

        std::fs::remove_file(dir.join("rpmdb.sqlite")).unwrap();
        std::fs::write(dir.join("Packages"), b"\0\0").unwrap();
        let db = find_database(root.path()).unwrap();
        assert_eq!(db.format, DbFormat::BerkeleyDb);
        let err = read_database(&db).unwrap_err();
        assert!(err.to_string().contains("Berkeley DB"), "{err}");
    }

    /// Against real rpm: packages built with rpmbuild and recorded in a fresh database under
    /// a temporary root. rpm's own answer, the direct read, and the fallback when rpm cannot
    /// be run must agree. Needs `rpmbuild` and `db5.3_load`; `.ci/run` installs them and sets
    /// `HYGIENE_REQUIRE_RPM=1`, so there it cannot be skipped.
    #[cfg(unix)]
    #[test]
    fn direct_read_agrees_with_rpm_on_a_real_database() {
        use std::process::Command;
        let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
        if !have("rpmbuild") || !have("db5.3_load") {
            assert!(
                std::env::var_os("HYGIENE_REQUIRE_RPM").is_none(),
                "HYGIENE_REQUIRE_RPM is set but rpmbuild or db5.3_load cannot be run"
            );
            eprintln!("skipped: rpmbuild (rpm) or db5.3_load (db5.3-util) is not installed");
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let top = work.path().join("build");
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for (name, epoch, version, release) in [
            ("hygiene-test-one", "", "1.2.3", "4.el9"),
            ("hygiene-test-two", "Epoch: 2", "0.9", "1"),
        ] {
            let spec = work.path().join(format!("{name}.spec"));
            std::fs::write(
                &spec,
                format!(
                    "Name: {name}\nVersion: {version}\nRelease: {release}\n{epoch}\n\
                     Summary: test\nLicense: MIT\nBuildArch: noarch\n\
                     %description\ntest\n%files\n"
                ),
            )
            .unwrap();
            run(Command::new("rpmbuild")
                .args(["-bb", "--quiet", "--define"])
                .arg(format!("_topdir {}", top.display()))
                .arg(&spec));
        }
        let root = work.path().join("root");
        let rpms: Vec<PathBuf> = std::fs::read_dir(top.join("RPMS/noarch"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(rpms.len(), 2);
        run(Command::new("rpm")
            .arg("--dbpath")
            .arg(root.join("var/lib/rpm"))
            .args(["-i", "--justdb", "--nodeps", "--noscripts"])
            .args(&rpms));

        let sorted = |(mut packages, latest): (Vec<Package>, Option<i64>)| {
            packages.sort_by(|a, b| a.name.cmp(&b.name));
            (packages, latest)
        };
        let mut partial = Vec::new();
        let via_rpm = sorted(collect(&root, &mut partial));
        assert!(partial.is_empty(), "{partial:?}");
        let db = find_database(&root).unwrap();
        assert_eq!(db.format, DbFormat::Sqlite);
        let read = read_database(&db).unwrap();
        assert!(read.skipped.is_empty(), "{:?}", read.skipped);
        let direct = sorted((read.packages, read.latest_install));
        assert_eq!(direct, via_rpm);
        let versions: Vec<_> = direct.0.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(versions, ["1.2.3-4.el9", "2:0.9-1"]);
        assert_eq!(direct.0[1].source.as_deref(), Some("hygiene-test-two"));
        assert_eq!(direct.0[0].arch, "noarch");
        assert!(direct.1.is_some());

        // Without the rpm tool the list is the same and nothing is partial.
        let mut partial = Vec::new();
        let fallback = sorted(collect_with(
            &root,
            Path::new("/nonexistent/rpm"),
            RPM_TIMEOUT,
            &mut partial,
        ));
        assert_eq!(fallback, via_rpm);
        assert!(partial.is_empty(), "{partial:?}");

        // The same headers in a Berkeley DB hash file written by libdb itself (db_load), as
        // RHEL 7 and 8 keep them: the direct read must find the same packages.
        let bdb_root = work.path().join("bdb-root");
        let packages = bdb_root.join("var/lib/rpm/Packages");
        std::fs::create_dir_all(packages.parent().unwrap()).unwrap();
        let mut dump = String::new();
        let mut line = |bytes: &[u8]| {
            for b in bytes {
                dump.push_str(&format!("\\{b:02x}"));
            }
            dump.push('\n');
        };
        // Key 0 is rpm's instance counter.
        line(&0u32.to_ne_bytes());
        line(&2u32.to_ne_bytes());
        let conn = rusqlite::Connection::open(&db.file).unwrap();
        let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages").unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .unwrap();
        for row in rows {
            let (hnum, blob) = row.unwrap();
            line(&hnum.to_ne_bytes());
            line(&blob);
        }
        let dump_file = work.path().join("dump.txt");
        std::fs::write(&dump_file, dump).unwrap();
        run(Command::new("db5.3_load")
            .args(["-T", "-t", "hash", "-f"])
            .arg(&dump_file)
            .arg(&packages));
        let db = find_database(&bdb_root).unwrap();
        assert_eq!(db.format, DbFormat::BerkeleyDb);
        let read = read_database(&db).unwrap();
        assert!(read.skipped.is_empty(), "{:?}", read.skipped);
        assert_eq!(sorted((read.packages, read.latest_install)), via_rpm);

        // Damaged: cut short, the file is refused as a whole; one overflow chain broken,
        // that package is named and the other kept.
        let bytes = std::fs::read(&packages).unwrap();
        std::fs::write(&packages, &bytes[..bytes.len() - 100]).unwrap();
        let err = read_database(&db).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut broken = bytes.clone();
        let page_size = u32::from_ne_bytes(bytes[20..24].try_into().unwrap()) as usize;
        let overflow = (1..bytes.len() / page_size)
            .find(|p| bytes[p * page_size + 25] == 7)
            .unwrap();
        // Its type byte: no longer an overflow page.
        broken[overflow * page_size + 25] = 13;
        std::fs::write(&packages, &broken).unwrap();
        let read = read_database(&db).unwrap();
        assert_eq!(read.packages.len(), 1, "{:?}", read.skipped);
        assert_eq!(read.skipped.len(), 1, "{:?}", read.skipped);
        assert!(
            read.skipped[0].contains("not overflow"),
            "{:?}",
            read.skipped
        );
    }

    #[test]
    fn without_rpm_an_unreadable_database_is_partial_with_both_reasons() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var/lib/rpm");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Packages.db"), b"RpmP").unwrap();
        let mut partial = Vec::new();
        let found = collect_with(
            root.path(),
            Path::new("/nonexistent/rpm"),
            RPM_TIMEOUT,
            &mut partial,
        );
        assert_eq!(found, (Vec::new(), None));
        assert_eq!(partial.len(), 1);
        assert_eq!(partial[0].source, "packages");
        assert!(
            partial[0].reason.contains("rpm cannot be run"),
            "{:?}",
            partial[0]
        );
        assert!(partial[0].reason.contains("ndb"), "{:?}", partial[0]);
    }

    #[test]
    fn no_rpm_database_means_no_rpm_packages_and_no_complaint() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/rpm")).unwrap();
        let mut partial = Vec::new();
        assert_eq!(collect(root.path(), &mut partial), (Vec::new(), None));
        assert!(partial.is_empty());
    }
}
