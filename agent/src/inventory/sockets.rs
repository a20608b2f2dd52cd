//! Network sockets on Linux: `/proc/net/{tcp,tcp6,udp,udp6}` for the sockets, and each
//! process's `/proc/PID/fd` links (`socket:[INODE]`) for the process that owns them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::{Connection, Partial};

/// The sockets of this host, with their processes where `/proc` shows them.
pub fn collect(proc_root: &Path, partial: &mut Vec<Partial>) -> Vec<Connection> {
    let mut sockets = Vec::new();
    for (file, proto) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let path = proc_root.join("net").join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => sockets.extend(parse_table(&text, proto)),
            // No IPv6 in this kernel: no tcp6/udp6 file, nothing missing.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => {}
            Err(err) => partial.push(Partial::new(
                "connections",
                format!("{}: {err}", path.display()),
            )),
        }
    }
    let owners = socket_owners(proc_root);
    sockets
        .into_iter()
        .map(|(mut connection, inode)| {
            if let Some((pid, process)) = owners.get(&inode) {
                connection.pid = Some(*pid);
                connection.process = Some(process.clone());
            }
            connection
        })
        .collect()
}

/// The sockets in one `/proc/net` table, each with its inode.
pub fn parse_table(text: &str, proto: &str) -> Vec<(Connection, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local_addr, local_port) = endpoint(fields.get(1)?)?;
            let (remote_addr, remote_port) = endpoint(fields.get(2)?)?;
            let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode = fields.get(9)?.parse().ok()?;
            Some((
                Connection {
                    proto: proto.to_owned(),
                    local_addr: local_addr.to_string(),
                    local_port,
                    remote_addr: remote_addr.to_string(),
                    remote_port,
                    state: state_name(proto, state).to_owned(),
                    pid: None,
                    process: None,
                },
                inode,
            ))
        })
        .collect()
}

/// `ADDR:PORT` as the kernel prints it: the address as 32-bit words in host byte order, the
/// port as a number. IPv4-mapped IPv6 addresses come out as the IPv4 address they carry.
fn endpoint(field: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let addr = match words.as_slice() {
        [word] if addr.len() == 8 => IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes())),
        [a, b, c, d] if addr.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (chunk, word) in bytes.chunks_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some((addr, port))
}

