//! Benchmark (figures, not a test): the collector's store at a province's size, on SQLite and
//! on PostgreSQL in one run. `bash tests/bench/store.sh` runs it in release mode with
//! PostgreSQL from `HYGIENE_TEST_POSTGRES` (a fresh database, dropped afterwards).
//!
//! For each engine:
//! - findings ingested per second: agents' finding batches (100 findings each, as a sweep
//!   sends them) recorded through `record_findings` by 8 concurrent writers, as 8 agent
//!   streams would, until the store holds `FINDINGS` findings over `HOSTS` hosts;
//! - then the two calls an admin makes all day, through the services the admin API and the
//!   console call: the hosts list (every host with its status) and the progress counts.
//!   Goal (issue 23): under 300 ms each with 10,000 hosts and 1,000,000 findings.
//!
//! `store_bench [HOSTS] [FINDINGS]` (defaults 10,000 and 1,000,000).

use std::time::{Duration, Instant};

use hygiene_collector::agents::Registry;
use hygiene_collector::certs::Revocations;
use hygiene_collector::model::{FindingKind, HostHello, NewFinding};
use hygiene_collector::services::{Cleanup, Fleet, HostQuery, Intel, Site, Vulns};
use hygiene_collector::store::Store;
use hygiene_collector::store::test_db::TestDatabase;

/// Findings per `record_findings` call.
const BATCH: usize = 100;
/// Concurrent writers (agent streams).
const WRITERS: usize = 8;
/// Each timed read is run this many times; the median is reported.
const RUNS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let hosts: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let findings: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    println!(
        "store benchmark: {hosts} hosts, {findings} findings, batches of {BATCH}, {WRITERS} writers"
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite_figures = run("SQLite", &sqlite, hosts, findings).await?;
    let pg = TestDatabase::create().await;
    let pg_figures = match &pg {
        Some(db) => Some(run("PostgreSQL", &db.url(), hosts, findings).await?),
        None => {
            println!("PostgreSQL skipped: set HYGIENE_TEST_POSTGRES=postgres://user@host:port");
            None
        }
    };
    println!();
    println!("| Measurement | SQLite | PostgreSQL | PostgreSQL / SQLite |");
    println!("|---|---|---|---|");
    let row = |name: &str, unit: &str, s: f64, p: Option<f64>| {
        let (p_text, ratio) = match p {
            Some(p) => (format!("{p:.0} {unit}"), format!("{:.2}", p / s)),
            None => ("-".into(), "-".into()),
        };
        println!("| {name} | {s:.0} {unit} | {p_text} | {ratio} |");
    };
    let pgf = pg_figures.as_ref();
    row(
        "findings ingested",
        "/s",
        sqlite_figures.ingest_per_s,
        pgf.map(|f| f.ingest_per_s),
    );
    row(
        "hosts list (median)",
        "ms",
        ms(sqlite_figures.hosts_list),
        pgf.map(|f| ms(f.hosts_list)),
    );
    row(
        "progress (median)",
        "ms",
        ms(sqlite_figures.progress),
        pgf.map(|f| ms(f.progress)),
    );
    Ok(())
}

struct Figures {
    ingest_per_s: f64,
    hosts_list: Duration,
    progress: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(engine: &str, url: &str, hosts: usize, findings: usize) -> anyhow::Result<Figures> {
    println!("\n{engine}:");
    let store = Store::open(url).await?;
    let host_ids: Vec<String> = (0..hosts).map(|i| format!("host-{i:05}")).collect();
    let started = Instant::now();
    for host in &host_ids {
        store.record_hello(&hello(host), 1).await?;
    }
    println!(
        "  {hosts} hosts registered in {:.1} s (setup)",
        started.elapsed().as_secs_f64()
    );

    // Batches go round the hosts, so that every host ends with findings/hosts of them.
    let batches = findings.div_ceil(BATCH);
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let host_ids = host_ids.clone();
        writers.push(tokio::spawn(async move {
            let mut b = w;
            while b < batches {
                let host = &host_ids[b % host_ids.len()];
                let round = b / host_ids.len();
                let batch: Vec<NewFinding> = (0..BATCH)
                    .map(|i| finding(round * BATCH + i, (b * 7 + i) as u64))
                    .collect();
                store.record_findings(host, &batch, 2).await?;
                b += WRITERS;
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let took = started.elapsed();
    let ingest_per_s = (batches * BATCH) as f64 / took.as_secs_f64();
    println!(
        "  {} findings ingested in {:.1} s: {ingest_per_s:.0} findings/s",
        batches * BATCH,
        took.as_secs_f64()
    );

    let site = Site {
        store: store.clone(),
        registry: Registry::default(),
        intel: Intel::load(store.clone()).await?,
        vulns: Vulns::load(store.clone()).await?,
        revocations: Revocations::default(),
    };
    let stale_after_ms = 3_600_000;
    let fleet = Fleet::new(site.clone(), stale_after_ms);
    let cleanup = Cleanup::new(site, stale_after_ms);
    let hosts_list = median(|| async {
        let listed = fleet.hosts(&HostQuery::default()).await?;
        anyhow::ensure!(listed.len() == hosts, "{} hosts listed", listed.len());
        Ok(())
    })
    .await?;
    println!("  hosts list: {:.0} ms (median of {RUNS})", ms(hosts_list));
    let progress = median(|| async {
        let p = cleanup.progress(None).await?;
        anyhow::ensure!(p.hosts as usize == hosts, "{} hosts counted", p.hosts);
        Ok(())
    })
    .await?;
    println!("  progress: {:.0} ms (median of {RUNS})", ms(progress));
    Ok(Figures {
        ingest_per_s,
        hosts_list,
        progress,
    })
}

async fn median<F, Fut>(mut call: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        call().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[RUNS / 2])
}

fn hello(host: &str) -> HostHello {
    HostHello {
        host_id: host.to_owned(),
        hostname: host.to_owned(),
        os_name: "Windows".into(),
        os_version: "10".into(),
        kernel_version: String::new(),
        arch: "x86_64".into(),
        ip_addresses: vec!["10.1.2.3".into()],
        agent_version: "bench".into(),
        boot_time: 0,
        peer_address: None,
    }
}

/// The `n`th finding of a host: a file matched by one of a few dozen rules.
fn finding(n: usize, seed: u64) -> NewFinding {
    NewFinding {
        sweep_id: "bench-sweep".into(),
        kind: FindingKind::Yara,
        path: format!(
            "C:\\Users\\user{}\\AppData\\Local\\Temp\\dropper-{n}.exe",
            n % 7
        ),
        path_raw: None,
        sha256: format!("{:064x}", u128::from(seed as u32) * 0x9e37_79b9 + n as u128),
        size: 4096 + n as u64,
        rule: format!("MAL_Bench_Rule_{}", n % 40),
        namespace: "signature-base".into(),
        ioc_comment: String::new(),
        observed_at_ms: 2,
        rules_version: "bench".into(),
        iocs_version: String::new(),
    }
}
