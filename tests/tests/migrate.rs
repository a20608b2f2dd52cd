//! `hygiene-collector db migrate`: a site moves to another database (SQLite to PostgreSQL when
//! the tests have a server) with every host, finding and its history, and carries on there.

use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// The fields of a finding that a move must keep (not `last_seen`, which the agent's next
/// sweep moves on).
fn kept(finding: &Value) -> Value {
    serde_json::json!({
        "id": finding["id"],
        "path": finding["path"],
        "rule": finding["rule"],
        "state": finding["state"],
        "first_seen": finding["first_seen"],
    })
}

#[test]
fn a_site_moves_to_another_database_with_every_row_and_carries_on() {
    let mut site = Site::start().unwrap();
    let rules = site.write(
        "eicar.yar",
        "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
    );
    let files = [("eicar.com", "X5O EICAR-STANDARD-ANTIVIRUS-TEST-FILE")];
    let mut agent = site.start_agent("mover-1", &files, &rules, &[]).unwrap();
    let found = wait_for(WAIT, "the agent's finding", || {
        let findings = site.findings("mover-1");
        (findings.len() == 1).then_some(findings)
    })
    .unwrap();
    let id = found[0]["id"].as_i64().unwrap().to_string();
    let quarantined = site.ctl(&["findings", "quarantine", &id]);
    assert!(quarantined.status.success(), "{quarantined:?}");
    wait_for(WAIT, "the quarantine", || {
        (site.findings("mover-1")[0]["state"] == "quarantined").then_some(())
    })
    .unwrap();
    let history = site.json(&["findings", "history", &id]);
    agent.process.terminate(Duration::from_secs(10)).unwrap();

    // SQLite into PostgreSQL when the tests have a server; otherwise (or when the site is on
    // PostgreSQL already) into an SQLite file.
    let target = if std::env::var("HYGIENE_TEST_POSTGRES").is_ok() && !on_postgres() {
        hygiene_collector::store::test_db::site_url(&site.dir.path().join("moved"))
    } else {
        format!("sqlite://{}", site.dir.path().join("moved.db").display())
    };
    let moved = site.move_database(&target).unwrap();
    let stdout = String::from_utf8_lossy(&moved.stdout);
    assert!(
        moved.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(stdout.contains("finding_history"), "{stdout}");
    assert!(!stdout.contains("MISSING"), "{stdout}");
    assert_eq!(site.db, target);

    // The collector on the new database knows what it knew.
    let after = site.findings("mover-1");
    assert_eq!(
        after.iter().map(kept).collect::<Vec<_>>(),
        found
            .iter()
            .map(kept)
            .map(|mut f| {
                f["state"] = "quarantined".into();
                f
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(site.json(&["findings", "history", &id]), history);
    assert!(site.host("mover-1")["host_id"] == "mover-1");

    // And carries on: the agent reconnects and the host is online again.
    let _agent = site.start_agent("mover-1", &files, &rules, &[]).unwrap();
    wait_for(WAIT, "the agent back on the moved site", || {
        (site.host("mover-1")["online"] == true).then_some(())
    })
    .unwrap();

    // A second move into a database that holds rows is refused, with the reason, and exits 2.
    let again = site.move_database(&target).unwrap();
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already holds data"), "{stderr}");
}
