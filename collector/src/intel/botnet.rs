//! A host against the botnet lists: its own addresses, the address the collector sees it
//! connect from (the NAT egress a CERT observes), and the remote ends of its sockets.
//!
//! One match per way and address; the evidence names the list entries, the connections and
//! their processes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::iplist::canonical;
use super::matcher::{ActiveEntry, IpMatcher};
use crate::model::NetConnection;

/// How a host's address came to be on a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchVia {
    /// One of the host's own interface addresses.
    HostAddress,
    /// The address the collector sees the agent connect from.
    EgressAddress,
    /// The remote end of one of the host's sockets.
    Connection,
}

impl MatchVia {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchVia::HostAddress => "host_address",
            MatchVia::EgressAddress => "egress_address",
            MatchVia::Connection => "connection",
        }
    }

    /// Whether the match is on an address the host has (its own or its egress): true for as
    /// long as it keeps the address, unlike a connection it made.
    pub fn is_own_address(self) -> bool {
        matches!(self, MatchVia::HostAddress | MatchVia::EgressAddress)
    }

    pub fn parse(text: &str) -> Option<MatchVia> {
        [
            MatchVia::HostAddress,
            MatchVia::EgressAddress,
            MatchVia::Connection,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
    }
}

/// What the collector knows of a host's network side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetFacts {
    pub host_id: String,
    /// As the agent's Hello gave them.
    pub addresses: Vec<String>,
    /// `ip:port` as the collector saw the agent's connection.
    pub peer_address: Option<String>,
    /// The latest socket list.
    pub connections: Vec<NetConnection>,
}

/// One way a host is on a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotnetMatch {
    pub via: MatchVia,
    pub address: IpAddr,
    /// The most specific listed network holding the address.
    pub network: String,
    /// The newest list with that network.
    pub list_id: i64,
    /// Which lists, which connections and processes.
    pub evidence: String,
}

/// How many connections the evidence names before it counts the rest.
const CONNECTIONS_NAMED: usize = 3;

/// Every way `host` is on an active list, in a stable order.
pub fn match_host(matcher: &IpMatcher, host: &HostNetFacts) -> Vec<BotnetMatch> {
    let mut found = Vec::new();
    if matcher.is_empty() {
        return found;
    }
    let mut own: Vec<IpAddr> = host.addresses.iter().filter_map(|a| parse_ip(a)).collect();
    own.sort();
    own.dedup();
    for ip in own {
        if let Some(m) = match_address(matcher, MatchVia::HostAddress, ip, String::new()) {
            found.push(m);
        }
    }
    if let Some(ip) = host.peer_address.as_deref().and_then(peer_ip) {
        let seen = "the collector sees the agent connect from it".to_owned();
        if let Some(m) = match_address(matcher, MatchVia::EgressAddress, ip, seen) {
            found.push(m);
        }
    }
    let mut by_remote: BTreeMap<IpAddr, Vec<&NetConnection>> = BTreeMap::new();
    for c in &host.connections {
        if let Some(ip) = parse_ip(&c.remote_addr).filter(|ip| !ip.is_unspecified()) {
            by_remote.entry(ip).or_default().push(c);
        }
    }
    for (ip, connections) in by_remote {
        if !matcher.contains(ip) {
            continue;
        }
        let mut named: Vec<String> = connections
            .iter()
            .take(CONNECTIONS_NAMED)
            .map(|c| describe_connection(c))
            .collect();
        if connections.len() > CONNECTIONS_NAMED {
            named.push(format!(
                "{} more connections",
                connections.len() - CONNECTIONS_NAMED
            ));
        }
        if let Some(m) = match_address(matcher, MatchVia::Connection, ip, named.join("; ")) {
            found.push(m);
        }
    }
    found
}

