//! Windows inventory, the reading half: the registry (`CurrentVersion`, the `Uninstall` keys),
//! WMI (`Win32_QuickFixEngineering`), the Windows Update Agent's history (COM) and the IP
//! helper's socket tables. Whatever a call cannot deliver becomes a [`Partial`] with the
//! reason; a COM query that does not answer is given up after [`COM_TIMEOUT`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_NO_MORE_ITEMS, ERROR_SUCCESS,
};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_32KEY, KEY_WOW64_64KEY, RRF_RT_REG_DWORD,
    RRF_RT_REG_SZ, RegCloseKey, RegDeleteKeyValueW, RegEnumKeyExW, RegGetValueW, RegOpenKeyExW,
};

use super::windows::{
    self as parse, CurrentVersion, HistoryEntry, QfeRow, SocketRow, UninstallEntry,
};
use super::{Connection, Hotfix, Inventory, OsInfo, Partial, Program};

/// How long a WMI or Windows Update query may take before it counts as hung.
pub const COM_TIMEOUT: Duration = Duration::from_secs(120);

/// This Windows host's inventory.
pub fn collect() -> Inventory {
    let mut partial = Vec::new();
    let os = os(&mut partial);
    let programs = programs(&mut partial);
    let hotfixes = hotfixes(&mut partial);
    let connections = connections(&mut partial);
    Inventory {
        os,
        packages: Vec::new(),
        hotfixes,
        programs,
        connections,
        partial,
    }
}

fn os(partial: &mut Vec<Partial>) -> OsInfo {
    const PATH: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";
    let arch = std::env::consts::ARCH;
    let key = match Key::open(HKEY_LOCAL_MACHINE, PATH, KEY_WOW64_64KEY) {
        Ok(key) => key,
        Err(err) => {
            partial.push(Partial::new("os", format!(r"HKLM\{PATH}: {err}")));
            return parse::os_info(&CurrentVersion::default(), arch, &mut Vec::new());
        }
    };
    let values = CurrentVersion {
        product_name: key.string("ProductName"),
        edition_id: key.string("EditionID"),
        display_version: key.string("DisplayVersion"),
        release_id: key.string("ReleaseId"),
        current_build: key
            .string("CurrentBuild")
            .or_else(|| key.string("CurrentBuildNumber")),
        current_version: key.string("CurrentVersion"),
        major: key.dword("CurrentMajorVersionNumber"),
        minor: key.dword("CurrentMinorVersionNumber"),
        ubr: key.dword("UBR"),
        installation_type: key.string("InstallationType"),
    };
    let mut os = parse::os_info(&values, arch, partial);
    os.boot_time = Some(sysinfo::System::boot_time() as i64).filter(|&t| t > 0);
    os
}

fn programs(partial: &mut Vec<Partial>) -> Vec<Program> {
    const PATH: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
    let mut entries = Vec::new();
    for (view, name) in [(KEY_WOW64_64KEY, "64-bit"), (KEY_WOW64_32KEY, "32-bit")] {
        let key = match Key::open(HKEY_LOCAL_MACHINE, PATH, view) {
            Ok(key) => key,
            // No 32-bit programs registered (or a 32-bit Windows): nothing is missing.
            Err(err) if view == KEY_WOW64_32KEY && err.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            Err(err) => {
                partial.push(Partial::new(
                    "programs",
                    format!(r"HKLM\{PATH} ({name}): {err}"),
                ));
                continue;
            }
        };
        for subkey in key.subkeys() {
            let Ok(entry) = Key::open(key.0, &subkey, view) else {
                continue;
            };
            entries.push(UninstallEntry {
                display_name: entry.string("DisplayName"),
                display_version: entry.string("DisplayVersion"),
                publisher: entry.string("Publisher"),
                parent_key_name: entry.string("ParentKeyName"),
            });
        }
    }
    parse::programs(entries)
}

fn hotfixes(partial: &mut Vec<Partial>) -> Vec<Hotfix> {
    let qfe = on_com_thread("Win32_QuickFixEngineering", qfe_rows).unwrap_or_else(|reason| {
        partial.push(Partial::new("hotfixes", reason));
        Vec::new()
    });
    let history =
        on_com_thread("Windows Update history", update_history).unwrap_or_else(|reason| {
            partial.push(Partial::new("hotfixes", reason));
            Vec::new()
        });
    parse::hotfixes(&qfe, &history)
}

