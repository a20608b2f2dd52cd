//! Which active list entries cover an address. A CERT's list can hold millions of addresses,
//! so the networks are kept compactly: per address family and prefix length, a sorted array of
//! network starts (4 bytes an IPv4 entry, 16 an IPv6 one) with a list index and an interned
//! note beside each. CIDR blocks never partly overlap, so the entries holding an address are
//! found with one binary search per prefix length present: the address masked to that length.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

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

/// The networks of one prefix length of one family, sorted by start (then list).
#[derive(Default)]
struct Block<T> {
    prefix: u8,
    starts: Vec<T>,
    lists: Vec<u32>,
    notes: Vec<u32>,
}

/// Every network of every active list.
#[derive(Default)]
pub struct IpMatcher {
    /// (list id, label) by list index.
    lists: Vec<(i64, String)>,
    /// Interned notes; index 0 is the empty note.
    notes: Vec<Box<str>>,
    /// Longest prefix first, so that lookups find the most specific network first.
    v4: Vec<Block<u32>>,
    v6: Vec<Block<u128>>,
    len: usize,
}

/// Builds an [`IpMatcher`] one entry at a time (entries are streamed from the store, never
/// held as [`ActiveEntry`] values).
#[derive(Default)]
pub struct MatcherBuilder {
    lists: Vec<(i64, String)>,
    list_index: HashMap<i64, u32>,
    notes: Vec<Box<str>>,
    note_index: HashMap<Box<str>, u32>,
    v4: Vec<(u8, u32, u32, u32)>,
    v6: Vec<(u8, u128, u32, u32)>,
}

impl MatcherBuilder {
    /// Room for `entries` more (IPv4 assumed, as lists mostly are): a list of millions is not
    /// grown by doubling.
    pub fn reserve(&mut self, entries: usize) {
        self.v4.reserve_exact(entries);
    }

    pub fn add(&mut self, list_id: i64, list_label: &str, network: IpNet, note: &str) {
        let list = match self.list_index.get(&list_id) {
            Some(&index) => index,
            None => {
                let index = self.lists.len() as u32;
                self.lists.push((list_id, list_label.to_owned()));
                self.list_index.insert(list_id, index);
                index
            }
        };
        if self.notes.is_empty() {
            self.notes.push("".into());
            self.note_index.insert("".into(), 0);
        }
        let note = match self.note_index.get(note) {
            Some(&index) => index,
            None => {
                let index = self.notes.len() as u32;
                self.notes.push(note.into());
                self.note_index.insert(note.into(), index);
                index
            }
        };
        match network.trunc() {
            IpNet::V4(net) => {
                self.v4
                    .push((net.prefix_len(), u32::from(net.network()), list, note))
            }
            IpNet::V6(net) => {
                self.v6
                    .push((net.prefix_len(), u128::from(net.network()), list, note))
            }
        }
    }

    pub fn build(mut self) -> IpMatcher {
        let len = self.v4.len() + self.v6.len();
        let mut notes = std::mem::take(&mut self.notes);
        if notes.is_empty() {
            notes.push("".into());
        }
        IpMatcher {
            lists: self.lists,
            notes,
            v4: blocks(self.v4),
            v6: blocks(self.v6),
            len,
        }
    }
}

/// Groups entries by prefix length, longest first, each sorted by start and then by list,
/// newest (highest id order of arrival) last.
fn blocks<T: Ord + Copy + Default>(mut entries: Vec<(u8, T, u32, u32)>) -> Vec<Block<T>> {
    entries.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut blocks: Vec<Block<T>> = Vec::new();
    for (prefix, start, list, note) in entries {
        if blocks.last().is_none_or(|b| b.prefix != prefix) {
            blocks.push(Block {
                prefix,
                ..Block::default()
            });
        }
        let block = blocks.last_mut().expect("pushed above");
        block.starts.push(start);
        block.lists.push(list);
        block.notes.push(note);
    }
    for block in &mut blocks {
        block.starts.shrink_to_fit();
        block.lists.shrink_to_fit();
        block.notes.shrink_to_fit();
    }
    blocks
}

/// The indexes in `block` whose network holds the address `masked` to its prefix.
fn holding<T: Ord + Copy>(block: &Block<T>, masked: T) -> std::ops::Range<usize> {
    let first = block.starts.partition_point(|s| *s < masked);
    let end = first + block.starts[first..].partition_point(|s| *s == masked);
    first..end
}

fn mask_v4(ip: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        ip & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(ip: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        ip & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl IpMatcher {
    pub fn new(entries: Vec<ActiveEntry>) -> IpMatcher {
        let mut builder = MatcherBuilder::default();
        for e in &entries {
            builder.add(e.list_id, &e.list_label, e.network, &e.note);
        }
        builder.build()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn entry(&self, network: IpNet, list: u32, note: u32) -> ActiveEntry {
        let (list_id, label) = &self.lists[list as usize];
        ActiveEntry {
            list_id: *list_id,
            list_label: label.clone(),
            network,
            note: self.notes[note as usize].to_string(),
        }
    }

    /// The entries whose network holds `ip`, the most specific network first (and, for the
    /// same network, the newest list first). IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> Vec<ActiveEntry> {
        let mut found: Vec<ActiveEntry> = Vec::new();
        match canonical(ip) {
            IpAddr::V4(v4) => {
                for block in &self.v4 {
                    let masked = mask_v4(u32::from(v4), block.prefix);
                    let network = ipnet::Ipv4Net::new(masked.into(), block.prefix)
                        .expect("a prefix of at most 32");
                    for i in holding(block, masked) {
                        found.push(self.entry(network.into(), block.lists[i], block.notes[i]));
                    }
                }
            }
            IpAddr::V6(v6) => {
                for block in &self.v6 {
                    let masked = mask_v6(u128::from(v6), block.prefix);
                    let network = ipnet::Ipv6Net::new(masked.into(), block.prefix)
                        .expect("a prefix of at most 128");
                    for i in holding(block, masked) {
                        found.push(self.entry(network.into(), block.lists[i], block.notes[i]));
                    }
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
            IpAddr::V4(v4) => self
                .v4
                .iter()
                .any(|b| !holding(b, mask_v4(u32::from(v4), b.prefix)).is_empty()),
            IpAddr::V6(v6) => self
                .v6
                .iter()
                .any(|b| !holding(b, mask_v6(u128::from(v6), b.prefix)).is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv4Net;

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
            let mut want: Vec<ActiveEntry> = entries
                .iter()
                .filter(|e| e.network.contains(&ip))
                .cloned()
                .collect();
            let mut got = matcher.lookup(ip);
            let key = |e: &ActiveEntry| (e.network, e.list_id);
            want.sort_by_key(key);
            got.sort_by_key(key);
            assert_eq!(got, want, "{ip}");
        }
    }
}
