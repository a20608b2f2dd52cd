//! hygienectl on bad input before it reaches a collector: clear errors naming what is wrong,
//! exit code 2, nothing on stdout. (An unreachable collector, which needs a real PKI, is in
//! tests/tests/admin_cli.rs.)

use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hygienectl"))
        .args(args)
        .env_remove("HYGIENECTL_CONFIG")
        .env_remove("HYGIENE_COLLECTOR")
        .env_remove("HYGIENE_PKI")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn missing_certificates_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nowhere").display().to_string();
    let output = ctl(&[
        "--collector",
        "https://127.0.0.1:1",
        "--pki",
        &nowhere,
        "findings",
        "list",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("nowhere/ca.pem"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn an_unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ctl.toml");
    std::fs::write(
        &config,
        "collector = \"https://127.0.0.1:1\"\nformat = \"json\"\n",
    )
    .unwrap();
    let output = ctl(&["--config", &config.display().to_string(), "hosts", "list"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("format"), "{}", stderr(&output));
    assert!(stderr(&output).contains("ctl.toml"), "{}", stderr(&output));
}
