//! Reading Microsoft's monthly security update documents (MSRC CVRF), in both forms Microsoft
//! serves: CVRF 1.1 XML and the CVRF API's JSON. Both become one [`Advisory`], which keeps only
//! what the assessment needs: products, and per CVE its severity, CVSS base score, exploit
//! status and vendor fixes (KB, `FixedBuild`, `Supercedence`) per product.
//!
//! A document that does not hold what a CVRF document must (an ID, a product tree, a CVE per
//! vulnerability, numbers where numbers go) is refused whole, with an error naming the element,
//! so that a truncated download never half-replaces a month.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Severity as Microsoft rates it, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Important,
    Moderate,
    Low,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Severity> {
        match text.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "important" => Some(Severity::Important),
            "moderate" => Some(Severity::Moderate),
            "low" => Some(Severity::Low),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Important => "important",
            Severity::Moderate => "moderate",
            Severity::Low => "low",
        }
    }
}

/// One month's document, as much of it as the assessment uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// `2024-Jan`.
    pub id: String,
    pub title: String,
    /// The highest number in the revision history (`5`); with `current_release` it orders two
    /// copies of the same month.
    pub revision: String,
    /// `2024-01-21T00:00:00`, as the document writes it.
    pub current_release: String,
    pub initial_release: String,
    /// Product id → full product name.
    pub products: BTreeMap<String, String>,
    pub vulnerabilities: Vec<Vulnerability>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    pub cve: String,
    pub title: String,
    /// "Exploited:Yes" in the exploit status.
    pub exploited: bool,
    pub publicly_disclosed: bool,
    /// Product id → severity (products without one are unrated: Chromium CVEs in Edge).
    pub severity: BTreeMap<String, Severity>,
    /// Product id → CVSS base score.
    pub cvss: BTreeMap<String, f32>,
    /// Product ids the document lists as known affected.
    pub affected: Vec<String>,
    /// The vendor fixes (remediations of type "Vendor Fix").
    pub fixes: Vec<Fix>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// The remediation's description: a KB number (`5034122`) for Windows, otherwise a name
    /// ("Release Notes", "Click to Run").
    pub kb: String,
    pub product_ids: Vec<String>,
    /// As written: a build (`10.0.19045.3930`), a version, a URL or empty.
    pub fixed_build: String,
    /// KBs this one replaces.
    pub supersedes: Vec<String>,
    pub subtype: String,
    pub url: String,
}

impl Advisory {
    /// How many vendor fixes it holds, counted per product.
    pub fn fix_count(&self) -> usize {
        self.vulnerabilities
            .iter()
            .flat_map(|v| &v.fixes)
            .map(|f| f.product_ids.len())
            .sum()
    }

    /// Whether `self` is a later edition of the same month than `other`.
    pub fn is_newer_than(&self, revision: &str, current_release: &str) -> bool {
        (self.current_release.as_str(), revision_key(&self.revision))
            > (current_release, revision_key(revision))
    }
}

/// `"5"` < `"10"`, `"1.0"` < `"1.1"`.
fn revision_key(revision: &str) -> Vec<u64> {
    revision
        .split('.')
        .map(|part| part.trim().parse().unwrap_or(0))
        .collect()
}

/// What is wrong with a document; `element` names where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{element}: {message}")]
pub struct CvrfError {
    pub element: String,
    pub message: String,
}

fn error(element: impl Into<String>, message: impl Into<String>) -> CvrfError {
    CvrfError {
        element: element.into(),
        message: message.into(),
    }
}

/// Reads a document in either form (JSON when it starts with `{`).
pub fn parse(bytes: &[u8]) -> Result<Advisory, CvrfError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| error("document", format!("not UTF-8 text: {e}")))?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with('{') {
        parse_json(text)
    } else {
        parse_xml(text)
    }
}

