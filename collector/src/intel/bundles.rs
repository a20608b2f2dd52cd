//! What goes into a rule or IOC bundle, checked the way agents will load it.
//!
//! Rules are compiled with the agent's own loader (`hygiene_rules::load`: a namespace per
//! file, the Loki/THOR externals, the same YARA-X modules), from a directory laid out as the
//! agent will lay it out. Hash lists are read with the agent's IOC parser (Loki `HASH;COMMENT`,
//! one hash per line, CSV); STIX 2.1 bundles are turned into Loki lines first, from indicators
//! whose pattern compares `file:hashes.'SHA-256'`, `'SHA-1'` or `'MD5'`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use hygiene_proto::v1;

#[derive(Debug, thiserror::Error)]
pub enum BundleInputError {
    #[error("no file given")]
    Empty,
    #[error("{0}: two files have this name; a bundle is one directory")]
    DuplicateName(String),
    #[error("{0}: not a .yar or .yara file")]
    NotRules(String),
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot stage the files: {0}")]
    Io(#[from] std::io::Error),
    #[error("{count} rule file(s) do not compile (publish with --skip-broken to leave them out):\n{}", .errors.join("\n"))]
    Broken { count: usize, errors: Vec<String> },
    #[error("nothing left to publish: {0}")]
    Nothing(String),
    #[error("these rules would cost every agent far more scan time than the rest (publish with --allow-slow to send them anyway):\n{}", .lines.join("\n"))]
    Slow { lines: Vec<String> },
}

/// Files checked for a bundle: what goes in, how many rules or hashes, what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFiles {
    pub files: Vec<v1::BundleFile>,
    pub items: u64,
    /// Rule files left out (`file:line: message`) or IOC lines skipped.
    pub skipped: Vec<String>,
    /// What the bundle holds: each rule as `namespace:identifier`, or each hash in hex. A
    /// later sweep's silence about a finding made with other sets proves something only
    /// when the set it ran with still holds the finding's rule or hash.
    pub members: Vec<String>,
    /// Slow rules published all the same (`--allow-slow`), as [`BundleInputError::Slow`]
    /// names them.
    pub slow: Vec<String>,
}

/// The file name a path stands for in a bundle.
fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
}

