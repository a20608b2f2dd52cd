//! Botnet IP lists as CERTs and publishers ship them:
//! - plain text: one address or CIDR range per line, `#` or `;` comments, anything after the
//!   address (`; SBL123`, IPsum's `<TAB>count`) kept as its note; Loki's `c2-iocs.txt` (domains
//!   mixed in, `# campaign` comment lines naming what follows), Spamhaus DROP/EDROP, FireHOL
//!   netsets, abuse.ch's "recommended" lists;
//! - CSV with an address column (`ip`, or abuse.ch Feodo's quoted `dst_ip`, ...);
//! - NDJSON, one object per line with a `cidr` or `ip` field (Spamhaus DROP's JSON form, whose
//!   last line is metadata).
//!
//! A line that is not an address, a range or (in text lists) a domain is reported with its
//! number and skipped; everything else in the file is kept. What the publisher says the file
//! holds (`# END 28 entries`, FireHOL's `# Entries : N subnets`, the NDJSON metadata's
//! `records`) is read as [`ParsedList::stated`] so that a cut-short download shows.

use std::net::IpAddr;

use ipnet::IpNet;

/// How a list file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// NDJSON when the first line that is not a comment is a JSON object; CSV when the name
    /// ends in `.csv` or that line is a header with an address column; plain text otherwise.
    Auto,
    Plain,
    Csv,
    Ndjson,
}

/// CSV header names of the address column, in the order they are looked for.
const ADDRESS_COLUMNS: &[&str] = &[
    "ip",
    "dst_ip",
    "ip_address",
    "ipaddress",
    "ip_addr",
    "src_ip",
    "cidr",
    "address",
];

impl ListFormat {
    pub fn parse(text: &str) -> Option<ListFormat> {
        match text {
            "" | "auto" => Some(ListFormat::Auto),
            "plain" => Some(ListFormat::Plain),
            "csv" => Some(ListFormat::Csv),
            "ndjson" | "jsonl" => Some(ListFormat::Ndjson),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Auto => "auto",
            ListFormat::Plain => "plain",
            ListFormat::Csv => "csv",
            ListFormat::Ndjson => "ndjson",
        }
    }
}

/// One network on a list: an address is a network of one (`/32`, `/128`). Small (a list can
/// hold millions): its note is an index into the list's [`Notes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    pub network: IpNet,
    /// The campaign comment above it (text lists), what follows the address, or its other
    /// columns (CSV, NDJSON): see [`ParsedList::note`].
    pub note: u32,
    /// 1-based line in the file.
    pub line: u32,
}

/// A list's notes, each held once (IPsum's millions of lines carry ten distinct counts).
#[derive(Debug, Clone, Default)]
pub struct Notes {
    texts: Vec<Box<str>>,
    index: std::collections::HashMap<Box<str>, u32>,
}

impl PartialEq for Notes {
    fn eq(&self, other: &Notes) -> bool {
        self.texts == other.texts
    }
}

impl Eq for Notes {}

impl Notes {
    pub fn intern(&mut self, note: &str) -> u32 {
        if let Some(&id) = self.index.get(note) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(note.into());
        self.index.insert(note.into(), id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        self.texts.get(id as usize).map_or("", |t| t)
    }
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: u64,
    pub text: String,
    pub reason: String,
}

/// What a list file held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedList {
    pub entries: Vec<ListEntry>,
    pub bad_lines: Vec<BadLine>,
    /// Domain names (Loki's C2 lists mix them in); counted, not matched against addresses.
    pub domains: u64,
    /// The first few of them, to name in the import's report.
    pub domain_examples: Vec<String>,
    /// Entries skipped for lying in (or covering) a special-purpose range: see [`screen`].
    pub reserved: Vec<BadLine>,
    /// How many entries the publisher says the file holds, when it says.
    pub stated: Option<u64>,
    pub notes: Notes,
}

impl ParsedList {
    /// The note of `entry`.
    pub fn note(&self, entry: &ListEntry) -> &str {
        self.notes.get(entry.note)
    }

