//! Windows inventory, the parsing half: the OS build from the `CurrentVersion` registry values,
//! programs from the `Uninstall` keys, installed updates from `Win32_QuickFixEngineering` and
//! the Windows Update Agent's history, sockets from the IP helper tables. These are plain
//! functions over the values the readers (`windows_api.rs`, Windows only) fetch, so they are
//! tested on every platform with fixtures shaped as Microsoft documents them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Connection, Hotfix, OsInfo, Partial, Program};

/// The values of `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion` the OS facts come from;
/// `None` where the value is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentVersion {
    pub product_name: Option<String>,
    pub edition_id: Option<String>,
    /// `22H2`; Windows 10 before 20H2 has only `ReleaseId` (`2004`).
    pub display_version: Option<String>,
    pub release_id: Option<String>,
    /// `19045`.
    pub current_build: Option<String>,
    /// `6.3` on every Windows since 8.1, kept for compatibility.
    pub current_version: Option<String>,
    /// `CurrentMajorVersionNumber` and `CurrentMinorVersionNumber` (10 and 0), Windows 10 on.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Update build revision: the number after the build (`3930` in `10.0.19045.3930`).
    pub ubr: Option<u32>,
    /// `Client`, `Server` or `Server Core`.
    pub installation_type: Option<String>,
}

/// The OS facts `values` give, with a `partial` entry for each fact they cannot.
pub fn os_info(values: &CurrentVersion, arch: &str, partial: &mut Vec<Partial>) -> OsInfo {
    let mut os = OsInfo {
        family: "windows".to_owned(),
        arch: arch.to_owned(),
        edition: values.edition_id.clone().unwrap_or_default(),
        display_version: values
            .display_version
            .clone()
            .or_else(|| values.release_id.clone())
            .unwrap_or_default(),
        ..OsInfo::default()
    };
    let build: Option<u32> = values
        .current_build
        .as_deref()
        .and_then(|b| b.trim().parse().ok());
    // Windows 10 and 11 still write "Windows 10" into ProductName; build 22000 and up is 11.
    os.product_name = match (&values.product_name, build) {
        (Some(name), Some(build)) if build >= 22000 && name.contains("Windows 10") => {
            name.replacen("Windows 10", "Windows 11", 1)
        }
        (Some(name), _) => name.clone(),
        (None, _) => {
            partial.push(Partial::new("os", "no ProductName in CurrentVersion"));
            String::new()
        }
    };
    let major_minor = match (values.major, values.minor) {
        (Some(major), Some(minor)) => Some(format!("{major}.{minor}")),
        // Windows 10 before the Major/Minor values: 10.0 for every build from 10240 on.
        _ if build.is_some_and(|b| b >= 10240) => Some("10.0".to_owned()),
        _ => values.current_version.clone(),
    };
    os.build = match (major_minor, build) {
        (Some(major_minor), Some(build)) => match values.ubr {
            Some(ubr) => format!("{major_minor}.{build}.{ubr}"),
            None => {
                partial.push(Partial::new(
                    "os",
                    "no UBR in CurrentVersion: the build's revision is unknown",
                ));
                format!("{major_minor}.{build}")
            }
        },
        _ => {
            partial.push(Partial::new("os", "no CurrentBuild in CurrentVersion"));
            String::new()
        }
    };
    os.kernel = os.build.clone();
    os.pretty_name = [os.product_name.as_str(), os.display_version.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    os.installation_type = match values.installation_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("client") => "client".to_owned(),
        Some(t) if t.eq_ignore_ascii_case("server") => "server".to_owned(),
        Some(t) if t.eq_ignore_ascii_case("server core") => "server core".to_owned(),
        Some(other) => other.to_ascii_lowercase(),
        None => {
            partial.push(Partial::new("os", "no InstallationType in CurrentVersion"));
            String::new()
        }
    };
    os
}

/// The values of one subkey of an `Uninstall` key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UninstallEntry {
    pub display_name: Option<String>,
    pub display_version: Option<String>,
    pub publisher: Option<String>,
    /// Set on entries that belong to another (an update of a product): not a program.
    pub parent_key_name: Option<String>,
}

