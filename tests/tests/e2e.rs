//! End to end: a real collector and real agents over real mTLS on loopback, certificates made
//! at test time, results read back through hygienectl.

use std::path::Path;
use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A directory with EICAR and a file matching a signature-base rule, a hash IOC list for
/// EICAR, and a rule file of our own.
struct Demo {
    root: std::path::PathBuf,
    iocs: std::path::PathBuf,
    rules: std::path::PathBuf,
}

fn demo(dir: &Path) -> Demo {
    let root = dir.join("demo");
    std::fs::create_dir_all(root.join(".cache")).unwrap();
    // Hidden directories are scanned too.
    std::fs::write(root.join(".cache/eicar.com"), EICAR).unwrap();
    std::fs::write(root.join("notes.txt"), "nothing to see").unwrap();
    let iocs = dir.join("iocs.txt");
    std::fs::write(
        &iocs,
        format!("# test list\n{EICAR_SHA256};EICAR test file\n"),
    )
    .unwrap();
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("eicar.yar"),
        "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
    )
    .unwrap();
    Demo { root, iocs, rules }
}

fn findings_of(collector: &str, pki: &Path, host: &str) -> Vec<Value> {
    match ctl_json(collector, pki, &["findings", "list", "--host", host]) {
        Ok(Value::Array(rows)) => rows,
        _ => Vec::new(),
    }
}

fn host_row(collector: &str, pki: &Path, host: &str) -> Option<Value> {
    let Ok(Value::Array(rows)) = ctl_json(collector, pki, &["hosts", "list"]) else {
        return None;
    };
    rows.into_iter().find(|row| row["host_id"] == host)
}

