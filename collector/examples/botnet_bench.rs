//! Benchmark (figures, not a test): 10,000 hosts × 50 connections against a botnet list of
//! 100,000 entries (half addresses, half CIDR ranges from /20 to /30). `bash
//! tests/bench/botnet.sh` runs it in release mode. Goal: matching under 1 second.
//!
//! Measured in one run:
//! - building the prefix trie from the list;
//! - matching every host (its addresses, egress address and 50 connections), the part the
//!   goal is about;
//! - the peer: the obvious code, every address tested against every entry with
//!   `ipnet::IpNet::contains`, timed on a sample of hosts and scaled to the fleet;
//! - the whole re-check a list import sets off through the SQLite store (read every host's
//!   addresses and sockets, match, write the findings), with 10,000 hosts stored.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use hygiene_collector::intel::{ActiveEntry, HostNetFacts, IpMatcher, match_host};
use hygiene_collector::model::{ConnectionReport, HostHello, NetConnection};
use hygiene_collector::services::Intel;
use hygiene_collector::store::Store;
use ipnet::{IpNet, Ipv4Net};

const HOSTS: usize = 10_000;
const CONNECTIONS: usize = 50;
const ENTRIES: usize = 100_000;
/// Hosts the linear-scan peer is timed on.
const PEER_SAMPLE: usize = 20;

/// A fixed pseudo-random sequence, so every run matches the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
}

fn list(rng: &mut Lcg) -> Vec<ActiveEntry> {
    (0..ENTRIES)
        .map(|i| {
            let addr = Ipv4Addr::from(rng.next());
            let len = if i % 2 == 0 {
                32
            } else {
                // Ranges as CERT lists carry them: a /20 (4,096 addresses) at the widest.
                20 + (rng.next() % 11) as u8
            };
            ActiveEntry {
                list_id: 1 + (i % 3) as i64,
                list_label: format!("cert v{}", 1 + i % 3),
                network: IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc()),
                note: String::new(),
            }
        })
        .collect()
}

