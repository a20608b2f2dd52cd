//! Fleet sweeps end to end: a real collector and real agents (distinct host ids) over real mTLS
//! on loopback, driven through `hygienectl sweep ...`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// One host's certificate, state directory and root to sweep.
struct Host {
    certs: PathBuf,
    state: PathBuf,
    root: PathBuf,
}

struct Fleet {
    dir: tempfile::TempDir,
    pki: Pki,
    collector: Collector,
    rules: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(&dir.path().join("pki")).unwrap();
        let collector = Collector::start(dir.path(), &pki, "127.0.0.1:0").unwrap();
        let rules = dir.path().join("eicar.yar");
        std::fs::write(
            &rules,
            "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }",
        )
        .unwrap();
        Fleet {
            dir,
            pki,
            collector,
            rules,
        }
    }

    fn host(&self, id: &'static str) -> Host {
        let base = self.dir.path().join(id);
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("readme.txt"), "nothing to see").unwrap();
        let certs = base.join("certs");
        self.pki.issue_agent(id, &certs).unwrap();
        Host {
            certs,
            state: base.join("state"),
            root,
        }
    }

    fn start(&self, host: &Host, extra: &[&str]) -> Agent {
        let spec = AgentSpec {
            collector: self.collector.url(),
            cert_dir: &host.certs,
            state_dir: &host.state,
            roots: vec![&host.root],
            rules: vec![&self.rules],
            iocs: vec![],
        };
        Agent::start_with(&spec, self.dir.path(), extra).unwrap()
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        ctl(&self.collector.url(), &self.pki.dir, args).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        ctl_json(&self.collector.url(), &self.pki.dir, args).unwrap()
    }

    fn status(&self, id: &str) -> Value {
        self.json(&["sweep", "status", id])
    }

    /// Waits until `host` is in `state` in sweep `id`; returns the whole status.
    fn wait_host_state(&self, id: &str, host: &str, state: &str, agents: &[&Agent]) -> Value {
        wait_for(WAIT, &format!("{host} {state} in sweep {id}"), || {
            let status = self.status(id);
            (host_entry(&status, host)["state"] == state).then_some(status)
        })
        .unwrap_or_else(|e| {
            let logs: Vec<String> = agents.iter().map(|a| a.process.stderr()).collect();
            panic!(
                "{e}\nstatus: {:#}\nagents: {}\ncollector: {}",
                self.status(id),
                logs.join("\n---\n"),
                self.collector.process.stderr()
            )
        })
    }

    /// Waits until the host's start-up sweep has been reported.
    fn wait_startup_sweep(&self, host: &str, agent: &Agent) {
        wait_for(WAIT, &format!("{host} connected and swept"), || {
            agent
                .process
                .stderr()
                .contains("sweep finished")
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\nagent: {}", agent.process.stderr()));
        wait_for(WAIT, &format!("{host} known to the collector"), || {
            let hosts = self.json(&["hosts", "list"]);
            hosts
                .as_array()?
                .iter()
                .any(|h| h["host_id"] == host)
                .then_some(())
        })
        .unwrap();
    }

    fn start_sweep(&self, args: &[&str]) -> String {
        let mut all = vec!["sweep", "start"];
        all.extend_from_slice(args);
        all.extend(["--format", "json"]);
        let out = self.ctl(&all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = json["id"].as_str().unwrap().to_owned();
        assert_eq!(json, serde_json::json!({ "id": id }));
        id
    }
}

fn host_entry<'a>(status: &'a Value, host: &str) -> &'a Value {
    status["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host_id"] == host))
        .unwrap_or(&Value::Null)
}

fn plant_eicar(root: &Path) {
    std::fs::write(root.join("dropper.bin"), EICAR).unwrap();
}