/// The form `parse` would read `bytes` as.
pub fn format_of(bytes: &[u8]) -> &'static str {
    let start = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xef && **b != 0xbb && **b != 0xbf);
    if start == Some(&b'{') { "json" } else { "xml" }
}

// ---------------------------------------------------------------------------------------------
// XML

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
    children(node, name).next()
}

fn text_of(node: Option<Node>) -> String {
    node.and_then(|n| n.text()).unwrap_or("").trim().to_owned()
}

fn parse_xml(text: &str) -> Result<Advisory, CvrfError> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| error("document", format!("not well-formed XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "cvrfdoc" {
        return Err(error(
            root.tag_name().name(),
            "not a CVRF document (its root element is not cvrfdoc)",
        ));
    }
    let tracking = child(root, "DocumentTracking")
        .ok_or_else(|| error("cvrfdoc", "no DocumentTracking element"))?;
    let id = child(tracking, "Identification")
        .and_then(|i| child(i, "ID"))
        .map(|n| text_of(Some(n)))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| error("DocumentTracking/Identification/ID", "missing or empty"))?;
    let revision = child(tracking, "RevisionHistory")
        .into_iter()
        .flat_map(|h| children(h, "Revision"))
        .map(|r| text_of(child(r, "Number")))
        .max_by_key(|n| revision_key(n))
        .or_else(|| Some(text_of(child(tracking, "Version"))))
        .unwrap_or_default();
    let current_release = text_of(child(tracking, "CurrentReleaseDate"));
    if current_release.is_empty() {
        return Err(error(
            "DocumentTracking/CurrentReleaseDate",
            "missing or empty",
        ));
    }
    let tree = child(root, "ProductTree").ok_or_else(|| error("cvrfdoc", "no ProductTree"))?;
    let mut products = BTreeMap::new();
    for node in tree
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "FullProductName")
    {
        let pid = node
            .attribute("ProductID")
            .ok_or_else(|| error("ProductTree/FullProductName", "no ProductID attribute"))?;
        products.insert(pid.to_owned(), text_of(Some(node)));
    }
    if products.is_empty() {
        return Err(error("ProductTree", "lists no FullProductName"));
    }
    let mut vulnerabilities = Vec::new();
    for (index, v) in children(root, "Vulnerability").enumerate() {
        let at = format!(
            "Vulnerability[{}]",
            v.attribute("Ordinal")
                .map_or_else(|| (index + 1).to_string(), str::to_owned)
        );
        vulnerabilities.push(xml_vulnerability(v, &at)?);
    }
    Ok(Advisory {
        id,
        title: text_of(child(root, "DocumentTitle")),
        revision,
        current_release,
        initial_release: text_of(child(tracking, "InitialReleaseDate")),
        products,
        vulnerabilities,
    })
}

fn product_ids(node: Node) -> Vec<String> {
    children(node, "ProductID")
        .map(|p| text_of(Some(p)))
        .filter(|p| !p.is_empty())
        .collect()
}

fn xml_vulnerability(v: Node, at: &str) -> Result<Vulnerability, CvrfError> {
    let cve = text_of(child(v, "CVE"));
    if cve.is_empty() {
        return Err(error(format!("{at}/CVE"), "missing or empty"));
    }
    let at = format!("{at} ({cve})");
    let mut vuln = Vulnerability::new(cve, text_of(child(v, "Title")));
    for status in child(v, "ProductStatuses")
        .into_iter()
        .flat_map(|s| children(s, "Status"))
    {
        if status.attribute("Type") == Some("Known Affected") {
            vuln.affected.extend(product_ids(status));
        }
    }
    for threat in child(v, "Threats")
        .into_iter()
        .flat_map(|t| children(t, "Threat"))
    {
        let description = text_of(child(threat, "Description"));
        match threat.attribute("Type") {
            Some("Severity") => {
                add_severity(&mut vuln, &description, product_ids(threat));
            }
            Some("Exploit Status") => exploit_status(&description, &mut vuln),
            _ => {}
        }
    }
    for set in child(v, "CVSSScoreSets")
        .into_iter()
        .flat_map(|s| children(s, "ScoreSet"))
    {
        let text = text_of(child(set, "BaseScore"));
        add_score(&mut vuln, &at, "ScoreSet", &text, product_ids(set))?;
    }
    for remediation in child(v, "Remediations")
        .into_iter()
        .flat_map(|r| children(r, "Remediation"))
    {
        if remediation.attribute("Type") != Some("Vendor Fix") {
            continue;
        }
        vuln.fixes.push(Fix {
            kb: text_of(child(remediation, "Description")),
            product_ids: product_ids(remediation),
            fixed_build: text_of(child(remediation, "FixedBuild")),
            supersedes: split_kbs(&text_of(child(remediation, "Supercedence"))),
            subtype: text_of(child(remediation, "SubType")),
            url: text_of(child(remediation, "URL")),
        });
    }
    Ok(vuln)
}