    fn push(&mut self, network: IpNet, note: &str, line: u64) {
        let note = self.notes.intern(note);
        self.entries.push(ListEntry {
            network,
            note,
            line: u32::try_from(line).unwrap_or(u32::MAX),
        });
    }
}

/// How many domain names an import names as examples.
const DOMAIN_EXAMPLES: usize = 5;

/// Why a list cannot be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListError {
    #[error("{file}: not UTF-8 text (byte {offset})")]
    NotText { file: String, offset: usize },
    #[error(
        "{file}: CSV has no address column (ip, dst_ip, ip_address, cidr, ...; header: {header})"
    )]
    NoIpColumn { file: String, header: String },
    #[error("{file}: line {line}: {reason}")]
    Csv {
        file: String,
        line: u64,
        reason: String,
    },
}

/// Parses a list file. `file` names it in errors and decides `Auto` by its extension.
pub fn parse(
    file: &str,
    bytes: &[u8],
    format: ListFormat,
) -> Result<(ParsedList, ListFormat), ListError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ListError::NotText {
        file: file.to_owned(),
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with(['#', ';']));
    let format = match format {
        ListFormat::Auto if first.is_some_and(|l| l.starts_with('{')) => ListFormat::Ndjson,
        ListFormat::Auto if looks_like_csv(file, first) => ListFormat::Csv,
        ListFormat::Auto => ListFormat::Plain,
        other => other,
    };
    let mut parsed = match format {
        ListFormat::Csv => parse_csv(file, text)?,
        ListFormat::Ndjson => parse_ndjson(text),
        _ => parse_plain(text),
    };
    if parsed.stated.is_none() {
        parsed.stated = stated_in_comments(text);
    }
    Ok((parsed, format))
}

fn looks_like_csv(file: &str, first: Option<&str>) -> bool {
    if file.to_ascii_lowercase().ends_with(".csv") {
        return true;
    }
    first.is_some_and(|first| {
        first.contains(',') && first.split(',').any(|c| address_column(c).is_some())
    })
}

fn memchr_count(bytes: &[u8], byte: u8) -> usize {
    bytes.iter().filter(|b| **b == byte).count()
}

/// The rank of a header name among [`ADDRESS_COLUMNS`].
fn address_column(header: &str) -> Option<usize> {
    let header = header.trim().trim_matches('"');
    ADDRESS_COLUMNS
        .iter()
        .position(|name| header.eq_ignore_ascii_case(name))
}

