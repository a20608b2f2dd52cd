//! Chaos (issue 21, Also): a loopback TCP proxy between the agents and the collector cuts and
//! delays their connections at random while a fleet sweep runs, and the collector is restarted
//! mid-ingest. At the end every finding is stored exactly once and the sweep is done on every
//! host.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hygiene_tests::*;
use rand::Rng;
use serde_json::Value;

const HOSTS: usize = 3;
const INFECTED: usize = 300;

/// Forwards every connection to `upstream`; `cut()` closes every connection open now, and
/// while `delay` is set each chunk waits a little.
struct ChaosProxy {
    port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
    delay: Arc<AtomicBool>,
    cuts: AtomicU64,
}

impl ChaosProxy {
    fn start(upstream: String) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let delay: Arc<AtomicBool> = Arc::default();
        let (open_, delay_) = (open.clone(), delay.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                // The collector may be down (restarting): the agent sees a closed connection.
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut open = open_.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let delay = delay_.clone();
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if delay.load(Ordering::Relaxed) {
                                let ms = rand::rng().random_range(0..50);
                                std::thread::sleep(Duration::from_millis(ms));
                            }
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        ChaosProxy {
            port,
            open,
            delay,
            cuts: AtomicU64::new(0),
        }
    }

    fn cut(&self) {
        let mut open = self.open.lock().unwrap();
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.cuts.fetch_add(1, Ordering::Relaxed);
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

fn stored_per_host(site: &Site, id: &str) -> (usize, usize) {
    let findings: Vec<Value> = site
        .findings(id)
        .into_iter()
        .filter(|f| f["kind"] != "botnet_ip")
        .collect();
    let mut paths: Vec<&str> = findings
        .iter()
        .map(|f| f["path"].as_str().unwrap_or_default())
        .collect();
    paths.sort();
    paths.dedup();
    (findings.len(), paths.len())
}

#[test]
fn findings_and_sweeps_survive_cut_connections_and_a_collector_restart() {
    let mut site = Site::start().unwrap();
    let proxy = ChaosProxy::start(site.listen.clone());
    let rules = site.write(
        "rules/marker.yar",
        "rule Chaos_Marker { strings: $a = \"HYGIENE-CHAOS-MARKER\" condition: $a }",
    );
    let mut agents = Vec::new();
    for h in 0..HOSTS {
        let id = format!("chaos-{h}");
        let base = site.dir.path().join(&id);
        let (root, certs, state) = (base.join("root"), base.join("certs"), base.join("state"));
        std::fs::create_dir_all(&root).unwrap();
        for i in 0..INFECTED {
            std::fs::write(
                root.join(format!("f{i:03}.txt")),
                format!("HYGIENE-CHAOS-MARKER {h} {i}\n"),
            )
            .unwrap();
        }
        site.pki.issue_agent(&id, &certs).unwrap();
        let spec = AgentSpec {
            collector: proxy.url(),
            cert_dir: &certs,
            state_dir: &state,
            roots: vec![&root],
            rules: vec![&rules],
            iocs: vec![],
        };
        agents.push(
            Agent::start_with(&spec, site.dir.path(), &["--bundle-wait-seconds", "0"]).unwrap(),
        );
    }
    // Every host known (its start-up sweep on its way), then a fleet sweep, under chaos.
    wait_for(Duration::from_secs(90), "every host connected", || {
        (site.json(&["hosts", "list"]).as_array()?.len() == HOSTS).then_some(())
    })
    .unwrap();
    let started = site.json(&["sweep", "start", "--all", "--full"]);
    let sweep = started["id"].as_str().unwrap().to_owned();
    let mut rng = rand::rng();
    let chaos_until = Instant::now() + Duration::from_secs(15);
    let mut restarted = false;
    while Instant::now() < chaos_until {
        proxy.delay.store(rng.random_bool(0.5), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        proxy.cut();
        if !restarted && Instant::now() + Duration::from_secs(8) > chaos_until {
            // Mid-ingest: findings are still arriving.
            site.restart_collector().unwrap();
            restarted = true;
        }
    }
    proxy.delay.store(false, Ordering::Relaxed);
    eprintln!(
        "{} cuts, collector restarted",
        proxy.cuts.load(Ordering::Relaxed)
    );

    let logs = |agents: &[Agent]| {
        agents
            .iter()
            .map(|a| a.process.stderr())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    for h in 0..HOSTS {
        let id = format!("chaos-{h}");
        let (rows, files) = wait_for(
            Duration::from_secs(120),
            &format!("{id}'s findings"),
            || {
                let (rows, files) = stored_per_host(&site, &id);
                (files == INFECTED).then_some((rows, files))
            },
        )
        .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", stored_per_host(&site, &id), logs(&agents)));
        assert_eq!(rows, files, "{id}: a finding stored twice");
    }
    let status = wait_for(Duration::from_secs(120), "the fleet sweep done", || {
        let status = site.json(&["sweep", "status", &sweep]);
        (status["state"] == "done").then_some(status)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:#}\n{}",
            site.json(&["sweep", "status", &sweep]),
            logs(&agents)
        )
    });
    assert_eq!(status["totals"]["done"], HOSTS as u64, "{status:#}");
}