#[test]
fn a_sweep_reaches_online_agents_at_once_and_offline_ones_when_they_return() {
    let fleet = Fleet::new();
    let (web, db, ws) = (
        fleet.host("web-01"),
        fleet.host("db-01"),
        fleet.host("ws-03"),
    );
    let web_agent = fleet.start(&web, &[]);
    let db_agent = fleet.start(&db, &[]);
    let mut ws_agent = fleet.start(&ws, &[]);
    for (host, agent) in [
        ("web-01", &web_agent),
        ("db-01", &db_agent),
        ("ws-03", &ws_agent),
    ] {
        fleet.wait_startup_sweep(host, agent);
    }
    // ws-03 goes offline; web-01 gets infected after its start-up sweep.
    ws_agent.process.terminate(Duration::from_secs(15)).unwrap();
    plant_eicar(&web.root);
    plant_eicar(&ws.root);

    let id = fleet.start_sweep(&["--all", "--splay", "0"]);
    let status = fleet.wait_host_state(&id, "web-01", "done", &[&web_agent]);
    let status = if host_entry(&status, "db-01")["state"] == "done" {
        status
    } else {
        fleet.wait_host_state(&id, "db-01", "done", &[&db_agent])
    };
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["state"], "running", "ws-03 is still to come");
    let web_row = host_entry(&status, "web-01");
    assert_eq!(web_row["findings"], 1, "{status:#}");
    assert_eq!(web_row["files_done"], 2);
    assert!(web_row["error"].is_null());
    assert_eq!(host_entry(&status, "db-01")["findings"], 0);
    let ws_row = host_entry(&status, "ws-03");
    assert_eq!(ws_row["state"], "pending");
    assert_eq!(ws_row["online"], false);
    assert!(ws_row["delivered"].is_null(), "{ws_row}");
    assert_eq!(status["totals"]["hosts"], 3);
    assert_eq!(status["totals"]["done"], 2);
    assert_eq!(status["totals"]["pending"], 1);
    assert_eq!(status["totals"]["infected"], 1);
    assert_eq!(status["totals"]["findings"], 1);
    // The finding is in the findings list too, from this sweep.
    let findings = fleet.json(&["findings", "list", "--host", "web-01"]);
    assert!(
        findings
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("dropper.bin")),
        "{findings:#}"
    );

    // ws-03 comes back and gets the sweep on its stream.
    let ws_agent = fleet.start(&ws, &[]);
    let status = fleet.wait_host_state(&id, "ws-03", "done", &[&ws_agent]);
    assert_eq!(status["state"], "done");
    assert!(status["finished"].is_string());
    assert!(status["eta"].is_null());
    assert_eq!(host_entry(&status, "ws-03")["findings"], 1);
    assert!(host_entry(&status, "ws-03")["delivered"].is_string());
    assert_eq!(status["totals"]["infected"], 2);

    // Exit code 1: the sweep found something. The table view summarises, then lists hosts.
    let table = fleet.ctl(&["sweep", "status", &id]);
    assert_eq!(table.status.code(), Some(1));
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains(&format!("SWEEP     {id} (done)")), "{text}");
    assert!(text.contains("HOSTS     3: 3 done"), "{text}");
    assert!(text.contains("ws-03"), "{text}");
    // --watch on a finished sweep prints it once and ends.
    let watch = fleet.ctl(&["sweep", "status", &id, "--watch", "--format", "json"]);
    assert_eq!(watch.status.code(), Some(1));
    let watched: Value = serde_json::from_slice(&watch.stdout).unwrap();
    assert_eq!(watched["state"], "done");

    // The list and the audit log.
    let list = fleet.json(&["sweep", "list"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["done"], 3);
    assert_eq!(list[0]["created_by"], "admin");
    let audit = fleet.json(&["audit", "list"]);
    let start = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "sweep.start")
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(start["actor"], "admin");
    assert_eq!(start["target"], id.as_str());
    let csv = fleet.ctl(&["audit", "list", "--format", "csv"]);
    assert!(
        String::from_utf8(csv.stdout)
            .unwrap()
            .starts_with("id,at,actor,action,target,detail\n")
    );
    drop((web_agent, db_agent));
}