impl Vulnerability {
    /// A vulnerability with nothing known of it yet but its CVE and title.
    fn new(cve: String, title: String) -> Vulnerability {
        Vulnerability {
            cve,
            title,
            exploited: false,
            publicly_disclosed: false,
            severity: BTreeMap::new(),
            cvss: BTreeMap::new(),
            affected: Vec::new(),
            fixes: Vec::new(),
        }
    }
}

/// A severity threat for its products; a description that names no severity (Edge's
/// Chromium CVEs leave it empty) rates nothing.
fn add_severity(vuln: &mut Vulnerability, description: &str, products: Vec<String>) {
    if let Some(severity) = Severity::parse(description) {
        for pid in products {
            vuln.severity.insert(pid, severity);
        }
    }
}

/// A score set's base score for its products; an empty score is no score, a bad one an
/// error naming the element.
fn add_score(
    vuln: &mut Vulnerability,
    at: &str,
    set: &str,
    text: &str,
    products: Vec<String>,
) -> Result<(), CvrfError> {
    if text.is_empty() {
        return Ok(());
    }
    let score = text
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|s| (0.0..=10.0).contains(s))
        .ok_or_else(|| {
            error(
                format!("{at}/{set}/BaseScore"),
                format!("{text:?} is not a CVSS score"),
            )
        })?;
    for pid in products {
        vuln.cvss.insert(pid, score);
    }
    Ok(())
}

/// `Publicly Disclosed:No;Exploited:Yes;Latest Software Release:Exploitation Detected`.
fn exploit_status(text: &str, vuln: &mut Vulnerability) {
    for part in text.split(';') {
        if let Some((name, value)) = part.split_once(':') {
            let yes = value.trim().eq_ignore_ascii_case("yes");
            match name.trim() {
                "Exploited" => vuln.exploited |= yes,
                "Publicly Disclosed" => vuln.publicly_disclosed |= yes,
                _ => {}
            }
        }
    }
}

/// `5033371`, `5033371; 5033372` or `5033371,5033372`.
fn split_kbs(text: &str) -> Vec<String> {
    text.split([',', ';', ' '])
        .map(|kb| kb.trim().to_owned())
        .filter(|kb| !kb.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// JSON (the CVRF API's `application/json`): the same tree, with `{"Value": ...}` wrappers and
// numeric enumerations: threat type 0 impact, 1 exploit status, 3 severity; remediation type
// 2 vendor fix; product status type 3 known affected.

use serde_json::Value;

fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Object(o)) => value_text(o.get("Value")),
        _ => String::new(),
    }
}

fn array(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

fn json_product_ids(v: &Value) -> Vec<String> {
    match v.get("ProductID") {
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|i| value_text(Some(i)))
            .filter(|i| !i.is_empty())
            .collect(),
        Some(one) => vec![value_text(Some(one))],
        None => Vec::new(),
    }
}

