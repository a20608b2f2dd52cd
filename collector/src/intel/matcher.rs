//! Which active list entries cover an address: every listed network, kept in a prefix trie per
//! address family, so that a lookup costs the depth of the trie, not the length of the lists.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::iplist::canonical;

/// One network of an active list, with what the list says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveEntry {
    pub list_id: i64,
    /// `source vN` (the list's name and version).
    pub list_label: String,
    pub network: IpNet,
    pub note: String,
}

/// Every network of every active list.
#[derive(Default)]
pub struct IpMatcher {
    entries: Vec<ActiveEntry>,
    v4: PrefixMap<Ipv4Net, Vec<u32>>,
    v6: PrefixMap<Ipv6Net, Vec<u32>>,
}

impl IpMatcher {
    pub fn new(entries: Vec<ActiveEntry>) -> IpMatcher {
        let mut v4: PrefixMap<Ipv4Net, Vec<u32>> = PrefixMap::new();
        let mut v6: PrefixMap<Ipv6Net, Vec<u32>> = PrefixMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let index = u32::try_from(index).expect("fewer than 4 billion list entries");
            match entry.network.trunc() {
                IpNet::V4(net) => v4.entry(net).or_default().push(index),
                IpNet::V6(net) => v6.entry(net).or_default().push(index),
            }
        }
        IpMatcher { entries, v4, v6 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries whose network holds `ip`, the most specific network first (and, for the
    /// same network, the newest list first). IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> Vec<&ActiveEntry> {
        let mut found: Vec<&ActiveEntry> = Vec::new();
        match canonical(ip) {
            IpAddr::V4(v4) => {
                for (_, indexes) in self.v4.cover(&Ipv4Net::from(v4)) {
                    found.extend(indexes.iter().map(|&i| &self.entries[i as usize]));
                }
            }
            IpAddr::V6(v6) => {
                for (_, indexes) in self.v6.cover(&Ipv6Net::from(v6)) {
                    found.extend(indexes.iter().map(|&i| &self.entries[i as usize]));
                }
            }
        }
        found.sort_by(|a, b| {
            b.network
                .prefix_len()
                .cmp(&a.network.prefix_len())
                .then(b.list_id.cmp(&a.list_id))
        });
        found
    }

    /// Whether any active entry holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => self.v4.cover(&Ipv4Net::from(v4)).next().is_some(),
            IpAddr::V6(v6) => self.v6.cover(&Ipv6Net::from(v6)).next().is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(list_id: i64, net: &str) -> ActiveEntry {
        ActiveEntry {
            list_id,
            list_label: format!("list{list_id}"),
            network: net.parse().unwrap(),
            note: String::new(),
        }
    }

    #[test]
    fn finds_every_covering_network_most_specific_first() {
        let matcher = IpMatcher::new(vec![
            entry(1, "203.0.113.0/24"),
            entry(1, "203.0.113.7/32"),
            entry(2, "203.0.113.7/32"),
            entry(2, "0.0.0.0/0"),
            entry(3, "2001:db8::/32"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let found: Vec<(i64, String)> = matcher
            .lookup(ip("203.0.113.7"))
            .iter()
            .map(|e| (e.list_id, e.network.to_string()))
            .collect();
        assert_eq!(
            found,
            [
                (2, "203.0.113.7/32".to_owned()),
                (1, "203.0.113.7/32".to_owned()),
                (1, "203.0.113.0/24".to_owned()),
                (2, "0.0.0.0/0".to_owned()),
            ]
        );
        // IPv4 seen through a dual-stack socket.
        assert_eq!(matcher.lookup(ip("::ffff:203.0.113.8")).len(), 2);
        assert!(matcher.contains(ip("2001:db8:1::5")));
        assert!(!matcher.contains(ip("2001:db9::5")));
        assert!(IpMatcher::default().lookup(ip("10.0.0.1")).is_empty());
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        // Pseudo-random networks and addresses (a fixed LCG): the trie must find exactly what
        // testing every entry finds.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 32) as u32
        };
        let entries: Vec<ActiveEntry> = (0..2000)
            .map(|i| {
                // Addresses clustered in 10.0.0.0/12 so that ranges overlap.
                let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (next() & 0x000f_ffff));
                let len = [32, 32, 32, 24, 20, 16, 28][next() as usize % 7];
                ActiveEntry {
                    list_id: i64::from(i % 3),
                    list_label: String::new(),
                    network: IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc()),
                    note: String::new(),
                }
            })
            .collect();
        let matcher = IpMatcher::new(entries.clone());
        for _ in 0..5000 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(
                0x0a00_0000 | (next() & 0x000f_ffff),
            ));
            let mut want: Vec<&ActiveEntry> =
                entries.iter().filter(|e| e.network.contains(&ip)).collect();
            let mut got = matcher.lookup(ip);
            let key = |e: &&ActiveEntry| (e.network, e.list_id);
            want.sort_by_key(key);
            got.sort_by_key(key);
            assert_eq!(got, want, "{ip}");
        }
    }
}