#[test]
fn cancel_stops_a_waiting_sweep_and_a_deadline_expires_one() {
    let fleet = Fleet::new();
    let (a, b) = (fleet.host("app-01"), fleet.host("app-02"));
    let a_agent = fleet.start(&a, &[]);
    let mut b_agent = fleet.start(&b, &[]);
    fleet.wait_startup_sweep("app-01", &a_agent);
    fleet.wait_startup_sweep("app-02", &b_agent);

    // A long splay: app-01 holds the order without starting; cancel keeps it from starting.
    let id = fleet.start_sweep(&["--host", "app-01", "--splay", "3600"]);
    wait_for(WAIT, "the order on app-01", || {
        a_agent
            .process
            .stderr()
            .contains("sweep starts in")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a_agent.process.stderr()));
    let status = fleet.status(&id);
    assert_eq!(host_entry(&status, "app-01")["state"], "pending");
    assert!(host_entry(&status, "app-01")["delivered"].is_string());
    assert_eq!(status["hosts"].as_array().unwrap().len(), 1);

    let cancel = fleet.ctl(&["sweep", "cancel", &id]);
    assert_eq!(
        cancel.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    let status = fleet.status(&id);
    assert_eq!(status["state"], "cancelled");
    assert_eq!(host_entry(&status, "app-01")["state"], "cancelled");
    assert_eq!(status["cancelled_by"], "admin");
    wait_for(WAIT, "the agent to drop the cancelled sweep", || {
        a_agent
            .process
            .stderr()
            .contains("sweep cancelled")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a_agent.process.stderr()));
    // A second cancel is refused with the reason.
    let again = fleet.ctl(&["sweep", "cancel", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already cancelled"));

    // app-02 is offline when a sweep with a two-second deadline starts: it expires.
    b_agent.process.terminate(Duration::from_secs(15)).unwrap();
    let id = fleet.start_sweep(&["--host", "app-02", "--deadline", "2s"]);
    let status = wait_for(WAIT, "the deadline to pass", || {
        let status = fleet.status(&id);
        (status["state"] == "expired").then_some(status)
    })
    .unwrap();
    assert_eq!(host_entry(&status, "app-02")["state"], "expired");
    // Back after the deadline, app-02 is not sent the expired sweep.
    let b_agent = fleet.start(&b, &[]);
    fleet.wait_startup_sweep("app-02", &b_agent);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !b_agent.process.stderr().contains(&id),
        "{}",
        b_agent.process.stderr()
    );
    assert_eq!(fleet.status(&id)["state"], "expired");

    // Bad requests: unknown hosts, unknown sweeps, neither --all nor --host; exit 2, reason.
    let unknown = fleet.ctl(&["sweep", "start", "--host", "nosuch-99"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nosuch-99"));
    let missing = fleet.ctl(&["sweep", "status", "sw-nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no sweep"));
    let neither = fleet.ctl(&["sweep", "start"]);
    assert_eq!(neither.status.code(), Some(2));
    let bad_deadline = fleet.ctl(&["sweep", "start", "--all", "--deadline", "soon"]);
    assert_eq!(bad_deadline.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_deadline.stderr).contains("soon"));

    let audit = fleet.json(&["audit", "list"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["sweep.start", "sweep.cancel", "sweep.start"]);
}

#[test]
fn an_agent_restarted_mid_sweep_resumes_it() {
    let fleet = Fleet::new();
    let host = fleet.host("file-01");
    // Enough files that a sweep held to 1% of a core is still running when the agent stops.
    for i in 0..3000 {
        std::fs::write(host.root.join(format!("f{i:05}.txt")), format!("file {i}")).unwrap();
    }
    plant_eicar(&host.root);
    let agent = fleet.start(&host, &[]);
    fleet.wait_startup_sweep("file-01", &agent);
    drop(agent);

    // A full sweep (every file read again) while the agent is slowed down.
    let id = fleet.start_sweep(&["--host", "file-01", "--splay", "0", "--full"]);
    let mut slow = fleet.start(&host, &["--cpu-limit", "1", "--threads", "1"]);
    let status = fleet.wait_host_state(&id, "file-01", "running", &[&slow]);
    assert!(
        host_entry(&status, "file-01")["files_done"]
            .as_u64()
            .unwrap()
            < 3001,
        "{status:#}"
    );
    slow.process.terminate(Duration::from_secs(30)).unwrap();
    let status = fleet.status(&id);
    assert_eq!(
        host_entry(&status, "file-01")["state"],
        "running",
        "the sweep should not have finished: {status:#}\n{}",
        slow.process.stderr()
    );

    // Started again, it resumes the same sweep and finishes it.
    let agent = fleet.start(&host, &[]);
    let status = fleet.wait_host_state(&id, "file-01", "done", &[&agent]);
    assert!(
        agent
            .process
            .stderr()
            .contains("resuming a sweep interrupted"),
        "{}",
        agent.process.stderr()
    );
    let row = host_entry(&status, "file-01");
    assert_eq!(row["files_done"], 3002);
    assert_eq!(row["findings"], 1);
}