/// Installed programs from the 64-bit and 32-bit `Uninstall` keys: entries with a name, not
/// the child entries of updates, each program once, sorted.
pub fn programs(entries: impl IntoIterator<Item = UninstallEntry>) -> Vec<Program> {
    let mut programs: Vec<Program> = entries
        .into_iter()
        .filter(|e| e.parent_key_name.is_none())
        .filter_map(|e| {
            let name = e.display_name?.trim().to_owned();
            (!name.is_empty()).then(|| Program {
                name,
                version: e.display_version.unwrap_or_default().trim().to_owned(),
                publisher: e.publisher.unwrap_or_default().trim().to_owned(),
            })
        })
        .collect();
    programs.sort_by(|a, b| {
        (&a.name, &a.version, &a.publisher).cmp(&(&b.name, &b.version, &b.publisher))
    });
    programs.dedup();
    programs
}

/// One `Win32_QuickFixEngineering` instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QfeRow {
    /// `KB5034441`; older systems also list `File 1` and the like.
    pub hotfix_id: String,
    /// `Security Update`, `Update`, `Hotfix`.
    pub description: String,
    /// `1/10/2024` (month/day/year) or, on older systems, a FILETIME in hex.
    pub installed_on: String,
}

/// One entry of the Windows Update Agent's history (`IUpdateSearcher::QueryHistory`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// `2024-01 Cumulative Update for Windows 10 Version 22H2 for x64-based Systems (KB5034122)`.
    pub title: String,
    /// `YYYY-MM-DD`, when the operation ran.
    pub date: Option<String>,
    /// `UpdateOperation`: 1 installation, 2 uninstallation.
    pub operation: i32,
    /// `OperationResultCode`: 2 succeeded, 3 succeeded with errors; others did not happen.
    pub result_code: i32,
}

/// The installed updates: QFE's list, and what the update history shows was installed and not
/// uninstalled since (QFE alone misses many updates, the history misses those installed by
/// hand). One entry per KB, by KB number.
pub fn hotfixes(qfe: &[QfeRow], history: &[HistoryEntry]) -> Vec<Hotfix> {
    let mut found: BTreeMap<String, Hotfix> = BTreeMap::new();
    for row in qfe {
        let Some(kb) = kb_number(&row.hotfix_id) else {
            continue;
        };
        found.insert(
            kb.clone(),
            Hotfix {
                kb,
                title: row.description.trim().to_owned(),
                installed_on: qfe_date(&row.installed_on),
            },
        );
    }
    let mut ordered: Vec<&HistoryEntry> = history.iter().collect();
    // Oldest first, so that an uninstall after an install removes it, and a reinstall returns.
    ordered.sort_by(|a, b| a.date.cmp(&b.date));
    for entry in ordered {
        let succeeded = matches!(entry.result_code, 2 | 3);
        let Some(kb) = kb_in_title(&entry.title).filter(|_| succeeded) else {
            continue;
        };
        match entry.operation {
            1 => {
                let hotfix = found.entry(kb.clone()).or_insert_with(|| Hotfix {
                    kb,
                    title: String::new(),
                    installed_on: None,
                });
                // The history's title names the update; QFE's only its kind.
                hotfix.title = entry.title.trim().to_owned();
                if hotfix.installed_on.is_none() {
                    hotfix.installed_on = entry.date.clone();
                }
            }
            2 => {
                found.remove(&kb);
            }
            _ => {}
        }
    }
    found.into_values().collect()
}

/// `KB5034441` from a QFE `HotFixID` (`KB5034441`, `kb5034441`); `None` for `File 1` and such.
fn kb_number(id: &str) -> Option<String> {
    let id = id.trim();
    let digits = id
        .get(..2)
        .filter(|p| p.eq_ignore_ascii_case("kb"))
        .map(|_| &id[2..])?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("KB{digits}"))
}

