//! The admin CLI as an admin first meets it: a certificate directory from `pki issue-admin`
//! used as it is, a config file found where XDG says, and clear refusals.

use std::process::Command;

use hygiene_tests::*;

#[test]
fn an_issued_admin_directory_and_the_xdg_config_work_as_they_are() {
    let site = Site::start().unwrap();
    let out = site.dir.path().join("alice");
    let issue_alice = || {
        Command::new(bin("hygiene-collector"))
            .args(["pki", "issue-admin", "--dir"])
            .arg(&site.pki.dir)
            .args(["--name", "alice", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let issued = issue_alice();
    assert!(issued.status.success(), "{issued:?}");
    for file in ["ca.pem", "admin.pem", "admin.key"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // Issuing again over it is refused, naming the file.
    let again = issue_alice();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("admin.key"));

    // No --collector, no --pki, no --config: the XDG config file says where and who.
    let xdg = site.dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("hygiene")).unwrap();
    std::fs::write(
        xdg.join("hygiene/hygienectl.toml"),
        format!(
            "collector = \"{}\"\npki = \"{}\"\n",
            site.collector.url(),
            out.display()
        ),
    )
    .unwrap();
    let ctl = |args: &[&str]| {
        Command::new(bin("hygienectl"))
            .args(args)
            .env_remove("HYGIENECTL_CONFIG")
            .env_remove("HYGIENE_COLLECTOR")
            .env_remove("HYGIENE_PKI")
            .env("XDG_CONFIG_HOME", &xdg)
            .current_dir(site.dir.path())
            .output()
            .unwrap()
    };
    let listed = ctl(&["hosts", "list", "--format", "json"]);
    assert!(listed.status.success(), "{listed:?}");
    // alice's actions are alice's in the audit log.
    let rules = site.write("r.yar", "rule r { condition: false }");
    let published = ctl(&["rules", "publish", rules.to_str().unwrap(), "--name", "r"]);
    assert!(published.status.success(), "{published:?}");
    let audit = site.json(&["audit", "list"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "alice" && e["action"] == "rules.publish"),
        "{audit}"
    );

    // A collector on its own is a site of one replica, alive.
    let replicas = site.json(&["replicas", "list"]);
    let replicas = replicas.as_array().unwrap();
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(replicas[0]["alive"], true, "{replicas:?}");

    // A sweep without a target says which flags would give it one.
    let untargeted = ctl(&["sweep", "start"]);
    assert_eq!(untargeted.status.code(), Some(2));
    let said = String::from_utf8_lossy(&untargeted.stderr);
    assert!(said.contains("--all") && said.contains("--host"), "{said}");
}

#[test]
fn hygienectl_reports_an_unreachable_collector() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let pki = pki.dir.display().to_string();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let output = Command::new(bin("hygienectl"))
        .args(["--collector", &url, "--pki", &pki, "hosts", "list"])
        .env_remove("HYGIENECTL_CONFIG")
        .env_remove("HYGIENE_COLLECTOR")
        .env_remove("HYGIENE_PKI")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains(&url), "{stderr}");
    assert!(output.stdout.is_empty());
}
