//! The external variables Loki and THOR set for every file, which rule sets such as
//! signature-base test: `filename` (base name), `filepath` (the directory holding the file, as
//! in signature-base's `filepath == "/var/log"`), `extension` (lower case, with its dot),
//! `filetype` (from the first bytes) and `owner` (the owning user's name; Unix only).

#[cfg(unix)]
use std::collections::HashMap;
use std::path::Path;

/// The `filetype` of content starting with `head`, for the types signature-base's rules test;
/// empty when none applies.
pub fn file_type(head: &[u8]) -> &'static str {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"MZ", "EXE"),
        (b"\x7fELF", "ELF"),
        (b"\xfe\xed\xfa\xce", "MACH-O"),
        (b"\xfe\xed\xfa\xcf", "MACH-O"),
        (b"\xce\xfa\xed\xfe", "MACH-O"),
        (b"\xcf\xfa\xed\xfe", "MACH-O"),
        (b"\xca\xfe\xba\xbe", "Java"),
        (b"MDMP", "MDMP"),
        (b"{\\rtf", "RTF"),
        (b"PK\x03\x04", "ZIP"),
        (b"%PDF", "PDF"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"),
        (b"<?php", "PHP"),
        (b"#!/usr/bin/python", "Python"),
        (b"#!/usr/bin/env python", "Python"),
    ];
    if let Some((_, kind)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return kind;
    }
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let text = &head[start..head.len().min(start + 16)];
    if text.len() >= 9 && text[..9].eq_ignore_ascii_case(b"@echo off") {
        return "BATCH";
    }
    ""
}

/// The name of the user with this uid, from the password database (read once); the number
/// itself when the uid has no name.
#[cfg(unix)]
pub fn owner_name(uid: u32) -> String {
    static USERS: std::sync::OnceLock<HashMap<u32, String>> = std::sync::OnceLock::new();
    let users = USERS.get_or_init(|| {
        std::fs::read_to_string("/etc/passwd")
            .map(|text| parse_passwd(&text))
            .unwrap_or_default()
    });
    users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
}

#[cfg(unix)]
fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

/// The values of the five externals for one file.
pub struct FileExternals {
    pub filename: String,
    pub filepath: String,
    pub extension: String,
    pub filetype: &'static str,
    pub owner: String,
}

impl FileExternals {
    pub fn of(path: &Path, head: &[u8], owner: String) -> Self {
        FileExternals {
            filename: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            filepath: path
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            extension: path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy().to_lowercase()))
                .unwrap_or_default(),
            filetype: file_type(head),
            owner,
        }
    }

    /// Sets them on a scanner whose rules were compiled with them defined (as
    /// [`crate::rules`] always does).
    pub fn apply(&self, scanner: &mut yara_x::Scanner<'_>) {
        let values = [
            ("filename", self.filename.as_str()),
            ("filepath", self.filepath.as_str()),
            ("extension", self.extension.as_str()),
            ("filetype", self.filetype),
            ("owner", self.owner.as_str()),
        ];
        for (name, value) in values {
            let _ = scanner.set_global(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_from_magic() {
        assert_eq!(file_type(b"MZ\x90\x00"), "EXE");
        assert_eq!(file_type(b"\x7fELF\x02"), "ELF");
        assert_eq!(file_type(b"\xcf\xfa\xed\xfe"), "MACH-O");
        assert_eq!(file_type(b"{\\rtf1\\ansi"), "RTF");
        assert_eq!(file_type(b"<?php echo 1;"), "PHP");
        assert_eq!(file_type(b"#!/usr/bin/env python3\n"), "Python");
        assert_eq!(file_type(b"\r\n  @ECHO OFF\r\n"), "BATCH");
        assert_eq!(file_type(b"hello"), "");
        assert_eq!(file_type(b""), "");
    }

    #[cfg(unix)]
    #[test]
    fn passwd_lines_map_uids_to_names() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nconfluence:x:1001:1001::/opt:/bin/sh\nbroken\n",
        );
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&1001).map(String::as_str), Some("confluence"));
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn values_follow_loki() {
        let e = FileExternals::of(Path::new("/var/log/Evil.PS1"), b"MZ", "root".into());
        assert_eq!(
            (
                e.filename.as_str(),
                e.filepath.as_str(),
                e.extension.as_str(),
                e.filetype,
                e.owner.as_str()
            ),
            ("Evil.PS1", "/var/log", ".ps1", "EXE", "root")
        );
    }
}