/// A numeric enumeration or its name.
fn is_type(v: &Value, number: u64, name: &str) -> bool {
    match v.get("Type") {
        Some(Value::Number(n)) => n.as_u64() == Some(number),
        Some(Value::String(s)) => s.eq_ignore_ascii_case(name) || s == &number.to_string(),
        _ => false,
    }
}

fn parse_json(text: &str) -> Result<Advisory, CvrfError> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| error("document", format!("not valid JSON: {e}")))?;
    if !root.is_object() {
        return Err(error("document", "not a CVRF document (not a JSON object)"));
    }
    let tracking = root
        .get("DocumentTracking")
        .ok_or_else(|| error("document", "no DocumentTracking member"))?;
    let id = value_text(tracking.get("Identification").and_then(|i| i.get("ID")));
    if id.is_empty() {
        return Err(error(
            "DocumentTracking/Identification/ID",
            "missing or empty",
        ));
    }
    let revision = array(tracking.get("RevisionHistory"))
        .iter()
        .map(|r| value_text(r.get("Number")))
        .max_by_key(|n| revision_key(n))
        .unwrap_or_else(|| value_text(tracking.get("Version")));
    let current_release = value_text(tracking.get("CurrentReleaseDate"));
    if current_release.is_empty() {
        return Err(error(
            "DocumentTracking/CurrentReleaseDate",
            "missing or empty",
        ));
    }
    let tree = root
        .get("ProductTree")
        .ok_or_else(|| error("document", "no ProductTree"))?;
    let mut products = BTreeMap::new();
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        for name in array(node.get("FullProductName")) {
            let pid = value_text(name.get("ProductID"));
            if pid.is_empty() {
                return Err(error("ProductTree/FullProductName", "no ProductID"));
            }
            products.insert(pid, value_text(name.get("Value")));
        }
        for item in array(node.get("Items"))
            .iter()
            .chain(array(node.get("Branch")))
        {
            if item.get("ProductID").is_some() && item.get("Items").is_none() {
                let pid = value_text(item.get("ProductID"));
                if !pid.is_empty() {
                    products.insert(pid, value_text(item.get("Value")));
                }
            } else {
                stack.push(item);
            }
        }
    }
    if products.is_empty() {
        return Err(error("ProductTree", "lists no FullProductName"));
    }
    let mut vulnerabilities = Vec::new();
    for (index, v) in array(root.get("Vulnerability")).iter().enumerate() {
        let ordinal = value_text(v.get("Ordinal"));
        let at = format!(
            "Vulnerability[{}]",
            if ordinal.is_empty() {
                (index + 1).to_string()
            } else {
                ordinal
            }
        );
        vulnerabilities.push(json_vulnerability(v, &at)?);
    }
    Ok(Advisory {
        id,
        title: value_text(root.get("DocumentTitle")),
        revision,
        current_release,
        initial_release: value_text(tracking.get("InitialReleaseDate")),
        products,
        vulnerabilities,
    })
}

