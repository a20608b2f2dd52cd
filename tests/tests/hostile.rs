//! Text an agent reports (file names above all, which a user on the host chooses) never
//! forges `hygienectl` output: control characters are escaped in tables, quoted in CSV, and
//! kept exact in JSON.

use std::time::Duration;

use hygiene_tests::*;

const WAIT: Duration = Duration::from_secs(60);

#[cfg(unix)]
#[test]
fn hostile_file_names_cannot_forge_rows_or_reach_the_terminal() {
    let site = Site::start().unwrap();
    let rules = site.write(
        "eicar.yar",
        "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
    );
    let eicar = String::from_utf8(EICAR.to_vec()).unwrap();
    let forged = "invoice.pdf\n7  web-01  resolved  yara  Clean_File";
    let clearing = "report\u{1b}[2J\u{1b}[H.doc";
    let agent = site
        .start_agent("ws-9", &[(forged, &eicar), (clearing, &eicar)], &rules, &[])
        .unwrap();
    let json = wait_for(WAIT, "both findings", || {
        let findings = site.findings("ws-9");
        (findings.len() == 2).then_some(findings)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    // JSON keeps the exact names.
    let paths: Vec<&str> = json.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(paths.iter().any(|p| p.ends_with(forged)), "{paths:?}");
    assert!(paths.iter().any(|p| p.ends_with(clearing)), "{paths:?}");

    for args in [
        vec!["findings", "list", "--wide"],
        vec!["findings", "list"],
        vec!["findings", "list", "--by-file"],
    ] {
        let out = site.ctl(&args);
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines().count(),
            3,
            "{args:?}: one header, two rows:\n{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "{args:?}: a raw escape reached the terminal"
        );
    }
    let wide = String::from_utf8(site.ctl(&["findings", "list", "--wide"]).stdout).unwrap();
    assert!(wide.contains(r"invoice.pdf\n7  web-01"), "{wide}");
    assert!(wide.contains(r"report\x1b[2J\x1b[H.doc"), "{wide}");

    // CSV quotes the value whole: a reader gets the exact name back.
    let csv_out = site.ctl(&["findings", "list", "--format", "csv"]).stdout;
    let mut reader = csv::Reader::from_reader(csv_out.as_slice());
    let headers = reader.headers().unwrap().clone();
    let path_at = headers.iter().position(|h| h == "path").unwrap();
    let paths: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[path_at].to_owned())
        .collect();
    assert_eq!(paths.len(), 2);
    assert!(paths.iter().any(|p| p.ends_with(forged)), "{paths:?}");
}

/// Starts `hygiene-collector serve` with an open-file limit of `limit` (soft and hard, so
/// that it cannot raise it) and its stderr in `log`: the process, its address and its URL.
#[cfg(unix)]
fn collector_limited(
    dir: &std::path::Path,
    pki: &Pki,
    limit: u32,
    log: &std::path::Path,
) -> (KillOnDrop, String, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut collector = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec {} serve --listen 127.0.0.1:0 --db {} --pki {} 2>{}",
            bin("hygiene-collector").display(),
            db_url(dir),
            pki.dir.display(),
            log.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(collector.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("collector did not start: {line:?}"))
        .to_owned();
    let url = format!("https://{addr}");
    (KillOnDrop(collector), addr, url)
}

/// A child process killed when the test ends, failed or not.
#[cfg(unix)]
struct KillOnDrop(std::process::Child);

#[cfg(unix)]
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// More agents than the collector has descriptors for: the admin service must still answer.
/// Agents above the budget (the limit less a reserve of 128) are turned away after the
/// handshake, and retry later.
#[cfg(unix)]
#[test]
fn the_admin_service_answers_when_agents_would_take_every_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let log = dir.path().join("collector.log");
    let (_collector, _, url) = collector_limited(dir.path(), &pki, 200, &log);
    let loadgen = Loadgen::start(&url, &pki, 250, None, dir.path()).unwrap();
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    // Time for the agents to take whatever they can (a thousand connect in about 2 s).
    std::thread::sleep(std::time::Duration::from_secs(5));
    // Several calls in a row, while 250 agents keep trying.
    for _ in 0..5 {
        let out = ctl(&url, &pki.dir, &["hosts", "list", "--format", "json"]).unwrap();
        assert!(out.status.success(), "{out:?}\n{}", logged());
        let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let online = hosts
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["online"] == true)
            .count();
        assert!(online <= 200 - 128, "{online} agents online");
    }
    assert!(
        logged().contains("agents turned away"),
        "{}\n{}",
        logged(),
        loadgen.process.stderr()
    );
}

