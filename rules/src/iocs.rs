//! Hash IOC lists the way people ship them:
//! - `HASH;COMMENT` lines, as in signature-base's `hash-iocs.txt`;
//! - one hash per line;
//! - CSV whose header names a hash column (`hash`, `sha256`, `sha1`, `md5`, `sha-256`, ...); the
//!   other columns become the comment.
//!
//! MD5, SHA-1 and SHA-256 are told apart by length. `#` comments and blank lines are ignored. A
//! line that is not a hash is reported with its line number and skipped; the rest of the list
//! still loads. The scanner computes MD5 and SHA-1 only when a loaded list holds such hashes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IocError {
    #[error("{path}: cannot read IOC list: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A line of an IOC list that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// A file's digests; MD5 and SHA-1 are present when the loaded IOCs need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub sha256: [u8; 32],
    pub sha1: Option<[u8; 20]>,
    pub md5: Option<[u8; 16]>,
}

/// Hash IOCs by algorithm, with their comments.
#[derive(Debug, Default, Clone)]
pub struct HashIocs {
    sha256: HashMap<[u8; 32], String>,
    sha1: HashMap<[u8; 20], String>,
    md5: HashMap<[u8; 16], String>,
    /// Lines that were not hashes.
    pub bad_lines: Vec<BadLine>,
    /// SHA-256 chained over every list added: IOC verdicts cached under another version are
    /// stale.
    pub version: [u8; 32],
}

/// Header names taken as the hash column of a CSV list.
const HASH_COLUMNS: [&str; 7] = ["hash", "sha256", "sha-256", "sha1", "sha-1", "md5", "ioc"];

impl HashIocs {
    pub fn load(paths: &[PathBuf]) -> Result<Self, IocError> {
        let mut iocs = HashIocs::default();
        for path in paths {
            let text = std::fs::read(path).map_err(|source| IocError::Read {
                path: path.clone(),
                source,
            })?;
            iocs.add_list(path, &String::from_utf8_lossy(&text));
        }
        Ok(iocs)
    }

    /// Adds one list; its format is recognised from its first meaningful line.
    pub fn add_list(&mut self, path: &Path, text: &str) {
        use sha2::Digest;
        let mut version = sha2::Sha256::new();
        version.update(self.version);
        version.update((text.len() as u64).to_le_bytes());
        version.update(text.as_bytes());
        self.version = version.finalize().into();
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        match first.and_then(csv_hash_column) {
            Some(column) => self.add_csv(path, text, column),
            None => self.add_lines(path, text),
        }
    }

