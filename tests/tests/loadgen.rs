//! `hygiene-loadgen` against a real collector: simulated agents connect over real mTLS with
//! certificates it issues itself, report inventories, and answer a fleet sweep.

use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn simulated_agents_connect_report_inventories_and_answer_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let collector = Collector::start(dir.path(), &pki, "127.0.0.1:0").unwrap();
    let inventory = dir.path().join("inventories.json");
    std::fs::write(
        &inventory,
        serde_json::json!([
            {
                "host_id": "win-01",
                "os": {"family": "windows", "product_name": "Windows 10 Pro", "build": "10.0.19045.3930"},
                "hotfixes": [{"kb": "KB5034441", "title": "Security Update", "installed_on": null}],
                "programs": [{"name": "7-Zip", "version": "23.01", "publisher": "Igor Pavlov"}]
            },
            {
                "host_id": "lin-02",
                "os": {"family": "linux", "pretty_name": "Debian GNU/Linux 12"},
                "packages": [{"name": "openssl", "version": "3.0.11-1", "arch": "amd64", "source": null, "manager": "dpkg"}]
            }
        ])
        .to_string(),
    )
    .unwrap();
    let agents = 25;
    let loadgen =
        Loadgen::start(&collector.url(), &pki, agents, Some(&inventory), dir.path()).unwrap();
    wait_for(WAIT, "every simulated agent online", || {
        let hosts = ctl_json(&collector.url(), &pki.dir, &["hosts", "list"]).ok()?;
        let online = hosts
            .as_array()?
            .iter()
            .filter(|h| h["online"] == true)
            .count();
        (online == agents as usize).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}",
            loadgen.process.stderr(),
            collector.process.stderr()
        )
    });

    // Host ids from the inventories, then sim-NNNNN; their inventories arrived.
    let hosts = ctl_json(&collector.url(), &pki.dir, &["hosts", "list"]).unwrap();
    let ids: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"win-01") && ids.contains(&"lin-02") && ids.contains(&"sim-00025"),
        "{ids:?}"
    );
    let win = wait_for(WAIT, "win-01's inventory", || {
        let show = ctl_json(&collector.url(), &pki.dir, &["hosts", "show", "win-01"]).ok()?;
        (show["hotfixes"] == 1).then_some(show)
    })
    .unwrap();
    assert_eq!(win["build"], "10.0.19045.3930");
    let missing = ctl_json(
        &collector.url(),
        &pki.dir,
        &["hosts", "list", "--missing-kb", "KB5035845"],
    )
    .unwrap();
    assert_eq!(missing.as_array().unwrap().len(), 1);
    // The Windows host's updates and programs, listed; a package filter shows the version.
    let json = |args: &[&str]| ctl_json(&collector.url(), &pki.dir, args).unwrap();
    let updates = json(&["updates", "list", "--host", "win-01"]);
    assert_eq!(updates[0]["kb"], "KB5034441", "{updates}");
    let programs = json(&["programs", "list", "--host", "win-01"]);
    assert_eq!(programs[0]["name"], "7-Zip", "{programs}");
    assert_eq!(programs[0]["version"], "23.01");
    let unknown = ctl(
        &collector.url(),
        &pki.dir,
        &["updates", "list", "--host", "nope"],
    )
    .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let openssl = wait_for(WAIT, "lin-02's packages", || {
        let rows = ctl_json(
            &collector.url(),
            &pki.dir,
            &["hosts", "list", "--has-package", "openssl"],
        )
        .ok()?;
        (rows.as_array()?.len() == 1).then_some(rows)
    })
    .unwrap();
    assert_eq!(openssl[0]["host_id"], "lin-02");
    assert_eq!(
        openssl[0]["package_versions"][0], "3.0.11-1 amd64",
        "{openssl}"
    );
    let below = json(&["hosts", "list", "--package-below", "openssl=3.0.13-1"]);
    assert_eq!(below[0]["package_versions"][0], "3.0.11-1 amd64", "{below}");
    let table = ctl(
        &collector.url(),
        &pki.dir,
        &["hosts", "list", "--has-package", "openssl"],
    )
    .unwrap();
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("3.0.11-1 amd64"),
        "{table:?}"
    );
    let first = json(&["hosts", "list", "--priority", "--limit", "2"]);
    assert_eq!(first.as_array().unwrap().len(), 2);

    // A sweep reaches all of them, and they answer it.
    let out = ctl(
        &collector.url(),
        &pki.dir,
        &[
            "sweep", "start", "--all", "--splay", "0", "--format", "json",
        ],
    )
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reached = wait_for(WAIT, "the sweep to reach every agent", || {
        loadgen
            .reports()
            .into_iter()
            .find(|r| r["sweep_id"] == id.as_str())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", loadgen.process.stderr()));
    assert_eq!(reached["agents"], agents);
    assert!(reached["last_ms"].as_i64().unwrap() >= reached["first_ms"].as_i64().unwrap());
    let status = wait_for(WAIT, "every host done", || {
        let status = ctl_json(&collector.url(), &pki.dir, &["sweep", "status", &id]).ok()?;
        (status["state"] == "done").then_some(status)
    })
    .unwrap();
    assert_eq!(status["totals"]["done"], agents);
    assert_eq!(status["totals"]["files_done"], 1000 * agents);
    let progress = ctl_json(&collector.url(), &pki.dir, &["progress"]).unwrap();
    assert_eq!(progress["by_status"]["clean"], agents);

    // A PKI directory without the CA key is a clear error, exit 2.
    let no_ca = dir.path().join("no-ca");
    std::fs::create_dir_all(&no_ca).unwrap();
    let out = std::process::Command::new(bin("hygiene-loadgen"))
        .args(["--collector", &collector.url(), "--agents", "1", "--pki"])
        .arg(&no_ca)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-ca"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
