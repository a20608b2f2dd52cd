//! Threat intelligence on the collector: the CERT's botnet IP lists and what they say about
//! each host.
//!
//! - [`iplist`]: reading list files (plain, Loki's C2 list, CSV).
//! - [`matcher`]: the active lists' networks, compact and sorted per prefix length.
//! - [`botnet`]: one host's addresses, egress address and sockets against the lists.
//! - [`rollout`]: where a rule or IOC bundle's rollout stands on each host.
//!
//! This module is the domain alone (no store): [`crate::services::Intel`] holds the matcher
//! built from the store's active lists and re-checks hosts. Each match is a `botnet_ip`
//! finding; see [`crate::store::IntelStore::apply_botnet_matches`] for when one is resolved.

pub mod botnet;
pub mod bundles;
pub mod iplist;
pub mod matcher;
pub mod rollout;

pub use botnet::{BotnetMatch, HostNetFacts, MatchVia, match_host, no_longer_matches};
pub use matcher::{ActiveEntry, IpMatcher};

/// What a re-check found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecheckSummary {
    pub hosts: u64,
    /// Hosts with at least one match.
    pub matched_hosts: u64,
    pub opened: u64,
    pub reopened: u64,
    pub resolved: u64,
    pub elapsed_ms: u64,
}

/// Lower-case hex SHA-256 of `bytes` (an imported file's fingerprint).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hygiene_proto::bundle::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}
