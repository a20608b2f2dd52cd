//! From what an agent reports (the OS facts from the registry's `CurrentVersion`, the installed
//! programs from the Uninstall keys) to the product names Microsoft's documents use.
//!
//! The OS is named from its build number first (10.0.**19045**.3930 is Windows 10 22H2 whatever
//! the registry's `DisplayVersion` says), then from `DisplayVersion` for builds this table does
//! not know yet. Programs are named only where their installed version is the version
//! Microsoft's `FixedBuild` counts in; for the others (Office, whose patches leave the
//! program's version alone; Visual Studio, whose installer writes its internal build) the
//! program is reported as "not assessed" with the reason.

use super::assess::Build;

/// `x64-based`, `32-bit` or `ARM64-based`, as product names write an architecture.
fn arch_words(arch: &str) -> Option<&'static str> {
    match arch.trim().to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" | "x64" => Some("x64-based"),
        "x86" | "i386" | "i586" | "i686" => Some("32-bit"),
        "aarch64" | "arm64" => Some("ARM64-based"),
        _ => None,
    }
}

/// Windows 10 and 11 versions by build number.
fn client_version(build: u32) -> Option<&'static str> {
    Some(match build {
        10586 => "1511",
        14393 => "1607",
        15063 => "1703",
        16299 => "1709",
        17134 => "1803",
        17763 => "1809",
        18362 => "1903",
        18363 => "1909",
        19041 => "2004",
        19042 => "20H2",
        19043 => "21H1",
        19044 => "21H2",
        19045 => "22H2",
        22000 => "21H2",
        22621 => "22H2",
        22631 => "23H2",
        26100 => "24H2",
        26200 => "25H2",
        _ => return None,
    })
}

/// Windows Server releases by build number, as product names write them (before the
/// installation type).
fn server_name(build: u32, arch: &str) -> Option<String> {
    Some(match build {
        6003 => format!("Windows Server 2008 for {arch} Systems Service Pack 2"),
        7601 => format!("Windows Server 2008 R2 for {arch} Systems Service Pack 1"),
        9200 => "Windows Server 2012".to_owned(),
        9600 => "Windows Server 2012 R2".to_owned(),
        14393 => "Windows Server 2016".to_owned(),
        17763 => "Windows Server 2019".to_owned(),
        20348 => "Windows Server 2022".to_owned(),
        25398 => "Windows Server 2022, 23H2 Edition".to_owned(),
        26100 => "Windows Server 2025".to_owned(),
        _ => return None,
    })
}

/// The OS facts the naming needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOs {
    /// `windows`, `linux`.
    pub family: String,
    pub product_name: String,
    pub display_version: String,
    /// `10.0.19045.3930`.
    pub build: String,
    pub arch: String,
    /// `client`, `server` or `server core`.
    pub installation_type: String,
}

/// Microsoft's name for the host's Windows, or why there is none.
pub fn os_product(os: &HostOs) -> Result<String, String> {
    let build = Build::parse(&os.build).ok_or_else(|| {
        if os.build.is_empty() {
            "the agent reported no build number".to_owned()
        } else {
            format!("build {:?} is not a Windows build number", os.build)
        }
    })?;
    let number = build.number();
    let arch = arch_words(&os.arch)
        .ok_or_else(|| format!("architecture {:?} is not one Microsoft names", os.arch))?;
    let kind = os.installation_type.to_ascii_lowercase();
    let server = kind.starts_with("server") || os.product_name.contains("Server");
    if server {
        let name = server_name(number, arch)
            .ok_or_else(|| format!("Windows Server build {number} is not one Hygiene knows"))?;
        let core = kind == "server core";
        Ok(if core {
            format!("{name} (Server Core installation)")
        } else {
            name
        })
    } else {
        match number {
            7601 => Ok(format!("Windows 7 for {arch} Systems Service Pack 1")),
            9600 => Ok(format!("Windows 8.1 for {arch} systems")),
            10240 => Ok(format!("Windows 10 for {arch} Systems")),
            _ if number >= 10240 => {
                let windows = if number >= 22000 { 11 } else { 10 };
                let version = client_version(number)
                    .map(str::to_owned)
                    .or_else(|| {
                        (!os.display_version.is_empty()).then(|| os.display_version.clone())
                    })
                    .ok_or_else(|| format!("Windows build {number} has no known version"))?;
                Ok(format!(
                    "Windows {windows} Version {version} for {arch} Systems"
                ))
            }
            _ => Err(format!("Windows build {number} is not one Hygiene knows")),
        }
    }
}

