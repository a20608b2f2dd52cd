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

    // The database never holds a token itself (its bytes are read on SQLite, where they are
    // files; PostgreSQL stores what the same statements write).
    if !hygiene_tests::on_postgres() {
        let db = std::fs::read(site.dir.path().join("collector.db")).unwrap();
        let wal = std::fs::read(site.dir.path().join("collector.db-wal")).unwrap_or_default();
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "the token is stored in clear"
            );
        }
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

/// Calls the enrollment service as an agent does: trusting the collector by its CA only,
/// with no client certificate.
fn enroll(
    site: &Site,
    token: &str,
    host_id: &str,
    csr_pem: &str,
) -> Result<hygiene_proto::v1::EnrollResponse, tonic::Status> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let ca = std::fs::read(site.pki.dir.join("ca.pem")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = Endpoint::from_shared(site.collector.url())
            .unwrap()
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .unwrap()
            .connect()
            .await
            .unwrap();
        hygiene_proto::v1::enroll_service_client::EnrollServiceClient::new(channel)
            .enroll(hygiene_proto::v1::EnrollRequest {
                token: token.into(),
                host_id: host_id.into(),
                csr_pem: csr_pem.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    })
}

#[test]
fn a_token_gets_an_agent_its_certificate_and_the_agent_connects_with_it() {
    let site = Site::start().unwrap();
    let made = site.json(&["enroll", "create", "--label", "lab", "--uses", "1"]);
    let token = made["token"].as_str().unwrap().to_owned();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();

    // A request that does not parse is refused before the token is used.
    let err = enroll(&site, &token, "lab-01", "not a request").unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = enroll(&site, &token, "../etc", &csr).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert_eq!(site.json(&["enroll", "list"])[0]["uses"], 0);
    let err = enroll(&site, "hyg_0000", "lab-01", &csr).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("not known"), "{err}");

    let enrolled = enroll(&site, &token, "lab-01", &csr).unwrap();
    assert_eq!(enrolled.host_id, "lab-01");
    // The certificate is over the agent's own key, named and typed by the collector.
    let (_, pem) = x509_parser::pem::parse_x509_pem(enrolled.cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert!(
        cert.subject().to_string().contains("CN=lab-01"),
        "{}",
        cert.subject()
    );
    assert!(cert.subject().to_string().contains("OU=hygiene-agent"));

    // The token is used up.
    let err = enroll(&site, &token, "lab-02", &csr).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("all the hosts it may"), "{err}");
    assert_eq!(site.json(&["enroll", "list"])[0]["state"], "used_up");

    // The agent runs with what enrollment gave it.
    let certs = site.dir.path().join("lab-01-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.pem"), &enrolled.ca_pem).unwrap();
    std::fs::write(certs.join("agent.pem"), &enrolled.cert_pem).unwrap();
    std::fs::write(certs.join("agent.key"), key.serialize_pem()).unwrap();
    std::fs::write(certs.join("rules-signing.pub"), &enrolled.rules_signing_pub).unwrap();
    let root = site.dir.path().join("lab-01-root");
    std::fs::create_dir_all(&root).unwrap();
    let rules = site.write("r.yar", "rule r { condition: false }");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &certs,
        state_dir: &site.dir.path().join("lab-01-state"),
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![],
    };
    let agent = Agent::start(&spec, site.dir.path()).unwrap();
    wait_for(std::time::Duration::from_secs(60), "lab-01 online", || {
        (site.host("lab-01")["online"] == true).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let audit = site.json(&["audit", "list"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "enroll.host" && e["target"] == "lab-01"),
        "{audit}"
    );
}

fn agent_enroll(
    site: &Site,
    token: &str,
    fingerprint: &str,
    dir: &std::path::Path,
    host: &str,
) -> std::process::Output {
    std::process::Command::new(bin("hygiene-agent"))
        .args([
            "enroll",
            "--collector",
            &site.collector.url(),
            "--token",
            token,
        ])
        .args(["--ca-fingerprint", fingerprint, "--cert-dir"])
        .arg(dir)
        .args(["--host-id", host])
        .output()
        .unwrap()
}

#[test]
fn hygiene_agent_enroll_pins_the_ca_and_writes_what_run_needs() {
    let site = Site::start().unwrap();
    let made = site.json(&["enroll", "create", "--label", "lab", "--uses", "1"]);
    let token = made["token"].as_str().unwrap();
    let fingerprint = made["ca_fingerprint"].as_str().unwrap();

    // Another CA's fingerprint: refused before the token is sent anywhere.
    let other = Pki::init(&site.dir.path().join("other-pki")).unwrap();
    let other_dir = site.dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other_collector = Collector::start(&other_dir, &other, "127.0.0.1:0").unwrap();
    let other_made = ctl_json(
        &other_collector.url(),
        &other.dir,
        &["enroll", "create", "--label", "x"],
    )
    .unwrap();
    let wrong = other_made["ca_fingerprint"].as_str().unwrap();
    let dir = site.dir.path().join("lab-09-certs");
    let out = agent_enroll(&site, token, wrong, &dir, "lab-09");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fingerprint"), "{stderr}");
    assert_eq!(
        site.json(&["enroll", "list"])[0]["uses"],
        0,
        "the token was sent"
    );
    let out = agent_enroll(&site, token, "SHA256:12", &dir, "lab-09");
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let out = agent_enroll(&site, token, fingerprint, &dir, "lab-09");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "lab-09\n");
    for file in ["ca.pem", "agent.pem", "agent.key", "rules-signing.pub"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Enrolled already: refused, nothing overwritten.
    let out = agent_enroll(&site, token, fingerprint, &dir, "lab-09");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A used-up token: refused with the reason.
    let out = agent_enroll(
        &site,
        token,
        fingerprint,
        &site.dir.path().join("lab-10"),
        "lab-10",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("all the hosts it may"),
        "{out:?}"
    );

    let root = site.dir.path().join("lab-09-root");
    std::fs::create_dir_all(&root).unwrap();
    let rules = site.write("r.yar", "rule r { condition: false }");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &dir,
        state_dir: &site.dir.path().join("lab-09-state"),
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![],
    };
    let agent = Agent::start(&spec, site.dir.path()).unwrap();
    wait_for(std::time::Duration::from_secs(60), "lab-09 online", || {
        (site.host("lab-09")["online"] == true).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
}

/// An agent installed with a token (flags, or the environment an installer sets) enrolls on
/// its first start and runs; later starts use the certificate it got.
#[test]
fn run_enrolls_on_first_start_when_given_a_token() {
    let site = Site::start().unwrap();
    let made = site.json(&["enroll", "create", "--label", "installer", "--uses", "1"]);
    let certs = site.dir.path().join("fresh-certs");
    let root = site.dir.path().join("fresh-root");
    std::fs::create_dir_all(&root).unwrap();
    let rules = site.write("r.yar", "rule r { condition: false }");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &certs,
        state_dir: &site.dir.path().join("fresh-state"),
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![],
    };
    let extra = [
        "--enroll-token",
        made["token"].as_str().unwrap(),
        "--ca-fingerprint",
        made["ca_fingerprint"].as_str().unwrap(),
        "--host-id",
        "pc-0042",
    ];
    let agent = Agent::start_with(&spec, site.dir.path(), &extra).unwrap();
    wait_for(std::time::Duration::from_secs(60), "pc-0042 online", || {
        (site.host("pc-0042")["online"] == true).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    drop(agent);
    // The token is used up; a restart needs it no more.
    let agent = Agent::start_with(&spec, site.dir.path(), &extra).unwrap();
    wait_for(
        std::time::Duration::from_secs(60),
        "pc-0042 back online",
        || {
            let log = agent.process.stderr();
            log.contains("connected collector").then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    assert_eq!(site.json(&["enroll", "list"])[0]["uses"], 1);
}

/// Short-lived certificates renew themselves over the agent's stream: a new key and
/// certificate for the same host id, history kept, and the old certificate refused once the
/// new one has connected.
#[test]
fn certificates_renew_over_the_stream_keeping_the_host_and_its_history() {
    // 60 s certificates: renewal is due 40 s after each issue.
    let site = Site::start_with(&["--agent-cert-lifetime", "60s"]).unwrap();
    let made = site.json(&["enroll", "create", "--label", "short", "--uses", "1"]);
    let certs = site.dir.path().join("short-certs");
    let root = site.dir.path().join("short-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("eicar.com"), EICAR).unwrap();
    let rules = site.write("r.yar", "rule r { condition: false }");
    let iocs = site.write("iocs.txt", &format!("{EICAR_SHA256};EICAR\n"));
    let state = site.dir.path().join("short-state");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &certs,
        state_dir: &state,
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![&iocs],
    };
    let extra = [
        "--enroll-token",
        made["token"].as_str().unwrap(),
        "--ca-fingerprint",
        made["ca_fingerprint"].as_str().unwrap(),
        "--host-id",
        "laptop-7",
    ];
    let agent = Agent::start_with(&spec, site.dir.path(), &extra).unwrap();
    let finding = wait_for(
        std::time::Duration::from_secs(60),
        "the EICAR finding",
        || site.findings("laptop-7").into_iter().next(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let first = serial_of(&certs.join("agent.pem"));
    let old = site.dir.path().join("old-certs");
    std::fs::create_dir_all(&old).unwrap();
    for file in ["ca.pem", "agent.pem", "agent.key", "rules-signing.pub"] {
        std::fs::copy(certs.join(file), old.join(file)).unwrap();
    }

    // Renewed, and connected with the new certificate (which revokes the old one).
    wait_for(std::time::Duration::from_secs(60), "a renewal", || {
        let log = agent.process.stderr();
        (log.contains("certificate renewed") && serial_of(&certs.join("agent.pem")) != first)
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let second = serial_of(&certs.join("agent.pem"));
    wait_for(
        std::time::Duration::from_secs(30),
        "the old certificate revoked",
        || {
            site.collector
                .process
                .stderr()
                .contains(&format!("superseded by certificate {second}"))
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", site.collector.process.stderr()));
    // A copy of the first certificate, still within its validity, is refused as revoked.
    let copy = AgentSpec {
        cert_dir: &old,
        state_dir: &site.dir.path().join("copy-state"),
        ..spec
    };
    let thief = Agent::start(&copy, site.dir.path()).unwrap();
    wait_for(
        std::time::Duration::from_secs(15),
        "the copy refused",
        || {
            let log = thief.process.stderr().to_lowercase();
            log.contains("revoked").then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", thief.process.stderr()));
    assert!(!thief.process.stderr().contains("connected collector"));
    drop(thief);
    // Past the first certificate's end, the host is online under the same id with the same
    // finding (same id, first seen unchanged), and renews again.
    wait_for(
        std::time::Duration::from_secs(60),
        "a second renewal",
        || {
            let now = serial_of(&certs.join("agent.pem"));
            (now != first && now != second).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    wait_for(
        std::time::Duration::from_secs(30),
        "laptop-7 online",
        || (site.host("laptop-7")["online"] == true).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let findings = site.findings("laptop-7");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["id"], finding["id"]);
    assert_eq!(findings[0]["first_seen"], finding["first_seen"]);
    let hosts = site.json(&["hosts", "list"]);
    assert_eq!(hosts.as_array().unwrap().len(), 1, "a twin host: {hosts}");
}

fn issuer_cn(pem: &std::path::Path) -> String {
    let pem = std::fs::read(pem).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    cert.issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn rotate_ca(site: &Site, extra: &[&str]) {
    let out = std::process::Command::new(bin("hygiene-collector"))
        .args(["pki", "rotate-ca", "--dir"])
        .arg(&site.pki.dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A CA rotation: a new CA trusted beside the old one, agents told to renew onto it (getting
/// both CAs), then the new CA alone. The agent that renewed keeps its host and history, a new
/// one enrolls with the new fingerprint, and a certificate from the old CA gets nowhere.
#[test]
fn the_ca_rotates_with_an_overlap_and_agents_that_renewed_stay() {
    let mut site = Site::start().unwrap();
    let made = site.json(&["enroll", "create", "--label", "before", "--uses", "1"]);
    let old_fingerprint = made["ca_fingerprint"].as_str().unwrap().to_owned();
    let certs = site.dir.path().join("desk-certs");
    let root = site.dir.path().join("desk-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("eicar.com"), EICAR).unwrap();
    let rules = site.write("r.yar", "rule r { condition: false }");
    let iocs = site.write("iocs.txt", &format!("{EICAR_SHA256};EICAR\n"));
    let state = site.dir.path().join("desk-state");
    let spec = AgentSpec {
        collector: site.collector.url(),
        cert_dir: &certs,
        state_dir: &state,
        roots: vec![&root],
        rules: vec![&rules],
        iocs: vec![&iocs],
    };
    let extra = [
        "--enroll-token",
        made["token"].as_str().unwrap(),
        "--ca-fingerprint",
        &old_fingerprint,
        "--host-id",
        "desk-1",
    ];
    let agent = Agent::start_with(&spec, site.dir.path(), &extra).unwrap();
    let finding = wait_for(
        std::time::Duration::from_secs(60),
        "the EICAR finding",
        || site.findings("desk-1").into_iter().next(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let old_issuer = issuer_cn(&certs.join("agent.pem"));
    let old = site.dir.path().join("old-ca-certs");
    std::fs::create_dir_all(&old).unwrap();
    for file in ["ca.pem", "agent.pem", "agent.key", "rules-signing.pub"] {
        std::fs::copy(certs.join(file), old.join(file)).unwrap();
    }

    // The overlap: both CAs trusted; the agent is told to renew and gets the new CA's
    // certificate and both CAs.
    rotate_ca(&site, &[]);
    site.restart_collector().unwrap();
    wait_for(
        std::time::Duration::from_secs(60),
        "a renewal onto the new CA",
        || (issuer_cn(&certs.join("agent.pem")) != old_issuer).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    assert!(
        agent
            .process
            .stderr()
            .contains("the collector orders a certificate renewal")
    );
    let bundle = std::fs::read_to_string(certs.join("ca.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
    // During the overlap the server still shows the old CA: enrollment pins it.
    let during = site.json(&["enroll", "create", "--label", "during"]);
    assert_eq!(during["ca_fingerprint"], old_fingerprint.as_str());

    // The new CA alone, with a new server certificate.
    rotate_ca(&site, &["--finish"]);
    let connects = |log: &str| log.matches("connected collector").count();
    let before = connects(&agent.process.stderr());
    site.restart_collector().unwrap();
    wait_for(
        std::time::Duration::from_secs(60),
        "the renewed agent back",
        || {
            (connects(&agent.process.stderr()) > before && site.host("desk-1")["online"] == true)
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.process.stderr()));
    let findings = site.findings("desk-1");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["id"], finding["id"]);

    // New hosts enroll with the new CA's fingerprint; the old one is no longer shown.
    let after = site.json(&["enroll", "create", "--label", "after", "--uses", "1"]);
    let new_fingerprint = after["ca_fingerprint"].as_str().unwrap();
    assert_ne!(new_fingerprint, old_fingerprint);
    let fresh = site.dir.path().join("fresh-certs");
    let out = agent_enroll(
        &site,
        after["token"].as_str().unwrap(),
        new_fingerprint,
        &fresh,
        "desk-2",
    );
    assert!(out.status.success(), "{out:?}");
    let out = agent_enroll(
        &site,
        during["token"].as_str().unwrap(),
        &old_fingerprint,
        &site.dir.path().join("stale-pin"),
        "desk-3",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "the old CA's pin still works: {out:?}"
    );

    // A certificate from the old CA, with the old CA alone to trust, gets nowhere.
    let copy = AgentSpec {
        cert_dir: &old,
        state_dir: &site.dir.path().join("old-state"),
        ..spec
    };
    let stale = Agent::start(&copy, site.dir.path()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    let log = stale.process.stderr();
    assert!(!log.contains("connected collector"), "{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
}
