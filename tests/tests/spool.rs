//! Nothing lost (issue 21, defect 1): detections the collector has not acknowledged live in
//! the agent's spool on disk, so `kill -9` between a sweep and its delivery, with the files
//! deleted meanwhile, loses none of them.

use std::collections::BTreeMap;
use std::time::Duration;

use hygiene_tests::*;
use rand::Rng;

const INFECTED: usize = 2000;

/// How many times each infected file's finding is stored, by file name.
fn stored(site: &Site, id: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for finding in site.findings(id) {
        if finding["kind"] == "botnet_ip" {
            continue;
        }
        let path = finding["path"].as_str().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

#[test]
fn detections_survive_sigkill_at_random_points_of_their_delivery() {
    let site = Site::start().unwrap();
    let rules = site.write(
        "rules/marker.yar",
        "rule Spool_Marker { strings: $a = \"HYGIENE-SPOOL-MARKER\" condition: $a }",
    );
    let files: Vec<(String, String)> = (0..INFECTED)
        .map(|i| {
            (
                format!("infected-{i:04}.txt"),
                format!("HYGIENE-SPOOL-MARKER {i}\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let id = "spool-01";
    let mut agent = site.start_agent(id, &files, &rules, &[]).unwrap();
    let mut rng = rand::rng();
    // Three kills, each at a random point of what is left to deliver.
    let mut arrived = 0;
    for round in 0..3 {
        let target = arrived + rng.random_range(1..400);
        // The first kill comes after the sweep, as in the report: every file was read, and
        // what was found is still on its way.
        arrived = wait_for(
            Duration::from_secs(120),
            &format!("{target} findings"),
            || {
                let swept = round > 0 || agent.process.stderr().contains("sweep finished");
                let n = stored(&site, id).len();
                (swept && n >= target).then_some(n)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\nagent: {}", agent.process.stderr()));
        // SIGKILL: no chance to flush anything.
        drop(agent);
        eprintln!("round {round}: killed after {arrived} of {INFECTED} arrived");
        if round == 0 {
            // The files are gone: only what the agent kept on disk can tell of them.
            std::fs::remove_dir_all(site.root_of(id)).unwrap();
            std::fs::create_dir_all(site.root_of(id)).unwrap();
        }
        assert!(
            arrived < INFECTED,
            "delivery finished before the kill at {target}: the test proves nothing"
        );
        agent = site.start_agent(id, &[], &rules, &[]).unwrap();
    }
    let counts = wait_for(Duration::from_secs(180), "every detection stored", || {
        let counts = stored(&site, id);
        (counts.len() == INFECTED).then_some(counts)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {} of {INFECTED} stored\nagent: {}",
            stored(&site, id).len(),
            agent.process.stderr()
        )
    });
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    // The sweeps after the deletion found the files gone: every finding ends resolved, none
    // is left behind open by a resend arriving after the sweep that proved it gone.
    wait_for(Duration::from_secs(60), "every finding resolved", || {
        site.findings(id)
            .iter()
            .all(|f| f["kind"] == "botnet_ip" || f["state"] == "resolved")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\nagent: {}", agent.process.stderr()));
    // The spool empties once everything is acknowledged.
    let log = agent.process.stderr();
    assert!(
        log.contains("unacknowledged messages from an earlier run"),
        "the restarted agent did not replay its spool:\n{log}"
    );
}
