//! Botnet IP lists end to end: real agents on loopback, each leaving from its own 127.0.0.x
//! (`--source-address`), a real socket to a listed address, simulated hosts with their own
//! socket lists; lists imported, re-ranked and retired through `hygienectl intel ...`.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

trait IntelSite {
    fn import(&self, file: &Path, source: &str, extra: &[&str]) -> std::process::Output;
    /// An import that must fail (exit 2); its stderr.
    fn import_refused(&self, file: &Path) -> String;
    /// host id -> (rank, botnet_matches, open_findings, reason)
    fn priority(&self) -> Vec<(String, u64, u64, String)>;
    fn botnet_findings(&self, host: &str) -> Vec<Value>;
}

impl IntelSite for Site {
    fn import(&self, file: &Path, source: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "intel",
            "import-ips",
            file.to_str().unwrap(),
            "--source",
            source,
            // The agents here live on loopback: a lab's list names loopback addresses.
            "--allow-reserved",
        ];
        args.extend(extra);
        let output = self.ctl(&args);
        assert!(
            output.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// An import that must fail (exit 2); its stderr.
    fn import_refused(&self, file: &Path) -> String {
        let output = self.ctl(&[
            "intel",
            "import-ips",
            file.to_str().unwrap(),
            "--source",
            "x",
        ]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// host id -> (rank, botnet_matches, open_findings, reason)
    fn priority(&self) -> Vec<(String, u64, u64, String)> {
        let rows = self.json(&["hosts", "list", "--priority"]);
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["host_id"].as_str().unwrap().to_owned(),
                    r["botnet_matches"].as_u64().unwrap(),
                    r["open_findings"].as_u64().unwrap(),
                    r["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn botnet_findings(&self, host: &str) -> Vec<Value> {
        let rows = self.json(&["findings", "list", "--kind", "botnet_ip", "--host", host]);
        rows.as_array().unwrap().clone()
    }
}

fn start_agent(setup: &Site, id: &str, source: &str, rules: &Path, infected: bool) -> Agent {
    let mut files = vec![("readme.txt", "nothing to see")];
    if infected {
        files.push(("dropper.bin", "HYGIENE-TEST-BOTNET-DROPPER"));
    }
    setup
        .start_agent(id, &files, rules, &["--source-address", source])
        .unwrap()
}

#[test]
fn botnet_lists_rank_hosts_and_rerank_without_a_scan() {
    let mut setup = Site::start().unwrap();
    // The "C2": a listener on 127.0.0.77 and a socket to it, held open by this test. Every
    // agent here shares the machine's socket table, so each one reports it.
    let c2 = TcpListener::bind("127.0.0.77:0").unwrap();
    let c2_port = c2.local_addr().unwrap().port();
    let _beacon = TcpStream::connect(("127.0.0.77", c2_port)).unwrap();
    let rules = setup.write(
        "dropper.yar",
        "rule Test_Dropper { strings: $a = \"HYGIENE-TEST-BOTNET-DROPPER\" condition: $a }",
    );
    let _a = start_agent(&setup, "ws-a", "127.0.0.2", &rules, false);
    let _b = start_agent(&setup, "ws-b", "127.0.0.3", &rules, false);
    let _c = start_agent(&setup, "srv-c", "127.0.0.4", &rules, true);

    // Each agent is seen from its own address, has swept, and reported its sockets (among them
    // the socket to the C2).
    wait_for(WAIT, "three agents swept, with their sockets", || {
        let hosts = setup.json(&["hosts", "list"]);
        let hosts = hosts.as_array()?;
        let ready = hosts.len() == 3
            && hosts.iter().all(|h| h["status"] != "never_swept")
            && hosts.iter().any(|h| h["status"] == "infected");
        // Every host's latest socket list was taken after all three connected: it holds
        // the collector's socket to each of them, and the socket to the C2.
        let conns = setup.json(&["connections", "list", "--remote", "127.0.0.0/25"]);
        let mut seen: Vec<(String, String)> = conns
            .as_array()?
            .iter()
            .filter(|c| c["remote_addr"] != "127.0.0.1")
            .map(|c| {
                let remote = c["remote_addr"].as_str().unwrap_or_default().to_owned();
                (c["host_id"].as_str().unwrap_or_default().to_owned(), remote)
            })
            .collect();
        seen.sort();
        seen.dedup();
        (ready && seen.len() >= 12).then_some(())
    })
    .unwrap();
    let peers: Vec<(String, String)> = setup
        .json(&["hosts", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host_id"].as_str().unwrap().to_owned(),
                h["peer_address"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (host, peer) in &peers {
        let want = match host.as_str() {
            "ws-a" => "127.0.0.2:",
            "ws-b" => "127.0.0.3:",
            _ => "127.0.0.4:",
        };
        assert!(peer.starts_with(want), "{host} connected from {peer}");
    }

    // Before any list: the infected host first, the rest have nothing.
    let ranked = setup.priority();
    assert_eq!(ranked[0].0, "srv-c");
    assert_eq!((ranked[0].1, ranked[0].2), (0, 1));

    // List 1, plain text: ws-b's egress address, with bad lines and a domain among them.
    let list1 = setup.write(
        "cert-2026-11.txt",
        "# national CERT botnet list, November\n\
         127.0.0.3\n\
         not-an-address\n\
         c2.example.org\n\
         198.18.0.0/24 # Mirai (RFC 2544's range: this machine's registry mirror sits in 203.0.113.0/24)\n\
         300.1.2.3\n",
    );
    let output = setup.import(&list1, "cert", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cert-2026-11.txt:3: skipped"), "{stderr}");
    assert!(stderr.contains("cert-2026-11.txt:6: skipped"), "{stderr}");
    assert!(
        stderr.contains("2 entries, 2 bad lines skipped"),
        "{stderr}"
    );
    // The domain is counted and named, and said not to be used.
    assert!(
        stderr.contains("1 domain name(s) left out, e.g. c2.example.org: botnet matching compares IP addresses only"),
        "{stderr}"
    );
    // ws-b ranks first, on its egress address. (The agents share this machine's socket
    // table, so every one of them also reports the collector's socket to 127.0.0.3: a
    // connection match each, ws-b's included.)
    let ranked = setup.priority();
    assert_eq!(ranked[0].0, "ws-b", "{ranked:?}");
    assert_eq!(ranked[0].1, 2, "{ranked:?}");
    assert!(
        ranked[0].3.contains("egress 127.0.0.3 (list 1)"),
        "{}",
        ranked[0].3
    );
    let order: Vec<(&str, u64, u64)> = ranked.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
    assert_eq!(order, [("ws-b", 2, 0), ("srv-c", 1, 1), ("ws-a", 1, 0)]);
    let b = setup.botnet_findings("ws-b");
    let egress = b
        .iter()
        .find(|f| f["namespace"] == "egress_address")
        .unwrap();
    assert_eq!(egress["path"], "127.0.0.3");
    assert_eq!(egress["rule"], "127.0.0.3/32");
    assert_eq!(egress["list_id"], 1);
    assert!(egress["evidence"].as_str().unwrap().contains("cert v1"));
    let a = setup.botnet_findings("ws-a");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["namespace"], "connection");
    assert_eq!(a[0]["path"], "127.0.0.3");
    let evidence = a[0]["evidence"].as_str().unwrap();
    // /proc gives the first 15 bytes of a process name.
    assert!(evidence.contains("by hygiene-collect (pid"), "{evidence}");

    // List 2, CSV, a week later: the C2's address. Importing it re-checks every host at once
    // from the sockets the collector already has: no sweep, no new report needed.
    let list2 = setup.write(
        "cert-extra.csv",
        "first_seen,ip,family\n2026-11-20,127.0.0.77,beacon\n2026-11-21,bogus,x\n",
    );
    let output = setup.import(&list2, "cert", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cert-extra.csv:3: skipped"), "{stderr}");
    assert!(stderr.contains("3 on a list"), "{stderr}");
    let ranked = setup.priority();
    let order: Vec<(&str, u64, u64)> = ranked.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
    assert_eq!(
        order,
        [("ws-b", 3, 0), ("srv-c", 2, 1), ("ws-a", 2, 0)],
        "{ranked:?}"
    );
    let a = setup.botnet_findings("ws-a");
    let c2_match = a.iter().find(|f| f["path"] == "127.0.0.77").unwrap();
    assert_eq!(c2_match["namespace"], "connection");
    assert_eq!(c2_match["list_id"], 2);
    let evidence = c2_match["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("-> 127.0.0.77:{c2_port} ESTABLISHED")),
        "{evidence}"
    );
    assert!(evidence.contains("cert v2"), "{evidence}");
    assert!(evidence.contains("family=beacon"), "{evidence}");

    // Retiring list 1 resolves every match on 127.0.0.3; the C2 matches stay.
    let output = setup.ctl(&["intel", "remove", "1"]);
    assert!(output.status.success(), "{output:?}");
    let b = setup.botnet_findings("ws-b");
    for f in &b {
        let want = if f["path"] == "127.0.0.3" {
            "resolved"
        } else {
            "open"
        };
        assert_eq!(f["state"], want, "{f}");
    }
    let egress = b
        .iter()
        .find(|f| f["namespace"] == "egress_address")
        .unwrap();
    let history = setup.json(&["findings", "history", &egress["id"].to_string()]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "collector");
    assert!(
        last["note"]
            .as_str()
            .unwrap()
            .contains("no longer on an active list")
    );
    let order: Vec<(String, u64)> = setup.priority().into_iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(
        order,
        [("srv-c".into(), 1), ("ws-a".into(), 1), ("ws-b".into(), 1)]
    );
    let lists = setup.json(&["intel", "lists"]);
    let states: Vec<(i64, &str)> = lists
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(1, "retired"), (2, "active")]);
    // Retiring it again is refused, with the reason.
    let again = setup.ctl(&["intel", "remove", "1"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already retired"));
    // A botnet match is an address, not a file: quarantine is refused.
    let refused = setup.ctl(&["findings", "quarantine", &c2_match["id"].to_string()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a file"));

    // A restarted collector loads the lists in the background and re-checks every host: the
    // matches stay open (an empty matcher meanwhile would have resolved them all).
    setup.restart_collector().unwrap();
    wait_for(WAIT, "the lists loaded after the restart", || {
        setup
            .collector
            .process
            .stderr()
            .contains("botnet lists loaded")
            .then_some(())
    })
    .unwrap();
    let a = setup.botnet_findings("ws-a");
    let c2_match = a.iter().find(|f| f["path"] == "127.0.0.77").unwrap();
    assert_eq!(c2_match["state"], "open", "{c2_match}");
}

#[test]
fn each_simulated_host_is_judged_by_its_own_sockets() {
    let setup = Site::start().unwrap();
    let connection = |remote: &str, process: &str| {
        format!(
            r#"{{"proto": "tcp", "local_addr": "10.1.0.5", "local_port": 49822, "remote_addr": "{remote}", "remote_port": 443, "state": "ESTABLISHED", "pid": 4242, "process": "{process}"}}"#
        )
    };
    let inventories = setup.write(
        "hosts.json",
        &format!(
            r#"[{{"host_id": "sim-listed", "os": {{"family": "windows"}}, "connections": [{}, {}]}},
                {{"host_id": "sim-clean", "os": {{"family": "windows"}}, "connections": [{}]}}]"#,
            connection("203.0.113.66", "beacon.exe"),
            connection("192.0.2.10", "chrome.exe"),
            connection("192.0.2.10", "chrome.exe"),
        ),
    );
    let _loadgen = Loadgen::start(
        &setup.collector.url(),
        &setup.pki,
        2,
        Some(&inventories),
        setup.dir.path(),
    )
    .unwrap();
    wait_for(WAIT, "both simulated hosts' sockets", || {
        let conns = setup.json(&["connections", "list"]);
        (conns.as_array()?.len() == 3).then_some(())
    })
    .unwrap();

    // Garbage is refused whole, with the reason, and imports nothing.
    let empty = setup.write("empty.txt", "# nothing\nnot an address\n");
    assert!(setup.import_refused(&empty).contains("nothing imported"));
    let no_ip = setup.write("no-ip.csv", "host,family\n203.0.113.66,x\n");
    assert!(setup.import_refused(&no_ip).contains("no address column"));
    let missing = setup.dir.path().join("missing.txt");
    assert!(
        setup
            .import_refused(&missing)
            .contains("missing.txt: cannot read the list")
    );
    assert_eq!(setup.json(&["intel", "lists"]).as_array().unwrap().len(), 0);

    // Loki's C2 list, with a range holding the beacon's address added.
    let loki =
        std::fs::read_to_string(shared().join("corpus/signature-base/iocs/c2-iocs.txt")).unwrap();
    let list = setup.write(
        "c2.txt",
        &format!("{loki}\n# test campaign\n203.0.113.64/28\n"),
    );
    setup.import(&list, "loki", &[]);
    let listed = setup.botnet_findings("sim-listed");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["path"], "203.0.113.66");
    assert_eq!(listed[0]["rule"], "203.0.113.64/28");
    let evidence = listed[0]["evidence"].as_str().unwrap();
    assert!(evidence.contains("beacon.exe (pid 4242)"), "{evidence}");
    assert!(evidence.contains("[test campaign]"), "{evidence}");
    assert!(setup.botnet_findings("sim-clean").is_empty());
    let ranked = setup.priority();
    assert_eq!(ranked[0].0, "sim-listed");
    assert_eq!(ranked[1].1, 0);

    // A replacing list without the range: the match resolves.
    let next = setup.write("c2-next.txt", "198.18.0.1\n");
    let output = setup.import(&next, "loki", &["--replace"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 resolved"));
    assert_eq!(setup.botnet_findings("sim-listed")[0]["state"], "resolved");
}

/// `intel import-ips` as an admin runs it on a publisher's file: no lab flags.
fn import_as_shipped(site: &Site, name: &str, extra: &[&str]) -> std::process::Output {
    let path = shared().join("corpus/intel/blocklists").join(name);
    let mut args = vec![
        "intel",
        "import-ips",
        path.to_str().unwrap(),
        "--source",
        name,
    ];
    args.extend(extra);
    site.ctl(&args)
}

/// Issue 21, defects 5 and 9: publishers' lists import with the counts they state, special
/// ranges are skipped and named, the whole Internet is refused.
#[test]
fn publishers_lists_import_as_shipped_and_bogons_never_match() {
    let site = Site::start().unwrap();
    for (name, entries) in [
        ("feodo_ipblocklist.csv", 28),
        ("feodo_ipblocklist_recommended.txt", 244),
        ("spamhaus_drop_v4.json", 1406),
        ("ipsum_level3.txt", 0),
        ("spamhaus_drop.txt", 0),
        ("spamhaus_edrop_2024-10_merged_empty.txt", 0),
    ] {
        let out = import_as_shipped(&site, name, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains(" entries, 0 bad lines skipped"),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("warning"), "{name}: {stderr}");
        if entries > 0 {
            assert!(
                stderr.contains(&format!(": {entries} entries, 0 bad lines")),
                "{name}: {stderr}"
            );
        }
    }
    let empty = String::from_utf8_lossy(
        &import_as_shipped(
            &site,
            "spamhaus_edrop_2024-10_merged_empty.txt",
            &["--replace"],
        )
        .stderr,
    )
    .into_owned();
    assert!(empty.contains("the list holds no entries"), "{empty}");

    // FireHOL level1 carries the private ranges: skipped, each named, none matches a LAN host.
    let out = import_as_shipped(&site, "firehol_level1.netset", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped: 10.0.0.0/8 is private (--allow-reserved"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped: 224.0.0.0/3 covers 224.0.0.0/4 (multicast)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("special-purpose range(s) skipped"),
        "{stderr}"
    );

    // The whole Internet is refused, naming the lines, unless asked for.
    let broad = site.write("broad.txt", "198.51.99.1\n0.0.0.0/0\n::/0\n");
    let args = [
        "intel",
        "import-ips",
        broad.to_str().unwrap(),
        "--source",
        "x",
    ];
    let out = site.ctl(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2 0.0.0.0/0, line 3 ::/0"), "{stderr}");
    assert!(stderr.contains("--allow-broad"), "{stderr}");

    // An agent on loopback is never a match for what FireHOL and the rest hold.
    let rules = site.write("rules/none.yar", "rule none { condition: false }");
    let agent = site.start_agent("lan-01", &[], &rules, &[]).unwrap();
    wait_for(Duration::from_secs(90), "lan-01 swept", || {
        site.host("lan-01")["last_sweep"].as_str().map(drop)
    })
    .unwrap_or_else(|e| panic!("{e}: {}", agent.process.stderr()));
    let botnet: Vec<Value> = site
        .findings("lan-01")
        .into_iter()
        .filter(|f| f["kind"] == "botnet_ip")
        .collect();
    assert!(botnet.is_empty(), "{botnet:?}");
}