/// The KB number an update title carries, as `(KB5034122)` at its end or anywhere in it.
pub fn kb_in_title(title: &str) -> Option<String> {
    let upper = title.to_ascii_uppercase();
    let mut rest = upper.as_str();
    while let Some(at) = rest.find("KB") {
        let digits: String = rest[at + 2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let word_start = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        if word_start && digits.len() >= 6 {
            return Some(format!("KB{digits}"));
        }
        rest = &rest[at + 2..];
    }
    None
}

/// `YYYY-MM-DD` from QFE's `InstalledOn`: `M/D/YYYY`, or a FILETIME written in hex as some
/// Windows versions do.
pub fn qfe_date(text: &str) -> Option<String> {
    let text = text.trim();
    let parts: Vec<&str> = text.split('/').collect();
    if let [month, day, year] = parts.as_slice() {
        let (m, d, y): (u32, u32, u32) =
            (month.parse().ok()?, day.parse().ok()?, year.parse().ok()?);
        return ((1..=12).contains(&m) && (1..=31).contains(&d) && (1601..=9999).contains(&y))
            .then(|| format!("{y:04}-{m:02}-{d:02}"));
    }
    let filetime = u64::from_str_radix(text.trim_start_matches("0x"), 16).ok()?;
    filetime_date(filetime)
}

/// `YYYY-MM-DD` (UTC) of a FILETIME: 100 ns ticks since 1601-01-01.
pub fn filetime_date(ticks: u64) -> Option<String> {
    const UNIX_EPOCH_TICKS: u64 = 116_444_736_000_000_000;
    let seconds = ticks.checked_sub(UNIX_EPOCH_TICKS)? / 10_000_000;
    unix_date(seconds as i64)
}

/// `YYYY-MM-DD` of an OLE automation date (days since 1899-12-30), as WUA reports dates.
pub fn ole_date(days: f64) -> Option<String> {
    if !days.is_finite() || days < 1.0 {
        return None;
    }
    const OLE_TO_UNIX_DAYS: f64 = 25_569.0;
    unix_date(((days - OLE_TO_UNIX_DAYS) * 86_400.0) as i64)
}

fn unix_date(seconds: i64) -> Option<String> {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (1601..=9999)
        .contains(&year)
        .then(|| format!("{year:04}-{month:02}-{day:02}"))
}

/// One row of `GetExtendedTcpTable`/`GetExtendedUdpTable` (`*_OWNER_PID`), ports in host order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRow {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    pub local_addr: IpAddr,
    pub local_port: u16,
    /// UDP rows have no remote end.
    pub remote: Option<(IpAddr, u16)>,
    /// `MIB_TCP_STATE` for TCP rows.
    pub state: Option<u32>,
    pub pid: u32,
}

