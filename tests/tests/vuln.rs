//! Missing Microsoft updates end to end: simulated Windows hosts (`hygiene-loadgen
//! --inventory`) stream their OS builds, updates and programs over mTLS; Microsoft's real
//! January and February 2024 documents are imported with `hygienectl vuln import`, and every
//! host's CVE set is checked against the document itself, read here on its own: the CVEs whose
//! vendor fix for the host's product has a `FixedBuild` above the host's build.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use hygiene_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn document(month: &str) -> String {
    let path = shared().join(format!("advisories/msrc/cvrfDocument-{month}.xml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parts(build: &str) -> Vec<u64> {
    build.split('.').map(|p| p.parse().unwrap()).collect()
}

/// Straight from the document: the CVEs whose vendor fix for `product` has a fixed build
/// above `build`.
fn expected(doc: &str, product: &str, build: &str) -> BTreeSet<String> {
    let xml = roxmltree::Document::parse(doc).unwrap();
    let id = xml
        .descendants()
        .find(|n| n.has_tag_name("FullProductName") && n.text() == Some(product))
        .and_then(|n| n.attribute("ProductID"))
        .unwrap_or_else(|| panic!("{product} is not in the document"))
        .to_owned();
    let mut cves = BTreeSet::new();
    for v in xml
        .descendants()
        .filter(|n| n.has_tag_name("Vulnerability"))
    {
        let cve = v
            .children()
            .find(|c| c.has_tag_name("CVE"))
            .and_then(|c| c.text())
            .unwrap()
            .to_owned();
        for r in v
            .descendants()
            .filter(|n| n.has_tag_name("Remediation") && n.attribute("Type") == Some("Vendor Fix"))
        {
            let for_product = r
                .children()
                .any(|c| c.has_tag_name("ProductID") && c.text() == Some(id.as_str()));
            let fixed = r
                .children()
                .find(|c| c.has_tag_name("FixedBuild"))
                .and_then(|c| c.text());
            if let (true, Some(fixed)) = (for_product, fixed)
                && parts(build) < parts(fixed)
            {
                cves.insert(cve.clone());
            }
        }
    }
    cves
}

struct Host {
    id: &'static str,
    product: &'static str,
    build: &'static str,
    kind: &'static str,
}

const fn host(
    id: &'static str,
    product: &'static str,
    build: &'static str,
    kind: &'static str,
) -> Host {
    Host {
        id,
        product,
        build,
        kind,
    }
}

const WIN10: &str = "Windows 10 Version 22H2 for x64-based Systems";
const WIN11: &str = "Windows 11 Version 23H2 for x64-based Systems";
const S2019: &str = "Windows Server 2019";
const S2019_CORE: &str = "Windows Server 2019 (Server Core installation)";
const S2022: &str = "Windows Server 2022";
const S2016: &str = "Windows Server 2016";

/// Before, exactly at and after (but before February's) the January fixed builds.
const HOSTS: &[Host] = &[
    host("w10-before", WIN10, "10.0.19045.3803", "client"),
    host("w10-at", WIN10, "10.0.19045.3930", "client"),
    host("w10-after", WIN10, "10.0.19045.3996", "client"),
    host("w11-before", WIN11, "10.0.22631.2861", "client"),
    host("w11-at", WIN11, "10.0.22631.3007", "client"),
    host("w11-after", WIN11, "10.0.22631.3085", "client"),
    host("s2019-before", S2019_CORE, "10.0.17763.5206", "server core"),
    host("s2019-at", S2019, "10.0.17763.5329", "server"),
    host("s2019-after", S2019, "10.0.17763.5396", "server"),
    host("s2022-before", S2022, "10.0.20348.2113", "server"),
    host("s2022-at", S2022, "10.0.20348.2227", "server"),
    host("s2022-after", S2022, "10.0.20348.2272", "server"),
    host("s2016-before", S2016, "10.0.14393.6529", "server"),
    host("s2016-at", S2016, "10.0.14393.6614", "server"),
    host("s2016-after", S2016, "10.0.14393.6659", "server"),
];

fn inventory(id: &str, build: &str, kind: &str, display: &str, programs: &str) -> String {
    let product = if kind == "client" {
        "Windows 10 Pro"
    } else {
        "Windows Server 2019 Datacenter"
    };
    format!(
        r#"{{"host_id": "{id}", "os": {{"family": "windows", "product_name": "{product}", "display_version": "{display}", "build": "{build}", "arch": "x86_64", "installation_type": "{kind}"}}, "hotfixes": [{{"kb": "KB5032189", "title": "", "installed_on": null}}], "programs": [{programs}]}}"#
    )
}

trait VulnSite {
    /// `vuln import FILES` must succeed; its stderr.
    fn import(&self, files: &[&str]) -> String;
    /// The CVEs `vuln host ID` lists as missing.
    fn missing(&self, host: &str) -> BTreeSet<String>;
    fn host_detail(&self, host: &str) -> Value;
}

impl VulnSite for Site {
    fn import(&self, files: &[&str]) -> String {
        let mut args = vec!["vuln", "import"];
        args.extend(files);
        let output = self.ctl(&args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "import failed: {stderr}");
        stderr
    }

    fn missing(&self, host: &str) -> BTreeSet<String> {
        self.json(&["vuln", "host", host])
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"] == "missing")
            .map(|e| e["cve"].as_str().unwrap().to_owned())
            .collect()
    }

    fn host_detail(&self, host: &str) -> Value {
        self.json(&["vuln", "hosts", "--all"])
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host_id"] == host)
            .unwrap_or_else(|| panic!("{host} not listed"))
            .clone()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn hosts_miss_exactly_the_cves_microsofts_documents_give_for_their_builds() {
    let site = Site::start().unwrap();
    let jan_doc = document("2024-Jan");
    let feb_doc = document("2024-Feb");
    let mut inventories: Vec<String> = HOSTS
        .iter()
        .map(|h| inventory(h.id, h.build, h.kind, "", ""))
        .collect();
    // Windows 11 24H2 is in neither document; a host without a build says nothing either.
    inventories.push(inventory(
        "w11-24h2",
        "10.0.26100.2033",
        "client",
        "24H2",
        "",
    ));
    inventories.push(inventory("win-nobuild", "", "client", "22H2", ""));
    // Server 2012 R2 at December's rollup: January lists "1.001" beside its rollup's build for
    // an IE update, which is no build of the OS (issue 20, defect 7).
    inventories.push(inventory("s2012r2-dec", "6.3.9600.21715", "server", "", ""));
    inventories.push(
        r#"{"host_id": "deb-01", "os": {"family": "linux", "id": "debian", "version_id": "12"}}"#
            .to_owned(),
    );
    // Patched Windows, an Edge from December and Office, whose patches no version shows.
    inventories.push(inventory(
        "w10-apps",
        "10.0.19045.3930",
        "client",
        "22H2",
        r#"{"name": "Microsoft Edge", "version": "120.0.2210.91", "publisher": "Microsoft Corporation"},
           {"name": "Microsoft 365 Apps for enterprise - en-us", "version": "16.0.17126.20132", "publisher": "Microsoft Corporation"},
           {"name": "7-Zip 23.01 (x64)", "version": "23.01", "publisher": "Igor Pavlov"}"#,
    ));
    let file = site.write("hosts.json", &format!("[{}]", inventories.join(",\n")));
    let _loadgen = Loadgen::start(
        &site.collector.url(),
        &site.pki,
        inventories.len() as u32,
        Some(&file),
        site.dir.path(),
    )
    .unwrap();
    wait_for(WAIT, "every simulated host's inventory", || {
        let hosts = site.json(&["vuln", "hosts", "--all"]);
        let hosts = hosts.as_array()?;
        (hosts.len() == inventories.len()
            && hosts
                .iter()
                .all(|h| h["reason"] != "no inventory from this host yet"))
        .then_some(())
    })
    .unwrap();

    // Before any document: nothing is "up to date"; Windows hosts are not assessed.
    let before = site.host_detail("w10-before");
    assert_eq!(before["state"], "not_assessed");

    let jan_path = shared().join("advisories/msrc/cvrfDocument-2024-Jan.xml");
    let feb_path = shared().join("advisories/msrc/cvrfDocument-2024-Feb.xml");
    let said = site.import(&[jan_path.to_str().unwrap()]);
    assert!(said.contains("2024-Jan revision 5 imported"), "{said}");

    for h in HOSTS {
        let want = expected(&jan_doc, h.product, h.build);
        assert_eq!(site.missing(h.id), want, "{} at {}", h.id, h.build);
        let row = site.host_detail(h.id);
        assert_eq!(row["os_product"], h.product, "{}", h.id);
        if h.id.ends_with("-before") {
            assert!(!want.is_empty(), "{} misses January", h.id);
            assert_eq!(row["state"], "missing", "{}", h.id);
        } else {
            assert!(want.is_empty(), "{} has January's fixes", h.id);
            assert_eq!(row["state"], "up_to_date", "{}", h.id);
        }
    }
    // The listing: hosts that miss fixes, most critical first, and those not assessed; exit 1.
    let listing = site.ctl(&["vuln", "hosts", "--format", "json"]);
    assert_eq!(listing.status.code(), Some(1), "{}", stderr(&listing));
    assert!(stderr(&listing).contains("assessed against 2024-Jan r5"));
    let rows: Value = serde_json::from_slice(&listing.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let listed: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["host_id"].as_str().unwrap())
        .collect();
    let mut want: BTreeSet<&str> = HOSTS
        .iter()
        .filter(|h| h.id.ends_with("-before"))
        .map(|h| h.id)
        .collect();
    want.extend(["w11-24h2", "win-nobuild", "w10-apps", "s2012r2-dec"]);
    assert_eq!(listed, want);
    let ie = site.json(&["vuln", "host", "s2012r2-dec"]);
    let ie = ie
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cve"] == "CVE-2024-20652")
        .unwrap_or_else(|| panic!("CVE-2024-20652 missing at December's build: {ie}"));
    assert!(
        ie["fixed_build"].as_str().unwrap().starts_with("6.3.9600."),
        "{ie}"
    );
    let criticals: Vec<u64> = rows
        .iter()
        .map(|r| r["critical"].as_u64().unwrap())
        .collect();
    assert!(criticals.windows(2).all(|w| w[0] >= w[1]), "{criticals:?}");
    let w10 = rows.iter().find(|r| r["host_id"] == "w10-before").unwrap();
    assert_eq!(w10["kbs"], serde_json::json!(["KB5034122"]));
    assert_eq!(
        w10["cves"].as_u64().unwrap() as usize,
        expected(&jan_doc, WIN10, "10.0.19045.3803").len()
    );
    assert!(w10["max_cvss"].as_f64().unwrap() > 0.0);
    for unknown in ["w11-24h2", "win-nobuild"] {
        let row = rows.iter().find(|r| r["host_id"] == unknown).unwrap();
        assert_eq!(row["state"], "not_assessed", "{unknown}");
        assert!(row["reason"].as_str().unwrap() != "", "{unknown}: {row}");
    }
    assert!(
        rows.iter().find(|r| r["host_id"] == "w11-24h2").unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("no imported document lists")
    );
    assert_eq!(site.host_detail("deb-01")["state"], "not_applicable");

    // Programs: Edge by its version against each CVE's fixed version; Office not assessed.
    let apps = site.json(&["vuln", "host", "w10-apps"]);
    let apps = apps.as_array().unwrap();
    let edge: BTreeSet<String> = apps
        .iter()
        .filter(|e| e["state"] == "missing")
        .map(|e| {
            assert_eq!(e["product"], "Microsoft Edge (Chromium-based)");
            e["cve"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        edge,
        expected(&jan_doc, "Microsoft Edge (Chromium-based)", "120.0.2210.91")
    );
    let office: Vec<&Value> = apps
        .iter()
        .filter(|e| e["state"] == "not_assessed")
        .collect();
    assert_eq!(office.len(), 1, "{apps:?}");
    assert!(
        office[0]["product"]
            .as_str()
            .unwrap()
            .starts_with("Microsoft 365 Apps")
    );
    assert!(
        office[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Office updates")
    );

    // One host in detail: severity, score, KB, fixed build, exploited, basis.
    let detail = site.ctl(&["vuln", "host", "w10-before", "--format", "json"]);
    assert_eq!(detail.status.code(), Some(1));
    assert!(
        stderr(&detail).contains("install KB5034122"),
        "{}",
        stderr(&detail)
    );
    let entries: Value = serde_json::from_slice(&detail.stdout).unwrap();
    for e in entries.as_array().unwrap() {
        assert_eq!(e["kb"], "KB5034122");
        assert_eq!(e["fixed_build"], "10.0.19045.3930");
        assert_eq!(e["installed"], "10.0.19045.3803");
        assert_eq!(e["basis"], "build");
        // Microsoft gives no score for some (CVE-2022-35737, SQLite's, has none).
        assert!(e["cvss"].is_null() || e["cvss"].is_f64(), "{e}");
        assert!(e["exploited"].is_boolean(), "{e}");
        assert!(
            ["critical", "important", "moderate", "low"].contains(&e["severity"].as_str().unwrap())
        );
    }
    let no_host = site.ctl(&["vuln", "host", "nobody"]);
    assert_eq!(no_host.status.code(), Some(2));
    assert!(stderr(&no_host).contains("no host"));

    // Filters.
    let critical = site.json(&["vuln", "hosts", "--min-severity", "critical"]);
    for row in critical.as_array().unwrap() {
        if row["state"] == "missing" {
            assert_eq!(row["cves"], row["critical"], "{row}");
        }
    }
    let high = site.json(&["vuln", "hosts", "--min-cvss", "8.0"]);
    for row in high.as_array().unwrap() {
        if row["state"] == "missing" {
            assert!(row["max_cvss"].as_f64().unwrap() >= 8.0, "{row}");
        }
    }
    assert_eq!(
        site.ctl(&["vuln", "hosts", "--min-cvss", "11"])
            .status
            .code(),
        Some(2)
    );

    // The patch order: per KB, the hosts needing it.
    let summary = site.json(&["vuln", "summary"]);
    let kb = |name: &str| {
        summary
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kb"] == name)
            .unwrap_or_else(|| panic!("{name} not in {summary}"))
            .clone()
    };
    assert_eq!(kb("KB5034122")["hosts"], 1);
    assert_eq!(kb("KB5034127")["hosts"], 1, "Server 2019 (core)");
    assert_eq!(summary[0]["order"], 1);

    // Priority and host detail carry the missing critical patches.
    let w10_critical = w10["critical"].as_u64().unwrap();
    let priority = site.json(&["hosts", "list", "--priority"]);
    let ranked = priority
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host_id"] == "w10-before")
        .unwrap();
    assert_eq!(ranked["missing_critical"].as_u64().unwrap(), w10_critical);
    assert_eq!(ranked["score"].as_u64().unwrap(), w10_critical);
    if w10_critical > 0 {
        assert!(ranked["reason"].as_str().unwrap().contains("critical CVE"));
    }
    let show = site.json(&["hosts", "show", "w10-before"]);
    assert_eq!(show["vuln_state"], "missing");
    assert_eq!(show["kbs_to_install"], serde_json::json!(["KB5034122"]));

    // A broken document is refused whole, naming what is wrong, and changes nothing.
    let truncated = site.write("cut.xml", &feb_doc[..feb_doc.len() / 3]);
    let no_cve = site.write(
        "no-cve.xml",
        &feb_doc.replacen(
            &format!("<vuln:CVE>{}</vuln:CVE>", first_cve(&feb_doc)),
            "<vuln:CVE></vuln:CVE>",
            1,
        ),
    );
    for (file, says) in [
        (&truncated, "not well-formed XML"),
        (&no_cve, "/CVE: missing"),
    ] {
        let refused = site.ctl(&["vuln", "import", file.to_str().unwrap()]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(stderr(&refused).contains(says), "{}", stderr(&refused));
        assert!(stderr(&refused).contains("nothing imported"));
    }
    assert_eq!(site.missing("w10-at"), BTreeSet::new());

    // February on top: January-patched hosts miss February's CVEs, and only those.
    site.import(&[feb_path.to_str().unwrap()]);
    for h in HOSTS {
        let jan = expected(&jan_doc, h.product, h.build);
        let feb = expected(&feb_doc, h.product, h.build);
        assert!(!feb.is_empty(), "{} misses February", h.id);
        let missing = site.missing(h.id);
        assert_eq!(missing, &jan | &feb, "{}", h.id);
        let row = site.host_detail(h.id);
        assert_eq!(row["state"], "missing");
        // A host that misses both months installs February's cumulative update only.
        assert_eq!(row["kbs"].as_array().unwrap().len(), 1, "{row}");
        if !h.id.ends_with("-before") {
            let entries = site.json(&["vuln", "host", h.id]);
            assert!(
                entries
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["advisory"] == "2024-Feb")
            );
        }
    }
    assert_eq!(
        site.host_detail("w10-before")["kbs"],
        serde_json::json!(["KB5034763"])
    );
    let summary = site.json(&["vuln", "summary"]);
    assert!(
        summary
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kb"] != "KB5034122")
    );

    // Windows 10's February update is missed by the Windows 10 hosts only: every other
    // host's update list lacks it too, but it is not theirs (issue 20, defect 7).
    let lacking: BTreeSet<String> = site
        .json(&["hosts", "list", "--missing-kb", "KB5034763"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host_id"].as_str().unwrap().to_owned())
        .collect();
    let win10: BTreeSet<String> = ["w10-before", "w10-at", "w10-after", "w10-apps"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(lacking, win10);
    // A view filtered by score still names the latest cumulative update.
    let filtered = site.json(&["vuln", "hosts", "--min-cvss", "8.5"]);
    let s2016 = filtered
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host_id"] == "s2016-before")
        .unwrap();
    assert_eq!(s2016["kbs"], serde_json::json!(["KB5034767"]), "{s2016}");
    // A KB no imported document names: the update lists alone decide, as before.
    let unknown = site.json(&["hosts", "list", "--missing-kb", "KB1234567"]);
    assert!(unknown.as_array().unwrap().len() > win10.len(), "{unknown}");

    // Re-importing: the same revision is held already; an older one is not applied; a newer
    // one replaces it.
    let same = site.import(&[jan_path.to_str().unwrap()]);
    assert!(same.contains("held already"), "{same}");
    let newer = site.write(
        "jan-r6.xml",
        &jan_doc
            .replacen(
                "<cvrf:Number>5</cvrf:Number>",
                "<cvrf:Number>6</cvrf:Number>",
                1,
            )
            .replacen(
                "<cvrf:CurrentReleaseDate>2024-01-21T00:00:00",
                "<cvrf:CurrentReleaseDate>2024-01-30T00:00:00",
                1,
            ),
    );
    let said = site.import(&[newer.to_str().unwrap()]);
    assert!(
        said.contains("2024-Jan revision 6 replaces revision 5"),
        "{said}"
    );
    let said = site.import(&[jan_path.to_str().unwrap()]);
    assert!(
        said.contains("not imported") && said.contains("revision 6"),
        "{said}"
    );

    // The CVRF API's JSON form of a later month: one more CVE for Windows 10 22H2.
    let march = site.write(
        "2024-Mar.json",
        r#"{"DocumentTitle": {"Value": "March 2024 Security Updates"},
            "DocumentTracking": {"Identification": {"ID": {"Value": "2024-Mar"}},
                "RevisionHistory": [{"Number": "1", "Date": "2024-03-12T07:00:00"}],
                "InitialReleaseDate": "2024-03-12T07:00:00", "CurrentReleaseDate": "2024-03-12T07:00:00"},
            "ProductTree": {"FullProductName": [{"ProductID": "12097", "Value": "Windows 10 Version 22H2 for x64-based Systems"}]},
            "Vulnerability": [{"Title": {"Value": "Windows Hyper-V Remote Code Execution Vulnerability"},
                "CVE": "CVE-2024-21407", "Ordinal": "1",
                "Threats": [{"Type": 3, "Description": {"Value": "Critical"}, "ProductID": ["12097"]},
                            {"Type": 1, "Description": {"Value": "Publicly Disclosed:No;Exploited:No"}}],
                "CVSSScoreSets": [{"BaseScore": 8.1, "ProductID": ["12097"]}],
                "Remediations": [{"Type": 2, "SubType": "Security Update", "Description": {"Value": "5035845"},
                    "Supercedence": "5034763", "FixedBuild": "10.0.19045.4170", "ProductID": ["12097"]}]}]}"#,
    );
    site.import(&[march.to_str().unwrap()]);
    assert!(site.missing("w10-at").contains("CVE-2024-21407"));
    assert_eq!(
        site.host_detail("w10-at")["kbs"],
        serde_json::json!(["KB5035845"])
    );
    let audit = site.json(&["audit", "list"]);
    let imports = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "vuln.import")
        .count();
    assert_eq!(imports, 4, "January, February, January r6, March");
}

fn first_cve(doc: &str) -> &str {
    let start = doc.find("<vuln:CVE>").unwrap() + "<vuln:CVE>".len();
    let end = start + doc[start..].find('<').unwrap();
    &doc[start..end]
}
