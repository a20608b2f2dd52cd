//! `hygiene-agent scan`: the one-shot local scan's output and exit-code contract.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hygiene-agent"))
}

fn scan(args: &[&str], paths: &[&Path]) -> Output {
    agent().arg("scan").args(args).args(paths).output().unwrap()
}

fn signature_base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/signature-base/yara")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scan")).unwrap();
        std::fs::write(dir.path().join("scan/eicar.com"), EICAR).unwrap();
        std::fs::write(dir.path().join("scan/clean.txt"), "hello").unwrap();
        std::fs::write(
            dir.path().join("rules.yar"),
            "rule EICAR_String { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("iocs.txt"),
            format!("{EICAR_SHA256};EICAR test file\n"),
        )
        .unwrap();
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn arg(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

fn jsonl(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn jsonl_reports_yara_and_hash_matches_and_exits_1() {
    let f = Fixture::new();
    let output = scan(
        &[
            "--rules",
            &f.arg("rules.yar"),
            "--iocs",
            &f.arg("iocs.txt"),
            "--format",
            "jsonl",
        ],
        &[&f.path("scan")],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let findings = jsonl(&output);
    assert_eq!(findings.len(), 2);
    let yara = findings.iter().find(|v| v["kind"] == "yara").unwrap();
    assert_eq!(yara["rule"], "EICAR_String");
    assert_eq!(yara["namespace"], "rules");
    assert_eq!(yara["sha256"], EICAR_SHA256);
    assert_eq!(yara["size"], 68);
    assert!(yara["path"].as_str().unwrap().ends_with("eicar.com"));
    let ioc = findings.iter().find(|v| v["kind"] == "hash_ioc").unwrap();
    assert_eq!(ioc["ioc_comment"], "EICAR test file");
    assert!(ioc["rule"].is_null());
}

#[test]
fn text_format_and_clean_scan() {
    let f = Fixture::new();
    let output = scan(&["--rules", &f.arg("rules.yar")], &[&f.path("scan")]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("eicar.com: yara rules.EICAR_String sha256="),
        "{text}"
    );
    let clean = scan(
        &["--rules", &f.arg("rules.yar")],
        &[&f.path("scan/clean.txt")],
    );
    assert_eq!(clean.status.code(), Some(0));
    assert!(clean.stdout.is_empty());
    assert!(String::from_utf8_lossy(&clean.stderr).contains("scanned 1 files"));
}

#[test]
fn broken_rule_file_is_an_error_with_file_and_line_and_the_rest_still_scan() {
    let f = Fixture::new();
    std::fs::create_dir(f.path("rules")).unwrap();
    std::fs::copy(f.path("rules.yar"), f.path("rules/good.yar")).unwrap();
    std::fs::write(
        f.path("rules/broken.yar"),
        "rule ok { condition: true }\nrule broken {\n  condition: $missing\n}\n",
    )
    .unwrap();
    let output = scan(
        &["--rules", &f.arg("rules"), "--format", "jsonl"],
        &[&f.path("scan")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3: ", f.arg("rules/broken.yar"))),
        "{stderr}"
    );
    // The good file still works; the broken file is out whole (its `ok` rule would match all).
    let rules: Vec<String> = jsonl(&output)
        .iter()
        .map(|v| v["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules, vec!["EICAR_String"]);
}

#[test]
fn missing_inputs_are_errors() {
    let f = Fixture::new();
    let missing_path = scan(&[], &[&f.path("nope")]);
    assert_eq!(missing_path.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_path.stderr).contains("nope"));
    let missing_iocs = scan(&["--iocs", &f.arg("nope.txt")], &[&f.path("scan")]);
    assert_eq!(missing_iocs.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing_iocs.stderr).contains("nope.txt: cannot read IOC list")
    );
}

#[test]
fn malformed_ioc_lines_are_reported_and_skipped() {
    let f = Fixture::new();
    std::fs::write(
        f.path("mixed.txt"),
        format!("garbage line\n{EICAR_SHA256};EICAR\n"),
    )
    .unwrap();
    let output = scan(
        &["--iocs", &f.arg("mixed.txt"), "--format", "jsonl"],
        &[&f.path("scan")],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(jsonl(&output).len(), 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:1: not a hex hash", f.arg("mixed.txt"))),
        "{stderr}"
    );
}

/// An unreadable file is counted and reported on stderr, and is not an error. As root, the
/// scan runs as `nobody` (via setpriv) so that permissions apply.
#[cfg(unix)]
#[test]
fn unreadable_file_and_directory_are_reported_not_fatal() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let locked = f.path("scan/locked.bin");
    std::fs::write(&locked, "secret").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let locked_dir = f.path("scan/private");
    std::fs::create_dir(&locked_dir).unwrap();
    std::fs::write(locked_dir.join("inside"), EICAR).unwrap();
    std::fs::set_permissions(&locked_dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut command = if is_root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_hygiene-agent"),
        ]);
        c
    } else {
        agent()
    };
    let output = command
        .args(["scan", "--rules", &f.arg("rules.yar"), "--format", "jsonl"])
        .arg(f.path("scan"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(jsonl(&output).len(), 1);
    assert!(
        stderr.contains(&format!("{}: permission_denied", locked.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: permission_denied", locked_dir.display())),
        "{stderr}"
    );
    assert!(stderr.contains("2 paths not fully scanned"), "{stderr}");
    // Let the temporary directory be removed.
    std::fs::set_permissions(&locked_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The whole signature-base rule set loads, with its external variables, and its rules fire.
#[test]
fn signature_base_rules_load_and_match() {
    let f = Fixture::new();
    std::fs::write(
        f.path("scan/strifeworld.log"),
        "Running STRIFEWORLD not protected\n",
    )
    .unwrap();
    // A PE rule (`uint16(0) == 0x5a4d and ... 1 of them`): these are compiled apart and run on
    // files starting with "MZ" only; the same bytes without the header must not match.
    std::fs::write(f.path("scan/tool.exe"), b"MZ\x90\x00\x03 impacket.smb( ").unwrap();
    std::fs::write(f.path("scan/tool.bin"), b"ZM\x90\x00\x03 impacket.smb( ").unwrap();
    let rules = signature_base();
    let output = scan(
        &["--rules", &rules.display().to_string(), "--format", "jsonl"],
        &[&f.path("scan")],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rules_hit: Vec<String> = jsonl(&output)
        .iter()
        .map(|v| v["rule"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        rules_hit.contains(&"FVEY_ShadowBroker_strifeworld".to_owned()),
        "{rules_hit:?}"
    );
    assert!(
        rules_hit.contains(&"SUSP_Just_EICAR".to_owned()),
        "{rules_hit:?}"
    );
    let impacket: Vec<String> = jsonl(&output)
        .iter()
        .filter(|v| v["rule"] == "Impacket_Keyword")
        .map(|v| v["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(impacket.len(), 1, "{impacket:?}");
    assert!(impacket[0].ends_with("tool.exe"), "{impacket:?}");
}

#[test]
fn csv_ioc_list_with_md5_column() {
    let f = Fixture::new();
    std::fs::write(
        f.path("iocs.csv"),
        "md5,family,source\n44d88612fea8a8f36de82e1278abb02f,EICAR,cert\n",
    )
    .unwrap();
    let output = scan(
        &["--iocs", &f.arg("iocs.csv"), "--format", "jsonl"],
        &[&f.path("scan")],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let findings = jsonl(&output);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["ioc_comment"], "family=EICAR; source=cert");
    assert_eq!(findings[0]["sha256"], EICAR_SHA256);
}

#[test]
fn summary_json_exclude_max_size_and_threads() {
    let f = Fixture::new();
    std::fs::create_dir(f.path("scan/skipped")).unwrap();
    std::fs::write(f.path("scan/skipped/eicar2.com"), EICAR).unwrap();
    let summary = f.path("summary.json");
    let output = scan(
        &[
            "--iocs",
            &f.arg("iocs.txt"),
            "--rules",
            &f.arg("rules.yar"),
            "--exclude",
            "**/skipped",
            "--max-size",
            "10",
            "--threads",
            "3",
            "--summary-json",
            &summary.display().to_string(),
            "--format",
            "jsonl",
        ],
        &[&f.path("scan")],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // EICAR is 68 bytes, above --max-size 10: found by hash, not scanned by YARA.
    let findings = jsonl(&output);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["kind"], "hash_ioc");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["files"], 2);
    assert_eq!(summary["bytes"], 68 + 5);
    assert_eq!(summary["findings"], 1);
    assert_eq!(summary["errors"]["too_large"], 1);
    assert_eq!(summary["failures"][0]["kind"], "too_large");
    assert!(
        summary["failures"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("eicar.com")
    );
    assert_eq!(summary["cached_files"], 0);
    assert!(summary["seconds"].as_f64().unwrap() >= 0.0);

    let zero = scan(&["--threads", "0"], &[&f.path("scan")]);
    assert_eq!(zero.status.code(), Some(2));
    let no_cpu = scan(&["--cpu-limit", "0"], &[&f.path("scan")]);
    assert_eq!(no_cpu.status.code(), Some(2));
    let limited = scan(
        &["--cpu-limit", "25", "--iocs", &f.arg("iocs.txt")],
        &[&f.path("scan")],
    );
    assert_eq!(
        limited.status.code(),
        Some(1),
        "a CPU budget slows a scan, it does not change it"
    );
    let bad_glob = scan(&["--exclude", "a["], &[&f.path("scan")]);
    assert_eq!(bad_glob.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_glob.stderr).contains("--exclude"));
}

#[test]
fn cache_makes_the_second_scan_read_nothing_and_full_ignores_it() {
    let f = Fixture::new();
    let cache = f.arg("state/cache.redb");
    let rules = f.arg("rules.yar");
    let summary = |name: &str, extra: &[&str]| {
        let path = f.path(name);
        let mut args = vec!["--rules", &rules, "--cache", &cache, "--format", "jsonl"];
        let path_arg = path.display().to_string();
        args.extend(["--summary-json", &path_arg]);
        args.extend(extra);
        let output = scan(&args, &[&f.path("scan")]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            jsonl(&output).len(),
            1,
            "the finding is reported from the cache too"
        );
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let first = summary("first.json", &[]);
    assert_eq!(
        (first["files"].as_u64(), first["cached_files"].as_u64()),
        (Some(2), Some(0))
    );
    let second = summary("second.json", &[]);
    assert_eq!(
        (second["files"].as_u64(), second["cached_files"].as_u64()),
        (Some(2), Some(2))
    );
    let full = summary("full.json", &["--full"]);
    assert_eq!(full["cached_files"].as_u64(), Some(0));
}

/// `hygiene-agent inventory --format json`: the contract's top-level keys and row shapes.
#[cfg(target_os = "linux")]
#[test]
fn inventory_json_has_the_contract_keys() {
    // At least one socket to list, whatever else runs here.
    let _listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = agent()
        .args(["inventory", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in ["os", "packages", "hotfixes", "programs", "connections"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["os"]["family"], "linux");
    if let Some(package) = v["packages"].as_array().and_then(|p| p.first()) {
        for key in ["name", "version", "arch", "source"] {
            assert!(package.get(key).is_some(), "package lacks {key}");
        }
    }
    let connection = v["connections"]
        .as_array()
        .and_then(|c| c.first())
        .expect("a Linux host has sockets");
    for key in [
        "proto",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "state",
        "pid",
        "process",
    ] {
        assert!(connection.get(key).is_some(), "connection lacks {key}");
    }
}