/// The entry count a publisher states in a comment: abuse.ch's `# END 28 entries` trailer or
/// FireHOL's `# Entries : 6612 subnets, ...` header.
fn stated_in_comments(text: &str) -> Option<u64> {
    text.lines().rev().chain(text.lines()).find_map(|line| {
        let comment = line.trim().strip_prefix('#')?.trim();
        let count = |rest: &str| {
            rest.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(rest) = comment.strip_prefix("END ") {
            return count(rest).filter(|_| rest.contains("entries"));
        }
        let rest = comment.strip_prefix("Entries")?.trim_start();
        count(rest.strip_prefix(':')?)
    })
}

fn parse_plain(text: &str) -> ParsedList {
    let mut parsed = ParsedList::default();
    // One entry a line at most: sized once, not doubled (and copied) as millions come in.
    parsed
        .entries
        .reserve_exact(memchr_count(text.as_bytes(), b'\n') + 1);
    // Loki's lists name the campaign in the comment line above its addresses.
    let mut campaign = String::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index as u64 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            campaign.clear();
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            campaign = comment.trim().to_owned();
            continue;
        }
        // Spamhaus writes its comments with `;`.
        if trimmed.starts_with(';') {
            continue;
        }
        // `203.0.113.7  # seen 2026-11-02`, `1.10.16.0/20 ; SBL256894` and IPsum's
        // `77.90.185.20<TAB>10`: the address, then its note.
        let (value, note) = match trimmed.find(['#', ';']) {
            Some(at) => (trimmed[..at].trim(), trimmed[at + 1..].trim()),
            None => (trimmed, ""),
        };
        let (value, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        let note = [rest.trim(), note]
            .iter()
            .filter(|n| !n.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("; ");
        let note = note.as_str();
        let note = match (campaign.is_empty(), note.is_empty()) {
            (_, false) => note.to_owned(),
            (false, true) => campaign.clone(),
            (true, true) => String::new(),
        };
        match parse_network(value) {
            Ok(network) => parsed.push(network, &note, line),
            Err(_) if is_domain(value) => {
                parsed.domains += 1;
                if parsed.domain_examples.len() < DOMAIN_EXAMPLES {
                    parsed.domain_examples.push(value.to_owned());
                }
            }
            Err(reason) => parsed.bad_lines.push(BadLine {
                line,
                text: raw.to_owned(),
                reason,
            }),
        }
    }
    parsed
}

fn parse_csv(file: &str, text: &str) -> Result<ParsedList, ListError> {
    // The csv crate reads a `#` comment on a last line without its newline (abuse.ch's
    // `# END 28 entries` trailer) as an empty record.
    let owned;
    let text = if text.ends_with('\n') {
        text
    } else {
        owned = format!("{text}\n");
        &owned
    };
    // `#` comment lines before the header (and anywhere after) are allowed.
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_error = |e: csv::Error| ListError::Csv {
        file: file.to_owned(),
        line: e.position().map_or(0, |p| p.line()),
        reason: e.to_string(),
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    let ip_column = header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((address_column(h)?, i)))
        .min()
        .map(|(_, i)| i);
    let Some(ip_column) = ip_column else {
        return Err(ListError::NoIpColumn {
            file: file.to_owned(),
            header: header.iter().collect::<Vec<_>>().join(","),
        });
    };
    let mut parsed = ParsedList::default();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                parsed.bad_lines.push(BadLine {
                    line: e.position().map_or(0, |p| p.line()),
                    text: String::new(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let value = record.get(ip_column).unwrap_or("");
        let note = header
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, (_, v))| *i != ip_column && !v.is_empty())
            .map(|(_, (h, v))| format!("{h}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        match parse_network(value) {
            Ok(network) => parsed.push(network, &note, line),
            Err(reason) => parsed.bad_lines.push(BadLine {
                line,
                text: record.iter().collect::<Vec<_>>().join(","),
                reason,
            }),
        }
    }
    Ok(parsed)
}

/// One JSON object per line with the address in `cidr` or `ip`; its other fields become the
/// note. A `{"type": "metadata", "records": N}` line (Spamhaus) states the count.
fn parse_ndjson(text: &str) -> ParsedList {
    let mut parsed = ParsedList::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index as u64 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        let bad = |reason: String| BadLine {
            line,
            text: raw.to_owned(),
            reason,
        };
        let object = match serde_json::from_str::<serde_json::Value>(trimmed) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) => {
                parsed.bad_lines.push(bad("not a JSON object".into()));
                continue;
            }
            Err(e) => {
                parsed.bad_lines.push(bad(format!("not JSON: {e}")));
                continue;
            }
        };
        if object.get("type").and_then(|t| t.as_str()) == Some("metadata") {
            parsed.stated = object.get("records").and_then(|r| r.as_u64());
            continue;
        }
        let Some(value) = ["cidr", "ip"]
            .iter()
            .find_map(|key| object.get(*key).and_then(|v| v.as_str()))
        else {
            parsed
                .bad_lines
                .push(bad("no \"cidr\" or \"ip\" field".into()));
            continue;
        };
        let note = object
            .iter()
            .filter(|(k, _)| !["cidr", "ip"].contains(&k.as_str()))
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        match parse_network(value) {
            Ok(network) => parsed.push(network, &note, line),
            Err(reason) => parsed.bad_lines.push(bad(reason)),
        }
    }
    parsed
}

/// An address (a network of one) or a CIDR range; host bits of a range are cleared
/// (`10.1.2.3/24` is `10.1.2.0/24`), the way routers read it.
pub fn parse_network(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("no address".into());
    }
    if value.contains('/') {
        return value
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .map_err(|_| format!("{value:?} is not an IP address or CIDR range"));
    }
    // `[2001:db8::1]` as some exports write IPv6.
    let bare = value.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| IpNet::from(canonical(ip)))
        .map_err(|_| format!("{value:?} is not an IP address or CIDR range"))
}