/// Runs `query` on a thread of its own with COM initialised, and gives up on it after
/// [`COM_TIMEOUT`] (the thread is left to finish or hang on its own).
fn on_com_thread<T: Send + 'static>(
    what: &'static str,
    query: fn() -> windows::core::Result<T>,
) -> Result<T, String> {
    use windows::Win32::System::Com::{COINIT_MULTITHREADED, CoInitializeEx, CoUninitialize};
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("inventory: {what}"))
        .spawn(move || {
            // SAFETY: balanced by CoUninitialize on this thread when initialisation succeeded.
            let init = unsafe { CoInitializeEx(None, COINIT_MULTITHREADED) };
            let result = if init.is_ok() {
                let result = query();
                unsafe { CoUninitialize() };
                result
            } else {
                Err(init.into())
            };
            let _ = tx.send(result.map_err(|e| format!("{what}: {e}")));
        });
    if let Err(err) = spawned {
        return Err(format!("{what}: cannot start a thread: {err}"));
    }
    match rx.recv_timeout(COM_TIMEOUT) {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{what}: no answer within {} s",
            COM_TIMEOUT.as_secs()
        )),
    }
}

fn qfe_rows() -> windows::core::Result<Vec<QfeRow>> {
    use windows::Win32::System::Com::{CLSCTX_INPROC_SERVER, CoCreateInstance};
    use windows::Win32::System::Variant::{VARIANT, VT_BSTR};
    use windows::Win32::System::Wmi::{
        IWbemClassObject, IWbemLocator, WBEM_FLAG_FORWARD_ONLY, WBEM_FLAG_RETURN_IMMEDIATELY,
        WBEM_INFINITE, WbemLocator,
    };
    use windows::core::{BSTR, HSTRING};
    // SAFETY: COM calls on a thread that initialised COM; every out-parameter is owned here.
    unsafe {
        let locator: IWbemLocator = CoCreateInstance(&WbemLocator, None, CLSCTX_INPROC_SERVER)?;
        let services = locator.ConnectServer(
            &BSTR::from(r"ROOT\CIMV2"),
            &BSTR::new(),
            &BSTR::new(),
            &BSTR::new(),
            0,
            &BSTR::new(),
            None,
        )?;
        let results = services.ExecQuery(
            &BSTR::from("WQL"),
            &BSTR::from("SELECT HotFixID, Description, InstalledOn FROM Win32_QuickFixEngineering"),
            WBEM_FLAG_FORWARD_ONLY | WBEM_FLAG_RETURN_IMMEDIATELY,
            None,
        )?;
        // The string properties come as VT_BSTR (VT_NULL when unset). Read directly: the
        // VARIANT-to-BSTR helpers go through propsys.dll, parts of which Wine lacks.
        let text = |object: &IWbemClassObject, name: &str| -> String {
            let mut value = VARIANT::default();
            if object
                .Get(&HSTRING::from(name), 0, &mut value, None, None)
                .is_err()
            {
                return String::new();
            }
            let inner = &value.Anonymous.Anonymous;
            if inner.vt == VT_BSTR {
                inner.Anonymous.bstrVal.to_string()
            } else {
                String::new()
            }
        };
        let mut rows = Vec::new();
        loop {
            let mut objects = [None];
            let mut returned = 0;
            results
                .Next(WBEM_INFINITE, &mut objects, &mut returned)
                .ok()?;
            let Some(object) = objects[0].take().filter(|_| returned > 0) else {
                break;
            };
            rows.push(QfeRow {
                hotfix_id: text(&object, "HotFixID"),
                description: text(&object, "Description"),
                installed_on: text(&object, "InstalledOn"),
            });
        }
        Ok(rows)
    }
}