fn match_address(
    matcher: &IpMatcher,
    via: MatchVia,
    ip: IpAddr,
    detail: String,
) -> Option<BotnetMatch> {
    let entries = matcher.lookup(ip);
    let best = entries.first()?;
    let mut evidence = detail;
    for entry in &entries {
        if !evidence.is_empty() {
            evidence.push_str("; ");
        }
        evidence.push_str(&describe_entry(entry));
    }
    Some(BotnetMatch {
        via,
        address: ip,
        network: best.network.to_string(),
        list_id: best.list_id,
        evidence,
    })
}

fn describe_entry(entry: &ActiveEntry) -> String {
    let mut text = format!(
        "on list {} ({}) as {}",
        entry.list_id, entry.list_label, entry.network
    );
    if !entry.note.is_empty() {
        text.push_str(&format!(" [{}]", entry.note));
    }
    text
}

fn describe_connection(c: &NetConnection) -> String {
    let mut text = format!(
        "{} {} -> {} {}",
        c.proto,
        join_host_port(&c.local_addr, c.local_port),
        join_host_port(&c.remote_addr, c.remote_port),
        c.state
    );
    match (c.pid, &c.process) {
        (Some(pid), Some(name)) => text.push_str(&format!(" by {name} (pid {pid})")),
        (Some(pid), None) => text.push_str(&format!(" by pid {pid}")),
        (None, Some(name)) => text.push_str(&format!(" by {name}")),
        (None, None) => {}
    }
    text
}

fn join_host_port(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// An address as agents write it (`10.0.0.5`, `fe80::1%eth0`, `10.0.0.5/24`), IPv4-mapped IPv6
/// as IPv4.
/// Why a stored botnet match that the latest re-check did not find again is resolved now, or
/// `None` while it may still hold. A match on an address no active list holds, or on the
/// host's own or egress address it no longer has, is over at once. A connection leaves no
/// trace when it closes, so a match on one is over only once a complete sweep of the host
/// started after it was last seen (`last_complete_sweep`: its id and start).
pub fn no_longer_matches(
    via: Option<MatchVia>,
    address: &str,
    still_listed: bool,
    last_seen_ms: i64,
    last_complete_sweep: Option<(&str, i64)>,
) -> Option<String> {
    if !still_listed {
        return Some(format!("{address} is no longer on an active list"));
    }
    match via {
        Some(MatchVia::HostAddress) => Some(format!("the host no longer has address {address}")),
        Some(MatchVia::EgressAddress) => {
            Some(format!("the agent no longer connects from {address}"))
        }
        _ => match last_complete_sweep {
            Some((sweep_id, started)) if started > last_seen_ms => Some(format!(
                "no connection to {address} since {}; sweep {sweep_id} of the host started after it",
                hygiene_proto::format_ms(last_seen_ms)
            )),
            _ => None,
        },
    }
}

pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.split(['/', '%']).next()?.trim();
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(canonical)
}

