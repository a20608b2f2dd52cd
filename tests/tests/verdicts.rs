//! Verdicts the admin can trust: each case where `hygienectl` once called a host clean, or
//! acted on part of a file, reproduced with a real collector and real agents over mTLS.

use std::path::Path;
use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

const EICAR_RULE: &str =
    "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }";

fn eicar() -> String {
    String::from_utf8(EICAR.to_vec()).unwrap()
}

fn publish(site: &Site, kind: &str, file: &Path, name: &str) {
    let args: Vec<&str> = match kind {
        "rules" => vec!["rules", "publish", file.to_str().unwrap(), "--name", name],
        _ => vec![
            "intel",
            "import-hashes",
            file.to_str().unwrap(),
            "--name",
            name,
        ],
    };
    let out = site.ctl(&args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until host `id` has status `want`, and fails if it is ever `never` meanwhile.
fn wait_status(site: &Site, id: &str, want: &str, never: Option<&str>, agent: &Agent) -> Value {
    wait_for(WAIT, &format!("{id} {want}"), || {
        let host = site.host(id);
        let status = host["status"].as_str().unwrap_or_default();
        if let Some(never) = never {
            assert_ne!(
                status,
                never,
                "{id} was called {never}: {host}\n{}",
                agent.process.stderr()
            );
        }
        (status == want).then_some(host)
    })
    .unwrap_or_else(|e| panic!("{e}: {}\nagent: {}", site.host(id), agent.process.stderr()))
}

fn states(site: &Site, id: &str) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = site
        .findings(id)
        .iter()
        .filter(|f| f["kind"] != "botnet_ip")
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    states.sort();
    states
}

/// Starts a sweep of `host` and waits for it to be done.
fn sweep(site: &Site, host: &str) -> String {
    let out = site.json(&["sweep", "start", "--host", host, "--splay", "0"]);
    let id = out["id"].as_str().unwrap().to_owned();
    wait_for(WAIT, "the sweep to finish", || {
        let status = site.json(&["sweep", "status", &id]);
        (status["state"] != "running").then_some(())
    })
    .unwrap();
    id
}

/// Defect 1: an agent started with certificates only, while the collector already had a
/// rule bundle, swept with no rules and its host (holding EICAR) became clean.
#[test]
fn a_new_agent_sweeps_with_the_collectors_rules_never_with_none() {
    let site = Site::start().unwrap();
    // A first host, only so that the bundle has somewhere to go.
    let rules = site.write("published/eicar.yar", EICAR_RULE);
    publish(&site, "rules", &rules, "eicar");

    let agent = site
        .start_agent_with_rules("fresh", &[("eicar.com", &eicar())], &[], &[])
        .unwrap();
    wait_status(&site, "fresh", "infected", Some("clean"), &agent);
    // The findings can be stored before the sweep's report that names the rules it ran.
    let host = wait_for(WAIT, "the sweep's report", || {
        let host = site.host("fresh");
        host["rule_count"].as_u64().is_some().then_some(host)
    })
    .unwrap();
    assert!(host["rule_count"].as_u64().unwrap() >= 1, "{host}");
    let findings = site.findings("fresh");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["rule"], "EICAR_String");
    // Its first sweep already had the rules: it waited for them.
    let log = agent.process.stderr();
    assert!(
        !log.contains("sweeping with no YARA rules"),
        "the agent swept without rules:\n{log}"
    );
}

