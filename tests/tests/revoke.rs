//! Cutting a host off: `hosts revoke` closes its stream within seconds and refuses its
//! certificates from then on, in the TLS handshake; a certificate issued for the host later
//! works, and a newer certificate of a host supersedes (revokes) the older ones.

use std::time::Duration;

use hygiene_tests::*;

const WAIT: Duration = Duration::from_secs(60);

fn online(site: &Site, id: &str) -> bool {
    site.host(id)["online"] == true
}

fn refused_serials(site: &Site) -> Vec<(String, String)> {
    site.json(&["refused", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["serial"].as_str().unwrap_or_default().to_owned(),
                r["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_revoked_host_is_cut_off_at_once_and_a_reissued_certificate_works() {
    let site = Site::start().unwrap();
    let rules = site.write("r.yar", "rule r { condition: false }");
    let agent = site.start_agent("laptop-07", &[], &rules, &[]).unwrap();
    wait_for(WAIT, "laptop-07 online", || {
        online(&site, "laptop-07").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let certs = site.dir.path().join("laptop-07").join("certs");
    let stolen_serial = serial_of(&certs.join("agent.pem"));

    // A note is required.
    let out = site.ctl(&["hosts", "revoke", "laptop-07", "--note", " "]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = site.ctl(&["hosts", "revoke", "nobody", "--note", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let revoked = site.json(&[
        "hosts",
        "revoke",
        "laptop-07",
        "--note",
        "stolen from a car",
    ]);
    assert_eq!(
        revoked["revoked_serials"],
        serde_json::json!([stolen_serial])
    );
    assert_eq!(revoked["streams_closed"], 1);
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(5), "laptop-07 offline", || {
        (!online(&site, "laptop-07")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    assert!(started.elapsed() < Duration::from_secs(5));
    // It keeps trying and is refused in the handshake, every time.
    wait_for(
        WAIT,
        "refused handshakes of the revoked certificate",
        || {
            refused_serials(&site)
                .iter()
                .any(|(serial, reason)| *serial == stolen_serial && reason == "revoked")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", site.collector.process.stderr()));
    assert!(!online(&site, "laptop-07"));
    let audit = site.json(&["audit", "list"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "host.revoke"
                && e["target"] == "laptop-07"
                && e["detail"] == "stolen from a car"),
        "{audit}"
    );
    drop(agent);

    // The laptop is found, reinstalled and given a new certificate: that one works, with the
    // host's history kept.
    let fresh = site.dir.path().join("laptop-07-new-certs");
    site.pki.issue_agent("laptop-07", &fresh).unwrap();
    let root = site.dir.path().join("laptop-07").join("root");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &fresh,
        state_dir: &site.dir.path().join("laptop-07").join("state"),
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![],
    };
    let agent = Agent::start(&spec, site.dir.path()).unwrap();
    wait_for(WAIT, "laptop-07 back online", || {
        online(&site, "laptop-07").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    // The revocation survives a collector restart.
    drop(agent);
    let mut site = site;
    site.restart_collector().unwrap();
    let impostor_state = site.dir.path().join("impostor-state");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &certs,
        state_dir: &impostor_state,
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![],
    };
    let impostor = Agent::start(&spec, site.dir.path()).unwrap();
    wait_for(
        WAIT,
        "the stolen certificate refused after a restart",
        || {
            refused_serials(&site)
                .iter()
                .any(|(serial, _)| *serial == stolen_serial)
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", impostor.process.stderr()));
    assert!(!online(&site, "laptop-07"));
}

/// Defect: a second agent holding a host's old certificate swept an empty directory under the
/// host's id and resolved the real host's open finding. A newer certificate of the host now
/// revokes the older one when it first connects.
#[test]
fn a_newer_certificate_supersedes_the_old_one() {
    let site = Site::start().unwrap();
    let rules = site.write(
        "eicar.yar",
        r#"rule Eicar { strings: $a = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" condition: $a }"#,
    );
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let old_agent = site
        .start_agent("web-01", &[("eicar.com", eicar)], &rules, &[])
        .unwrap();
    wait_for(WAIT, "the finding", || {
        (site.findings("web-01").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", old_agent.process.stderr()));
    let old_certs = site.dir.path().join("web-01").join("certs");
    let old_serial = serial_of(&old_certs.join("agent.pem"));
    // Certificates start on whole seconds: the new one must start later to be newer.
    std::thread::sleep(Duration::from_millis(1100));
    let new_certs = site.dir.path().join("web-01-reissued");
    site.pki.issue_agent("web-01", &new_certs).unwrap();
    let new_root = site.dir.path().join("web-01-new-root");
    std::fs::create_dir_all(&new_root).unwrap();
    std::fs::write(new_root.join("eicar.com"), eicar).unwrap();
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &new_certs,
        state_dir: &site.dir.path().join("web-01-new-state"),
        roots: vec![&new_root],
        rules: vec![&rules],
        iocs: vec![],
    };
    let new_agent = Agent::start(&spec, site.dir.path()).unwrap();
    // The old certificate's stream is closed and it is refused from then on.
    wait_for(WAIT, "the old certificate refused", || {
        refused_serials(&site)
            .iter()
            .any(|(serial, reason)| *serial == old_serial && reason == "revoked")
            .then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nold: {}\ncollector: {}",
            old_agent.process.stderr(),
            site.collector.process.stderr()
        )
    });
    assert!(online(&site, "web-01"), "{}", new_agent.process.stderr());
    let log = site.collector.process.stderr();
    assert!(log.contains("superseded by certificate"), "{log}");
}

/// `hosts remove`: a decommissioned server leaves every list, count and fleet sweep, keeps its
/// findings and history, and is cut off; a certificate issued for it later brings it back.
#[test]
fn a_removed_host_leaves_the_lists_but_keeps_its_history() {
    let site = Site::start().unwrap();
    let rules = site.write(
        "eicar.yar",
        r#"rule Eicar { strings: $a = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" condition: $a }"#,
    );
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let old = site
        .start_agent("old-srv", &[("eicar.com", eicar)], &rules, &[])
        .unwrap();
    let keep = site.start_agent("web-01", &[], &rules, &[]).unwrap();
    wait_for(WAIT, "both hosts known, old-srv's finding stored", || {
        (site.json(&["hosts", "list"]).as_array()?.len() == 2
            && site.findings("old-srv").len() == 1)
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", old.process.stderr()));

    let out = site.ctl(&[
        "hosts",
        "remove",
        "old-srv",
        "--note",
        "decommissioned, ticket 4411",
    ]);
    assert!(out.status.success(), "{out:?}");
    let hosts = site.json(&["hosts", "list"]);
    let ids: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["web-01"]);
    let all = site.json(&["hosts", "list", "--removed"]);
    let removed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host_id"] == "old-srv")
        .unwrap_or_else(|| panic!("{all}"));
    assert!(removed["removed"].is_string(), "{removed}");
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|h| h["host_id"] != "web-01" || h.get("removed").is_none())
    );
    // Its history stays; it is cut off; a fleet sweep leaves it out.
    assert_eq!(site.findings("old-srv").len(), 1);
    wait_for(Duration::from_secs(5), "old-srv offline", || {
        (!online(&site, "old-srv")).then_some(())
    })
    .unwrap();
    let sweep = site.json(&["sweep", "start", "--all", "--splay", "0"]);
    let status = site.json(&["sweep", "status", sweep["id"].as_str().unwrap()]);
    assert!(
        status.to_string().contains("web-01") && !status.to_string().contains("old-srv"),
        "{status}"
    );
    let audit = site.json(&["audit", "list"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "host.remove" && e["detail"] == "decommissioned, ticket 4411"),
        "{audit}"
    );
    let out = site.ctl(&["hosts", "remove", "old-srv", "--note", "again"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    drop(old);
    drop(keep);

    // Put back into service with a new certificate: listed again, history kept.
    let fresh = site.dir.path().join("old-srv-new-certs");
    site.pki.issue_agent("old-srv", &fresh).unwrap();
    let root = site.dir.path().join("old-srv").join("root");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &fresh,
        state_dir: &site.dir.path().join("old-srv").join("state"),
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![],
    };
    let back = Agent::start(&spec, site.dir.path()).unwrap();
    wait_for(WAIT, "old-srv listed again", || {
        site.json(&["hosts", "list"])
            .as_array()?
            .iter()
            .any(|h| h["host_id"] == "old-srv")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", back.process.stderr()));
}