/// The address of an `ip:port` (or `[ipv6]:port`) peer.
fn peer_ip(peer: &str) -> Option<IpAddr> {
    peer.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| canonical(s.ip()))
        .or_else(|| parse_ip(peer))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_match_no_longer_found_is_resolved_only_with_proof() {
        use MatchVia::*;
        let sweep = Some(("sw-1", 2_000));
        let unlisted = no_longer_matches(Some(Connection), "203.0.113.9", false, 5_000, None);
        assert_eq!(
            unlisted.as_deref(),
            Some("203.0.113.9 is no longer on an active list")
        );
        let own = no_longer_matches(Some(HostAddress), "203.0.113.9", true, 5_000, None);
        assert!(own.unwrap().contains("no longer has address"));
        let egress = no_longer_matches(Some(EgressAddress), "203.0.113.9", true, 5_000, None);
        assert!(egress.unwrap().contains("no longer connects from"));
        // A connection: over only after a complete sweep that started after it was seen.
        assert_eq!(
            no_longer_matches(Some(Connection), "203.0.113.9", true, 1_000, None),
            None
        );
        assert_eq!(
            no_longer_matches(Some(Connection), "203.0.113.9", true, 2_000, sweep),
            None
        );
        let swept = no_longer_matches(Some(Connection), "203.0.113.9", true, 1_000, sweep);
        assert!(
            swept
                .unwrap()
                .contains("sweep sw-1 of the host started after it")
        );
        // An unknown way (a newer collector's) is treated as a connection.
        assert_eq!(
            no_longer_matches(None, "203.0.113.9", true, 1_000, None),
            None
        );
    }

    use super::*;

    fn matcher() -> IpMatcher {
        let entry = |list_id, net: &str, note: &str| ActiveEntry {
            list_id,
            list_label: format!("cert v{list_id}"),
            network: net.parse().unwrap(),
            note: note.into(),
        };
        IpMatcher::new(vec![
            entry(1, "198.51.100.0/24", "Mirai"),
            entry(2, "198.51.100.9/32", ""),
            entry(2, "192.0.2.44/32", "egress seen scanning"),
            entry(2, "10.9.9.9/32", ""),
        ])
    }

    fn connection(remote: &str, port: u16, process: &str) -> NetConnection {
        NetConnection {
            proto: "tcp".into(),
            local_addr: "10.0.0.5".into(),
            local_port: 49822,
            remote_addr: remote.into(),
            remote_port: port,
            state: "ESTABLISHED".into(),
            pid: Some(4242),
            process: Some(process.into()),
        }
    }

    #[test]
    fn each_way_a_host_is_listed_is_one_match_with_its_evidence() {
        let host = HostNetFacts {
            host_id: "ws-1".into(),
            addresses: vec!["10.0.0.5".into(), "10.9.9.9/8".into(), "::1".into()],
            peer_address: Some("192.0.2.44:50122".into()),
            connections: vec![
                connection("198.51.100.9", 443, "beacon.exe"),
                connection("::ffff:198.51.100.9", 8443, "beacon.exe"),
                connection("203.0.113.1", 443, "chrome.exe"),
                connection("*", 0, "sshd"),
            ],
        };
        let found = match_host(&matcher(), &host);
        let summary: Vec<(MatchVia, String, String, i64)> = found
            .iter()
            .map(|m| (m.via, m.address.to_string(), m.network.clone(), m.list_id))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    MatchVia::HostAddress,
                    "10.9.9.9".into(),
                    "10.9.9.9/32".into(),
                    2
                ),
                (
                    MatchVia::EgressAddress,
                    "192.0.2.44".into(),
                    "192.0.2.44/32".into(),
                    2
                ),
                (
                    MatchVia::Connection,
                    "198.51.100.9".into(),
                    "198.51.100.9/32".into(),
                    2
                ),
            ]
        );
        let c2 = &found[2].evidence;
        assert!(
            c2.contains(
                "tcp 10.0.0.5:49822 -> 198.51.100.9:443 ESTABLISHED by beacon.exe (pid 4242)"
            ),
            "{c2}"
        );
        assert!(c2.contains("[::ffff:198.51.100.9]:8443"), "{c2}");
        assert!(
            c2.contains("on list 2 (cert v2) as 198.51.100.9/32"),
            "{c2}"
        );
        assert!(
            c2.contains("on list 1 (cert v1) as 198.51.100.0/24 [Mirai]"),
            "{c2}"
        );
        assert!(found[1].evidence.contains("egress seen scanning"));
    }

    #[test]
    fn an_unlisted_host_has_no_match() {
        let host = HostNetFacts {
            host_id: "ws-2".into(),
            addresses: vec!["10.0.0.6".into()],
            peer_address: Some("[2001:db8::6]:50122".into()),
            connections: vec![connection("203.0.113.1", 443, "chrome.exe")],
        };
        assert!(match_host(&matcher(), &host).is_empty());
        assert!(match_host(&IpMatcher::default(), &host).is_empty());
    }
}
