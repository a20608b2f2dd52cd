//! The cleanup end to end: findings quarantined, restored and verified by a later sweep, host
//! status and progress, over a real collector and real agents on loopback mTLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    collector: Collector,
    certs: PathBuf,
    state: PathBuf,
    root: PathBuf,
    rules: PathBuf,
}

impl Setup {
    fn new(host: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(&dir.path().join("pki")).unwrap();
        let collector = Collector::start(dir.path(), &pki, "127.0.0.1:0").unwrap();
        let certs = dir.path().join("certs");
        pki.issue_agent(host, &certs).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("readme.txt"), "nothing to see").unwrap();
        let rules = dir.path().join("eicar.yar");
        std::fs::write(
            &rules,
            "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
        )
        .unwrap();
        Setup {
            state: dir.path().join("state"),
            dir,
            pki,
            collector,
            certs,
            root,
            rules,
        }
    }

    fn agent(&self) -> Agent {
        let spec = AgentSpec {
            collector: self.collector.url(),
            cert_dir: &self.certs,
            state_dir: &self.state,
            roots: vec![&self.root],
            rules: vec![&self.rules],
            iocs: vec![],
        };
        let agent = Agent::start(&spec, self.dir.path()).unwrap();
        wait_for(WAIT, "the agent's start-up sweep", || {
            agent
                .process
                .stderr()
                .contains("sweep finished")
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
        agent
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        ctl(&self.collector.url(), &self.pki.dir, args).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        ctl_json(&self.collector.url(), &self.pki.dir, args).unwrap()
    }

    fn finding(&self, id: i64) -> Value {
        self.json(&["findings", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn wait_finding(&self, id: i64, state: &str, agent: &Agent) -> Value {
        wait_for(WAIT, &format!("finding {id} {state}"), || {
            let finding = self.finding(id);
            (finding["state"] == state).then_some(finding)
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nfinding: {:#}\nagent: {}\ncollector: {}",
                self.finding(id),
                agent.process.stderr(),
                self.collector.process.stderr()
            )
        })
    }

    /// Waits until the agent has refused to act on finding `id`; returns the finding.
    fn wait_refused(&self, id: i64, agent: &Agent) -> Value {
        wait_for(WAIT, &format!("the refusal for finding {id}"), || {
            let f = self.finding(id);
            f["remediation_error"].is_string().then_some(f)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()))
    }

    fn status(&self, host: &str) -> String {
        let hosts = self.json(&["hosts", "list"]);
        hosts
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host_id"] == host)
            .map(|h| h["status"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The id of the one finding at `path`.
    fn finding_at(&self, path: &Path) -> i64 {
        let findings = self.json(&["findings", "list"]);
        let matching: Vec<&Value> = findings
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["path"] == path.to_str().unwrap())
            .collect();
        assert_eq!(matching.len(), 1, "{findings:#}");
        matching[0]["id"].as_i64().unwrap()
    }

    fn change(&self, args: &[&str]) -> Value {
        let mut all = vec!["findings"];
        all.extend_from_slice(args);
        all.extend(["--format", "json"]);
        let out = self.ctl(&all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn sweep(&self, host: &str, agent: &Agent) {
        let out = self.ctl(&[
            "sweep", "start", "--host", host, "--splay", "0", "--format", "json",
        ]);
        assert_eq!(out.status.code(), Some(0));
        let id: Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = id["id"].as_str().unwrap().to_owned();
        wait_for(WAIT, "the sweep to finish", || {
            let status = self.json(&["sweep", "status", &id]);
            (status["state"] == "done").then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    }
}

#[test]
fn a_host_goes_from_infected_to_clean_through_quarantine_and_a_verifying_sweep() {
    let setup = Setup::new("ws-07");
    let dropper = setup.root.join("dropper.bin");
    std::fs::write(&dropper, EICAR).unwrap();
    let mut agent = setup.agent();
    let id = wait_for(WAIT, "the finding", || {
        let findings = setup.json(&["findings", "list"]);
        findings.as_array()?.first()?["id"].as_i64()
    })
    .unwrap();
    assert_eq!(setup.finding_at(&dropper), id);
    assert_eq!(setup.status("ws-07"), "infected");
    let infected = setup.json(&["hosts", "list", "--status", "infected"]);
    assert_eq!(infected.as_array().unwrap().len(), 1);
    assert_eq!(
        setup.json(&["hosts", "list", "--status", "clean"]),
        Value::Array(vec![])
    );

    // The agent is offline when the admin asks for the quarantine: the host is cleaning.
    agent.process.terminate(Duration::from_secs(15)).unwrap();
    let requested = setup.change(&["quarantine", &id.to_string(), "--note", "ticket 42"]);
    assert_eq!(requested["state"], "quarantine_requested");
    assert_eq!(setup.status("ws-07"), "cleaning");
    // Asking for it twice is allowed (the order goes again); marking resolved never is.
    setup.change(&["quarantine", &id.to_string()]);
    let declared = setup.ctl(&["findings", "mark", &id.to_string(), "--state", "resolved"]);
    assert_eq!(declared.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&declared.stderr).contains("earned"));

    // Back online, the agent gets the order and moves the file: awaiting verification. (Its
    // start-up sweep waits for the collector's word on bundles, as does the order: when the
    // sweep starts after the file moved, it verifies the quarantine at once.)
    let agent = setup.agent();
    let quarantined = wait_for(WAIT, "the finding quarantined", || {
        let finding = setup.finding(id);
        (finding["state"] == "quarantined" || finding["state"] == "resolved").then_some(finding)
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#}\n{}", setup.finding(id), agent.process.stderr()));
    assert!(quarantined["quarantine_id"].is_string(), "{quarantined:#}");
    assert!(!dropper.exists(), "the file left its place");
    if quarantined["state"] == "quarantined" {
        assert!(
            ["awaiting_verification", "clean"].contains(&setup.status("ws-07").as_str()),
            "{}",
            setup.status("ws-07")
        );
    }

    // A sweep finished after the quarantine no longer finds it: resolved, host clean.
    setup.sweep("ws-07", &agent);
    let resolved = setup.wait_finding(id, "resolved", &agent);
    assert!(resolved["quarantine_id"].is_string());
    assert_eq!(setup.status("ws-07"), "clean");

    // Who did what, when.
    let history = setup.json(&["findings", "history", &id.to_string()]);
    let steps: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["actor"].as_str().unwrap(),
                c["to_state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("collector", "open"),
            ("admin", "quarantine_requested"),
            ("admin", "quarantine_requested"),
            ("agent", "quarantined"),
            ("collector", "resolved"),
        ],
        "{history:#}"
    );
    assert_eq!(history[1]["note"], "ticket 42");
    let audit = setup.json(&["audit", "list"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "finding.quarantine" && e["actor"] == "admin"),
        "{audit:#}"
    );

    // The progress report: one host, verified clean, today on the timeline.
    let progress = setup.json(&["progress"]);
    assert_eq!(progress["hosts"], 1);
    assert_eq!(progress["by_status"]["clean"], 1);
    assert_eq!(progress["by_status"]["infected"], 0);
    assert_eq!(progress["verified_clean_share"], 1.0);
    let today = progress["timeline"].as_array().unwrap().last().unwrap();
    assert_eq!(today["by_status"]["clean"], 1);

    // The malware comes back: the resolved finding is reopened, the host infected again.
    std::fs::write(&dropper, EICAR).unwrap();
    setup.sweep("ws-07", &agent);
    let reopened = setup.wait_finding(id, "reopened", &agent);
    assert_eq!(reopened["path"], dropper.to_str().unwrap());
    assert_eq!(setup.status("ws-07"), "infected");
    let listed = setup.ctl(&["findings", "list", "--state", "reopened"]);
    assert_eq!(listed.status.code(), Some(1), "an open finding: exit 1");
}

#[test]
fn restore_gives_back_identical_bytes_and_a_changed_or_swapped_file_is_not_moved() {
    let setup = Setup::new("fs-02");
    let mut payload = EICAR.to_vec();
    payload.extend_from_slice(b"\n\x00\x01trailing bytes\xff");
    let kept = setup.root.join("kept.bin");
    let changed = setup.root.join("changed.bin");
    let swapped = setup.root.join("swapped.bin");
    for path in [&kept, &changed, &swapped] {
        std::fs::write(path, &payload).unwrap();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let agent = setup.agent();
    let (kept_id, changed_id, swapped_id) = wait_for(WAIT, "three findings", || {
        let findings = setup.json(&["findings", "list"]);
        (findings.as_array()?.len() == 3).then_some(())?;
        Some((
            setup.finding_at(&kept),
            setup.finding_at(&changed),
            setup.finding_at(&swapped),
        ))
    })
    .unwrap();

    // Quarantine, then restore: the same bytes and mode at the same path.
    setup.change(&["quarantine", &kept_id.to_string()]);
    setup.wait_finding(kept_id, "quarantined", &agent);
    assert!(!kept.exists());
    let restore = setup.change(&["restore", &kept_id.to_string()]);
    assert_eq!(
        restore["state"], "quarantined",
        "until the agent reports back"
    );
    let restored = setup.wait_finding(kept_id, "open", &agent);
    assert!(restored["quarantine_id"].is_null(), "{restored:#}");
    assert_eq!(std::fs::read(&kept).unwrap(), payload);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
    }
    // Restoring what is not quarantined is refused with the reason.
    let again = setup.ctl(&["findings", "restore", &kept_id.to_string()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not in the agent's quarantine"));

    // A file changed since the finding is left alone, and the admin is told why.
    std::fs::write(&changed, b"rewritten since").unwrap();
    setup.change(&["quarantine", &changed_id.to_string()]);
    let refused = setup.wait_refused(changed_id, &agent);
    assert_eq!(refused["state"], "open");
    assert!(
        refused["remediation_error"]
            .as_str()
            .unwrap()
            .contains("changed since the finding"),
        "{refused:#}"
    );
    assert_eq!(std::fs::read(&changed).unwrap(), b"rewritten since");

    // A file swapped for a link after detection is not moved (nor is what it points to).
    let elsewhere = setup.dir.path().join("elsewhere.bin");
    std::fs::write(&elsewhere, &payload).unwrap();
    std::fs::remove_file(&swapped).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&elsewhere, &swapped).unwrap();
    setup.change(&["quarantine", &swapped_id.to_string()]);
    let refused = setup.wait_refused(swapped_id, &agent);
    assert_eq!(refused["state"], "open");
    assert!(
        refused["remediation_error"]
            .as_str()
            .unwrap()
            .contains("link"),
        "{refused:#}"
    );
    assert!(swapped.is_symlink());
    assert_eq!(std::fs::read(&elsewhere).unwrap(), payload);

    // A false positive needs a note; with one, it is recorded with it.
    let bare = setup.ctl(&[
        "findings",
        "mark",
        &changed_id.to_string(),
        "--state",
        "false_positive",
    ]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("note"));
    let marked = setup.change(&[
        "mark",
        &changed_id.to_string(),
        "--state",
        "false_positive",
        "--note",
        "vendor test file",
    ]);
    assert_eq!(marked["state"], "false_positive");
    let history = setup.json(&["findings", "history", &changed_id.to_string()]);
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["note"], "vendor test file");
    assert_eq!(last["actor"], "admin");
    // Filters.
    let fps = setup.json(&["findings", "list", "--state", "false_positive"]);
    assert_eq!(fps.as_array().unwrap().len(), 1);
    let by_hash = setup.json(&[
        "findings",
        "list",
        "--sha256",
        refused["sha256"].as_str().unwrap(),
    ]);
    assert_eq!(by_hash.as_array().unwrap().len(), 3);
    let by_rule = setup.json(&["findings", "list", "--rule", "EICAR_String"]);
    assert_eq!(by_rule.as_array().unwrap().len(), 3);
    let bad = setup.ctl(&["findings", "list", "--state", "fixed"]);
    assert_eq!(bad.status.code(), Some(2));
}
