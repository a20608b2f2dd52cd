//! The operating system on Linux: `/etc/os-release`, the kernel release, the machine
//! architecture and the boot time.

use std::path::Path;

use super::{OsInfo, Partial};

/// What `/etc/os-release` (or `/usr/lib/os-release`) and `/proc` say about this system.
pub fn collect(root: &Path, proc_root: &Path, partial: &mut Vec<Partial>) -> OsInfo {
    let mut os = OsInfo {
        family: "linux".to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        ..OsInfo::default()
    };
    let release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(root.join(p)).ok());
    match release {
        Some(text) => {
            let fields = parse_os_release(&text);
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            os.id = get("ID");
            os.version_id = get("VERSION_ID");
            os.pretty_name = get("PRETTY_NAME");
        }
        None => partial.push(Partial::new(
            "os",
            "no /etc/os-release or /usr/lib/os-release",
        )),
    }
    match std::fs::read_to_string(proc_root.join("sys/kernel/osrelease")) {
        Ok(kernel) => os.kernel = kernel.trim().to_owned(),
        Err(err) => partial.push(Partial::new("os", format!("kernel release: {err}"))),
    }
    match std::fs::read_to_string(proc_root.join("stat")) {
        Ok(stat) => os.boot_time = boot_time(&stat),
        Err(err) => partial.push(Partial::new("os", format!("boot time: {err}"))),
    }
    os
}

/// `KEY=value` lines; values may be quoted (double or single) with backslash escapes.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = match value.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = value.strip_prefix(q)?.strip_suffix(q)?;
                    let mut out = String::new();
                    let mut chars = inner.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' {
                            out.extend(chars.next());
                        } else {
                            out.push(c);
                        }
                    }
                    out
                }
                _ => value.to_owned(),
            };
            Some((key.trim().to_owned(), value))
        })
        .collect()
}

/// Boot time in seconds since the epoch, from the `btime` line of `/proc/stat`.
fn boot_time(stat: &str) -> Option<i64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_quoted_or_not() {
        let fields = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n# comment\nVERSION_ID='12'\nNAME=\"A \\\"quoted\\\" name\"\nbroken\n",
        );
        assert_eq!(
            fields,
            vec![
                (
                    "PRETTY_NAME".to_owned(),
                    "Debian GNU/Linux 12 (bookworm)".to_owned()
                ),
                ("ID".to_owned(), "debian".to_owned()),
                ("VERSION_ID".to_owned(), "12".to_owned()),
                ("NAME".to_owned(), "A \"quoted\" name".to_owned()),
            ]
        );
    }

    #[test]
    fn boot_time_from_proc_stat() {
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1732412345\nprocesses 9\n"),
            Some(1732412345)
        );
        assert_eq!(boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn a_missing_os_release_is_a_partial_inventory() {
        let empty = tempfile::tempdir().unwrap();
        let mut partial = Vec::new();
        let os = collect(empty.path(), empty.path(), &mut partial);
        assert_eq!(os.family, "linux");
        assert!(os.id.is_empty());
        let sources: Vec<&str> = partial.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(sources, vec!["os", "os", "os"]);
        assert!(partial[0].reason.contains("os-release"));
    }
}
