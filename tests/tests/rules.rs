//! Rules and hash IOCs distributed from the collector, end to end: real agents over real mTLS,
//! `hygienectl rules publish` / `intel import-hashes` / `rules status`, sweeps that show which
//! rules each agent runs; a broken rule, a bundle signed with the wrong key, and the whole
//! signature-base set.

use std::path::Path;
use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

// Generous: three agents compile signature-base at once, on a machine CI may share.
const WAIT: Duration = Duration::from_secs(300);
const HOSTS: [&str; 3] = ["ws-1", "ws-2", "srv-3"];

trait RulesSite {
    fn publish(&self, args: &[&str]) -> std::process::Output;
    /// Waits until every host runs the current bundles (`rules status` exits 0).
    fn wait_all_current(&self, agents: &[Agent]) -> Value;
    /// Starts a sweep of every host and waits for it to finish; the rules matched, per host.
    fn sweep_rules(&self) -> Vec<(String, String)>;
}

impl RulesSite for Site {
    fn publish(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["rules", "publish"];
        all.extend(args);
        self.ctl(&all)
    }

    /// Waits until every host runs the current bundles (`rules status` exits 0).
    fn wait_all_current(&self, agents: &[Agent]) -> Value {
        wait_for(WAIT, "every host on the current bundles", || {
            let out = self.ctl(&["rules", "status", "--format", "json"]);
            (out.status.code() == Some(0)).then(|| serde_json::from_slice(&out.stdout).unwrap())
        })
        .unwrap_or_else(|e| {
            let logs: Vec<String> = agents.iter().map(|a| a.process.stderr()).collect();
            panic!(
                "{e}\nstatus: {}\nagents: {}",
                String::from_utf8_lossy(&self.ctl(&["rules", "status"]).stdout),
                logs.join("\n---\n")
            )
        })
    }

    /// Starts a sweep of every host and waits for it to finish; the rules matched, per host.
    fn sweep_rules(&self) -> Vec<(String, String)> {
        let out = self.ctl(&[
            "sweep", "start", "--all", "--splay", "0", "--format", "json",
        ]);
        assert!(out.status.success(), "{out:?}");
        let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_for(WAIT, "the sweep done on every host", || {
            let status = self.json(&["sweep", "status", &id]);
            (status["totals"]["done"] == HOSTS.len()).then_some(())
        })
        .unwrap();
        // Found by this sweep: open, or reopened (found before, resolved since).
        let findings = self.json(&["findings", "list"]);
        let mut rules: Vec<(String, String)> = findings
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["sweep_id"] == id.as_str())
            .map(|f| {
                let what = f["rule"]
                    .as_str()
                    .map_or_else(|| f["kind"].as_str().unwrap().to_owned(), str::to_owned);
                (f["host_id"].as_str().unwrap().to_owned(), what)
            })
            .collect();
        rules.sort();
        rules.dedup();
        rules
    }
}

fn marker_rule(name: &str, marker: &str) -> String {
    format!("rule {name} {{ strings: $a = \"{marker}\" condition: $a }}\n")
}

/// Starts the agent of host `id` (its certificate issued on first start).
fn start_agent(setup: &Site, id: &str, own_rules: &Path) -> Agent {
    let files = [
        ("old.txt", "HYGIENE-OLD-MARKER"),
        ("new.txt", "HYGIENE-NEW-MARKER"),
        ("third.txt", "HYGIENE-THIRD-MARKER"),
        ("hashed.bin", "HYGIENE-HASHED-CONTENT"),
    ];
    let agent = setup.start_agent(id, &files, own_rules, &[]).unwrap();
    let certs = setup.dir.path().join(id).join("certs");
    assert!(certs.join("rules-signing.pub").is_file());
    agent
}

fn start_agents(setup: &Site, own_rules: &Path) -> Vec<Agent> {
    HOSTS
        .iter()
        .map(|id| start_agent(setup, id, own_rules))
        .collect()
}

fn pairs(rules: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rules
        .iter()
        .map(|(h, r)| ((*h).to_owned(), (*r).to_owned()))
        .collect();
    out.sort();
    out
}

fn each_host(rule: &str) -> Vec<(String, String)> {
    pairs(&HOSTS.map(|h| (h, rule)))
}

