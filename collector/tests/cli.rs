//! `hygiene-collector pki` and `serve` on bad input: clear errors, exit code 2 (hygienectl's
//! own are in tests/tests/admin_cli.rs).

use std::process::{Command, Output};

fn collector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hygiene-collector"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn pki_init_and_issue_agent() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_arg = pki.display().to_string();
    let init = collector(&[
        "pki",
        "init",
        "--dir",
        &pki_arg,
        "--server-name",
        "collector.example",
        "--server-name",
        "10.1.2.3",
    ]);
    assert!(init.status.success(), "{}", stderr(&init));
    let again = collector(&["pki", "init", "--dir", &pki_arg, "--server-name", "x"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("ca.key already exists"),
        "{}",
        stderr(&again)
    );

    let out = dir.path().join("agent");
    let out_arg = out.display().to_string();
    let issue = collector(&[
        "pki",
        "issue-agent",
        "--dir",
        &pki_arg,
        "--host-id",
        "ws-0042",
        "--out",
        &out_arg,
    ]);
    assert!(issue.status.success(), "{}", stderr(&issue));
    for file in ["ca.pem", "agent.pem", "agent.key"] {
        assert!(out.join(file).exists(), "{file}");
    }
    let bad = collector(&[
        "pki",
        "issue-agent",
        "--dir",
        &pki_arg,
        "--host-id",
        "../evil",
        "--out",
        &out_arg,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("invalid host id"), "{}", stderr(&bad));
}

#[test]
fn serve_refuses_missing_pki_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-pki").display().to_string();
    let output = collector(&["serve", "--listen", "127.0.0.1:0", "--pki", &missing]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no-pki/server.pem"),
        "{}",
        stderr(&output)
    );

    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_port = 5\n").unwrap();
    let output = collector(&["serve", "--config", &config.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("listen_port"),
        "{}",
        stderr(&output)
    );

    let pki = dir.path().join("pki").display().to_string();
    assert!(
        collector(&["pki", "init", "--dir", &pki, "--server-name", "localhost"])
            .status
            .success()
    );
    let output = collector(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--pki",
        &pki,
        "--db",
        // Nothing listens on port 1: the error names the database and why.
        "postgres://127.0.0.1:1/hygiene",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("database postgres://127.0.0.1:1/hygiene: ")
            && stderr(&output).contains("refused"),
        "{}",
        stderr(&output)
    );
}
