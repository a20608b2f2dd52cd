//! Hash IOC lists: `HASH;COMMENT` lines as in signature-base's `hash-iocs.txt`, or one hash per
//! line, with `#` comments and blank lines ignored.
//!
//! Only SHA-256 hashes are matched for now; MD5 and SHA-1 entries are counted as unsupported so
//! that the caller can say so rather than drop them silently. A line that is not a hash at all is
//! reported with its line number and skipped; the rest of the list still loads.

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

/// SHA-256 hash IOCs with their comments.
#[derive(Debug, Default, Clone)]
pub struct HashIocs {
    sha256: HashMap<[u8; 32], String>,
    /// MD5 and SHA-1 entries seen but not matched yet.
    pub unsupported: usize,
    /// Lines that were not hashes.
    pub bad_lines: Vec<BadLine>,
}

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

    pub fn add_list(&mut self, path: &Path, text: &str) {
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (hash, comment) = match line.split_once(';') {
                Some((hash, comment)) => (hash.trim(), comment.trim()),
                None => (line, ""),
            };
            let bad = |reason: String| BadLine {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
            };
            if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.bad_lines
                    .push(bad(format!("not a hex hash: {hash:?}")));
                continue;
            }
            match hash.len() {
                64 => {
                    let mut key = [0u8; 32];
                    hex::decode_to_slice(hash, &mut key).expect("64 hex digits decode to 32 bytes");
                    self.sha256.insert(key, comment.to_owned());
                }
                32 | 40 => self.unsupported += 1,
                n => self.bad_lines.push(bad(format!(
                    "a hash of {n} hex digits is neither MD5, SHA-1 nor SHA-256"
                ))),
            }
        }
    }

    /// The comment of the IOC matching this SHA-256, if any.
    pub fn match_sha256(&self, digest: &[u8; 32]) -> Option<&str> {
        self.sha256.get(digest).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.sha256.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sha256.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    #[test]
    fn parses_loki_and_plain_lines() {
        let mut iocs = HashIocs::default();
        let text = format!(
            "# comment\n\n{};EICAR test\n{}\nd41d8cd98f00b204e9800998ecf8427e;md5 entry\nnot-a-hash;x\nabcd\n",
            EICAR_SHA256.to_uppercase(),
            "a".repeat(64)
        );
        iocs.add_list(Path::new("list.txt"), &text);
        let mut eicar = [0u8; 32];
        hex::decode_to_slice(EICAR_SHA256, &mut eicar).unwrap();
        assert_eq!(iocs.match_sha256(&eicar), Some("EICAR test"));
        assert_eq!(iocs.match_sha256(&[0xaa; 32]), Some(""));
        assert_eq!(iocs.len(), 2);
        assert_eq!(iocs.unsupported, 1);
        let lines: Vec<usize> = iocs.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![6, 7]);
        assert_eq!(
            iocs.bad_lines[0].to_string(),
            "list.txt:6: not a hex hash: \"not-a-hash\""
        );
    }

    #[test]
    fn signature_base_list_loads() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/signature-base/iocs/hash-iocs.txt"
        ));
        let iocs = HashIocs::load(&[path]).unwrap();
        assert!(iocs.len() > 100, "only {} SHA-256 IOCs", iocs.len());
        assert!(iocs.unsupported > 100);
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
