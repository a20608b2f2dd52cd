//! Benchmark (figures, not a test): the collector's time for a large host's inventory, from
//! the encoded protocol message to the committed store write. `bash tests/bench/inventory.sh`
//! runs it in release mode.
//!
//! A host with 5,000 packages, 200 updates, 400 programs and 2,000 sockets: the first report
//! (everything new), the same report again, a complete report with 100 packages upgraded, a
//! delta with 50 more (what a quiet host sends every 6 hours), and the socket list (every 5
//! minutes). Goal: well under a second each.

use std::time::Instant;

use hygiene_collector::model::HostHello;
use hygiene_collector::server::{connection_report, inventory_report};
use hygiene_collector::store::Store;
use hygiene_proto::v1;
use prost::Message;

const PACKAGES: usize = 5_000;
const SOCKETS: usize = 2_000;

fn inventory(upgraded: usize) -> v1::Inventory {
    v1::Inventory {
        collected_at_ms: 1_700_000_000_000,
        os: Some(v1::OsInfo {
            family: "linux".into(),
            id: "debian".into(),
            version_id: "12".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-17-amd64".into(),
            arch: "x86_64".into(),
            ..Default::default()
        }),
        packages: (0..PACKAGES)
            .map(|i| v1::Package {
                name: format!("package-{i:05}"),
                version: if i < upgraded {
                    format!("2.{i}.1-1+deb12u2")
                } else {
                    format!("2.{i}.1-1+deb12u1")
                },
                arch: if i % 7 == 0 { "all" } else { "amd64" }.into(),
                source: format!("source-{}", i / 3),
                manager: "dpkg".into(),
            })
            .collect(),
        hotfixes: (0..200)
            .map(|i| v1::Hotfix {
                kb: format!("KB50{i:05}"),
                title: format!("2024-01 Cumulative Update (KB50{i:05})"),
                installed_on: "2024-01-10".into(),
            })
            .collect(),
        programs: (0..400)
            .map(|i| v1::Program {
                name: format!("Program {i}"),
                version: format!("16.0.{i}"),
                publisher: "Microsoft Corporation".into(),
            })
            .collect(),
        partial: Vec::new(),
        digest: vec![upgraded as u8; 32],
        ..Default::default()
    }
}

/// What the agent sends when 50 packages changed since the lists with `base`: a delta.
fn delta(base: u8) -> v1::Inventory {
    let mut message = inventory(0);
    message.packages.truncate(50);
    for p in &mut message.packages {
        p.version.push_str("+delta");
    }
    message.hotfixes.clear();
    message.programs.clear();
    message.base_digest = vec![base; 32];
    message.digest = vec![base + 1; 32];
    message
}

fn sockets() -> v1::Connections {
    v1::Connections {
        collected_at_ms: 1_700_000_000_000,
        connections: (0..SOCKETS)
            .map(|i| v1::Connection {
                proto: if i % 5 == 0 { "udp" } else { "tcp" }.into(),
                local_addr: "10.0.0.5".into(),
                local_port: 40_000 + i as u32,
                remote_addr: format!("203.0.{}.{}", i / 250, i % 250),
                remote_port: 443,
                state: "ESTABLISHED".into(),
                pid: 1000 + (i as u32 % 50),
                process: format!("worker-{}", i % 50),
            })
            .collect(),
        partial_reason: String::new(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("bench.db").display().to_string()).await?;
    store
        .record_hello(
            &HostHello {
                host_id: "big-01".into(),
                hostname: "big-01".into(),
                os_name: "Debian GNU/Linux".into(),
                os_version: "12".into(),
                kernel_version: "6.1.0".into(),
                arch: "x86_64".into(),
                ip_addresses: vec!["10.0.0.5".into()],
                agent_version: "bench".into(),
                boot_time: 0,
                peer_address: None,
            },
            1,
        )
        .await?;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "collector time for one host: {PACKAGES} packages, 200 updates, 400 programs, \
         {SOCKETS} sockets (SQLite, {build} build)"
    );
    let mut now = 10;
    for (label, message) in [
        ("first inventory (all new)", inventory(0)),
        ("same inventory again", inventory(0)),
        ("100 packages upgraded", inventory(100)),
        ("50 more as a delta", delta(100)),
    ] {
        let bytes = message.encode_to_vec();
        let started = Instant::now();
        let decoded = v1::Inventory::decode(bytes.as_slice())?;
        let report = inventory_report(decoded);
        assert!(store.record_inventory("big-01", &report, now).await?);
        let took = started.elapsed();
        println!(
            "  {label:<28} {:>8.1} ms  ({} KiB on the wire)",
            took.as_secs_f64() * 1e3,
            bytes.len() / 1024
        );
        now += 10;
    }
    for round in 0..2 {
        let mut message = sockets();
        message.collected_at_ms += round;
        let bytes = message.encode_to_vec();
        let started = Instant::now();
        let report = connection_report(v1::Connections::decode(bytes.as_slice())?);
        store.record_connections("big-01", &report, now).await?;
        let took = started.elapsed();
        println!(
            "  {:<28} {:>8.1} ms  ({} KiB on the wire)",
            format!("socket list #{}", round + 1),
            took.as_secs_f64() * 1e3,
            bytes.len() / 1024
        );
    }
    let detail = store.host_detail("big-01").await?.expect("the host exists");
    assert_eq!(detail.package_count, PACKAGES as u64);
    assert_eq!(detail.connection_count, SOCKETS as u64);
    Ok(())
}