/// Defect 1, the other half: an agent with no rules at all, and none on the collector, is
/// never clean: its sweeps prove nothing.
#[test]
fn a_sweep_with_no_rules_is_reported_as_such() {
    let site = Site::start().unwrap();
    let agent = site
        .start_agent_with_rules("bare", &[("eicar.com", &eicar())], &[], &[])
        .unwrap();
    let host = wait_status(&site, "bare", "no_rules", Some("clean"), &agent);
    assert_eq!(host["rule_count"], 0, "{host}");
    assert!(
        host["status_reason"]
            .as_str()
            .unwrap()
            .contains("no YARA rules"),
        "{host}"
    );
    let progress = site.json(&["progress"]);
    assert_eq!(progress["verified_clean_share"], 0.0, "{progress}");
    let listed = site.json(&["hosts", "list", "--status", "no_rules"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

/// Defect 2: a new rule or IOC bundle never led to a rescan, so "clean" silently referred to
/// the old rules. Now the host is `outdated` until the agent's rescan, which `sweep status`
/// follows like any other sweep.
#[test]
fn a_new_bundle_makes_every_agent_rescan_and_the_sweep_is_tracked() {
    let site = Site::start().unwrap();
    let own_rules = site.write(
        "own.yar",
        "rule Nothing_Here { strings: $a = \"HYGIENE-NEVER-PRESENT\" condition: $a }",
    );
    let agent = site
        .start_agent(
            "ws-1",
            &[
                ("tool.bin", "HYGIENE-TEST-NEW-THREAT"),
                ("other.bin", "just some other bytes"),
            ],
            &own_rules,
            &[],
        )
        .unwrap();
    wait_status(&site, "ws-1", "clean", None, &agent);

    let rules = site.write(
        "published/threat.yar",
        "rule New_Threat { strings: $a = \"HYGIENE-TEST-NEW-THREAT\" condition: $a }",
    );
    publish(&site, "rules", &rules, "new threat");
    // Never clean meanwhile: outdated until the rescan, then infected by what it found (its
    // findings arrive before its summary).
    wait_status(&site, "ws-1", "infected", Some("clean"), &agent);
    let host = wait_for(WAIT, "the rescan's summary", || {
        let host = site.host("ws-1");
        assert_ne!(host["status"], "clean", "{host}");
        host["last_sweep"]
            .as_str()
            .is_some_and(|s| s.starts_with("rescan-rules-"))
            .then_some(host)
    })
    .unwrap();
    assert_eq!(host["status"], "infected", "{host}");
    let rescan = host["last_sweep"].as_str().unwrap().to_owned();
    let status = site.json(&["sweep", "status", &rescan]);
    assert_eq!(status["hosts"][0]["state"], "done", "{status}");
    assert_eq!(status["totals"]["infected"], 1, "{status}");
    assert_eq!(
        states(&site, "ws-1"),
        [("New_Threat".to_owned(), "open".to_owned())]
    );

    // An IOC bundle: matched against the digests the agent has (the file is unchanged).
    let other_sha = sha256_hex(b"just some other bytes");
    let list = site.write("published/hashes.txt", &format!("{other_sha};test IOC\n"));
    publish(&site, "iocs", &list, "test hashes");
    wait_for(WAIT, "the IOC rescan's finding", || {
        site.findings("ws-1")
            .iter()
            .any(|f| f["kind"] == "hash_ioc" && f["sha256"] == other_sha.as_str())
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let host = site.host("ws-1");
    assert!(
        host["last_sweep"]
            .as_str()
            .unwrap()
            .starts_with("rescan-iocs-"),
        "{host}"
    );
    let sweeps = site.json(&["sweep", "list"]);
    let ids: Vec<&str> = sweeps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().any(|id| id.starts_with("rescan-rules-"))
            && ids.iter().any(|id| id.starts_with("rescan-iocs-")),
        "{ids:?}"
    );
}

/// The SHA-256 of `bytes` as Debian's sha256sum gives it.
fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum runs");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().next().unwrap().to_owned()
}

/// Defect 3: a host with a listed address ranked first with status clean, `--infected` left
/// it out and `progress` counted it verified clean.
#[test]
fn a_botnet_listed_host_is_suspect_until_a_sweep_after_the_match() {
    let site = Site::start().unwrap();
    let rules = site.write("eicar.yar", EICAR_RULE);
    let agent = site
        .start_agent("srv-9", &[("readme.txt", "nothing")], &rules, &[])
        .unwrap();
    let host = wait_status(&site, "srv-9", "clean", None, &agent);
    // The host's own address (as its agent reports it) goes on the list: on loopback every
    // agent sees every socket, so a listed loopback address would also be a live connection,
    // which keeps a host suspect for as long as it lasts.
    let own = host["ip_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("the host has an IPv4 address besides loopback")
        .to_owned();
    let list = site.write(
        "lists/botnet.txt",
        &format!("# national CERT list\n{own}\n"),
    );
    let out = site.ctl(&[
        "intel",
        "import-ips",
        list.to_str().unwrap(),
        "--source",
        "cert",
        // The test machine's own address is a private one.
        "--allow-reserved",
    ]);
    assert!(out.status.success(), "{out:?}");
    let host = wait_status(&site, "srv-9", "suspect", None, &agent);
    assert!(
        host["status_reason"].as_str().unwrap().contains("botnet"),
        "{host}"
    );
    let infected = site.json(&["hosts", "list", "--infected"]);
    assert_eq!(infected.as_array().unwrap().len(), 1, "{infected}");
    assert_eq!(
        site.ctl(&["hosts", "list", "--infected"]).status.code(),
        Some(1)
    );
    let progress = site.json(&["progress"]);
    assert_eq!(progress["verified_clean_share"], 0.0, "{progress}");
    let priority = site.json(&["hosts", "list", "--priority"]);
    assert_eq!(priority[0]["status"], "suspect", "{priority}");

    // A complete sweep started after the match checks the host; it still ranks first, by
    // its listed address.
    sweep(&site, "srv-9");
    wait_status(&site, "srv-9", "clean", None, &agent);
    let priority = site.json(&["hosts", "list", "--priority"]);
    assert_eq!(priority[0]["botnet_matches"], 1, "{priority}");
}

const WEBSHELL: &str =
    "<?php /* HYGIENE-SHELL-A HYGIENE-SHELL-B HYGIENE-SHELL-C HYGIENE-SHELL-D */ ?>";
const FOUR_RULES: &str = r#"
rule Shell_A { strings: $a = "HYGIENE-SHELL-A" condition: $a }
rule Shell_B { strings: $a = "HYGIENE-SHELL-B" condition: $a }
rule Shell_C { strings: $a = "HYGIENE-SHELL-C" condition: $a }
rule Shell_D { strings: $a = "HYGIENE-SHELL-D" condition: $a }
"#;

/// Defects 4 and 5: one file with four findings, and quarantine moved one of them; restore
/// was refused once the quarantine had been verified.
#[test]
fn quarantine_and_restore_act_on_the_file_and_restore_works_after_verification() {
    let site = Site::start().unwrap();
    let rules = site.write("shells.yar", FOUR_RULES);
    let agent = site
        .start_agent("web-01", &[("shell.php", WEBSHELL)], &rules, &[])
        .unwrap();
    wait_status(&site, "web-01", "infected", None, &agent);
    let findings = site.findings("web-01");
    assert_eq!(findings.len(), 4, "{findings:?}");
    let first = findings[0]["id"].as_i64().unwrap().to_string();

    let out = site.ctl(&["findings", "quarantine", &first]);
    assert!(out.status.success(), "{out:?}");
    wait_for(WAIT, "all four quarantined", || {
        states(&site, "web-01")
            .iter()
            .all(|(_, s)| s == "quarantined")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", states(&site, "web-01")));
    let shell = site.root_of("web-01").join("shell.php");
    assert!(!shell.exists(), "the file is still in place");
    assert_eq!(site.status("web-01"), "awaiting_verification");

    // A sweep verifies: every finding on the file is resolved, the host clean.
    sweep(&site, "web-01");
    wait_status(&site, "web-01", "clean", None, &agent);
    assert!(
        states(&site, "web-01").iter().all(|(_, s)| s == "resolved"),
        "{:?}",
        states(&site, "web-01")
    );

    // A week later it turns out to be the developers' test file: restore it.
    let out = site.ctl(&["findings", "restore", &first]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(WAIT, "the file back in place", || {
        std::fs::read_to_string(&shell).ok()
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(&shell).unwrap(), WEBSHELL);
    wait_for(WAIT, "all four open again", || {
        states(&site, "web-01")
            .iter()
            .all(|(_, s)| s == "open")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", states(&site, "web-01")));
    let history = site.json(&["findings", "history", &findings[3]["id"].to_string()]);
    let notes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["note"].as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.starts_with("restored to")),
        "{notes:?}"
    );
}

/// Defect 10: a rule bundle that dropped a rule resolved that rule's findings while the file
/// was still on disk. Absence proves something only when the rule was in the set that
/// looked, or when the file is gone.
#[test]
fn a_bundle_that_drops_a_rule_does_not_resolve_its_findings() {
    let site = Site::start().unwrap();
    let both = site.write(
        "v1/pair.yar",
        "rule Pair_Alpha { strings: $a = \"HYGIENE-ALPHA\" condition: $a }\n\
         rule Pair_Beta { strings: $a = \"HYGIENE-BETA\" condition: $a }\n",
    );
    publish(&site, "rules", &both, "v1");
    let agent = site
        .start_agent_with_rules(
            "ws-2",
            &[("pair.bin", "HYGIENE-ALPHA HYGIENE-BETA")],
            &[],
            &[],
        )
        .unwrap();
    wait_status(&site, "ws-2", "infected", None, &agent);
    wait_for(WAIT, "both rules' findings", || {
        (states(&site, "ws-2").len() == 2).then_some(())
    })
    .unwrap();

    let alpha_only = site.write(
        "v2/pair.yar",
        "rule Pair_Alpha { strings: $a = \"HYGIENE-ALPHA\" condition: $a }\n",
    );
    publish(&site, "rules", &alpha_only, "v2");
    wait_for(WAIT, "the rescan with v2", || {
        site.host("ws-2")["last_sweep"]
            .as_str()
            .is_some_and(|s| s.starts_with("rescan-rules-"))
            .then_some(())
    })
    .unwrap();
    // The file is still there: Beta's finding stays open.
    assert_eq!(
        states(&site, "ws-2"),
        [
            ("Pair_Alpha".to_owned(), "open".to_owned()),
            ("Pair_Beta".to_owned(), "open".to_owned())
        ]
    );

    // Once the file is gone, both resolve: Alpha by the set that looked, Beta because the
    // file that both were on is gone.
    std::fs::remove_file(site.root_of("ws-2").join("pair.bin")).unwrap();
    sweep(&site, "ws-2");
    wait_for(WAIT, "both resolved", || {
        states(&site, "ws-2")
            .iter()
            .all(|(_, s)| s == "resolved")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", states(&site, "ws-2")));
    wait_status(&site, "ws-2", "clean", None, &agent);
}

/// Defect 8: after `rules publish`, `rules status` showed `RULES_CURRENT false` with an empty
/// error for every host. Now each host is queued, sent, applied or refused (with the reason),
/// with a count per state.
#[test]
fn rules_status_shows_where_the_rollout_stands_on_each_host() {
    let site = Site::start().unwrap();
    let own_rules = site.write("own.yar", EICAR_RULE);
    let ok = site.start_agent("ok-1", &[], &own_rules, &[]).unwrap();
    // An agent issued before bundles existed has no rule-signing key: it refuses them.
    let old_root = site.root_of("old-2");
    std::fs::create_dir_all(&old_root).unwrap();
    let old_certs = site.dir.path().join("old-2").join("certs");
    site.pki.issue_agent("old-2", &old_certs).unwrap();
    std::fs::remove_file(old_certs.join("rules-signing.pub")).unwrap();
    let old = site.start_agent("old-2", &[], &own_rules, &[]).unwrap();
    // A host that was seen, then went away.
    let mut off = site.start_agent("off-3", &[], &own_rules, &[]).unwrap();
    for (id, agent) in [("ok-1", &ok), ("old-2", &old), ("off-3", &off)] {
        wait_status(&site, id, "clean", None, agent);
    }
    off.process.terminate(Duration::from_secs(10)).unwrap();
    wait_for(WAIT, "off-3 offline", || {
        (site.host("off-3")["online"] == false).then_some(())
    })
    .unwrap();

    let rules = site.write("published/eicar.yar", EICAR_RULE);
    publish(&site, "rules", &rules, "eicar");
    let rows = wait_for(WAIT, "ok-1 applied and old-2 refused", || {
        let rows = site.json(&["rules", "status"]);
        let state = |id: &str| {
            rows.as_array()?
                .iter()
                .find(|r| r["host_id"] == id)
                .map(|r| r["rules"].as_str().unwrap_or_default().to_owned())
        };
        (state("ok-1")? == "applied" && state("old-2")?.starts_with("refused")).then_some(rows)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", old.process.stderr()));
    let by_host = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["host_id"] == id)
            .unwrap()["rules"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(by_host("old-2").contains("rules-signing.pub"), "{rows}");
    assert_eq!(by_host("off-3"), "queued", "{rows}");
    let out = site.ctl(&["rules", "status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some host does not run the bundle"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules: 1 applied, 1 queued, 1 refused"),
        "{stderr}"
    );
    assert!(stderr.contains("iocs: 3 no_bundle"), "{stderr}");
}

/// Defect 6: with most hosts pending, `sweep status` showed the sweep nearly done (only hosts
/// that reported counted), the ETA was "unknown yet", and a piped `--watch` printed nothing
/// until the end.
#[test]
fn sweep_status_counts_hosts_that_have_not_reported_and_watch_streams_into_a_pipe() {
    let site = Site::start().unwrap();
    let agents = 40;
    let loadgen = Loadgen::start(
        &site.collector.url(),
        &site.pki,
        agents,
        None,
        site.dir.path(),
    )
    .unwrap();
    wait_for(WAIT, "every simulated agent online", || {
        let hosts = site.json(&["hosts", "list"]);
        let online = hosts
            .as_array()?
            .iter()
            .filter(|h| h["online"] == true)
            .count();
        (online == agents as usize).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", loadgen.process.stderr()));
    // A first sweep gives every host its totals (10 MiB each).
    let first = site.json(&["sweep", "start", "--all", "--splay", "0"]);
    let first = first["id"].as_str().unwrap().to_owned();
    wait_for(WAIT, "the first sweep done", || {
        (site.json(&["sweep", "status", &first])["state"] == "done").then_some(())
    })
    .unwrap();

    // The second spreads its hosts over 12 s: most are pending for a while.
    let second = site.json(&["sweep", "start", "--all", "--splay", "12"]);
    let second = second["id"].as_str().unwrap().to_owned();
    let watch = std::process::Command::new(bin("hygienectl"))
        .args(["--collector", &site.collector.url(), "--pki"])
        .arg(&site.pki.dir)
        .args(["sweep", "status", &second, "--watch"])
        .env_remove("HYGIENECTL_CONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The same on a terminal of 24 lines (util-linux `script` gives it one): one screen,
    // redrawn in place, the hosts not done listed worst first as far as they fit.
    let command = format!(
        "{} --collector {} --pki {} sweep status {second} --watch",
        bin("hygienectl").display(),
        site.collector.url(),
        site.pki.dir.display()
    );
    let on_terminal = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("LINES", "24")
        .env_remove("HYGIENECTL_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(WAIT, "some hosts done, most pending", || {
        let status = site.json(&["sweep", "status", &second]);
        let done = status["totals"]["done"].as_u64()?;
        (done >= 1 && status["totals"]["pending"].as_u64()? >= agents as u64 / 2).then_some(status)
    })
    .unwrap();
    let totals = &status["totals"];
    // Every host counts: those not reporting yet with their previous sweep's 10 MiB.
    assert_eq!(
        totals["bytes_estimate"].as_u64().unwrap(),
        agents as u64 * (10 << 20),
        "{totals}"
    );
    assert!(totals["estimated_hosts"].as_u64().unwrap() > 0, "{totals}");
    let done_share = totals["done"].as_f64().unwrap() / agents as f64 * 100.0;
    let percent = totals["percent"].as_f64().unwrap();
    assert!(
        (percent - done_share).abs() < 10.0,
        "{percent}% shown with {done_share}% of hosts done: {totals}"
    );
    assert!(
        status["eta"].is_string(),
        "an ETA from the pace so far: {status}"
    );

    // Piped, --watch printed a line per change while the sweep ran, then the final view.
    let output = watch.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.contains(&second))
        .collect();
    assert!(lines.len() >= 3, "one line per change:\n{text}");
    assert!(
        lines[0].contains("running") && lines[0].contains("pending"),
        "{text}"
    );
    assert!(lines.last().unwrap().contains("done"), "{text}");
    assert!(text.contains("HOSTS     40: 40 done"), "{text}");
    let screen =
        String::from_utf8_lossy(&on_terminal.wait_with_output().unwrap().stdout).into_owned();
    let frames: Vec<&str> = screen.split("\x1b[H\x1b[2J").skip(1).collect();
    assert!(frames.len() >= 2, "redrawn in place:\n{screen}");
    let first = frames[0];
    assert!(first.lines().count() <= 24, "one screen:\n{first}");
    assert!(
        first.contains("pending") && first.contains("more host(s) not done"),
        "{first}"
    );
}

/// Defect 9: a regular file replaced by a FIFO between the walk's stat and the worker's open
/// blocked the worker forever: the sweep stayed running, later sweeps pending, and SIGTERM no
/// longer stopped the agent. Here one path flips between a file and a FIFO the whole time
/// several sweeps run; each sweep must end, and the agent must stop on SIGTERM.
#[cfg(unix)]
#[test]
fn a_fifo_swapped_in_mid_sweep_never_stalls_the_agent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let site = Site::start().unwrap();
    let rules = site.write("eicar.yar", EICAR_RULE);
    let files: Vec<(String, String)> = (0..300)
        .map(|i| (format!("f{i:03}.txt"), format!("file {i}")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let mut agent = site
        .start_agent("flip-1", &files, &rules, &["--threads", "1"])
        .unwrap();
    wait_status(&site, "flip-1", "clean", None, &agent);

    let flipping = site.root_of("flip-1").join("flip");
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (path, stop) = (flipping.clone(), stop.clone());
        std::thread::spawn(move || {
            let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::write(&path, "a regular file");
                std::thread::sleep(Duration::from_micros(300));
                let _ = std::fs::remove_file(&path);
                // SAFETY: a valid NUL-terminated path.
                unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    for _ in 0..6 {
        // Full sweeps read every file, so the worker opens the flipping path each time.
        let out = site.json(&[
            "sweep", "start", "--host", "flip-1", "--splay", "0", "--full",
        ]);
        let id = out["id"].as_str().unwrap().to_owned();
        wait_for(Duration::from_secs(60), "the sweep to end", || {
            (site.json(&["sweep", "status", &id])["state"] == "done").then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    }
    let started = std::time::Instant::now();
    agent.process.terminate(Duration::from_secs(15)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
}

/// The fleet-wide allowlist: matching findings become false positives with the entry named,
/// now and in later reports, until the entry is removed; `findings list --by-file` shows a
/// file's findings together.
#[test]
fn the_allowlist_makes_matching_findings_false_positives_now_and_later() {
    let site = Site::start().unwrap();
    let rules = site.write("shells.yar", FOUR_RULES);
    let agent = site
        .start_agent(
            "web-02",
            &[
                ("shell.php", WEBSHELL),
                ("vendor.bin", "HYGIENE-SHELL-A vendor's own diagnostics"),
            ],
            &rules,
            &[],
        )
        .unwrap();
    wait_for(WAIT, "five findings", || {
        (site.findings("web-02").len() == 5).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let files = site.json(&["findings", "list", "--host", "web-02", "--by-file"]);
    let files = files.as_array().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let shell = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("shell.php"))
        .unwrap();
    assert_eq!(shell["findings"], 4);
    assert_eq!(shell["rules"].as_array().unwrap().len(), 4);

    let vendor_sha = sha256_hex(b"HYGIENE-SHELL-A vendor's own diagnostics");
    let added = site.ctl(&[
        "allow",
        "add",
        "--sha256",
        &vendor_sha,
        "--note",
        "vendor diagnostics, ticket 7",
        "--format",
        "json",
    ]);
    assert!(added.status.success(), "{added:?}");
    let entry: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert!(
        String::from_utf8_lossy(&added.stderr).contains("1 finding(s) now false positives"),
        "{added:?}"
    );
    let vendor: Vec<Value> = site
        .findings("web-02")
        .into_iter()
        .filter(|f| f["sha256"] == vendor_sha.as_str())
        .collect();
    assert_eq!(vendor.len(), 1);
    assert_eq!(vendor[0]["state"], "false_positive");
    let history = site.json(&["findings", "history", &vendor[0]["id"].to_string()]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["note"]
            .as_str()
            .unwrap()
            .contains(&format!("allowlisted by entry {}", entry["id"])),
        "{history}"
    );
    // Later: a copy elsewhere is a false positive from the moment it is found.
    let root = site.root_of("web-02");
    std::fs::write(
        root.join("copy.bin"),
        "HYGIENE-SHELL-A vendor's own diagnostics",
    )
    .unwrap();
    sweep(&site, "web-02");
    let copy = site
        .findings("web-02")
        .into_iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("copy.bin"))
        .expect("the copy's finding");
    assert_eq!(copy["state"], "false_positive", "{copy}");
    // The shell is untouched; the host is still infected by it.
    assert_eq!(site.status("web-02"), "infected");

    let list = site.json(&["allow", "list"]);
    assert_eq!(list[0]["active"], true, "{list}");
    let id = entry["id"].to_string();
    assert!(site.ctl(&["allow", "remove", &id]).status.success());
    assert_eq!(site.json(&["allow", "list"])[0]["active"], false);
    assert_eq!(site.ctl(&["allow", "remove", &id]).status.code(), Some(2));
    // Removed: the next copy is a finding like any other.
    std::fs::write(
        root.join("again.bin"),
        "HYGIENE-SHELL-A vendor's own diagnostics",
    )
    .unwrap();
    sweep(&site, "web-02");
    let again = site
        .findings("web-02")
        .into_iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("again.bin"))
        .expect("the new copy's finding");
    assert_eq!(again["state"], "open", "{again}");

    // Bad entries are refused with the reason; every change is audited.
    let bad = site.ctl(&["allow", "add", "--sha256", "abc", "--note", "x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SHA-256"));
    let unknown = site.ctl(&[
        "allow", "add", "--path", "/tmp/**", "--note", "x", "--host", "nope",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    let audit = site.json(&["audit", "list"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"allow.add") && actions.contains(&"allow.remove"),
        "{actions:?}"
    );
}
