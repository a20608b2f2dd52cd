//! Two collector replicas on one PostgreSQL database act as one site: an agent connected to
//! one is ordered through the other, and when its replica dies the agent fails over and its
//! sweep finishes with every finding. Needs `HYGIENE_TEST_POSTGRES` (`.ci/run` sets it).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const EICAR: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn host_entry<'a>(status: &'a Value, host: &str) -> &'a Value {
    status["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host_id"] == host))
        .unwrap_or(&Value::Null)
}

fn start_sweep(collector: &Collector, pki: &Path, args: &[&str]) -> String {
    let mut all = vec!["sweep", "start"];
    all.extend_from_slice(args);
    let started = ctl_json(&collector.url(), pki, &all).unwrap();
    started["id"].as_str().unwrap().to_owned()
}

#[test]
fn two_replicas_on_one_database_serve_as_one_site_and_survive_one_dying() {
    if std::env::var(hygiene_collector::store::test_db::SERVER_VAR).is_err() {
        if std::env::var(hygiene_collector::store::test_db::REQUIRE_VAR).is_ok_and(|v| v == "1") {
            panic!("replicas need PostgreSQL: set HYGIENE_TEST_POSTGRES");
        }
        eprintln!("skipped: replicas need PostgreSQL (HYGIENE_TEST_POSTGRES)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = hygiene_collector::store::test_db::site_url(dir.path());
    let listen_a = format!("127.0.0.1:{}", free_port().unwrap());
    let listen_b = format!("127.0.0.1:{}", free_port().unwrap());
    let a = Collector::start_on(dir.path(), &pki, &listen_a, &db, &[]).unwrap();
    let b = Collector::start_on(dir.path(), &pki, &listen_b, &db, &[]).unwrap();

    // The agent knows both and tries B first.
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..3000 {
        std::fs::write(
            root.join(format!("plain-{i:04}.txt")),
            format!("nothing {i}"),
        )
        .unwrap();
    }
    for i in 0..20 {
        std::fs::write(root.join(format!("dropper-{i:02}.bin")), EICAR).unwrap();
    }
    let rules = dir.path().join("eicar.yar");
    std::fs::write(
        &rules,
        "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
    )
    .unwrap();
    let certs = dir.path().join("certs");
    pki.issue_agent("rep-1", &certs).unwrap();
    let spec = AgentSpec {
        collector: format!("{},{}", b.url(), a.url()),
        cert_dir: &certs,
        state_dir: &dir.path().join("state"),
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![],
    };
    // Paced, so that the full sweep below is still running when B dies.
    let agent = Agent::start_with(&spec, dir.path(), &["--cpu-limit", "10"]).unwrap();
    let findings = |c: &Collector| {
        ctl_json(&c.url(), &pki.dir, &["findings", "list", "--host", "rep-1"])
            .ok()
            .and_then(|f| f.as_array().cloned())
            .unwrap_or_default()
    };
    // A sees what the agent, connected to B, reports.
    wait_for(
        WAIT,
        "the start-up sweep's findings, read through A",
        || (findings(&a).len() == 20).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\nagent: {}", agent.process.stderr()));
    let host = ctl_json(&a.url(), &pki.dir, &["hosts", "show", "rep-1"]).unwrap();
    assert_eq!(host["online"], true, "{host:#}");
    // Either replica lists both, alive, and B holding the agent.
    let replicas = ctl_json(&a.url(), &pki.dir, &["replicas", "list"]).unwrap();
    let listed: Vec<(&str, bool, u64)> = replicas
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["listen"].as_str().unwrap(),
                r["alive"].as_bool().unwrap(),
                r["hosts"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![(listen_a.as_str(), true, 0), (listen_b.as_str(), true, 1)];
    expected.sort();
    assert_eq!(listed, expected, "{replicas:#}");

    // A sweep ordered through A reaches the agent on B.
    let ordered = Instant::now();
    let id = start_sweep(&a, &pki.dir, &["--host", "rep-1", "--splay", "0"]);
    wait_for(
        WAIT,
        "the sweep ordered through A done by the agent on B",
        || {
            let status = ctl_json(&a.url(), &pki.dir, &["sweep", "status", &id]).ok()?;
            (host_entry(&status, "rep-1")["state"] == "done").then_some(())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent: {}\nB: {}",
            agent.process.stderr(),
            b.process.stderr()
        )
    });
    eprintln!(
        "sweep ordered on A, done by the agent on B after {:?}",
        ordered.elapsed()
    );

    // A quarantine ordered through A too.
    let first = findings(&a)[0]["id"].as_i64().unwrap();
    let out = ctl(
        &a.url(),
        &pki.dir,
        &["findings", "quarantine", &first.to_string()],
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(WAIT, "the quarantine ordered through A", || {
        findings(&a)
            .iter()
            .any(|f| f["id"] == first && f["state"] == "quarantined")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\nagent: {}", agent.process.stderr()));

    // B dies in the middle of a full sweep: the agent fails over to A, resends what B had
    // not acknowledged, and the sweep finishes with every finding.
    let id = start_sweep(&a, &pki.dir, &["--host", "rep-1", "--splay", "0", "--full"]);
    wait_for(WAIT, "the full sweep running", || {
        let status = ctl_json(&a.url(), &pki.dir, &["sweep", "status", &id]).ok()?;
        (host_entry(&status, "rep-1")["state"] == "running").then_some(())
    })
    .unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &b.process.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_for(WAIT, "the full sweep done after B died", || {
        let status = ctl_json(&a.url(), &pki.dir, &["sweep", "status", &id]).ok()?;
        (host_entry(&status, "rep-1")["state"] == "done").then_some(status)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent: {}\nA: {}",
            agent.process.stderr(),
            a.process.stderr()
        )
    });
    assert_eq!(status["state"], "done", "{status:#}");
    let after = findings(&a);
    assert_eq!(after.len(), 20, "{after:#?}");
    assert!(
        agent.process.stderr().contains("failing over"),
        "{}",
        agent.process.stderr()
    );
    let host = ctl_json(&a.url(), &pki.dir, &["hosts", "show", "rep-1"]).unwrap();
    assert_eq!(host["online"], true, "{host:#}");
}
