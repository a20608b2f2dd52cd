//! The external variables Loki and THOR set for every file, which rule sets such as
//! signature-base test: `filename` (base name), `filepath` (the directory holding the file, as
//! in signature-base's `filepath == "/var/log"`), `extension` (lower case, with its dot),
//! `filetype` (from the first bytes) and `owner` (the owning account's name: the user name from
//! the password database on Unix, the account name of the owner SID on Windows, such as
//! `SYSTEM` or `Administrators`, without its domain).

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

/// The account name of the owner of an open file; empty when Windows cannot tell (no rights to
/// read its security descriptor, or a SID without a name). Names are looked up once per SID.
#[cfg(windows)]
pub fn owner_of_file(file: &std::fs::File) -> String {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::{ERROR_SUCCESS, LocalFree};
    use windows_sys::Win32::Security::Authorization::{GetSecurityInfo, SE_FILE_OBJECT};
    use windows_sys::Win32::Security::{
        GetLengthSid, LookupAccountSidW, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
        SID_NAME_USE,
    };
    static NAMES: std::sync::OnceLock<std::sync::Mutex<HashMap<Vec<u8>, String>>> =
        std::sync::OnceLock::new();
    let mut owner: PSID = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: the handle is open for as long as `file` lives; on success Windows allocates the
    // descriptor `owner` points into, freed below with LocalFree.
    let status = unsafe {
        GetSecurityInfo(
            file.as_raw_handle(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != ERROR_SUCCESS || owner.is_null() {
        return String::new();
    }
    // SAFETY: `owner` is a valid SID inside `descriptor`.
    let sid = unsafe {
        std::slice::from_raw_parts(owner as *const u8, GetLengthSid(owner) as usize).to_vec()
    };
    let names = NAMES.get_or_init(Default::default);
    let known = names.lock().ok().and_then(|names| names.get(&sid).cloned());
    let name = known.unwrap_or_else(|| {
        let (mut name, mut domain) = ([0u16; 256], [0u16; 256]);
        let (mut name_len, mut domain_len) = (name.len() as u32, domain.len() as u32);
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: the buffers and their lengths in u16 units are passed together.
        let found = unsafe {
            LookupAccountSidW(
                std::ptr::null(),
                owner,
                name.as_mut_ptr(),
                &mut name_len,
                domain.as_mut_ptr(),
                &mut domain_len,
                &mut kind,
            )
        } != 0;
        let name = if found {
            String::from_utf16_lossy(&name[..name_len as usize])
        } else {
            String::new()
        };
        if let Ok(mut names) = names.lock() {
            names.insert(sid, name.clone());
        }
        name
    });
    // SAFETY: the descriptor was allocated by GetSecurityInfo and is not used after this.
    unsafe { LocalFree(descriptor) };
    name
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

    #[cfg(windows)]
    #[test]
    fn a_new_file_is_owned_by_a_named_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let owner = owner_of_file(&std::fs::File::open(&path).unwrap());
        assert!(!owner.is_empty());
        assert!(
            !owner.contains('\\'),
            "the account name, without its domain: {owner}"
        );
        // Looked up once, then from the cache: the same answer.
        assert_eq!(owner_of_file(&std::fs::File::open(&path).unwrap()), owner);
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