/// How an installed program is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramProduct {
    /// By its version against the `FixedBuild` of the product so named (or, for a `prefix`,
    /// of the one product whose name starts so).
    Versioned {
        product: String,
        prefix: bool,
        version: String,
    },
    /// A Microsoft product Hygiene cannot check from the installed programs, and why.
    NotAssessed { reason: String },
}

/// The first `N.N.N` (or longer) version in `text`.
fn version_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|part| part.split('.').filter(|p| !p.is_empty()).count() >= 3)
        .map(|part| part.trim_matches('.').to_owned())
}

/// What an installed program is in Microsoft's documents; `None` for programs that are not
/// (or not only) Microsoft products the documents cover.
pub fn program_product(name: &str, version: &str, publisher: &str) -> Option<ProgramProduct> {
    let name = name.trim();
    let microsoft = publisher.contains("Microsoft")
        || name.starts_with("Microsoft")
        || name.starts_with("PowerShell");
    if !microsoft {
        return None;
    }
    let not_assessed = |reason: &str| {
        Some(ProgramProduct::NotAssessed {
            reason: reason.to_owned(),
        })
    };
    let lower = name.to_ascii_lowercase();
    if name == "Microsoft Edge" {
        return Some(ProgramProduct::Versioned {
            product: "Microsoft Edge (Chromium-based)".to_owned(),
            prefix: false,
            version: version.trim().to_owned(),
        });
    }
    for (marker, product) in [
        ("microsoft .net runtime - ", ".NET"),
        ("microsoft windows desktop runtime - ", ".NET"),
        ("microsoft asp.net core ", "ASP.NET Core"),
    ] {
        if lower.starts_with(marker) {
            let Some(runtime) = version_in(&name[marker.len()..]) else {
                return not_assessed("no runtime version in the program's name");
            };
            let mut parts = runtime.split('.');
            let major = parts.next().unwrap_or("0");
            return Some(ProgramProduct::Versioned {
                product: format!("{product} {major}.0"),
                prefix: false,
                version: runtime,
            });
        }
    }
    if lower.starts_with("powershell 7") {
        let mut parts = version.trim().split('.');
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
            return not_assessed("the program gives no version");
        };
        return Some(ProgramProduct::Versioned {
            product: format!("PowerShell {major}.{minor}"),
            prefix: false,
            version: version.trim().to_owned(),
        });
    }
    if lower.contains(".net framework") {
        return not_assessed(
            "Microsoft names .NET Framework per Windows release and ships its fixes as separate KBs that the installed programs do not show",
        );
    }
    if lower.contains("visual studio") && !lower.contains("c++") && !lower.contains("tools for") {
        return not_assessed(
            "Visual Studio's installer records its internal build, not the release Microsoft's fixed version counts in",
        );
    }
    let office_apps = [
        "office",
        "microsoft 365",
        "word",
        "excel",
        "outlook",
        "powerpoint",
        "visio",
        "publisher",
        "project",
        "access",
        "onenote",
        "skype for business",
    ];
    if office_apps
        .iter()
        .any(|app| lower.starts_with(&format!("microsoft {app}")) || lower.starts_with(app))
        || lower.starts_with("microsoft 365")
    {
        return not_assessed(
            "Office updates (Click-to-Run or MSI patches) leave the installed program's version unchanged and do not show in the Windows update list",
        );
    }
    if lower.contains("sharepoint") || lower.contains("exchange server") {
        return not_assessed(
            "its security updates are patches the installed program's version does not show",
        );
    }
    if lower.contains("sql server") {
        return not_assessed(
            "the installed programs do not say which update branch (GDR or CU) the instance follows, nor its patch level",
        );
    }
    // Any other Microsoft program is checked when a document names a product exactly so.
    Some(ProgramProduct::Versioned {
        product: name.to_owned(),
        prefix: false,
        version: version.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(build: &str, kind: &str, display: &str) -> HostOs {
        HostOs {
            family: "windows".into(),
            product_name: if kind == "client" {
                "Windows 10 Pro".into()
            } else {
                "Windows Server 2019 Datacenter".into()
            },
            display_version: display.into(),
            build: build.into(),
            arch: "x86_64".into(),
            installation_type: kind.into(),
        }
    }

    #[test]
    fn windows_builds_name_microsofts_products() {
        let cases = [
            (
                "10.0.19045.3803",
                "client",
                "22H2",
                "Windows 10 Version 22H2 for x64-based Systems",
            ),
            // Windows 11 still says "Windows 10" in ProductName; the build says 11.
            (
                "10.0.22631.2861",
                "client",
                "23H2",
                "Windows 11 Version 23H2 for x64-based Systems",
            ),
            (
                "10.0.22000.2652",
                "client",
                "21H2",
                "Windows 11 Version 21H2 for x64-based Systems",
            ),
            (
                "10.0.10240.20345",
                "client",
                "",
                "Windows 10 for x64-based Systems",
            ),
            (
                "10.0.14393.6529",
                "client",
                "1607",
                "Windows 10 Version 1607 for x64-based Systems",
            ),
            ("10.0.14393.6529", "server", "1607", "Windows Server 2016"),
            (
                "10.0.17763.5206",
                "server core",
                "1809",
                "Windows Server 2019 (Server Core installation)",
            ),
            ("10.0.20348.2113", "server", "21H2", "Windows Server 2022"),
            (
                "10.0.25398.584",
                "server core",
                "23H2",
                "Windows Server 2022, 23H2 Edition (Server Core installation)",
            ),
            ("6.3.9600.21715", "server", "", "Windows Server 2012 R2"),
            (
                "6.1.7601.26850",
                "server",
                "",
                "Windows Server 2008 R2 for x64-based Systems Service Pack 1",
            ),
        ];
        for (build, kind, display, expected) in cases {
            assert_eq!(
                os_product(&os(build, kind, display)).as_deref(),
                Ok(expected),
                "{build} {kind}"
            );
        }
        // A client build the table does not know yet is named from DisplayVersion.
        assert_eq!(
            os_product(&os("10.0.27000.1", "client", "26H1")).as_deref(),
            Ok("Windows 11 Version 26H1 for x64-based Systems")
        );
        let mut arm = os("10.0.22631.3007", "client", "23H2");
        arm.arch = "aarch64".into();
        assert_eq!(
            os_product(&arm).unwrap(),
            "Windows 11 Version 23H2 for ARM64-based Systems"
        );
    }

    #[test]
    fn unknown_windows_is_an_error_with_the_reason() {
        assert!(
            os_product(&os("", "client", ""))
                .unwrap_err()
                .contains("no build")
        );
        assert!(
            os_product(&os("10.0.31000.1", "server", ""))
                .unwrap_err()
                .contains("31000")
        );
        assert!(
            os_product(&os("5.1.2600.5512", "client", ""))
                .unwrap_err()
                .contains("2600")
        );
        let mut riscv = os("10.0.19045.1", "client", "22H2");
        riscv.arch = "riscv64".into();
        assert!(os_product(&riscv).unwrap_err().contains("riscv64"));
    }

    #[test]
    fn programs_are_named_where_their_version_counts() {
        assert_eq!(
            program_product("Microsoft Edge", "120.0.2210.91", "Microsoft Corporation"),
            Some(ProgramProduct::Versioned {
                product: "Microsoft Edge (Chromium-based)".into(),
                prefix: false,
                version: "120.0.2210.91".into()
            })
        );
        assert_eq!(
            program_product(
                "Microsoft .NET Runtime - 8.0.0 (x64)",
                "64.0.23.53103",
                "Microsoft Corporation"
            ),
            Some(ProgramProduct::Versioned {
                product: ".NET 8.0".into(),
                prefix: false,
                version: "8.0.0".into()
            })
        );
        assert_eq!(
            program_product("PowerShell 7-x64", "7.4.0.0", "Microsoft Corporation"),
            Some(ProgramProduct::Versioned {
                product: "PowerShell 7.4".into(),
                prefix: false,
                version: "7.4.0.0".into()
            })
        );
        for office in [
            "Microsoft 365 Apps for enterprise - en-us",
            "Microsoft Office Professional Plus 2019 - en-us",
            "Microsoft Exchange Server 2019 Cumulative Update 13",
            "Microsoft SQL Server 2022 (64-bit)",
            "Visual Studio Professional 2022",
        ] {
            assert!(
                matches!(
                    program_product(office, "16.0.1", "Microsoft Corporation"),
                    Some(ProgramProduct::NotAssessed { .. })
                ),
                "{office}"
            );
        }
        assert_eq!(
            program_product("7-Zip 23.01 (x64)", "23.01", "Igor Pavlov"),
            None
        );
    }
}
