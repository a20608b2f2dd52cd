//! Installed packages from the dpkg status database (`/var/lib/dpkg/status`).
//!
//! The file is a list of RFC 822-style paragraphs separated by blank lines; a field may continue
//! on lines that start with a space or tab. Only paragraphs whose `Status` is
//! `install ok installed` are installed packages: `deinstall ok config-files` (removed, its
//! configuration kept) and half-installed states are not.

use super::Package;

/// The installed packages in the text of a dpkg status file.
pub fn parse_status(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    for paragraph in text.split("\n\n") {
        let field = |name: &str| field(paragraph, name);
        if field("Status").as_deref() != Some("install ok installed") {
            continue;
        }
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        // `Source: name` or `Source: name (version)` when it differs from the binary's.
        let source = field("Source").map(|s| match s.split_once(" (") {
            Some((name, _)) => name.to_owned(),
            None => s,
        });
        packages.push(Package {
            name,
            version,
            arch: field("Architecture").unwrap_or_default(),
            source,
            manager: "dpkg",
        });
    }
    packages
}

/// The value of `name` in a paragraph, its continuation lines joined with newlines.
fn field(paragraph: &str, name: &str) -> Option<String> {
    let mut lines = paragraph.lines();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if line.starts_with([' ', '\t']) || !key.eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.trim().to_owned();
        for more in lines.by_ref() {
            if !more.starts_with([' ', '\t']) {
                break;
            }
            value.push('\n');
            value.push_str(more.trim());
        }
        return Some(value);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: adduser
Status: install ok installed
Architecture: all
Version: 3.134
Conffiles:
 /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18
Description: add and remove users and groups
 This package includes the 'adduser' and 'deluser' commands.
 .
 Status: not a field, a continuation line

Package: oldtool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2

Package: half
Status: install reinstreq half-installed
Version: 2

Package: openssh-server
Status: install ok installed
Architecture: amd64
Source: openssh
Version: 1:9.2p1-2+deb12u2
";

    #[test]
    fn installed_packages_only_with_source_and_epoch() {
        let packages = parse_status(STATUS);
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["adduser", "libssl3", "openssh-server"]);
        assert_eq!(packages[0].arch, "all");
        assert_eq!(packages[0].source, None);
        assert_eq!(packages[1].source.as_deref(), Some("openssl"));
        assert_eq!(packages[1].version, "3.0.11-1~deb12u2");
        assert_eq!(packages[2].version, "1:9.2p1-2+deb12u2");
        assert_eq!(packages[2].source.as_deref(), Some("openssh"));
    }

    #[test]
    fn multi_line_fields_are_joined_and_do_not_leak() {
        let paragraph = STATUS.split("\n\n").next().unwrap();
        assert_eq!(
            field(paragraph, "Conffiles").as_deref(),
            Some("\n/etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18")
        );
        assert_eq!(
            field(paragraph, "Status").as_deref(),
            Some("install ok installed")
        );
    }

    #[test]
    fn empty_and_garbage_give_nothing() {
        assert!(parse_status("").is_empty());
        assert!(parse_status("garbage\n\x00\nmore").is_empty());
    }
}