/// The name `ss` gives a socket state.
fn state_name(proto: &str, state: u8) -> &'static str {
    match (proto, state) {
        ("udp", 0x01) => "ESTAB",
        ("udp", 0x07) => "UNCONN",
        (_, 0x01) => "ESTABLISHED",
        (_, 0x02) => "SYN_SENT",
        (_, 0x03) => "SYN_RECV",
        (_, 0x04) => "FIN_WAIT1",
        (_, 0x05) => "FIN_WAIT2",
        (_, 0x06) => "TIME_WAIT",
        (_, 0x07) => "CLOSE",
        (_, 0x08) => "CLOSE_WAIT",
        (_, 0x09) => "LAST_ACK",
        (_, 0x0A) => "LISTEN",
        (_, 0x0B) => "CLOSING",
        (_, 0x0C) => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Socket inode → (pid, process name), from every process whose descriptors we may read
/// (all of them as root; our own otherwise).
fn socket_owners(proc_root: &Path) -> HashMap<u64, (u32, String)> {
    let mut owners = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return owners;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut name = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let name = name.get_or_insert_with(|| {
                std::fs::read_to_string(entry.path().join("comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default()
            });
            owners.entry(inode).or_insert_with(|| (pid, name.clone()));
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 7186 1 0000000000000000 100 0 0 10 0
   1: 0202000A:D2F4 5DB8D822:01BB 01 00000000:00000000 02:000A7E4B 00000000  1000        0 99123 2 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1111 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 7187 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000202000A:01BB 0000000000000000FFFF00005DB8D822:C350 01 00000000:00000000 00:00000000 00000000     0        0 7188 1 0000000000000000 20 4 30 10 -1
   2: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:E3A4 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  512: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1234 2 0000000000000000 0
";

    fn row(c: &Connection) -> String {
        format!(
            "{} {}:{} {}:{} {}",
            c.proto, c.local_addr, c.local_port, c.remote_addr, c.remote_port, c.state
        )
    }

    #[test]
    fn ipv4_tables() {
        let rows: Vec<String> = parse_table(TCP, "tcp")
            .iter()
            .map(|(c, _)| row(c))
            .collect();
        assert_eq!(
            rows,
            vec![
                "tcp 127.0.0.1:5432 0.0.0.0:0 LISTEN",
                "tcp 10.0.2.2:54004 34.216.184.93:443 ESTABLISHED"
            ]
        );
        let udp = parse_table(UDP, "udp");
        assert_eq!(row(&udp[0].0), "udp 0.0.0.0:68 0.0.0.0:0 UNCONN");
        assert_eq!(udp[0].1, 1234);
    }

    #[test]
    fn ipv6_and_ipv4_mapped_addresses() {
        let rows: Vec<String> = parse_table(TCP6, "tcp")
            .iter()
            .map(|(c, _)| row(c))
            .collect();
        assert_eq!(
            rows,
            vec![
                "tcp ::1:4369 :::0 LISTEN",
                "tcp 10.0.2.2:443 34.216.184.93:50000 ESTABLISHED",
                "tcp 2001:db8::1:22 2001:db8::2:58276 TIME_WAIT"
            ]
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text =
            "header\n 0: zz:1 00000000:0000 0A\n 1: 0100007F:0016 00000000:0000 0A 0 0 0 0 0 55\n";
        let rows = parse_table(text, "tcp");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, 55);
    }

    /// On this machine: the listening TCP sockets are those `ss -tln` lists. Other tests of this
    /// process open and close listeners meanwhile, so `ss` runs before and after our read: what
    /// both list must be in ours, and ours may hold more only where this process owns it.
    #[cfg(target_os = "linux")]
    #[test]
    fn listening_tcp_sockets_agree_with_ss() {
        let _ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ss = || -> Option<std::collections::BTreeSet<String>> {
            let out = std::process::Command::new("ss")
                .args(["-Htln"])
                .output()
                .ok()?;
            Some(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|line| {
                        let local = line.split_whitespace().nth(3)?;
                        let (addr, port) = local.rsplit_once(':')?;
                        let addr = addr.trim_start_matches('[').trim_end_matches(']');
                        let addr = addr.split('%').next()?; // interface scope: 127.0.0.53%lo
                        let addr = match addr {
                            "*" => "0.0.0.0".to_owned(),
                            other => other.parse::<IpAddr>().ok()?.to_canonical().to_string(),
                        };
                        Some(format!("{addr}:{port}"))
                    })
                    .collect(),
            )
        };
        let Some(before) = ss() else {
            return; // no ss here
        };
        let mut partial = Vec::new();
        let listening: Vec<Connection> = collect(Path::new("/proc"), &mut partial)
            .into_iter()
            .filter(|c| c.proto == "tcp" && c.state == "LISTEN")
            .collect();
        let after = ss().unwrap();
        let got: std::collections::BTreeSet<String> = listening
            .iter()
            .map(|c| format!("{}:{}", c.local_addr, c.local_port))
            .collect();
        let stable: Vec<&String> = before.intersection(&after).collect();
        let missing: Vec<&&String> = stable.iter().filter(|s| !got.contains(**s)).collect();
        assert!(missing.is_empty(), "listed by ss, not by us: {missing:?}");
        let extra: Vec<&Connection> = listening
            .iter()
            .filter(|c| {
                let key = format!("{}:{}", c.local_addr, c.local_port);
                !before.contains(&key) && !after.contains(&key)
            })
            .filter(|c| c.pid != Some(std::process::id()))
            .collect();
        assert!(extra.is_empty(), "listed by us, never by ss: {extra:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_listening_socket_is_found_with_its_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut partial = Vec::new();
        let all = collect(Path::new("/proc"), &mut partial);
        assert!(partial.is_empty(), "{partial:?}");
        let ours = all
            .iter()
            .find(|c| c.proto == "tcp" && c.local_port == port && c.state == "LISTEN")
            .expect("the listener is listed");
        assert_eq!(ours.local_addr, "127.0.0.1");
        assert_eq!(ours.pid, Some(std::process::id()));
    }
}
