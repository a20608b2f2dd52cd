//! Botnet IP lists as CERTs send them: plain text (one address or CIDR range per line, `#`
//! comments), Loki's `c2-iocs.txt` (the same, with domains mixed in and `# campaign` comment
//! lines naming what follows), and CSV with a column named `ip`.
//!
//! A line that is not an address, a range or (in text lists) a domain is reported with its
//! number and skipped; everything else in the file is kept.

use std::net::IpAddr;

use ipnet::IpNet;

/// How a list file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// CSV when the name ends in `.csv` or the first line that is not a comment is a header
    /// with a column named `ip`; plain text otherwise.
    Auto,
    Plain,
    Csv,
}

impl ListFormat {
    pub fn parse(text: &str) -> Option<ListFormat> {
        match text {
            "" | "auto" => Some(ListFormat::Auto),
            "plain" => Some(ListFormat::Plain),
            "csv" => Some(ListFormat::Csv),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Auto => "auto",
            ListFormat::Plain => "plain",
            ListFormat::Csv => "csv",
        }
    }
}

/// One network on a list: an address is a network of one (`/32`, `/128`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub network: IpNet,
    /// The campaign comment above it (text lists) or its other columns (CSV).
    pub note: String,
    /// 1-based line in the file.
    pub line: u64,
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
}

/// How many domain names an import names as examples.
const DOMAIN_EXAMPLES: usize = 5;

/// Why a list cannot be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListError {
    #[error("{file}: not UTF-8 text (byte {offset})")]
    NotText { file: String, offset: usize },
    #[error("{file}: CSV has no column named \"ip\" (header: {header})")]
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
    let format = match format {
        ListFormat::Auto if looks_like_csv(file, text) => ListFormat::Csv,
        ListFormat::Auto => ListFormat::Plain,
        other => other,
    };
    let parsed = match format {
        ListFormat::Csv => parse_csv(file, text)?,
        _ => parse_plain(text),
    };
    Ok((parsed, format))
}

fn looks_like_csv(file: &str, text: &str) -> bool {
    if file.to_ascii_lowercase().ends_with(".csv") {
        return true;
    }
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|first| {
            first.contains(',')
                && first
                    .split(',')
                    .any(|c| c.trim().trim_matches('"').eq_ignore_ascii_case("ip"))
        })
}

fn parse_plain(text: &str) -> ParsedList {
    let mut parsed = ParsedList::default();
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
        // `203.0.113.7  # seen 2026-11-02` and `203.0.113.7;comment`.
        let (value, note) = match trimmed.find(['#', ';']) {
            Some(at) => (trimmed[..at].trim(), trimmed[at + 1..].trim()),
            None => (trimmed, ""),
        };
        let note = match (campaign.is_empty(), note.is_empty()) {
            (_, false) => note.to_owned(),
            (false, true) => campaign.clone(),
            (true, true) => String::new(),
        };
        match parse_network(value) {
            Ok(network) => parsed.entries.push(ListEntry {
                network,
                note,
                line,
            }),
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
    let Some(ip_column) = header.iter().position(|h| h.eq_ignore_ascii_case("ip")) else {
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
            Ok(network) => parsed.entries.push(ListEntry {
                network,
                note,
                line,
            }),
            Err(reason) => parsed.bad_lines.push(BadLine {
                line,
                text: record.iter().collect::<Vec<_>>().join(","),
                reason,
            }),
        }
    }
    Ok(parsed)
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
        assert_eq!(list.entries[0].note, "CERT botnet list 2026-11");
        assert_eq!(list.entries[1].note, "Mirai C2");
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
        assert_eq!(list.entries[0].note, "first_seen=2026-11-01; family=mirai");
        assert_eq!(list.entries[1].network, net("198.51.100.0/25"));
        assert_eq!(list.bad_lines.len(), 1);
        assert_eq!(list.bad_lines[0].line, 4);

        let err = parse("x.csv", b"address,note\n1.2.3.4,x\n", ListFormat::Auto).unwrap_err();
        assert!(matches!(err, ListError::NoIpColumn { .. }), "{err}");
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
        assert!(snowman.note.contains("Snowman"), "{}", snowman.note);
    }
}