/// IPv4-mapped IPv6 addresses (`::ffff:203.0.113.7`, as dual-stack sockets show IPv4 peers)
/// as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Special-purpose ranges (IANA's IPv4 and IPv6 special-purpose registries, RFC 6890 and
/// successors): every agency's LAN, loopback and multicast traffic lives here, so an entry in
/// them would make ordinary hosts botnet matches. Publishers' "bogon" aggregates (FireHOL's
/// level1 carries 10.0.0.0/8) are the usual source.
const SPECIAL_RANGES: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified (\"this network\")"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (carrier NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved (former 6to4 relay anycast)"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// [`SPECIAL_RANGES`] parsed once (every entry of a list of millions is tested against them).
static SPECIAL: std::sync::LazyLock<Vec<(IpNet, &'static str)>> = std::sync::LazyLock::new(|| {
    SPECIAL_RANGES
        .iter()
        .map(|(range, what)| (range.parse().expect("a valid range in the table"), *what))
        .collect()
});

/// Whether every address of `network` is in some special-purpose range (FireHOL's
/// 224.0.0.0/3 is multicast and reserved together).
fn wholly_special(network: &IpNet) -> bool {
    let mut overlapping = false;
    for (range, _) in SPECIAL.iter() {
        if range.contains(network) {
            return true;
        }
        overlapping |= network.contains(range);
    }
    // Only a network that holds a special range can be covered by several: split it in two.
    overlapping
        && network
            .subnets(network.prefix_len() + 1)
            .is_ok_and(|mut halves| halves.all(|half| wholly_special(&half)))
}

/// The special-purpose range `network` lies in or overlaps, with what it is.
pub fn special_range(network: &IpNet) -> Option<(IpNet, &'static str)> {
    SPECIAL
        .iter()
        .find(|(range, _)| range.contains(network) || network.contains(range))
        .copied()
}

/// Prefixes shorter than these cover a sixteenth of the Internet's addresses or more: no
/// botnet list means them, and one such line makes every host a match.
pub const BROADEST_V4: u8 = 8;
pub const BROADEST_V6: u8 = 32;

pub fn too_broad(network: &IpNet) -> bool {
    match network {
        IpNet::V4(n) => n.prefix_len() < BROADEST_V4,
        IpNet::V6(n) => n.prefix_len() < BROADEST_V6,
    }
}

/// What an import lets through besides ordinary public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Screen {
    /// Keep prefixes shorter than /8 (IPv4) or /32 (IPv6).
    pub allow_broad: bool,
    /// Keep private, loopback, link-local, multicast and other special-purpose ranges (an
    /// agency's own list of its internal hosts; a lab).
    pub allow_reserved: bool,
}

/// Entries refused for covering too much of the Internet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{file}: {} range(s) broader than /{BROADEST_V4} (IPv4) or /{BROADEST_V6} (IPv6), which would make every host a match: {}; nothing imported (--allow-broad imports them)",
    lines.len(),
    lines.iter().take(10).map(|l| format!("line {} {}", l.line, l.text.trim())).collect::<Vec<_>>().join(", ")
)]
pub struct TooBroad {
    pub file: String,
    pub lines: Vec<BadLine>,
}