/// Connections from the socket rows, with process names looked up by PID.
pub fn connections(
    rows: Vec<SocketRow>,
    process_name: impl Fn(u32) -> Option<String>,
) -> Vec<Connection> {
    rows.into_iter()
        .map(|row| {
            let unspecified = match row.local_addr {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
            let (remote_addr, remote_port) = row.remote.unwrap_or((unspecified, 0));
            Connection {
                proto: row.proto.to_owned(),
                local_addr: row.local_addr.to_string(),
                local_port: row.local_port,
                remote_addr: remote_addr.to_string(),
                remote_port,
                // The names Linux's `ss` uses, so that one query fits every host.
                state: match row.state {
                    Some(state) => tcp_state_name(state).to_owned(),
                    None => "UNCONN".to_owned(),
                },
                // PID 0 is nobody's (a closing socket), or a table that names no owners.
                pid: (row.pid != 0).then_some(row.pid),
                process: (row.pid != 0).then(|| process_name(row.pid)).flatten(),
            }
        })
        .collect()
}

/// `MIB_TCP_STATE` as `ss` names the same state.
pub fn tcp_state_name(state: u32) -> &'static str {
    match state {
        1 => "CLOSE",
        2 => "LISTEN",
        3 => "SYN_SENT",
        4 => "SYN_RECV",
        5 => "ESTABLISHED",
        6 => "FIN_WAIT1",
        7 => "FIN_WAIT2",
        8 => "CLOSE_WAIT",
        9 => "CLOSING",
        10 => "LAST_ACK",
        11 => "TIME_WAIT",
        12 => "DELETE_TCB",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win10() -> CurrentVersion {
        // As regedit shows a Windows 10 22H2 workstation with the January 2024 update.
        CurrentVersion {
            product_name: Some("Windows 10 Pro".into()),
            edition_id: Some("Professional".into()),
            display_version: Some("22H2".into()),
            release_id: Some("2009".into()),
            current_build: Some("19045".into()),
            current_version: Some("6.3".into()),
            major: Some(10),
            minor: Some(0),
            ubr: Some(3930),
            installation_type: Some("Client".into()),
        }
    }

    #[test]
    fn the_full_build_is_what_fixed_build_compares_with() {
        let mut partial = Vec::new();
        let os = os_info(&win10(), "x86_64", &mut partial);
        assert!(partial.is_empty(), "{partial:?}");
        assert_eq!(os.build, "10.0.19045.3930");
        assert_eq!(os.product_name, "Windows 10 Pro");
        assert_eq!(os.display_version, "22H2");
        assert_eq!(os.installation_type, "client");
        assert_eq!(os.pretty_name, "Windows 10 Pro 22H2");
        assert_eq!(os.family, "windows");
    }

    #[test]
    fn windows_11_and_servers_are_named_right() {
        let mut partial = Vec::new();
        let eleven = CurrentVersion {
            current_build: Some("22631".into()),
            display_version: Some("23H2".into()),
            ubr: Some(3007),
            ..win10()
        };
        let os = os_info(&eleven, "x86_64", &mut partial);
        assert_eq!(os.product_name, "Windows 11 Pro");
        assert_eq!(os.build, "10.0.22631.3007");
        let core = CurrentVersion {
            product_name: Some("Windows Server 2019 Datacenter".into()),
            edition_id: Some("ServerDatacenter".into()),
            display_version: None,
            release_id: Some("1809".into()),
            current_build: Some("17763".into()),
            major: None,
            minor: None,
            ubr: Some(5329),
            installation_type: Some("Server Core".into()),
            ..win10()
        };
        let os = os_info(&core, "x86_64", &mut partial);
        assert!(partial.is_empty(), "{partial:?}");
        assert_eq!(os.build, "10.0.17763.5329");
        assert_eq!(os.display_version, "1809");
        assert_eq!(os.installation_type, "server core");
    }

    #[test]
    fn missing_values_are_partial_not_guessed() {
        let mut partial = Vec::new();
        let bare = CurrentVersion {
            ubr: None,
            installation_type: None,
            ..win10()
        };
        let os = os_info(&bare, "x86_64", &mut partial);
        assert_eq!(os.build, "10.0.19045");
        let reasons: Vec<&str> = partial.iter().map(|p| p.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("UBR") && reasons[1].contains("InstallationType"));
        partial.clear();
        let os = os_info(&CurrentVersion::default(), "x86_64", &mut partial);
        assert_eq!((os.build.as_str(), os.product_name.as_str()), ("", ""));
        assert_eq!(partial.len(), 3, "{partial:?}");
        assert!(partial.iter().all(|p| p.source == "os"));
    }

    #[test]
    fn programs_skip_nameless_and_child_entries_and_appear_once() {
        let entry = |name: Option<&str>, version: &str, parent: Option<&str>| UninstallEntry {
            display_name: name.map(Into::into),
            display_version: Some(version.into()),
            publisher: Some("Microsoft Corporation".into()),
            parent_key_name: parent.map(Into::into),
        };
        let found = programs([
            entry(Some("Microsoft Edge"), "120.0.2210.91", None),
            entry(
                Some("Microsoft 365 Apps for enterprise - en-us"),
                "16.0.17126.20132",
                None,
            ),
            entry(None, "1.0", None),
            entry(
                Some("Update for Microsoft Office 2016 (KB4484103)"),
                "",
                Some("Office16.PROPLUS"),
            ),
            // The same program in the 64-bit and the 32-bit view.
            entry(Some("Microsoft Edge"), "120.0.2210.91", None),
        ]);
        let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "Microsoft 365 Apps for enterprise - en-us",
                "Microsoft Edge"
            ]
        );
        assert_eq!(found[1].version, "120.0.2210.91");
    }

    #[test]
    fn hotfixes_join_qfe_and_the_update_history() {
        let qfe = [
            QfeRow {
                hotfix_id: "KB5033052".into(),
                description: "Update".into(),
                installed_on: "12/13/2023".into(),
            },
            QfeRow {
                hotfix_id: "KB5034122".into(),
                description: "Security Update".into(),
                installed_on: "1/10/2024".into(),
            },
            QfeRow {
                hotfix_id: "File 1".into(),
                description: String::new(),
                installed_on: String::new(),
            },
            // Windows 7 and Server 2008 R2 wrote the date as a hex FILETIME.
            QfeRow {
                hotfix_id: "KB2999226".into(),
                description: "Update".into(),
                installed_on: "01d0b9a6e0b1a000".into(),
            },
        ];
        let history = [
            HistoryEntry {
                title: "2024-01 Cumulative Update for Windows 10 Version 22H2 for x64-based Systems (KB5034122)".into(),
                date: Some("2024-01-10".into()),
                operation: 1,
                result_code: 2,
            },
            HistoryEntry {
                title: "2024-01 Security Update for Windows 10 Version 22H2 for x64-based Systems (KB5034441)".into(),
                date: Some("2024-01-11".into()),
                operation: 1,
                result_code: 4, // failed: not installed
            },
            HistoryEntry {
                title: "Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.403.3015.0)".into(),
                date: Some("2024-01-12".into()),
                operation: 1,
                result_code: 2,
            },
            HistoryEntry {
                title: "2023-12 .NET Framework Update (KB5033052)".into(),
                date: Some("2024-01-20".into()),
                operation: 2,
                result_code: 2,
            },
        ];
        let found = hotfixes(&qfe, &history);
        let kbs: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|h| (h.kb.as_str(), h.installed_on.as_deref()))
            .collect();
        assert_eq!(
            kbs,
            vec![
                ("KB2267602", Some("2024-01-12")),
                ("KB2999226", Some("2015-07-08")),
                ("KB5034122", Some("2024-01-10")),
            ]
        );
        assert!(found[2].title.contains("Cumulative Update"));
    }

    #[test]
    fn dates_and_kb_numbers_parse_or_are_refused() {
        assert_eq!(qfe_date("1/9/2024").as_deref(), Some("2024-01-09"));
        assert_eq!(qfe_date("13/1/2024"), None);
        assert_eq!(qfe_date(""), None);
        assert_eq!(ole_date(45_301.5).as_deref(), Some("2024-01-10"));
        assert_eq!(ole_date(0.0), None);
        assert_eq!(
            kb_in_title("Update (KB890830)").as_deref(),
            Some("KB890830")
        );
        assert_eq!(kb_in_title("no number here, KB12 too short"), None);
        assert_eq!(kb_in_title("BKB5034441"), None);
        assert_eq!(kb_number("kb5034441").as_deref(), Some("KB5034441"));
        assert_eq!(kb_number("File 1"), None);
    }

    #[test]
    fn socket_rows_become_connections_named_as_ss_names_states() {
        let rows = vec![
            SocketRow {
                proto: "tcp",
                local_addr: "10.0.0.5".parse().unwrap(),
                local_port: 49731,
                remote: Some(("203.0.113.9".parse().unwrap(), 443)),
                state: Some(5),
                pid: 4242,
            },
            SocketRow {
                proto: "udp",
                local_addr: "::".parse().unwrap(),
                local_port: 5353,
                remote: None,
                state: None,
                pid: 7,
            },
            SocketRow {
                proto: "tcp",
                local_addr: "10.0.0.5".parse().unwrap(),
                local_port: 49732,
                remote: Some(("203.0.113.9".parse().unwrap(), 443)),
                state: Some(11),
                pid: 0,
            },
        ];
        let found = connections(rows, |pid| (pid == 4242).then(|| "chrome.exe".to_owned()));
        assert_eq!(found[0].state, "ESTABLISHED");
        assert_eq!(found[0].remote_addr, "203.0.113.9");
        assert_eq!(found[0].process.as_deref(), Some("chrome.exe"));
        assert_eq!(found[1].remote_addr, "::");
        assert_eq!(
            (found[1].state.as_str(), found[1].process.as_deref()),
            ("UNCONN", None)
        );
        assert_eq!(tcp_state_name(2), "LISTEN");
        // PID 0 owns nothing: unknown, not the idle process.
        assert_eq!((found[2].state.as_str(), found[2].pid), ("TIME_WAIT", None));
    }
}