fn update_history() -> windows::core::Result<Vec<HistoryEntry>> {
    use windows::Win32::System::Com::{CLSCTX_INPROC_SERVER, CoCreateInstance};
    use windows::Win32::System::UpdateAgent::{IUpdateSession, UpdateSession};
    // SAFETY: COM calls on a thread that initialised COM.
    unsafe {
        let session: IUpdateSession = CoCreateInstance(&UpdateSession, None, CLSCTX_INPROC_SERVER)?;
        let searcher = session.CreateUpdateSearcher()?;
        let total = searcher.GetTotalHistoryCount()?;
        if total <= 0 {
            return Ok(Vec::new());
        }
        let entries = searcher.QueryHistory(0, total)?;
        let mut history = Vec::new();
        for i in 0..entries.Count()? {
            let entry = entries.get_Item(i)?;
            history.push(HistoryEntry {
                title: entry.Title().map(|t| t.to_string()).unwrap_or_default(),
                date: entry.Date().ok().and_then(parse::ole_date),
                operation: entry.Operation().map(|o| o.0).unwrap_or(0),
                result_code: entry.ResultCode().map(|r| r.0).unwrap_or(0),
            });
        }
        Ok(history)
    }
}

pub fn connections(partial: &mut Vec<Partial>) -> Vec<Connection> {
    let mut rows = Vec::new();
    for (what, table) in [
        ("TCP (IPv4)", tcp4 as fn() -> Result<Vec<SocketRow>, u32>),
        ("TCP (IPv6)", tcp6),
        ("UDP (IPv4)", udp4),
        ("UDP (IPv6)", udp6),
    ] {
        match table() {
            Ok(found) => rows.extend(found),
            Err(code) => partial.push(Partial::new(
                "connections",
                format!(
                    "{what} table: {}",
                    std::io::Error::from_raw_os_error(code as i32)
                ),
            )),
        }
    }
    if !rows.is_empty() && rows.iter().all(|r| r.pid == 0) {
        // Windows always has owned sockets (svchost's listeners); Wine fills in no owners.
        partial.push(Partial::new(
            "connections",
            "the socket tables name no owning process for any socket",
        ));
    }
    let mut system = sysinfo::System::new();
    system.refresh_processes(sysinfo::ProcessesToUpdate::All, true);
    parse::connections(rows, |pid| {
        system
            .process(sysinfo::Pid::from_u32(pid))
            .map(|p| p.name().to_string_lossy().into_owned())
    })
}

/// Network-order port in the low 16 bits of a table's port field.
fn port(field: u32) -> u16 {
    u16::from_be(field as u16)
}

fn tcp4() -> Result<Vec<SocketRow>, u32> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
    };
    table::<MIB_TCPROW_OWNER_PID>(|buf, size| unsafe {
        windows_sys::Win32::NetworkManagement::IpHelper::GetExtendedTcpTable(
            buf,
            size,
            0,
            AF_INET,
            TCP_TABLE_OWNER_PID_ALL,
            0,
        )
    })
    .map(|rows| {
        rows.iter()
            .map(|r| SocketRow {
                proto: "tcp",
                local_addr: IpAddr::V4(Ipv4Addr::from(r.dwLocalAddr.to_ne_bytes())),
                local_port: port(r.dwLocalPort),
                remote: Some((
                    IpAddr::V4(Ipv4Addr::from(r.dwRemoteAddr.to_ne_bytes())),
                    port(r.dwRemotePort),
                )),
                state: Some(r.dwState),
                pid: r.dwOwningPid,
            })
            .collect()
    })
}

fn tcp6() -> Result<Vec<SocketRow>, u32> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        MIB_TCP6ROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
    };
    table::<MIB_TCP6ROW_OWNER_PID>(|buf, size| unsafe {
        windows_sys::Win32::NetworkManagement::IpHelper::GetExtendedTcpTable(
            buf,
            size,
            0,
            AF_INET6,
            TCP_TABLE_OWNER_PID_ALL,
            0,
        )
    })
    .map(|rows| {
        rows.iter()
            .map(|r| SocketRow {
                proto: "tcp",
                local_addr: v6(r.ucLocalAddr),
                local_port: port(r.dwLocalPort),
                remote: Some((v6(r.ucRemoteAddr), port(r.dwRemotePort))),
                state: Some(r.dwState),
                pid: r.dwOwningPid,
            })
            .collect()
    })
}