/// Applies `screen` to a parsed list: entries in special-purpose ranges move to
/// `parsed.reserved` (skipped, with the range they fall in); a range too broad refuses the
/// whole list unless allowed. A range wholly inside a special one (FireHOL's 224.0.0.0/3) is
/// skipped, not refused.
pub fn screen(file: &str, mut parsed: ParsedList, screen: Screen) -> Result<ParsedList, TooBroad> {
    let mut broad = Vec::new();
    let mut reserved = Vec::new();
    // In place: a list of millions is not copied.
    parsed.entries.retain(|entry| {
        let special = (!screen.allow_reserved)
            .then(|| special_range(&entry.network))
            .flatten();
        let inside_special = special.is_some() && wholly_special(&entry.network);
        let mut skip = |(range, what): (IpNet, &str)| {
            reserved.push(BadLine {
                line: entry.line.into(),
                text: entry.network.to_string(),
                reason: if range == entry.network {
                    format!("{range} is {what}")
                } else if range.contains(&entry.network) {
                    format!("{} is {what} ({range})", entry.network)
                } else {
                    format!("{} covers {range} ({what})", entry.network)
                },
            });
            false
        };
        if let Some(special) = special.filter(|_| inside_special) {
            skip(special)
        } else if !screen.allow_broad && too_broad(&entry.network) {
            broad.push(BadLine {
                line: entry.line.into(),
                text: entry.network.to_string(),
                reason: "too broad".into(),
            });
            false
        } else if let Some(special) = special {
            skip(special)
        } else {
            true
        }
    });
    if !broad.is_empty() {
        return Err(TooBroad {
            file: file.to_owned(),
            lines: broad,
        });
    }
    parsed.reserved.extend(reserved);
    Ok(parsed)
}