    fn add_lines(&mut self, path: &Path, text: &str) {
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (hash, comment) = match line.split_once(';') {
                Some((hash, comment)) => (hash.trim(), comment.trim()),
                None => (line, ""),
            };
            self.add_hash(path, index + 1, hash, comment);
        }
    }

    fn add_csv(&mut self, path: &Path, text: &str, column: usize) {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let headers = reader.headers().cloned().unwrap_or_default();
        for record in reader.records() {
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    let line = err.position().map_or(0, |p| p.line() as usize);
                    self.bad_lines.push(BadLine {
                        path: path.to_path_buf(),
                        line,
                        reason: err.to_string(),
                    });
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line() as usize);
            let Some(hash) = record.get(column).map(str::trim).filter(|h| !h.is_empty()) else {
                self.bad_lines.push(BadLine {
                    path: path.to_path_buf(),
                    line,
                    reason: "no hash in the hash column".into(),
                });
                continue;
            };
            let comment: Vec<String> = record
                .iter()
                .enumerate()
                .filter(|(i, value)| *i != column && !value.trim().is_empty())
                .map(|(i, value)| format!("{}={}", headers.get(i).unwrap_or("?"), value.trim()))
                .collect();
            self.add_hash(path, line, hash, &comment.join("; "));
        }
    }

    fn add_hash(&mut self, path: &Path, line: usize, hash: &str, comment: &str) {
        let bad = |reason: String| BadLine {
            path: path.to_path_buf(),
            line,
            reason,
        };
        if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.bad_lines
                .push(bad(format!("not a hex hash: {hash:?}")));
            return;
        }
        let comment = comment.to_owned();
        match hash.len() {
            64 => drop(self.sha256.insert(decode(hash), comment)),
            40 => drop(self.sha1.insert(decode(hash), comment)),
            32 => drop(self.md5.insert(decode(hash), comment)),
            n => self.bad_lines.push(bad(format!(
                "a hash of {n} hex digits is neither MD5, SHA-1 nor SHA-256"
            ))),
        }
    }

    pub fn needs_md5(&self) -> bool {
        !self.md5.is_empty()
    }

    pub fn needs_sha1(&self) -> bool {
        !self.sha1.is_empty()
    }

    /// The comments of every IOC matching these digests, strongest hash first.
    pub fn matches(&self, digests: &Digests) -> Vec<&str> {
        let sha256 = self.sha256.get(&digests.sha256);
        let sha1 = digests.sha1.and_then(|d| self.sha1.get(&d));
        let md5 = digests.md5.and_then(|d| self.md5.get(&d));
        [sha256, sha1, md5]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Every hash loaded, as lower-case hex (the collector keeps a published list's hashes to
    /// tell whether a later list still holds a finding's).
    pub fn hex_digests(&self) -> impl Iterator<Item = String> + '_ {
        self.sha256
            .keys()
            .map(hex::encode)
            .chain(self.sha1.keys().map(hex::encode))
            .chain(self.md5.keys().map(hex::encode))
    }

    /// Number of hashes loaded, all algorithms together.
    pub fn len(&self) -> usize {
        self.sha256.len() + self.sha1.len() + self.md5.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn decode<const N: usize>(hex_digits: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_digits, &mut out).expect("length and digits checked by the caller");
    out
}

/// The index of the hash column if `header` is a CSV header naming one.
fn csv_hash_column(header: &str) -> Option<usize> {
    if !header.contains(',') {
        return None;
    }
    header
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_ascii_lowercase())
        .position(|name| HASH_COLUMNS.contains(&name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
    const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";

    fn eicar() -> Digests {
        Digests {
            sha256: decode(EICAR_SHA256),
            sha1: Some(decode(EICAR_SHA1)),
            md5: Some(decode(EICAR_MD5)),
        }
    }

    #[test]
    fn parses_loki_and_plain_lines() {
        let mut iocs = HashIocs::default();
        let text = format!(
            "# comment\n\n{};EICAR test\n{}\n{EICAR_MD5};md5 entry\nnot-a-hash;x\nabcd\n",
            EICAR_SHA256.to_uppercase(),
            "a".repeat(64)
        );
        iocs.add_list(Path::new("list.txt"), &text);
        assert_eq!(iocs.matches(&eicar()), vec!["EICAR test", "md5 entry"]);
        assert_eq!(iocs.len(), 3);
        assert!(iocs.needs_md5() && !iocs.needs_sha1());
        let lines: Vec<usize> = iocs.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![6, 7]);
        assert_eq!(
            iocs.bad_lines[0].to_string(),
            "list.txt:6: not a hex hash: \"not-a-hash\""
        );
    }

    #[test]
    fn parses_csv_with_a_hash_column() {
        let mut iocs = HashIocs::default();
        let text = format!(
            "name,SHA1,first_seen\nEICAR,{EICAR_SHA1},2024-01-01\n\"quoted, name\",,2024-02-02\nbad,zz,2024\n"
        );
        iocs.add_list(Path::new("list.csv"), &text);
        let digests = eicar();
        assert_eq!(
            iocs.matches(&digests),
            vec!["name=EICAR; first_seen=2024-01-01"]
        );
        assert!(iocs.needs_sha1());
        let reasons: Vec<(usize, &str)> = iocs
            .bad_lines
            .iter()
            .map(|b| (b.line, b.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (3, "no hash in the hash column"),
                (4, "not a hex hash: \"zz\"")
            ]
        );
    }

    #[test]
    fn without_the_optional_digests_only_sha256_matches() {
        let mut iocs = HashIocs::default();
        iocs.add_list(Path::new("l"), &format!("{EICAR_MD5};m\n{EICAR_SHA1};s\n"));
        let only_sha256 = Digests {
            sha1: None,
            md5: None,
            ..eicar()
        };
        assert!(iocs.matches(&only_sha256).is_empty());
        assert_eq!(iocs.matches(&eicar()), vec!["s", "m"]);
    }

    #[test]
    fn signature_base_list_loads() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/signature-base/iocs/hash-iocs.txt"
        ));
        let iocs = HashIocs::load(&[path]).unwrap();
        // Unique hashes in the file, counted independently of this parser.
        let counts = (iocs.sha256.len(), iocs.sha1.len(), iocs.md5.len());
        assert_eq!(counts, (1174, 893, 986));
        assert!(
            iocs.bad_lines.is_empty(),
            "{:?}",
            &iocs.bad_lines[..iocs.bad_lines.len().min(5)]
        );
    }

    #[test]
    fn unreadable_list_is_an_error_naming_it() {
        let err = HashIocs::load(&[PathBuf::from("/nonexistent/iocs.txt")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/iocs.txt: cannot read IOC list")
        );
    }
}