fn udp4() -> Result<Vec<SocketRow>, u32> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        MIB_UDPROW_OWNER_PID, UDP_TABLE_OWNER_PID,
    };
    table::<MIB_UDPROW_OWNER_PID>(|buf, size| unsafe {
        windows_sys::Win32::NetworkManagement::IpHelper::GetExtendedUdpTable(
            buf,
            size,
            0,
            AF_INET,
            UDP_TABLE_OWNER_PID,
            0,
        )
    })
    .map(|rows| {
        rows.iter()
            .map(|r| SocketRow {
                proto: "udp",
                local_addr: IpAddr::V4(Ipv4Addr::from(r.dwLocalAddr.to_ne_bytes())),
                local_port: port(r.dwLocalPort),
                remote: None,
                state: None,
                pid: r.dwOwningPid,
            })
            .collect()
    })
}

fn udp6() -> Result<Vec<SocketRow>, u32> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        MIB_UDP6ROW_OWNER_PID, UDP_TABLE_OWNER_PID,
    };
    table::<MIB_UDP6ROW_OWNER_PID>(|buf, size| unsafe {
        windows_sys::Win32::NetworkManagement::IpHelper::GetExtendedUdpTable(
            buf,
            size,
            0,
            AF_INET6,
            UDP_TABLE_OWNER_PID,
            0,
        )
    })
    .map(|rows| {
        rows.iter()
            .map(|r| SocketRow {
                proto: "udp",
                local_addr: v6(r.ucLocalAddr),
                local_port: port(r.dwLocalPort),
                remote: None,
                state: None,
                pid: r.dwOwningPid,
            })
            .collect()
    })
}

const AF_INET: u32 = windows_sys::Win32::Networking::WinSock::AF_INET as u32;
const AF_INET6: u32 = windows_sys::Win32::Networking::WinSock::AF_INET6 as u32;

/// An IPv6 address; IPv4-mapped ones as the IPv4 address they carry.
fn v6(bytes: [u8; 16]) -> IpAddr {
    let addr = Ipv6Addr::from(bytes);
    addr.to_ipv4_mapped().map_or(IpAddr::V6(addr), IpAddr::V4)
}

/// Fetches an IP helper table (`DWORD dwNumEntries` then the rows) of rows `R`, growing the
/// buffer while the table grows between the size query and the read.
fn table<R: Copy>(fetch: impl Fn(*mut core::ffi::c_void, *mut u32) -> u32) -> Result<Vec<R>, u32> {
    let mut size: u32 = 0;
    let mut code = fetch(std::ptr::null_mut(), &mut size);
    for _ in 0..5 {
        if code != ERROR_INSUFFICIENT_BUFFER {
            break;
        }
        // u64 elements: the rows need 4-byte alignment, the buffer gets 8.
        let mut buffer = vec![0u64; (size as usize).div_ceil(8) + 1];
        code = fetch(buffer.as_mut_ptr().cast(), &mut size);
        if code == ERROR_SUCCESS {
            let base = buffer.as_ptr().cast::<u8>();
            // SAFETY: the call wrote a table header and that many rows into `buffer`; the rows
            // start at the first field offset aligned for R after the u32 count.
            let count = unsafe { base.cast::<u32>().read() } as usize;
            let offset = std::mem::size_of::<u32>().next_multiple_of(std::mem::align_of::<R>());
            let available = (buffer.len() * 8).saturating_sub(offset) / std::mem::size_of::<R>();
            let rows = unsafe { base.add(offset).cast::<R>() };
            return Ok((0..count.min(available))
                .map(|i| unsafe { rows.add(i).read_unaligned() })
                .collect());
        }
    }
    if code == ERROR_SUCCESS {
        // The size query itself succeeded: an empty table.
        return Ok(Vec::new());
    }
    Err(code)
}

/// The machine's own id, `HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid`: the same until
/// Windows is reinstalled (the agent's default host id is made from it).
pub fn machine_guid() -> std::io::Result<String> {
    let key = Key::open(
        HKEY_LOCAL_MACHINE,
        r"SOFTWARE\Microsoft\Cryptography",
        KEY_WOW64_64KEY,
    )?;
    key.string("MachineGuid").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "MachineGuid is missing or empty",
        )
    })
}