fn is_domain(value: &str) -> bool {
    let labels: Vec<&str> = value.trim_end_matches('.').split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn plain_lists_take_addresses_ranges_and_comments() {
        let text = "# CERT botnet list 2026-11\n\
                    203.0.113.7\n\
                    198.51.100.0/24 # Mirai C2\n\
                    10.1.2.3/8\n\
                    2001:db8::1\n\
                    ::ffff:192.0.2.1\n\
                    \n\
                    not an address\n\
                    300.1.1.1\n\
                    1.2.3.4/33\n";
        let (list, format) = parse("list.txt", text.as_bytes(), ListFormat::Auto).unwrap();
        assert_eq!(format, ListFormat::Plain);
        let nets: Vec<_> = list.entries.iter().map(|e| e.network).collect();
        assert_eq!(
            nets,
            [
                net("203.0.113.7/32"),
                net("198.51.100.0/24"),
                net("10.0.0.0/8"),
                net("2001:db8::1/128"),
                net("192.0.2.1/32"),
            ]
        );
        assert_eq!(list.note(&list.entries[0]), "CERT botnet list 2026-11");
        assert_eq!(list.note(&list.entries[1]), "Mirai C2");
        assert_eq!(list.entries[1].line, 3);
        let bad: Vec<_> = list.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(bad, [8, 9, 10]);
        assert!(list.bad_lines[1].reason.contains("300.1.1.1"));
    }

    #[test]
    fn csv_lists_need_an_ip_column_and_keep_the_rest_as_notes() {
        let text = "# exported 2026-11-28\nfirst_seen,IP,family\n2026-11-01,203.0.113.9,mirai\n2026-11-02,bogus,x\n,198.51.100.0/25,\n";
        let (list, format) = parse("cert.txt", text.as_bytes(), ListFormat::Auto).unwrap();
        assert_eq!(format, ListFormat::Csv);
        assert_eq!(list.entries.len(), 2);
        assert_eq!(
            list.note(&list.entries[0]),
            "first_seen=2026-11-01; family=mirai"
        );
        assert_eq!(list.entries[1].network, net("198.51.100.0/25"));
        assert_eq!(list.bad_lines.len(), 1);
        assert_eq!(list.bad_lines[0].line, 4);

        let err = parse("x.csv", b"host,note\n1.2.3.4,x\n", ListFormat::Auto).unwrap_err();
        assert!(matches!(err, ListError::NoIpColumn { .. }), "{err}");
    }

    fn screened(text: &str, policy: Screen) -> Result<ParsedList, TooBroad> {
        let (list, _) = parse("l.txt", text.as_bytes(), ListFormat::Plain).unwrap();
        screen("l.txt", list, policy)
    }

    #[test]
    fn the_whole_internet_is_refused_unless_allowed() {
        let err = screened("203.0.114.1\n0.0.0.0/0\n::/0\n", Screen::default()).unwrap_err();
        let lines: Vec<u64> = err.lines.iter().map(|l| l.line).collect();
        assert_eq!(lines, [2, 3]);
        assert!(err.to_string().contains("line 2 0.0.0.0/0"), "{err}");
        assert!(err.to_string().contains("--allow-broad"), "{err}");
        // /8 and /32 are the broadest taken; /7 and /31 are not.
        assert!(screened("11.0.0.0/8\n2600::/32\n", Screen::default()).is_ok());
        assert!(screened("12.0.0.0/7\n", Screen::default()).is_err());
        assert!(screened("2600::/31\n", Screen::default()).is_err());
        let both = Screen {
            allow_broad: true,
            allow_reserved: true,
        };
        assert_eq!(
            screened("0.0.0.0/0\n::/0\n", both).unwrap().entries.len(),
            2
        );
        // Allowed broad, the special ranges it covers still keep it out.
        let broad = Screen {
            allow_broad: true,
            ..Screen::default()
        };
        let list = screened("0.0.0.0/0\n", broad).unwrap();
        assert!(list.entries.is_empty());
        assert_eq!(list.reserved.len(), 1);
    }

    #[test]
    fn special_purpose_ranges_are_skipped_and_named() {
        let text = "10.0.0.0/8\n127.0.0.1\n169.254.1.1\nfe80::1\n224.0.0.0/3\n::\n\
                    192.168.0.0/16\n172.0.0.0/8\n8.8.8.8\n2a00:1450::1\n";
        let list = screened(text, Screen::default()).unwrap();
        let kept: Vec<String> = list.entries.iter().map(|e| e.network.to_string()).collect();
        assert_eq!(kept, ["8.8.8.8/32", "2a00:1450::1/128"]);
        let skipped: Vec<u64> = list.reserved.iter().map(|l| l.line).collect();
        assert_eq!(skipped, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(
            list.reserved[0].reason.contains("private"),
            "{:?}",
            list.reserved[0]
        );
        assert!(list.reserved[1].reason.contains("loopback"));
        assert!(list.reserved[3].reason.contains("link-local"));
        assert!(list.reserved[4].reason.contains("multicast"));
        // 172.0.0.0/8 covers the private 172.16.0.0/12.
        assert!(
            list.reserved[7].reason.contains("172.16.0.0/12"),
            "{:?}",
            list.reserved[7]
        );
        // A lab takes them all, save the /3 that is also too broad.
        let lab = Screen {
            allow_reserved: true,
            ..Screen::default()
        };
        let err = screened(text, lab).unwrap_err();
        assert_eq!(err.lines[0].text, "224.0.0.0/3");
        let lab = Screen {
            allow_reserved: true,
            allow_broad: true,
        };
        assert_eq!(screened(text, lab).unwrap().entries.len(), 10);
    }

    #[test]
    fn fireholds_level1_keeps_only_public_ranges() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/intel/blocklists/firehol_level1.netset"
        );
        let bytes = std::fs::read(path).expect("../shared holds FireHOL's level1 list");
        let (list, _) = parse("firehol_level1.netset", &bytes, ListFormat::Auto).unwrap();
        let total = list.entries.len();
        let list = screen("firehol_level1.netset", list, Screen::default()).unwrap();
        assert!(
            list.reserved.iter().any(|l| l.text == "10.0.0.0/8"),
            "{:?}",
            list.reserved
        );
        assert!(list.reserved.iter().any(|l| l.text == "192.168.0.0/16"));
        assert_eq!(list.entries.len() + list.reserved.len(), total);
        for host in ["10.1.2.3", "192.168.1.10", "127.0.0.1", "172.16.5.4"] {
            let ip: IpAddr = host.parse().unwrap();
            assert!(
                !list.entries.iter().any(|e| e.network.contains(&ip)),
                "{host} would match"
            );
        }
    }

    fn corpus(name: &str) -> (ParsedList, ListFormat) {
        let path = format!(
            "{}/../../shared/corpus/intel/blocklists/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse(name, &bytes, ListFormat::Auto).unwrap()
    }

    /// Lines that are neither blank nor comments.
    fn data_lines(name: &str) -> usize {
        let path = format!(
            "{}/../../shared/corpus/intel/blocklists/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(['#', ';']))
            .count()
    }

    #[test]
    fn publishers_lists_read_with_the_counts_they_state() {
        // (file, format, entries): the count each publisher states, or its data lines.
        let cases = [
            ("feodo_ipblocklist.csv", ListFormat::Csv, Some(28)),
            (
                "feodo_ipblocklist_recommended.txt",
                ListFormat::Plain,
                Some(244),
            ),
            ("spamhaus_drop_v4.json", ListFormat::Ndjson, Some(1406)),
            ("firehol_level1.netset", ListFormat::Plain, Some(6612)),
            ("ipsum.txt", ListFormat::Plain, None),
            ("ipsum_level3.txt", ListFormat::Plain, None),
            ("spamhaus_drop.txt", ListFormat::Plain, None),
            ("spamhaus_dropv6.txt", ListFormat::Plain, None),
            ("spamhaus_edrop_2023-12.txt", ListFormat::Plain, None),
            (
                "spamhaus_edrop_2024-10_merged_empty.txt",
                ListFormat::Plain,
                None,
            ),
            ("et_compromised-ips.txt", ListFormat::Plain, None),
        ];
        for (name, want_format, stated) in cases {
            let (list, format) = corpus(name);
            assert_eq!(format, want_format, "{name}");
            assert!(
                list.bad_lines.is_empty(),
                "{name}: {:?}",
                &list.bad_lines[..1]
            );
            assert_eq!(list.stated, stated, "{name}");
            let want = stated.map_or_else(|| data_lines(name), |n| n as usize);
            assert_eq!(list.entries.len(), want, "{name}");
        }
        let (feodo, _) = corpus("feodo_ipblocklist.csv");
        assert!(
            feodo.note(&feodo.entries[0]).contains("malware=Pikabot"),
            "{:?}",
            feodo.entries[0]
        );
        let (drop, _) = corpus("spamhaus_drop.txt");
        assert_eq!(drop.note(&drop.entries[0]), "SBL256894");
        let (ipsum, _) = corpus("ipsum.txt");
        assert_eq!(ipsum.entries[0].network, net("77.90.185.20/32"));
        assert_eq!(ipsum.note(&ipsum.entries[0]), "10");
        let (json, _) = corpus("spamhaus_drop_v4.json");
        assert_eq!(json.entries[0].network, net("1.10.16.0/20"));
        assert!(
            json.note(&json.entries[0]).contains("sblid=SBL256894"),
            "{}",
            json.note(&json.entries[0])
        );
    }

    #[test]
    fn ndjson_lines_that_are_not_entries_are_named() {
        let text = "{\"cidr\":\"1.10.16.0/20\"}\n[1]\n{\"x\":1}\n{\"ip\":\"bogus\"}\n{broken\n";
        let (list, format) = parse("l.json", text.as_bytes(), ListFormat::Auto).unwrap();
        assert_eq!(format, ListFormat::Ndjson);
        assert_eq!(list.entries.len(), 1);
        let lines: Vec<u64> = list.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_whole() {
        let err = parse("x.txt", b"1.2.3.4\n\xff\xfe\n", ListFormat::Plain).unwrap_err();
        assert_eq!(
            err,
            ListError::NotText {
                file: "x.txt".into(),
                offset: 8
            }
        );
    }

    #[test]
    fn lokis_c2_list_reads_whole() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/signature-base/iocs/c2-iocs.txt"
        );
        let bytes = std::fs::read(path).expect("../shared holds signature-base's c2-iocs.txt");
        let (list, _) = parse("c2-iocs.txt", &bytes, ListFormat::Auto).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count() as u64;
        // Every line is an address or a domain; none is lost.
        assert_eq!(
            list.entries.len() as u64 + list.domains + list.bad_lines.len() as u64,
            lines
        );
        assert!(list.entries.len() > 100, "{} addresses", list.entries.len());
        assert!(list.domains > 100);
        let snowman = list
            .entries
            .iter()
            .find(|e| e.network == net("58.64.143.244/32"))
            .unwrap();
        assert!(
            list.note(snowman).contains("Snowman"),
            "{}",
            list.note(snowman)
        );
    }
}