fn hosts(rng: &mut Lcg) -> Vec<HostNetFacts> {
    (0..HOSTS)
        .map(|h| {
            let own = format!("10.{}.{}.{}", h / 65536, (h / 256) % 256, h % 256);
            HostNetFacts {
                host_id: format!("host-{h:05}"),
                addresses: vec![own.clone()],
                peer_address: Some(format!("192.0.2.{}:50000", h % 250 + 1)),
                connections: (0..CONNECTIONS)
                    .map(|c| NetConnection {
                        proto: "tcp".into(),
                        local_addr: own.clone(),
                        local_port: 40000 + c as u16,
                        remote_addr: Ipv4Addr::from(rng.next()).to_string(),
                        remote_port: 443,
                        state: "ESTABLISHED".into(),
                        pid: Some(1000 + c as u32),
                        process: Some("app.exe".into()),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The peer: every address of a host tested against every entry.
fn linear_matches(entries: &[ActiveEntry], host: &HostNetFacts) -> usize {
    let mut addresses: Vec<IpAddr> = host
        .addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    addresses.extend(
        host.peer_address
            .as_deref()
            .and_then(|p| p.parse::<std::net::SocketAddr>().ok())
            .map(|s| s.ip()),
    );
    addresses.extend(
        host.connections
            .iter()
            .filter_map(|c| c.remote_addr.parse::<IpAddr>().ok()),
    );
    addresses
        .iter()
        .filter(|ip| entries.iter().any(|e| e.network.contains(*ip)))
        .count()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut rng = Lcg(0x5eed_2026_1130);
    let entries = list(&mut rng);
    let hosts = hosts(&mut rng);

    let started = Instant::now();
    let matcher = IpMatcher::new(entries.clone());
    let build = started.elapsed();

    let started = Instant::now();
    let mut matched_hosts = 0;
    let mut matches = 0;
    for host in &hosts {
        let found = match_host(&matcher, host);
        matched_hosts += usize::from(!found.is_empty());
        matches += found.len();
    }
    let matching = started.elapsed();

    let started = Instant::now();
    let mut peer_matches = 0;
    for host in &hosts[..PEER_SAMPLE] {
        peer_matches += linear_matches(&entries, host);
    }
    let peer_sample = started.elapsed();
    let peer_fleet = peer_sample.as_secs_f64() * (HOSTS / PEER_SAMPLE) as f64;
    let ours_sample: usize = hosts[..PEER_SAMPLE]
        .iter()
        .map(|h| match_host(&matcher, h).len())
        .sum();
    anyhow::ensure!(
        ours_sample <= peer_matches,
        "the trie found {ours_sample} matches on the sample, the linear scan {peer_matches} addresses"
    );

    println!(
        "{HOSTS} hosts × {CONNECTIONS} connections against {ENTRIES} entries (half /32, half /20-/30)"
    );
    println!("  prefix trie built in {:.0} ms", build.as_secs_f64() * 1e3);
    println!(
        "  matched in {:.0} ms: {matched_hosts} hosts on the list, {matches} matches (goal: under 1 s)",
        matching.as_secs_f64() * 1e3
    );
    println!(
        "  peer, linear scan with ipnet::IpNet::contains: {:.1} s for {PEER_SAMPLE} hosts, {:.0} s for the fleet scaled; ours is {:.0}× faster",
        peer_sample.as_secs_f64(),
        peer_fleet,
        peer_fleet / matching.as_secs_f64()
    );

    // The whole re-check a list import sets off, through the store.
    let dir = tempfile::tempdir()?;
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await?;
    let started = Instant::now();
    for host in &hosts {
        store
            .record_hello(
                &HostHello {
                    host_id: host.host_id.clone(),
                    hostname: host.host_id.clone(),
                    os_name: "Windows".into(),
                    os_version: "10".into(),
                    kernel_version: String::new(),
                    arch: "x86_64".into(),
                    ip_addresses: host.addresses.clone(),
                    agent_version: "bench".into(),
                    boot_time: 0,
                    peer_address: host.peer_address.clone(),
                },
                1,
            )
            .await?;
        let report = ConnectionReport {
            collected_ms: 1,
            connections: host.connections.clone(),
            partial_reason: None,
        };
        store.record_connections(&host.host_id, &report, 1).await?;
    }
    println!(
        "  store: {HOSTS} hosts and {} sockets written in {:.1} s (setup, not measured)",
        HOSTS * CONNECTIONS,
        started.elapsed().as_secs_f64()
    );
    let text: String = entries.iter().map(|e| format!("{}\n", e.network)).collect();
    let (parsed, _) = hygiene_collector::intel::iplist::parse(
        "bench.txt",
        text.as_bytes(),
        hygiene_collector::intel::iplist::ListFormat::Plain,
    )?;
    let intel = Intel::load(store.clone()).await?;
    let started = Instant::now();
    let list = hygiene_collector::model::NewIpList {
        source: "bench".into(),
        file_name: "bench.txt".into(),
        format: "plain".into(),
        sha256: String::new(),
        bad_lines: 0,
        domains: 0,
        replace: false,
        actor: "bench".into(),
    };
    store.import_ip_list(&list, &parsed, 2).await?;
    let stored = started.elapsed();
    let summary = intel.reload_and_recheck().await?;
    let total = started.elapsed();
    println!(
        "  import through the store: list stored in {:.0} ms; re-check of every host {} ms ({} hosts matched, {} findings opened); {:.2} s in all",
        stored.as_secs_f64() * 1e3,
        summary.elapsed_ms,
        summary.matched_hosts,
        summary.opened,
        total.as_secs_f64()
    );
    anyhow::ensure!(
        summary.opened as usize == matches,
        "the store opened {} findings, the matcher found {matches}",
        summary.opened
    );
    Ok(())
}
