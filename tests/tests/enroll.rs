//! Enrollment tokens as the admin handles them: made (shown once, stored as a hash, with the
//! CA fingerprint agents pin), listed with their state, revoked; every step audited.

use hygiene_tests::*;
use serde_json::Value;
use sha2::Digest;

#[test]
fn tokens_are_shown_once_stored_as_hashes_listed_and_revoked() {
    let site = Site::start().unwrap();
    let made = site.json(&[
        "enroll",
        "create",
        "--label",
        "District 3",
        "--uses",
        "2",
        "--expires",
        "7d",
        "--group",
        "district-3",
    ]);
    // The contract: exactly these fields.
    let keys: Vec<&str> = made
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["id", "token", "ca_fingerprint"], "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("hyg_") && token.len() > 40, "{token}");
    // The fingerprint is the SHA-256 of the CA certificate's DER.
    let pem = std::fs::read(site.pki.dir.join("ca.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let expected: String = sha2::Sha256::digest(&pem.contents)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(made["ca_fingerprint"], format!("SHA256:{expected}"));

    // A second token, for any number of hosts and without an end.
    let other = site.json(&["enroll", "create", "--label", "Province IT"]);
    assert_ne!(other["token"], made["token"]);

    // The database never holds a token itself.
    let db = std::fs::read(site.dir.path().join("collector.db")).unwrap();
    let wal = std::fs::read(site.dir.path().join("collector.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is stored in clear"
        );
    }

    let list = site.json(&["enroll", "list"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows[0]["label"], "District 3");
    assert_eq!(rows[0]["state"], "active");
    assert_eq!(rows[0]["uses"], 0);
    assert_eq!(rows[0]["uses_allowed"], 2);
    assert_eq!(rows[0]["group"], "district-3");
    assert!(rows[0]["expires"].is_string());
    assert_eq!(rows[1]["uses_allowed"], Value::Null);
    assert_eq!(rows[1]["expires"], Value::Null);
    assert!(!list.to_string().contains(&token), "the list shows a token");

    let id = made["id"].as_i64().unwrap().to_string();
    let out = site.ctl(&["enroll", "revoke", &id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(site.json(&["enroll", "list"])[0]["state"], "revoked");
    // Again, or an unknown id: refused.
    for id in [id.as_str(), "999"] {
        let out = site.ctl(&["enroll", "revoke", id]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
    }
    // Bad requests are refused with the reason.
    for args in [
        &["enroll", "create", "--label", "  "][..],
        &["enroll", "create", "--label", "x", "--uses", "0"],
    ] {
        let out = site.ctl(args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    let audit = site.json(&["audit", "list"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["enroll.create", "enroll.create", "enroll.revoke"]);
}