/// A string value under `HKLM\path` (64-bit view); `None` when the key or value is absent
/// or empty.
pub fn hklm_string(path: &str, name: &str) -> Option<String> {
    Key::open(HKEY_LOCAL_MACHINE, path, KEY_WOW64_64KEY)
        .ok()?
        .string(name)
}

/// The roots of the fixed drives (`C:\`, `D:\`, ...): what a Windows host sweeps by default.
pub fn fixed_drives() -> Vec<std::path::PathBuf> {
    use windows_sys::Win32::Storage::FileSystem::{GetDriveTypeW, GetLogicalDrives};
    // DRIVE_FIXED (WindowsProgramming, a feature pulled in for this one constant otherwise).
    const DRIVE_FIXED: u32 = 3;
    // SAFETY: no arguments; a bit mask of the drives present.
    let mask = unsafe { GetLogicalDrives() };
    (0u8..26)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| format!("{}:\\", char::from(b'A' + i)))
        .filter(|root| {
            let wide_root = wide(root);
            // SAFETY: `wide_root` is NUL-terminated.
            unsafe { GetDriveTypeW(wide_root.as_ptr()) == DRIVE_FIXED }
        })
        .map(std::path::PathBuf::from)
        .collect()
}

/// Deletes the value `name` under `HKLM\path` (64-bit view); absent already is fine.
pub fn delete_hklm_value(path: &str, name: &str) -> std::io::Result<()> {
    let key = Key::open(
        HKEY_LOCAL_MACHINE,
        path,
        windows_sys::Win32::System::Registry::KEY_SET_VALUE | KEY_WOW64_64KEY,
    )?;
    let name = wide(name);
    // SAFETY: the key is open; `name` is NUL-terminated.
    let code = unsafe { RegDeleteKeyValueW(key.0, std::ptr::null(), name.as_ptr()) };
    match code {
        ERROR_SUCCESS | windows_sys::Win32::Foundation::ERROR_FILE_NOT_FOUND => Ok(()),
        code => Err(std::io::Error::from_raw_os_error(code as i32)),
    }
}

/// An open registry key, closed on drop.
struct Key(HKEY);

impl Key {
    /// Opens `path` under `parent` for reading, in the 64-bit or 32-bit registry view.
    fn open(parent: HKEY, path: &str, view: u32) -> std::io::Result<Key> {
        let path = wide(path);
        let mut key: HKEY = std::ptr::null_mut();
        // SAFETY: `path` is NUL-terminated; `key` receives the handle.
        let code = unsafe { RegOpenKeyExW(parent, path.as_ptr(), 0, KEY_READ | view, &mut key) };
        if code != ERROR_SUCCESS {
            return Err(std::io::Error::from_raw_os_error(code as i32));
        }
        Ok(Key(key))
    }

    /// A string value (`REG_SZ`, or `REG_EXPAND_SZ` expanded); `None` when absent or empty.
    fn string(&self, name: &str) -> Option<String> {
        let name = wide(name);
        // REG_SZ only: REG_EXPAND_SZ values come back expanded as REG_SZ (asking for
        // RRF_RT_REG_EXPAND_SZ without RRF_NOEXPAND is an invalid-parameter error).
        let flags = RRF_RT_REG_SZ;
        let mut bytes: u32 = 0;
        // SAFETY: a size query: no buffer, `bytes` receives the size.
        let code = unsafe {
            RegGetValueW(
                self.0,
                std::ptr::null(),
                name.as_ptr(),
                flags,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut bytes,
            )
        };
        if code != ERROR_SUCCESS || bytes == 0 {
            return None;
        }
        let mut buffer = vec![0u16; (bytes as usize).div_ceil(2)];
        // SAFETY: `buffer` holds `bytes` bytes.
        let code = unsafe {
            RegGetValueW(
                self.0,
                std::ptr::null(),
                name.as_ptr(),
                flags,
                std::ptr::null_mut(),
                buffer.as_mut_ptr().cast(),
                &mut bytes,
            )
        };
        if code != ERROR_SUCCESS {
            return None;
        }
        let len = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
        let text = String::from_utf16_lossy(&buffer[..len]);
        (!text.trim().is_empty()).then(|| text.trim().to_owned())
    }