#[test]
fn eicar_finding_reaches_hygienectl() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    pki.issue_agent("web-01", &dir.path().join("agent-certs"))
        .unwrap();
    let collector = Collector::start(dir.path(), &pki, "127.0.0.1:0").unwrap();
    let demo = demo(dir.path());
    let spec = AgentSpec {
        collector: collector.url(),
        cert_dir: &dir.path().join("agent-certs"),
        state_dir: &dir.path().join("agent-state"),
        roots: vec![&demo.root],
        rules: vec![&demo.rules],
        iocs: vec![&demo.iocs],
    };
    let agent = Agent::start(&spec, dir.path()).unwrap();

    let findings = wait_for(WAIT, "both EICAR findings", || {
        let rows = findings_of(&collector.url(), &pki.dir, "web-01");
        (rows.len() >= 2).then_some(rows)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent: {}\ncollector: {}",
            agent.process.stderr(),
            collector.process.stderr()
        )
    });
    assert_eq!(findings.len(), 2, "{findings:#?}");
    for finding in &findings {
        assert_eq!(finding["host_id"], "web-01");
        assert_eq!(finding["sha256"], EICAR_SHA256);
        assert_eq!(finding["size"], 68);
        assert_eq!(finding["state"], "open");
        assert!(
            finding["path"]
                .as_str()
                .unwrap()
                .ends_with(".cache/eicar.com")
        );
        assert!(finding["id"].is_i64() && finding["first_seen"].is_string());
    }
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"hash_ioc") && kinds.contains(&"yara"),
        "{kinds:?}"
    );
    let yara = findings.iter().find(|f| f["kind"] == "yara").unwrap();
    assert_eq!(yara["rule"], "EICAR_String");
    let ioc = findings.iter().find(|f| f["kind"] == "hash_ioc").unwrap();
    assert_eq!(ioc["ioc_comment"], "EICAR test file");

    // The host is listed as infected and online, with the facts from its hello.
    let infected = ctl_json(&collector.url(), &pki.dir, &["hosts", "list", "--infected"]).unwrap();
    let rows = infected.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["host_id"], "web-01");
    assert_eq!(rows[0]["open_findings"], 2);
    assert_eq!(rows[0]["online"], true);
    assert!(!rows[0]["hostname"].as_str().unwrap().is_empty());
    assert!(!rows[0]["os"].as_str().unwrap().is_empty());
    assert!(rows[0]["last_seen"].is_string());

    // Exit code 1 means findings; the table and CSV carry the same rows.
    let table = ctl(&collector.url(), &pki.dir, &["findings", "list"]).unwrap();
    assert_eq!(table.status.code(), Some(1));
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.starts_with("ID") && text.contains("EICAR_String"),
        "{text}"
    );
    let csv = ctl(
        &collector.url(),
        &pki.dir,
        &["hosts", "list", "--format", "csv"],
    )
    .unwrap();
    assert!(
        String::from_utf8(csv.stdout)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("web-01,")
    );
    // The inventory arrives too: on a dpkg system, the installed packages dpkg-query lists.
    if let Ok(out) = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev}\n"])
        .output()
    {
        let installed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ii "))
            .count();
        let packages = wait_for(WAIT, "the package list", || {
            let rows = ctl_json(
                &collector.url(),
                &pki.dir,
                &["packages", "list", "--host", "web-01"],
            )
            .ok()?;
            let rows = rows.as_array()?.clone();
            (!rows.is_empty()).then_some(rows)
        })
        .unwrap_or_else(|e| panic!("{e}\nagent: {}", agent.process.stderr()));
        assert_eq!(packages.len(), installed);
        assert!(packages.iter().all(|p| p["host_id"] == "web-01"
            && p["name"].is_string()
            && p["version"].is_string()
            && p["installed"].is_string()
            && p["manager"] == "dpkg"));

        // The host in detail: OS from the inventory, the package count, when it came.
        let show = ctl_json(&collector.url(), &pki.dir, &["hosts", "show", "web-01"]).unwrap();
        assert_eq!(show["host_id"], "web-01");
        assert_eq!(show["os_family"], "linux");
        assert_eq!(show["packages"], installed);
        assert!(show["inventory_collected"].is_string(), "{show}");
        assert!(show["last_package_change"].is_string(), "{show}");
        assert!(!show["os"].as_str().unwrap().is_empty());
        let table = ctl(&collector.url(), &pki.dir, &["hosts", "show", "web-01"]).unwrap();
        assert_eq!(table.status.code(), Some(1), "open findings: exit 1");
        let text = String::from_utf8(table.stdout).unwrap();
        assert!(
            text.starts_with("HOST_ID") && text.contains("OS_FAMILY"),
            "{text}"
        );

        // Hosts by package: present, below a higher version, not below its own version.
        let pick = &packages[0];
        let (name, version) = (
            pick["name"].as_str().unwrap(),
            pick["version"].as_str().unwrap(),
        );
        let hosts = |args: &[&str]| -> Vec<String> {
            let mut all = vec!["hosts", "list"];
            all.extend_from_slice(args);
            ctl_json(&collector.url(), &pki.dir, &all)
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["host_id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(hosts(&["--has-package", name]), vec!["web-01"]);
        assert!(hosts(&["--has-package", "no-such-package-anywhere"]).is_empty());
        assert_eq!(
            hosts(&["--package-below", &format!("{name}={version}+zz1")]),
            vec!["web-01"]
        );
        assert!(hosts(&["--package-below", &format!("{name}={version}")]).is_empty());
        // A Linux host is never listed as missing a Windows update.
        assert!(hosts(&["--missing-kb", "KB5034441"]).is_empty());

        // Later reports come as deltas (nothing changed) and leave the lists whole.
        let first_report = show["inventory_collected"].clone();
        let later = wait_for(WAIT, "a later inventory report", || {
            let show = ctl_json(&collector.url(), &pki.dir, &["hosts", "show", "web-01"]).ok()?;
            (show["inventory_collected"] != first_report).then_some(show)
        })
        .unwrap();
        assert_eq!(later["packages"], installed);
    }

    // Its connections: among them the agent's own stream to the collector, with its process.
    let port: u32 = collector.url().rsplit(':').next().unwrap().parse().unwrap();
    let own = wait_for(WAIT, "the agent's connection list", || {
        let rows = ctl_json(
            &collector.url(),
            &pki.dir,
            &[
                "connections",
                "list",
                "--host",
                "web-01",
                "--remote",
                "127.0.0.0/8",
            ],
        )
        .ok()?;
        rows.as_array()?
            .iter()
            // hygienectl's own calls show up too; the agent's stream is the one it owns.
            .find(|c| {
                c["remote_port"] == port
                    && c["state"] == "ESTABLISHED"
                    && c["process"] == "hygiene-agent"
            })
            .cloned()
    })
    .unwrap_or_else(|e| {
        let all = ctl(&collector.url(), &pki.dir, &["connections", "list"]).unwrap();
        panic!(
            "{e}\nconnections: {}{}\nagent: {}",
            String::from_utf8_lossy(&all.stdout),
            String::from_utf8_lossy(&all.stderr),
            agent.process.stderr()
        )
    });
    assert_eq!(own["proto"], "tcp");
    assert_eq!(own["remote_addr"], "127.0.0.1");
    assert!(own["pid"].as_u64().unwrap() > 0);
    let elsewhere = ctl_json(
        &collector.url(),
        &pki.dir,
        &["connections", "list", "--remote", "192.0.2.0/24"],
    )
    .unwrap();
    assert_eq!(elsewhere, Value::Array(vec![]));
    let bad = ctl(
        &collector.url(),
        &pki.dir,
        &["connections", "list", "--remote", "10.0.0.0/40"],
    )
    .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("CIDR"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Another host has no findings: clean listing, exit 0.
    let other = ctl(
        &collector.url(),
        &pki.dir,
        &["findings", "list", "--host", "nobody", "--format", "json"],
    )
    .unwrap();
    assert_eq!(other.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&other.stdout).unwrap(),
        Value::Array(vec![])
    );
}

#[test]
fn foreign_and_missing_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let foreign = Pki::init(&dir.path().join("foreign-pki")).unwrap();
    let collector = Collector::start(dir.path(), &pki, "127.0.0.1:0").unwrap();

    // An admin certificate from another CA.
    let output = ctl(&collector.url(), &foreign.dir, &["hosts", "list"]).unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hygienectl: error"), "{stderr}");

    // An agent that trusts our collector but presents a certificate from another CA.
    foreign
        .issue_agent("intruder", &dir.path().join("foreign-agent"))
        .unwrap();
    let certs = dir.path().join("mixed-agent");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(pki.dir.join("ca.pem"), certs.join("ca.pem")).unwrap();
    for file in ["agent.pem", "agent.key"] {
        std::fs::copy(
            dir.path().join("foreign-agent").join(file),
            certs.join(file),
        )
        .unwrap();
    }
    let root = dir.path().join("empty-root");
    std::fs::create_dir_all(&root).unwrap();
    let spec = AgentSpec {
        collector: collector.url(),
        cert_dir: &certs,
        state_dir: &dir.path().join("state"),
        roots: vec![&root],
        rules: vec![],
        iocs: vec![],
    };
    let agent = Agent::start(&spec, dir.path()).unwrap();
    wait_for(WAIT, "the intruder's second failed attempt", || {
        (agent.process.stderr().matches("reconnecting in").count() >= 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    assert!(
        !agent.process.stderr().contains("connected collector"),
        "{}",
        agent.process.stderr()
    );
    let hosts = ctl_json(&collector.url(), &pki.dir, &["hosts", "list"]).unwrap();
    assert_eq!(
        hosts,
        Value::Array(vec![]),
        "the intruder must not be recorded"
    );

    // No client certificate at all: the TLS handshake is refused, so the call fails.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = std::fs::read(pki.dir.join("ca.pem")).unwrap();
    let result: Result<(), String> = runtime.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        let endpoint = tonic::transport::Endpoint::from_shared(collector.url())
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut client = hygiene_proto::v1::admin_service_client::AdminServiceClient::new(channel);
        client
            .list_hosts(hygiene_proto::v1::ListHostsRequest::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    assert!(result.is_err(), "a client without a certificate was served");

    // Every refusal is counted for the admin, with what the peer presented, and logged.
    let intruder_serial = serial_of(&certs.join("agent.pem"));
    let refused = wait_for(WAIT, "the refusals to be counted", || {
        let rows = ctl_json(&collector.url(), &pki.dir, &["refused", "list"]).ok()?;
        let rows = rows.as_array()?.clone();
        let has = |kind: &str, serial: Option<&str>| {
            rows.iter().any(|r| {
                r["kind"] == kind
                    && r["peer"] == "127.0.0.1"
                    && serial.is_none_or(|s| r["serial"] == s)
            })
        };
        // hygienectl with the foreign CA refuses the collector's certificate itself, before
        // presenting its own: a failed handshake.
        (has("certificate", Some(&intruder_serial))
            && has("handshake", None)
            && has("no_certificate", None))
        .then_some(rows)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.process.stderr()));
    let intruder = refused
        .iter()
        .find(|r| r["serial"] == intruder_serial.as_str())
        .unwrap();
    assert!(
        intruder["subject"]
            .as_str()
            .unwrap()
            .contains("CN=intruder"),
        "{intruder}"
    );
    assert!(intruder["count"].as_u64().unwrap() >= 2, "{intruder}");
    assert!(
        intruder["reason"] == "not issued by this collector's CA",
        "{intruder}"
    );
    let log = collector.process.stderr();
    assert!(
        log.contains("refused a connection") && log.contains(&intruder_serial),
        "{log}"
    );
    // The totals go to stderr, the rows to stdout.
    let output = ctl(&collector.url(), &pki.dir, &["refused", "list"]).unwrap();
    assert_eq!(output.status.code(), Some(0));
    let totals = String::from_utf8_lossy(&output.stderr);
    assert!(
        totals.contains("refused since") && totals.contains("no_certificate "),
        "{totals}"
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("CN=intruder") && table.contains("no_certificate"),
        "{table}"
    );
}

#[test]
fn roles_are_enforced_by_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let collector = Collector::start(dir.path(), &pki, "127.0.0.1:0").unwrap();

    // An agent certificate cannot call the admin service.
    let agent_certs = dir.path().join("agent-certs");
    pki.issue_agent("web-02", &agent_certs).unwrap();
    let posing_admin = dir.path().join("posing-admin");
    std::fs::create_dir_all(&posing_admin).unwrap();
    std::fs::copy(agent_certs.join("ca.pem"), posing_admin.join("ca.pem")).unwrap();
    std::fs::copy(
        agent_certs.join("agent.pem"),
        posing_admin.join("admin.pem"),
    )
    .unwrap();
    std::fs::copy(
        agent_certs.join("agent.key"),
        posing_admin.join("admin.key"),
    )
    .unwrap();
    let output = ctl(&collector.url(), &posing_admin, &["hosts", "list"]).unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not allowed") && stderr.contains("web-02"),
        "{stderr}"
    );

    // An admin certificate cannot pose as an agent.
    let posing_agent = dir.path().join("posing-agent");
    std::fs::create_dir_all(&posing_agent).unwrap();
    std::fs::copy(pki.dir.join("ca.pem"), posing_agent.join("ca.pem")).unwrap();
    std::fs::copy(pki.dir.join("admin.pem"), posing_agent.join("agent.pem")).unwrap();
    std::fs::copy(pki.dir.join("admin.key"), posing_agent.join("agent.key")).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let spec = AgentSpec {
        collector: collector.url(),
        cert_dir: &posing_agent,
        state_dir: &dir.path().join("state"),
        roots: vec![&root],
        rules: vec![],
        iocs: vec![],
    };
    let agent = Agent::start(&spec, dir.path()).unwrap();
    let log = wait_for(WAIT, "the posing agent to be refused", || {
        let log = agent.process.stderr();
        log.contains("refused the stream").then_some(log)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    assert!(log.contains("not allowed"), "{log}");
    let hosts = ctl_json(&collector.url(), &pki.dir, &["hosts", "list"]).unwrap();
    assert_eq!(hosts, Value::Array(vec![]));

    // Both are counted as wrong-role refusals, each with its certificate.
    let refused = ctl_json(&collector.url(), &pki.dir, &["refused", "list"]).unwrap();
    let wrong_role: Vec<&Value> = refused
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "wrong_role")
        .collect();
    for (pem, name) in [
        (agent_certs.join("agent.pem"), "web-02"),
        (pki.dir.join("admin.pem"), "admin"),
    ] {
        let serial = serial_of(&pem);
        let row = wrong_role
            .iter()
            .find(|r| r["serial"] == serial.as_str())
            .unwrap_or_else(|| panic!("no wrong_role row for {name} ({serial}): {refused}"));
        assert!(row["subject"].as_str().unwrap().contains(name), "{row}");
    }
}

#[cfg(unix)]
#[test]
fn agent_buffers_while_collector_is_down_and_reconnects_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    pki.issue_agent("db-01", &dir.path().join("agent-certs"))
        .unwrap();
    let demo = demo(dir.path());
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let collector_url = url(listen.parse().unwrap());

    // The agent starts first: it sweeps, cannot deliver, and keeps trying.
    let spec = AgentSpec {
        collector: collector_url.clone(),
        cert_dir: &dir.path().join("agent-certs"),
        state_dir: &dir.path().join("agent-state"),
        roots: vec![&demo.root],
        rules: vec![],
        iocs: vec![&demo.iocs],
    };
    let agent = Agent::start(&spec, dir.path()).unwrap();
    wait_for(WAIT, "the agent to fail a connection attempt", || {
        agent
            .process
            .stderr()
            .contains("cannot connect")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));

    // The collector comes up; what the agent found arrives.
    let mut collector = Collector::start(dir.path(), &pki, &listen).unwrap();
    wait_for(WAIT, "the buffered EICAR finding", || {
        (findings_of(&collector_url, &pki.dir, "db-01").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent: {}\ncollector: {}",
            agent.process.stderr(),
            collector.process.stderr()
        )
    });

    // SIGTERM stops the collector cleanly even with an agent stream open.
    let status = collector
        .process
        .terminate(Duration::from_secs(15))
        .unwrap();
    assert!(
        status.success(),
        "collector exited with {status}: {}",
        collector.process.stderr()
    );
    drop(collector);

    // Restarted on the same address and database, it marks every host offline at start, so
    // `online` can only come from the agent's new hello; heartbeats then keep moving last_seen.
    let collector = Collector::start(dir.path(), &pki, &listen).unwrap();
    let diagnostics = || {
        format!(
            "agent: {}\ncollector: {}",
            agent.process.stderr(),
            collector.process.stderr()
        )
    };
    let reconnected = wait_for(WAIT, "the agent to reconnect", || {
        host_row(&collector_url, &pki.dir, "db-01").filter(|row| row["online"] == true)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics()));
    wait_for(WAIT, "heartbeats to advance last_seen", || {
        let row = host_row(&collector_url, &pki.dir, "db-01")?;
        (row["last_seen"] != reconnected["last_seen"]).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", diagnostics()));
    assert_eq!(reconnected["open_findings"], 1);
    assert_eq!(
        findings_of(&collector_url, &pki.dir, "db-01").len(),
        1,
        "a resend must not duplicate findings"
    );
}