fn json_vulnerability(v: &Value, at: &str) -> Result<Vulnerability, CvrfError> {
    let cve = value_text(v.get("CVE"));
    if cve.is_empty() {
        return Err(error(format!("{at}/CVE"), "missing or empty"));
    }
    let at = format!("{at} ({cve})");
    let mut vuln = Vulnerability::new(cve, value_text(v.get("Title")));
    for status in array(v.get("ProductStatuses")) {
        if is_type(status, 3, "Known Affected") {
            vuln.affected.extend(json_product_ids(status));
        }
    }
    for threat in array(v.get("Threats")) {
        let description = value_text(threat.get("Description"));
        if is_type(threat, 3, "Severity") {
            add_severity(&mut vuln, &description, json_product_ids(threat));
        } else if is_type(threat, 1, "Exploit Status") {
            exploit_status(&description, &mut vuln);
        }
    }
    for set in array(v.get("CVSSScoreSets")) {
        let text = value_text(set.get("BaseScore"));
        add_score(
            &mut vuln,
            &at,
            "CVSSScoreSets",
            &text,
            json_product_ids(set),
        )?;
    }
    for remediation in array(v.get("Remediations")) {
        if !is_type(remediation, 2, "Vendor Fix") {
            continue;
        }
        vuln.fixes.push(Fix {
            kb: value_text(remediation.get("Description")),
            product_ids: json_product_ids(remediation),
            fixed_build: value_text(remediation.get("FixedBuild")),
            supersedes: split_kbs(&value_text(remediation.get("Supercedence"))),
            subtype: value_text(remediation.get("SubType")),
            url: value_text(remediation.get("URL")),
        });
    }
    Ok(vuln)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn shared(month: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../shared/advisories/msrc/cvrfDocument-{month}.xml",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn january_2024_reads_whole() {
        let jan = parse(&shared("2024-Jan")).unwrap();
        assert_eq!(jan.id, "2024-Jan");
        assert_eq!(jan.revision, "5");
        assert_eq!(jan.current_release, "2024-01-21T00:00:00");
        assert_eq!(jan.vulnerabilities.len(), 85);
        assert_eq!(
            jan.products.get("12097").map(String::as_str),
            Some("Windows 10 Version 22H2 for x64-based Systems")
        );
        let bitlocker = jan
            .vulnerabilities
            .iter()
            .find(|v| v.cve == "CVE-2024-20666")
            .unwrap();
        assert_eq!(bitlocker.severity.get("12097"), Some(&Severity::Important));
        assert_eq!(bitlocker.cvss.get("12097"), Some(&6.6));
        assert!(!bitlocker.exploited);
        let fix = bitlocker
            .fixes
            .iter()
            .find(|f| f.product_ids.contains(&"12097".to_owned()))
            .unwrap();
        assert_eq!(fix.kb, "5034122");
        assert_eq!(fix.fixed_build, "10.0.19045.3930");
        assert_eq!(fix.supersedes, ["5033372"]);
        // Known Issue remediations are not fixes.
        assert!(
            bitlocker
                .fixes
                .iter()
                .all(|f| !f.url.contains("support.microsoft.com"))
        );
    }

    #[test]
    fn json_form_reads_as_the_xml_form() {
        let json = r#"{
          "DocumentTitle": {"Value": "March 2024 Security Updates"},
          "DocumentTracking": {
            "Identification": {"ID": {"Value": "2024-Mar"}, "Alias": {"Value": "2024-Mar"}},
            "Status": 2, "Version": "1.0",
            "RevisionHistory": [{"Number": "1", "Date": "2024-03-12T07:00:00"},
                                {"Number": "2", "Date": "2024-03-14T07:00:00"}],
            "InitialReleaseDate": "2024-03-12T07:00:00",
            "CurrentReleaseDate": "2024-03-14T07:00:00"
          },
          "ProductTree": {
            "Branch": [{"Items": [{"Items": [{"ProductID": "12097", "Value": "Windows 10 Version 22H2 for x64-based Systems"}],
                                   "Type": 3, "Name": "Windows"}], "Type": 0, "Name": "Microsoft"}],
            "FullProductName": [{"ProductID": "12097", "Value": "Windows 10 Version 22H2 for x64-based Systems"},
                                {"ProductID": "11655", "Value": "Microsoft Edge (Chromium-based)"}]
          },
          "Vulnerability": [{
            "Title": {"Value": "Windows Hyper-V Remote Code Execution Vulnerability"},
            "CVE": "CVE-2024-21407",
            "ProductStatuses": [{"ProductID": ["12097"], "Type": 3}],
            "Threats": [{"Description": {"Value": "Remote Code Execution"}, "ProductID": ["12097"], "Type": 0},
                        {"Description": {"Value": "Critical"}, "ProductID": ["12097"], "Type": 3},
                        {"Description": {"Value": "Publicly Disclosed:No;Exploited:Yes;DOS:N/A"}, "Type": 1}],
            "CVSSScoreSets": [{"BaseScore": 8.1, "TemporalScore": 7.1, "Vector": "CVSS:3.1/AV:N", "ProductID": ["12097"]}],
            "Remediations": [
              {"Description": {"Value": "5035845"}, "URL": "https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB5035845",
               "Supercedence": "5034763", "ProductID": ["12097"], "Type": 2, "SubType": "Security Update",
               "FixedBuild": "10.0.19045.4170", "RestartRequired": {"Value": "Yes"}},
              {"Description": {"Value": "5035845"}, "ProductID": ["12097"], "Type": 6}
            ],
            "Ordinal": "7"
          }]
        }"#;
        let mar = parse(json.as_bytes()).unwrap();
        assert_eq!(format_of(json.as_bytes()), "json");
        assert_eq!(mar.id, "2024-Mar");
        assert_eq!(mar.revision, "2");
        assert_eq!(mar.products.len(), 2);
        let v = &mar.vulnerabilities[0];
        assert_eq!(v.severity.get("12097"), Some(&Severity::Critical));
        assert_eq!(v.cvss.get("12097"), Some(&8.1));
        assert!(v.exploited && !v.publicly_disclosed);
        assert_eq!(v.affected, ["12097"]);
        assert_eq!(v.fixes.len(), 1);
        assert_eq!(v.fixes[0].kb, "5035845");
        assert_eq!(v.fixes[0].fixed_build, "10.0.19045.4170");
        assert_eq!(v.fixes[0].supersedes, ["5034763"]);
    }

    #[test]
    fn broken_documents_name_the_element() {
        let jan = String::from_utf8(shared("2024-Jan")).unwrap();
        let cut = &jan[..jan.len() / 2];
        let e = parse(cut.as_bytes()).unwrap_err();
        assert_eq!(e.element, "document");
        assert!(e.message.contains("not well-formed XML"), "{e}");

        let no_cve = jan.replacen(
            "<vuln:CVE>CVE-2024-20666</vuln:CVE>",
            "<vuln:CVE></vuln:CVE>",
            1,
        );
        let e = parse(no_cve.as_bytes()).unwrap_err();
        assert_eq!(e.element, "Vulnerability[40]/CVE", "{e}");

        let bad_score = jan.replacen(
            "<vuln:BaseScore>6.6</vuln:BaseScore>",
            "<vuln:BaseScore>high</vuln:BaseScore>",
            1,
        );
        let e = parse(bad_score.as_bytes()).unwrap_err();
        assert!(e.element.ends_with("/ScoreSet/BaseScore"), "{e}");
        assert!(e.element.contains("CVE-"), "{e}");

        let no_id = jan.replacen("<cvrf:ID>2024-Jan</cvrf:ID>", "<cvrf:ID/>", 1);
        assert_eq!(
            parse(no_id.as_bytes()).unwrap_err().element,
            "DocumentTracking/Identification/ID"
        );
        let e = parse(b"<html><body>rate limited</body></html>").unwrap_err();
        assert!(e.to_string().contains("not a CVRF document"), "{e}");
        let e = parse(br#"{"DocumentTracking": {"Identification": {"ID": {"Value": "2024-Jan"}}, "CurrentReleaseDate": "2024-01-09"}}"#).unwrap_err();
        assert_eq!(e.element, "document");
        assert!(e.message.contains("ProductTree"), "{e}");
        let e = parse(b"{\"DocumentTracking\": ").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn a_later_revision_is_newer() {
        let jan = parse(&shared("2024-Jan")).unwrap();
        assert!(jan.is_newer_than("4", "2024-01-17T00:00:00"));
        assert!(jan.is_newer_than("4", "2024-01-21T00:00:00"));
        assert!(!jan.is_newer_than("5", "2024-01-21T00:00:00"));
        assert!(!jan.is_newer_than("6", "2024-01-23T00:00:00"));
        assert!(revision_key("10") > revision_key("9"));
    }
}