fn named(files: &[(String, Vec<u8>)]) -> Result<Vec<v1::BundleFile>, BundleInputError> {
    if files.is_empty() {
        return Err(BundleInputError::Empty);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (path, content) in files {
        let name = base_name(path);
        if !seen.insert(name.clone()) {
            return Err(BundleInputError::DuplicateName(name));
        }
        out.push(v1::BundleFile {
            name,
            content: content.clone(),
        });
    }
    // Sorted: the version does not depend on the order the admin named the files in.
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Compiles `files` (path, content) as an agent will. Files that do not compile refuse the
/// whole bundle, unless `skip_broken`, which leaves them out and lists them. Rules the
/// compiler calls slow, or that scan the built-in sample far slower than the rest (see
/// [`hygiene_rules::cost`]), refuse it too, unless `allow_slow`.
pub fn check_rules(
    files: &[(String, Vec<u8>)],
    skip_broken: bool,
    allow_slow: bool,
) -> Result<CheckedFiles, BundleInputError> {
    let mut files = named(files)?;
    for file in &files {
        let lower = file.name.to_ascii_lowercase();
        if !(lower.ends_with(".yar") || lower.ends_with(".yara")) {
            return Err(BundleInputError::NotRules(file.name.clone()));
        }
    }
    let dir = tempfile::tempdir()?;
    for file in &files {
        std::fs::write(dir.path().join(&file.name), &file.content)?;
    }
    let rules = hygiene_rules::load(&[dir.path().to_path_buf()]).map_err(|e| {
        BundleInputError::Invalid {
            path: dir.path().display().to_string(),
            reason: e.to_string(),
        }
    })?;
    // Errors name the staged file; the admin knows it by its name alone.
    let errors: Vec<String> = rules
        .broken
        .iter()
        .map(|e| strip_dir(&e.to_string(), dir.path()))
        .collect();
    if !errors.is_empty() && !skip_broken {
        return Err(BundleInputError::Broken {
            count: errors.len(),
            errors,
        });
    }
    let broken: HashSet<PathBuf> = rules
        .broken
        .iter()
        .map(|e| e.path().to_path_buf())
        .collect();
    files.retain(|f| !broken.contains(&dir.path().join(&f.name)));
    if files.is_empty() {
        return Err(BundleInputError::Nothing("no rule file compiles".into()));
    }
    let slow = slow_rules(&rules, dir.path())?;
    if !slow.is_empty() && !allow_slow {
        return Err(BundleInputError::Slow { lines: slow });
    }
    Ok(CheckedFiles {
        files,
        items: rules.len() as u64,
        skipped: errors,
        members: rules.rule_keys(),
        slow,
    })
}

/// The rules that would slow every agent down, one line each: the compiler's slow-pattern
/// warnings, and the files that scan the built-in sample far slower than the rest.
fn slow_rules(rules: &hygiene_rules::RuleSet, dir: &Path) -> Result<Vec<String>, BundleInputError> {
    let mut lines: Vec<String> = rules
        .slow_warnings
        .iter()
        .map(|w| strip_dir(&w.to_string(), dir))
        .collect();
    let cost = hygiene_rules::cost::measure(rules).map_err(|e| BundleInputError::Invalid {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    tracing::debug!(took = ?cost.set, "rule set timed over the built-in sample");
    for file in cost.slow {
        lines.push(format!(
            "{}: {} ms over the built-in sample, the median file {} ms",
            strip_dir(&file.path.display().to_string(), dir),
            file.took.as_millis(),
            file.median.as_millis().max(1)
        ));
    }
    Ok(lines)
}

fn strip_dir(text: &str, dir: &Path) -> String {
    text.replace(
        &format!("{}{}", dir.display(), std::path::MAIN_SEPARATOR),
        "",
    )
}

/// Reads hash lists (`HASH;COMMENT`, plain, CSV, or STIX 2.1 bundles, which become Loki lines
/// in a `.txt` of the same name) as agents will.
pub fn check_hashes(files: &[(String, Vec<u8>)]) -> Result<CheckedFiles, BundleInputError> {
    let mut converted = Vec::new();
    let mut skipped = Vec::new();
    for (path, content) in files {
        if looks_like_json(content) {
            let (lines, left_out) = json_to_loki(path, content)?;
            skipped.extend(left_out);
            let name = format!("{}.txt", base_name(path).trim_end_matches(".json"));
            converted.push((name, lines.into_bytes()));
        } else {
            converted.push((path.clone(), content.clone()));
        }
    }
    let files = named(&converted)?;
    let mut iocs = hygiene_rules::iocs::HashIocs::default();
    for file in &files {
        iocs.add_list(
            Path::new(&file.name),
            &String::from_utf8_lossy(&file.content),
        );
    }
    skipped.extend(iocs.bad_lines.iter().map(ToString::to_string));
    if iocs.is_empty() {
        return Err(BundleInputError::Nothing(format!(
            "no hash in the lists ({} lines skipped)",
            skipped.len()
        )));
    }
    Ok(CheckedFiles {
        files,
        items: iocs.len() as u64,
        skipped,
        members: iocs.hex_digests().collect(),
        slow: Vec::new(),
    })
}

fn looks_like_json(content: &[u8]) -> bool {
    content
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// A JSON hash list as Loki lines (`HASH;NAME`) and what was left out: a STIX 2.1 bundle or a
/// MISP event (as MISP's REST API wraps it, `{"response": [{"Event": ...}]}`, or bare).
fn json_to_loki(path: &str, content: &[u8]) -> Result<(String, Vec<String>), BundleInputError> {
    let invalid = |reason: String| BundleInputError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let document: serde_json::Value =
        serde_json::from_slice(content).map_err(|e| invalid(format!("not JSON: {e}")))?;
    if document["type"] == "bundle" {
        return stix_to_loki(path, &document);
    }
    let events: Vec<&serde_json::Value> = match (&document["Event"], &document["response"]) {
        (event @ serde_json::Value::Object(_), _) => vec![event],
        (_, serde_json::Value::Array(response)) => response
            .iter()
            .map(|item| &item["Event"])
            .filter(|event| event.is_object())
            .collect(),
        _ => Vec::new(),
    };
    if events.is_empty() {
        return Err(invalid(
            "a JSON file must be a STIX 2.1 bundle (\"type\": \"bundle\") or a MISP event ({\"Event\": ...} or {\"response\": [{\"Event\": ...}]})".into(),
        ));
    }
    let mut lines = format!("# from MISP export {path}\n");
    let mut skipped = Vec::new();
    for event in events {
        misp_event_to_loki(path, event, &mut lines, &mut skipped);
    }
    Ok((lines, skipped))
}

/// One MISP event's file hashes (`md5`, `sha1`, `sha256` and `filename|HASH` attributes, on
/// the event and in its objects) as Loki lines named after the event and the attribute's or
/// object's comment. Attributes not meant for detection (`to_ids` false) or deleted are left
/// out and said.
fn misp_event_to_loki(
    path: &str,
    event: &serde_json::Value,
    lines: &mut String,
    skipped: &mut Vec<String>,
) {
    let info = event["info"].as_str().unwrap_or("MISP event");
    let no_attributes = Vec::new();
    let attributes = |holder: &serde_json::Value| {
        holder["Attribute"]
            .as_array()
            .unwrap_or(&no_attributes)
            .clone()
    };
    let mut groups = vec![(attributes(event), String::new())];
    for object in event["Object"].as_array().unwrap_or(&no_attributes) {
        let comment = object["comment"].as_str().unwrap_or_default().to_owned();
        groups.push((attributes(object), comment));
    }
    for (group, object_comment) in groups {
        // The file name an object gives its hashes, when it does.
        let file_name = group
            .iter()
            .find(|a| a["type"] == "filename")
            .and_then(|a| a["value"].as_str())
            .unwrap_or_default()
            .to_owned();
        for attribute in &group {
            let kind = attribute["type"].as_str().unwrap_or_default();
            let value = attribute["value"].as_str().unwrap_or_default();
            let (name, hash) = match kind.split_once('|') {
                Some(("filename", algorithm)) => match value.split_once('|') {
                    Some((name, hash)) => (name.to_owned(), (algorithm, hash)),
                    None => continue,
                },
                _ => (file_name.clone(), (kind, value)),
            };
            if !matches!(hash.0, "md5" | "sha1" | "sha256") {
                continue;
            }
            let id = attribute["uuid"].as_str().unwrap_or("?");
            if attribute["deleted"] == true {
                continue;
            }
            if attribute["to_ids"] == false {
                skipped.push(format!(
                    "{path}: attribute {id} ({} {}): not flagged for detection (to_ids false)",
                    hash.0, hash.1
                ));
                continue;
            }
            let comment = attribute["comment"].as_str().unwrap_or_default();
            let label = [info, name.as_str(), comment, object_comment.as_str()]
                .iter()
                .filter(|part| !part.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" / ")
                .replace(['\n', '\r', ';'], " ");
            lines.push_str(&format!("{};{label}\n", hash.1.trim()));
        }
    }
}

/// The hashes of a STIX 2.1 bundle's indicators as Loki lines (`HASH;NAME`), and what was left
/// out (indicators without a file hash pattern).
fn stix_to_loki(
    path: &str,
    bundle: &serde_json::Value,
) -> Result<(String, Vec<String>), BundleInputError> {
    let invalid = |reason: String| BundleInputError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let objects = bundle["objects"]
        .as_array()
        .ok_or_else(|| invalid("the bundle has no \"objects\" array".into()))?;
    let mut lines = format!("# from STIX bundle {path}\n");
    let mut skipped = Vec::new();
    for object in objects.iter().filter(|o| o["type"] == "indicator") {
        let id = object["id"].as_str().unwrap_or("?");
        let pattern = object["pattern"].as_str().unwrap_or_default();
        let hashes = pattern_hashes(pattern);
        if hashes.is_empty() {
            skipped.push(format!(
                "{path}: indicator {id}: no file hash in pattern {pattern:?}"
            ));
            continue;
        }
        let name = object["name"]
            .as_str()
            .or(object["description"].as_str())
            .unwrap_or(id)
            .replace(['\n', ';'], " ");
        for hash in hashes {
            lines.push_str(&format!("{hash};{name}\n"));
        }
    }
    Ok((lines, skipped))
}

/// The hash values a STIX pattern compares `file:hashes.'SHA-256'` (or SHA-1, MD5) with:
/// `[file:hashes.'SHA-256' = 'ab…' OR file:hashes.MD5 = 'cd…']`.
fn pattern_hashes(pattern: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = pattern;
    while let Some(at) = rest.find("file:hashes.") {
        rest = &rest[at + "file:hashes.".len()..];
        let algorithm: String = rest
            .trim_start_matches(['\'', '"'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_uppercase();
        let wanted_len = match algorithm.as_str() {
            "SHA-256" | "SHA256" => 64,
            "SHA-1" | "SHA1" => 40,
            "MD5" => 32,
            _ => continue,
        };
        let Some(eq) = rest.find('=') else { break };
        let value = rest[eq + 1..].trim_start();
        let Some(quoted) = value.strip_prefix('\'') else {
            continue;
        };
        let Some(end) = quoted.find('\'') else { break };
        let hash = &quoted[..end];
        if hash.len() == wanted_len && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            hashes.push(hash.to_ascii_lowercase());
        }
        rest = &quoted[end..];
    }
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    const MD5: &str = "44d88612fea8a8f36de82e1278abb02f";

    #[test]
    fn slow_rules_refuse_the_bundle_unless_allowed() {
        let sound = (
            "/etc/rules/sound.yar".to_owned(),
            br#"rule sound { strings: $a = "evil-thing" condition: $a }"#.to_vec(),
        );
        // YARA-X warns about the first; the second shows only when timed.
        let warned = (
            "/etc/rules/warned.yar".to_owned(),
            b"rule warned {\n strings: $a = /(a+)+$/\n condition: $a }".to_vec(),
        );
        let unwarned = (
            "/etc/rules/unwarned.yar".to_owned(),
            br#"rule unwarned { strings: $a = /a.*b.*c.*d/ condition: $a }"#.to_vec(),
        );
        for (slow, expected) in [
            (&warned, "warned.yar:2: slow pattern"),
            (&unwarned, "unwarned.yar: "),
        ] {
            let files = vec![sound.clone(), slow.clone()];
            let text = check_rules(&files, false, false).unwrap_err().to_string();
            assert!(
                text.contains(expected) && text.contains("--allow-slow"),
                "{text}"
            );
            assert!(
                !text.contains("sound.yar") && !text.contains("/tmp"),
                "{text}"
            );
            let checked = check_rules(&files, false, true).unwrap();
            assert_eq!(checked.files.len(), 2);
            assert!(
                checked.slow.iter().any(|line| line.contains(expected)),
                "{:?}",
                checked.slow
            );
        }
        let checked = check_rules(&[sound], false, false).unwrap();
        assert!(checked.slow.is_empty());
    }

    #[test]
    fn broken_rules_refuse_the_bundle_unless_skipped() {
        let files = vec![
            (
                "/etc/rules/good.yar".to_owned(),
                b"rule good { condition: true }".to_vec(),
            ),
            (
                "/etc/rules/bad.yar".to_owned(),
                b"rule bad {\n condition: nonsense(\n}".to_vec(),
            ),
        ];
        let err = check_rules(&files, false, false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad.yar:"), "{text}");
        assert!(!text.contains("/tmp"), "{text}");
        let checked = check_rules(&files, true, false).unwrap();
        let names: Vec<&str> = checked.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["good.yar"]);
        assert_eq!(checked.items, 1);
        assert_eq!(checked.skipped.len(), 1);
        assert!(check_rules(&files[1..], true, false).is_err());

        let twice = vec![files[0].clone(), ("/other/good.yar".into(), b"x".to_vec())];
        assert!(matches!(
            check_rules(&twice, false, false),
            Err(BundleInputError::DuplicateName(_))
        ));
    }

    fn corpus(name: &str) -> (String, Vec<u8>) {
        let path = format!(
            "{}/../../shared/corpus/intel/hash-iocs/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let content = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        (name.to_owned(), content)
    }

    #[test]
    fn cert_exports_import_with_every_hash_they_hold() {
        // MISP REST exports (CRLF), hashes on the event and in file objects; three of
        // MoustachedBouncer's are not flagged for detection and are named as left out.
        let ramsay = check_hashes(&[corpus("eset_misp-ramsay.json")]).unwrap();
        assert_eq!(ramsay.items, 51, "{:?}", ramsay.skipped);
        assert!(ramsay.skipped.is_empty(), "{:?}", ramsay.skipped);
        let bouncer = check_hashes(&[corpus("eset_misp-moustachedbouncer.event.json")]).unwrap();
        assert_eq!(bouncer.items, 84);
        assert_eq!(bouncer.skipped.len(), 3, "{:?}", bouncer.skipped);
        assert!(
            bouncer.skipped[0].contains("to_ids false"),
            "{:?}",
            bouncer.skipped
        );
        let text = String::from_utf8_lossy(&bouncer.files[0].content).into_owned();
        assert!(text.contains("MoustachedBouncer"), "{text}");
        // A bare event reads the same.
        let (_, content) = corpus("eset_misp-ramsay.json");
        let document: serde_json::Value = serde_json::from_slice(&content).unwrap();
        let bare = serde_json::json!({ "Event": document["response"][0]["Event"] });
        let bare = check_hashes(&[("ramsay.json".into(), bare.to_string().into_bytes())]).unwrap();
        assert_eq!(bare.items, 51);
        // STIX patterns written `[file:hashes.sha256='...']`: its four file hashes (the bare
        // list beside it holds three of them); domain and app indicators are named as left out.
        let stix = check_hashes(&[corpus("amnesty_novispy.stix2")]).unwrap();
        let listed = check_hashes(&[corpus("amnesty_novispy_sha256.txt")]).unwrap();
        assert_eq!(stix.items, 4, "{:?}", stix.skipped);
        assert_eq!(stix.skipped.len(), 14, "{:?}", stix.skipped);
        assert!(listed.members.iter().all(|m| stix.members.contains(m)));
        let lazarus = check_hashes(&[corpus("eset_nukesped_lazarus_samples.sha256")]).unwrap();
        assert_eq!(lazarus.items, 555);
        // Any other JSON is refused, saying what is read.
        let err = check_hashes(&[("x.json".into(), b"{\"a\": 1}".to_vec())]).unwrap_err();
        assert!(err.to_string().contains("MISP event"), "{err}");
    }

    #[test]
    fn stix_indicators_become_hash_lines() {
        let stix = format!(
            r#"{{"type": "bundle", "id": "bundle--1", "objects": [
                {{"type": "indicator", "id": "indicator--a", "name": "Emotet loader",
                  "pattern": "[file:hashes.'SHA-256' = '{SHA256}' OR file:hashes.MD5 = '{MD5}']",
                  "pattern_type": "stix"}},
                {{"type": "indicator", "id": "indicator--b", "pattern": "[ipv4-addr:value = '198.51.100.1']"}},
                {{"type": "malware", "id": "malware--c", "name": "Emotet"}}
            ]}}"#
        );
        let checked = check_hashes(&[
            ("feed.json".into(), stix.into_bytes()),
            (
                "loki.txt".into(),
                format!("{MD5};EICAR\nnot-a-hash\n").into_bytes(),
            ),
        ])
        .unwrap();
        // The MD5 is in both lists: one hash.
        assert_eq!(checked.items, 2);
        let names: Vec<&str> = checked.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["feed.txt", "loki.txt"]);
        let feed = String::from_utf8_lossy(&checked.files[0].content).into_owned();
        assert!(feed.contains(&format!("{SHA256};Emotet loader")), "{feed}");
        assert_eq!(checked.skipped.len(), 2, "{:?}", checked.skipped);

        assert!(check_hashes(&[("x.json".into(), b"{\"type\": \"x\"}".to_vec())]).is_err());
        assert!(check_hashes(&[("x.txt".into(), b"nothing\n".to_vec())]).is_err());
    }
}