    fn dword(&self, name: &str) -> Option<u32> {
        let name = wide(name);
        let mut value: u32 = 0;
        let mut bytes = std::mem::size_of::<u32>() as u32;
        // SAFETY: `value` holds the 4 bytes a REG_DWORD needs.
        let code = unsafe {
            RegGetValueW(
                self.0,
                std::ptr::null(),
                name.as_ptr(),
                RRF_RT_REG_DWORD,
                std::ptr::null_mut(),
                (&mut value as *mut u32).cast(),
                &mut bytes,
            )
        };
        (code == ERROR_SUCCESS).then_some(value)
    }

    /// The names of the key's subkeys.
    fn subkeys(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut buffer = vec![0u16; 256];
        for index in 0.. {
            let mut len = buffer.len() as u32;
            // SAFETY: `buffer` holds `len` UTF-16 units; the other out-parameters are unused.
            let code = unsafe {
                RegEnumKeyExW(
                    self.0,
                    index,
                    buffer.as_mut_ptr(),
                    &mut len,
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            match code {
                ERROR_SUCCESS => names.push(String::from_utf16_lossy(&buffer[..len as usize])),
                ERROR_NO_MORE_ITEMS => break,
                // A name longer than the buffer (key names stop at 255) or a key that went
                // away while listed: skip it.
                _ => continue,
            }
        }
        names
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegOpenKeyExW and is closed once.
        unsafe { RegCloseKey(self.0) };
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_guid_is_read() {
        let guid = machine_guid().unwrap();
        assert_eq!(guid.len(), 36, "{guid}");
        assert_eq!(guid.matches('-').count(), 4, "{guid}");
        assert_eq!(guid, machine_guid().unwrap());
    }

    #[test]
    fn the_system_drive_is_a_fixed_drive_and_a_missing_value_reads_as_none() {
        let drives = fixed_drives();
        assert!(
            drives.contains(&std::path::PathBuf::from(r"C:\")),
            "{drives:?}"
        );
        assert_eq!(
            hklm_string(r"SOFTWARE\Hygiene\NoSuchKey", "Collector"),
            None
        );
        assert!(delete_hklm_value(r"SOFTWARE\Microsoft", "NoSuchValueHere").is_ok());
    }

    /// Through Wine or real Windows: the registry build keys, both Uninstall views, the socket
    /// tables and the update queries answer, or say why not.
    #[test]
    fn this_host_inventory_is_read_or_partial() {
        let inventory = collect();
        assert_eq!(inventory.os.family, "windows");
        let os_gaps: Vec<&Partial> = inventory
            .partial
            .iter()
            .filter(|p| p.source == "os")
            .collect();
        if os_gaps.is_empty() {
            assert!(
                inventory.os.build.starts_with("10.0."),
                "{:?}",
                inventory.os
            );
            assert_eq!(inventory.os.build.split('.').count(), 4);
        }
        assert!(
            !inventory.os.product_name.is_empty(),
            "{:?}",
            inventory.partial
        );
        // Our own listening socket shows up with our process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut gaps = Vec::new();
        let found = connections(&mut gaps);
        let ours: Vec<&Connection> = found
            .iter()
            .filter(|c| c.proto == "tcp" && c.local_port == port)
            .collect();
        assert!(
            !ours.is_empty(),
            "port {port} not among {} sockets",
            found.len()
        );
        assert_eq!(ours[0].state, "LISTEN");
        // Ours, or unknown where the tables name no owners (Wine), which is then partial.
        match ours[0].pid {
            Some(pid) => assert_eq!(pid, std::process::id()),
            None => assert!(gaps.iter().any(|g| g.source == "connections"), "{gaps:?}"),
        }
        for gap in &inventory.partial {
            assert!(!gap.reason.is_empty());
            eprintln!("partial: {}: {}", gap.source, gap.reason);
        }
    }
}