/// Out of file descriptors (more connections than the open-file limit allows), the collector
/// said nothing and stopped answering. Now it logs why, keeps accepting once connections
/// close, and answers hygienectl again.
#[cfg(unix)]
#[test]
fn a_collector_out_of_file_descriptors_says_so_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let log = dir.path().join("collector.log");
    // A hard limit of 64 open files, which the collector cannot raise.
    let (_collector, addr, url) = collector_limited(dir.path(), &pki, 64, &log);
    assert!(
        ctl(&url, &pki.dir, &["hosts", "list"])
            .unwrap()
            .status
            .success()
    );

    // Far more connections than 64 descriptors: the rest wait in the listen queue.
    let hogs: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    wait_for(WAIT, "the collector to log failing accepts", || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("cannot accept connections")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    drop(hogs);
    // Once they are gone, it answers again.
    wait_for(WAIT, "hygienectl answered again", || {
        ctl(&url, &pki.dir, &["hosts", "list"])
            .ok()
            .filter(|o| o.status.success())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
}

/// A sweep's findings beyond the per-host limit are counted, not stored, and the sweep is
/// recorded as failed: its silence about the findings it could not report resolves nothing.
#[test]
fn findings_over_the_per_sweep_limit_are_counted_and_prove_nothing() {
    let site = Site::start_with(&["--max-findings-per-sweep", "5"]).unwrap();
    let rules = site.write(
        "marker.yar",
        r#"rule Marker { strings: $a = "HYGIENE-FLOOD-MARKER" condition: $a }"#,
    );
    let names: Vec<String> = (0..12).map(|i| format!("flood-{i:02}.txt")).collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "HYGIENE-FLOOD-MARKER"))
        .collect();
    let agent = site.start_agent("web-01", &files, &rules, &[]).unwrap();
    // The agent's first sweep (on start) is recorded as failed, which the log says.
    wait_for(WAIT, "the first sweep's summary", || {
        let log = site.collector.process.stderr();
        log.contains("at most 5 per host and sweep are stored")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let first: Vec<String> = site
        .findings("web-01")
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first.len(), 5, "{first:?}");
    let log = site.collector.process.stderr();
    assert!(log.contains("counted, not stored"), "{log}");
    // The files the limit left out are still there; half of those stored are deleted. A
    // sweep that again cannot report everything proves none of them gone.
    for path in first.iter().take(3) {
        std::fs::remove_file(path).unwrap();
    }
    let out = site.json(&["sweep", "start", "--host", "web-01", "--splay", "0"]);
    let id = out["id"].as_str().unwrap().to_owned();
    wait_for(WAIT, "the second sweep to end", || {
        (site.json(&["sweep", "status", &id])["state"] != "running").then_some(())
    })
    .unwrap();
    let after = site.findings("web-01");
    assert!(
        after.iter().all(|f| f["state"] == "open"),
        "a sweep over the limit resolved findings: {after:?}"
    );
    assert_ne!(site.status("web-01"), "clean");
}

/// An agent message larger than the collector takes ends that agent's stream, unacknowledged
/// and unstored; the collector goes on serving everyone else.
#[test]
fn an_oversized_agent_message_ends_only_its_stream() {
    use hygiene_proto::v1;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let site = Site::start().unwrap();
    let certs = site.dir.path().join("big-certs");
    site.pki.issue_agent("big-01", &certs).unwrap();
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let acked: Vec<u64> = runtime.block_on(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")))
            .identity(Identity::from_pem(read("agent.pem"), read("agent.key")));
        let channel = Endpoint::from_shared(site.collector.url())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = v1::agent_service_client::AgentServiceClient::new(channel)
            .max_encoding_message_size(64 << 20);
        let hello = v1::AgentMessage {
            seq: 1,
            body: Some(v1::agent_message::Body::Hello(v1::Hello {
                facts: Some(v1::HostFacts {
                    hostname: "big-01".into(),
                    ..Default::default()
                }),
                agent_version: "test".into(),
                heartbeat_interval_seconds: 30,
            })),
        };
        let huge = v1::AgentMessage {
            seq: 2,
            body: Some(v1::agent_message::Body::Findings(v1::FindingBatch {
                sweep_id: "s1".into(),
                findings: vec![v1::Finding {
                    path: format!("/tmp/{}", "x".repeat(5 << 20)),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        let outbound = tokio_stream::iter([hello, huge]);
        let mut inbound = client.session(outbound).await.unwrap().into_inner();
        let mut acked = Vec::new();
        // Until the collector ends the stream (an error or its end).
        while let Ok(Ok(Some(message))) = tokio::time::timeout(WAIT, inbound.message()).await {
            if let Some(v1::collector_message::Body::Ack(ack)) = message.body {
                acked.push(ack.seq);
            }
        }
        acked
    });
    assert_eq!(acked, [1], "only the hello is acknowledged");
    assert!(site.findings("big-01").is_empty());
    let log = site.collector.process.stderr();
    assert!(
        log.contains("big-01") && log.contains("stream broke"),
        "{log}"
    );
    // Everyone else is still served.
    let hosts = site.json(&["hosts", "list"]);
    assert_eq!(hosts.as_array().unwrap().len(), 1, "{hosts}");
}