#[test]
fn rules_and_iocs_reach_every_agent_verified() {
    let mut setup = Site::start().unwrap();
    assert!(setup.pki.dir.join("rules-signing.key").is_file());
    let own = setup.write(
        "own/old.yar",
        &marker_rule("Old_Marker", "HYGIENE-OLD-MARKER"),
    );
    let agents = start_agents(&setup, &own);
    wait_for(WAIT, "three agents known", || {
        (setup.json(&["hosts", "list"]).as_array()?.len() == 3).then_some(())
    })
    .unwrap();
    // Nothing published: every host runs its own files, which counts as current.
    setup.wait_all_current(&agents);
    assert_eq!(setup.sweep_rules(), each_host("Old_Marker"));

    // A bundle with a broken rule is refused, with the file and line...
    let good = setup.write(
        "v1/new.yar",
        &marker_rule("New_Marker", "HYGIENE-NEW-MARKER"),
    );
    setup.write(
        "v1/broken.yar",
        "rule Broken {\n  condition: nonsense(\n}\n",
    );
    let v1 = good.parent().unwrap().to_str().unwrap().to_owned();
    let refused = setup.publish(&[&v1, "--name", "v1"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("broken.yar:3"), "{stderr}");
    assert!(stderr.contains("--skip-broken"), "{stderr}");
    // A rule that would cost every agent its timeout on some files is refused, named...
    let slow_dir = setup.write(
        "slow/slow.yar",
        "rule Slow { strings: $a = /x[a-z]*y[a-z]*z[a-z]*q/ condition: $a }",
    );
    let slow_dir = slow_dir.parent().unwrap().to_str().unwrap().to_owned();
    let refused = setup.publish(&[&v1, &slow_dir, "--name", "v1", "--skip-broken"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("slow.yar: ") && stderr.contains("--allow-slow"),
        "{stderr}"
    );
    assert!(!stderr.contains("new.yar"), "{stderr}");
    // ... and accepted without it with --skip-broken; every agent swaps it in, no restart.
    let accepted = setup.publish(&[&v1, "--name", "v1", "--skip-broken"]);
    assert!(accepted.status.success(), "{accepted:?}");
    let stderr = String::from_utf8_lossy(&accepted.stderr);
    assert!(stderr.contains("left out: broken.yar:3"), "{stderr}");
    let status = setup.wait_all_current(&agents);
    let v1_version = status[0]["rules_version"].as_str().unwrap().to_owned();
    assert_eq!(v1_version.len(), 64);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["rules_version"] == v1_version.as_str())
    );
    assert_eq!(setup.sweep_rules(), each_host("New_Marker"));

    // Hash IOCs from a STIX 2.1 bundle.
    let hashed = "2d3f8a8c4c1d1bb4c3a4ffc3d2c84b4b1c43e6c3f0ddb63cbb7d9a4c3cb2e7f5";
    let actual = sha256_hex(b"HYGIENE-HASHED-CONTENT");
    let stix = setup.write(
        "feed.json",
        &format!(
            r#"{{"type": "bundle", "id": "bundle--1", "objects": [
                {{"type": "indicator", "id": "indicator--1", "name": "test dropper",
                  "pattern": "[file:hashes.'SHA-256' = '{actual}']", "pattern_type": "stix"}},
                {{"type": "indicator", "id": "indicator--2", "name": "other",
                  "pattern": "[file:hashes.'SHA-256' = '{hashed}']", "pattern_type": "stix"}}]}}"#
        ),
    );
    let imported = setup.ctl(&["intel", "import-hashes", stix.to_str().unwrap()]);
    assert!(imported.status.success(), "{imported:?}");
    setup.wait_all_current(&agents);
    let mut want = each_host("New_Marker");
    want.extend(each_host("hash_ioc"));
    want.sort();
    assert_eq!(setup.sweep_rules(), want);

    // The whole signature-base set compiles on the collector and reaches every agent.
    let sigbase = shared().join("corpus/signature-base/yara");
    let published = setup.publish(&[
        sigbase.to_str().unwrap(),
        "--name",
        "signature-base",
        "--skip-broken",
    ]);
    assert!(published.status.success(), "{published:?}");
    let stdout = String::from_utf8_lossy(&published.stdout);
    let items: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ITEMS"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no item count in {stdout}"));
    assert!(items > 4000, "{stdout}");
    let status = setup.wait_all_current(&agents);
    assert_ne!(status[0]["rules_version"], v1_version.as_str());

    // Back to v1's rules while ws-1 is down: it fetches them when it connects again.
    let mut agents = agents;
    agents[0]
        .process
        .terminate(Duration::from_secs(10))
        .unwrap();
    wait_for(WAIT, "ws-1 offline", || {
        let hosts = setup.json(&["hosts", "list"]);
        hosts
            .as_array()?
            .iter()
            .any(|h| h["host_id"] == "ws-1" && h["online"] == false)
            .then_some(())
    })
    .unwrap();
    let again = setup.publish(&[good.to_str().unwrap(), "--name", "v1-again"]);
    assert!(again.status.success(), "{again:?}");
    // ws-1 is not among the connected agents it goes to now.
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        ["going to 1 ", "going to 2 "]
            .iter()
            .any(|n| stderr.contains(n)),
        "{stderr}"
    );
    agents[0] = start_agent(&setup, "ws-1", &own);
    let status = setup.wait_all_current(&agents);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["rules_version"] == v1_version.as_str())
    );

    // Then a bundle signed with another key: every agent refuses it and keeps matching with
    // the rules it has.
    // (The collector reads its key when it starts.)
    let (rogue, _) = hygiene_proto::bundle::generate_key().unwrap();
    std::fs::write(
        setup.pki.dir.join("rules-signing.key"),
        hygiene_proto::bundle::hex(&rogue),
    )
    .unwrap();
    setup.restart_collector().unwrap();
    let third = setup.write(
        "v3/third.yar",
        &marker_rule("Third_Marker", "HYGIENE-THIRD-MARKER"),
    );
    wait_for(WAIT, "agents back", || {
        let hosts = setup.json(&["hosts", "list"]);
        (hosts
            .as_array()?
            .iter()
            .filter(|h| h["online"] == true)
            .count()
            == 3)
            .then_some(())
    })
    .unwrap();
    assert!(
        setup
            .publish(&[third.to_str().unwrap(), "--name", "v3"])
            .status
            .success()
    );
    let status = wait_for(WAIT, "every agent's refusal", || {
        let status = setup.json(&["rules", "status"]);
        status
            .as_array()?
            .iter()
            .all(|h| h["error"].as_str().is_some_and(|e| e.contains("signature")))
            .then_some(status)
    })
    .unwrap();
    for host in status.as_array().unwrap() {
        assert_eq!(host["rules_current"], false, "{host}");
        assert_eq!(host["rules_version"], v1_version.as_str(), "{host}");
    }
    let exit = setup.ctl(&["rules", "status"]).status.code();
    assert_eq!(exit, Some(1));
    let rules = setup.sweep_rules();
    assert!(rules.iter().all(|(_, r)| r != "Third_Marker"), "{rules:?}");
    assert!(
        rules.contains(&("ws-1".into(), "New_Marker".into())),
        "{rules:?}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    hygiene_collector::intel::sha256_hex(bytes)
}
