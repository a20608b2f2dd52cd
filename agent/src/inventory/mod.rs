//! What a host runs: operating system and build, installed packages, hotfixes and programs,
//! and its network connections.
//!
//! Every source that cannot be read becomes a [`Partial`] entry with its reason, never an
//! error and never an empty list passed off as "nothing installed". Parsers are plain
//! functions over text, tested with fixtures; the collectors around them read the system.

use std::path::Path;

use serde::Serialize;

pub mod delta;
pub mod dpkg;
pub mod os;
pub mod rpm;
pub mod sockets;
pub mod windows;
#[cfg(windows)]
mod windows_api;

#[cfg(windows)]
pub use windows_api::{delete_hklm_value, fixed_drives, hklm_string, machine_guid};

/// A host's inventory; the JSON shape of `hygiene-agent inventory --format json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub os: OsInfo,
    pub packages: Vec<Package>,
    pub hotfixes: Vec<Hotfix>,
    pub programs: Vec<Program>,
    pub connections: Vec<Connection>,
    /// The parts that could not be collected, each with its reason.
    pub partial: Vec<Partial>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// `linux` or `windows`.
    pub family: String,
    /// os-release `ID` (`debian`, `rhel`, ...).
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    pub kernel: String,
    pub arch: String,
    /// Seconds since the epoch.
    pub boot_time: Option<i64>,
    /// When packages last changed (seconds since the epoch), where the system records it.
    pub last_package_change: Option<i64>,
    /// Windows: `ProductName` (`Windows 10 Pro`), `EditionID`, `DisplayVersion` (`22H2`).
    pub product_name: String,
    pub edition: String,
    pub display_version: String,
    /// Windows: the full build as Microsoft's `FixedBuild` writes it (`10.0.19045.3930`).
    pub build: String,
    /// Windows: `client`, `server` or `server core`.
    pub installation_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package, when it is named.
    pub source: Option<String>,
    /// Whose version ordering applies: `dpkg` or `rpm`.
    pub manager: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hotfix {
    /// `KB5034441`.
    pub kb: String,
    pub title: String,
    pub installed_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Program {
    pub name: String,
    pub version: String,
    pub publisher: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// `tcp` or `udp`.
    pub proto: String,
    pub local_addr: String,
    pub local_port: u16,
    pub remote_addr: String,
    pub remote_port: u16,
    pub state: String,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

/// A part of the inventory that could not be collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partial {
    /// `os`, `packages`, `hotfixes`, `programs` or `connections`.
    pub source: String,
    pub reason: String,
}

impl Partial {
    pub fn new(source: &str, reason: impl Into<String>) -> Self {
        Partial {
            source: source.to_owned(),
            reason: reason.into(),
        }
    }
}

/// This host's inventory.
pub fn collect() -> Inventory {
    #[cfg(target_os = "linux")]
    return collect_linux(Path::new("/"), Path::new("/proc"));
    #[cfg(windows)]
    return windows_api::collect();
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        Inventory {
            partial: vec![Partial::new(
                "os",
                format!("no inventory collector for {} yet", std::env::consts::OS),
            )],
            ..Inventory::default()
        }
    }
}

/// This host's sockets, and what kept any of them from being read.
pub fn collect_connections() -> (Vec<Connection>, Vec<Partial>) {
    let mut partial = Vec::new();
    #[cfg(target_os = "linux")]
    let connections = sockets::collect(Path::new("/proc"), &mut partial);
    #[cfg(windows)]
    let connections = windows_api::connections(&mut partial);
    #[cfg(not(any(target_os = "linux", windows)))]
    let connections = {
        partial.push(Partial::new(
            "connections",
            format!("no connections collector for {} yet", std::env::consts::OS),
        ));
        Vec::new()
    };
    (connections, partial)
}

/// The inventory of a Linux system whose files are under `root` and whose `/proc` is
/// `proc_root` (both `/` and `/proc` but for tests).
pub fn collect_linux(root: &Path, proc_root: &Path) -> Inventory {
    let mut partial = Vec::new();
    let mut os = os::collect(root, proc_root, &mut partial);
    let mut packages = Vec::new();
    let status = root.join("var/lib/dpkg/status");
    let dpkg_present = root.join("var/lib/dpkg").is_dir();
    if dpkg_present {
        match std::fs::read_to_string(&status) {
            Ok(text) => {
                let found = dpkg::parse_status(&text);
                if found.is_empty() {
                    partial.push(Partial::new(
                        "packages",
                        format!("{}: no installed package in it", status.display()),
                    ));
                }
                packages.extend(found);
                os.last_package_change = std::fs::metadata(&status)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64);
            }
            Err(err) => partial.push(Partial::new(
                "packages",
                format!("{}: {err}", status.display()),
            )),
        }
    }
    let (rpm_packages, rpm_latest) = rpm::collect(root, &mut partial);
    packages.extend(rpm_packages);
    os.last_package_change = os.last_package_change.max(rpm_latest);
    if packages.is_empty() && !partial.iter().any(|p| p.source == "packages") {
        partial.push(Partial::new("packages", "no dpkg or RPM database found"));
    }
    let connections = sockets::collect(proc_root, &mut partial);
    Inventory {
        os,
        packages,
        hotfixes: Vec::new(),
        programs: Vec::new(),
        connections,
        partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_dpkg_database_is_partial_not_empty() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(root.path().join("var/lib/dpkg/status"), b"\x00\x01garbage").unwrap();
        let inventory = collect_linux(root.path(), root.path());
        assert!(inventory.packages.is_empty());
        let reasons: Vec<&str> = inventory
            .partial
            .iter()
            .filter(|p| p.source == "packages")
            .map(|p| p.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("no installed package"), "{reasons:?}");
    }

    #[test]
    fn a_missing_dpkg_status_file_is_partial() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/dpkg")).unwrap();
        let inventory = collect_linux(root.path(), root.path());
        assert!(
            inventory
                .partial
                .iter()
                .any(|p| p.source == "packages" && p.reason.contains("status")),
            "{:?}",
            inventory.partial
        );
    }

    /// On this machine: the package list is what `dpkg-query -W` lists.
    #[cfg(target_os = "linux")]
    #[test]
    fn packages_equal_dpkg_query() {
        let Ok(out) = std::process::Command::new("dpkg-query")
            .args([
                "-W",
                "-f",
                "${db:Status-Abbrev}\t${binary:Package}\t${Version}\n",
            ])
            .output()
        else {
            return; // not a dpkg system
        };
        let mut expected: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ii "))
            .filter_map(|l| {
                let mut f = l.split('\t').skip(1);
                let name = f.next()?.split(':').next()?.to_owned();
                Some((name, f.next()?.to_owned()))
            })
            .collect();
        expected.sort();
        let inventory = collect();
        let mut got: Vec<(String, String)> = inventory
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        got.sort();
        assert_eq!(got, expected);
        assert!(inventory.os.last_package_change.is_some());
    }
}
