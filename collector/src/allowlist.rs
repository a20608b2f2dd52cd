//! The fleet-wide allowlist: files an admin has judged harmless, by content (SHA-256), by the
//! rule that matched them, or by where they are (a path glob), on every host or one. A
//! finding an entry matches is a false positive, with the entry named in its history, now and
//! for every later report, until the entry expires or is removed.

use std::fmt;

/// What an entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowMatch {
    /// Lower-case hex SHA-256 of the file's content.
    Sha256(String),
    /// A YARA rule's identifier (any namespace), or `namespace:identifier`.
    Rule(String),
    /// A glob over the file's path (`*` within a component, `**` across them).
    Path(String),
}

impl AllowMatch {
    pub fn kind(&self) -> &'static str {
        match self {
            AllowMatch::Sha256(_) => "sha256",
            AllowMatch::Rule(_) => "rule",
            AllowMatch::Path(_) => "path",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            AllowMatch::Sha256(v) | AllowMatch::Rule(v) | AllowMatch::Path(v) => v,
        }
    }

    /// Builds a matcher from its stored or requested form, or says why it cannot be one.
    pub fn parse(kind: &str, value: &str) -> Result<AllowMatch, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("an empty {kind} matches nothing"));
        }
        match kind {
            "sha256" => {
                let hex = value.to_ascii_lowercase();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("{value:?} is not a SHA-256 (64 hex digits)"));
                }
                Ok(AllowMatch::Sha256(hex))
            }
            "rule" => Ok(AllowMatch::Rule(value.to_owned())),
            "path" => {
                glob(value)?;
                Ok(AllowMatch::Path(value.to_owned()))
            }
            other => Err(format!("{other:?}: an entry matches sha256, rule or path")),
        }
    }
}

impl fmt::Display for AllowMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.value())
    }
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a path glob: {e}"))
}

/// An allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub id: i64,
    pub matcher: AllowMatch,
    /// Only this host's findings; `None`: every host.
    pub host_id: Option<String>,
    pub note: String,
    pub created_ms: i64,
    pub created_by: String,
    pub expires_ms: Option<i64>,
    pub removed: Option<(i64, String)>,
}

/// What of a finding an entry is matched against.
#[derive(Debug, Clone, Copy)]
pub struct FileFinding<'a> {
    pub host_id: &'a str,
    pub path: &'a str,
    pub sha256: &'a str,
    /// Empty for a hash IOC.
    pub namespace: &'a str,
    pub rule: &'a str,
}

impl AllowEntry {
    /// In force at `now_ms`: not removed, not expired.
    pub fn active(&self, now_ms: i64) -> bool {
        self.removed.is_none() && self.expires_ms.is_none_or(|at| now_ms < at)
    }

    /// Whether this entry, in force at `now_ms`, makes `finding` a false positive.
    pub fn matches(&self, finding: &FileFinding<'_>, now_ms: i64) -> bool {
        if !self.active(now_ms)
            || self
                .host_id
                .as_deref()
                .is_some_and(|host| host != finding.host_id)
        {
            return false;
        }
        match &self.matcher {
            AllowMatch::Sha256(hex) => finding.sha256.eq_ignore_ascii_case(hex),
            AllowMatch::Rule(rule) => match rule.split_once(':') {
                Some((namespace, identifier)) => {
                    finding.namespace == namespace && finding.rule == identifier
                }
                None => !finding.rule.is_empty() && finding.rule == rule,
            },
            // Checked when the entry was made; a stored one that no longer compiles matches
            // nothing rather than everything.
            AllowMatch::Path(pattern) => glob(pattern).is_ok_and(|g| {
                g.is_match(finding.path) || g.is_match(finding.path.replace('\\', "/"))
            }),
        }
    }

    /// The note a finding's history gets when this entry makes it a false positive.
    pub fn history_note(&self) -> String {
        format!(
            "allowlisted by entry {} ({}): {}",
            self.id, self.matcher, self.note
        )
    }
}

/// The first entry of `entries` that makes `finding` a false positive at `now_ms`.
pub fn allowed_by<'e>(
    entries: &'e [AllowEntry],
    finding: &FileFinding<'_>,
    now_ms: i64,
) -> Option<&'e AllowEntry> {
    entries.iter().find(|e| e.matches(finding, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(matcher: AllowMatch, host: Option<&str>, expires_ms: Option<i64>) -> AllowEntry {
        AllowEntry {
            id: 7,
            matcher,
            host_id: host.map(Into::into),
            note: "vendor tool".into(),
            created_ms: 0,
            created_by: "admin".into(),
            expires_ms,
            removed: None,
        }
    }

    const FINDING: FileFinding<'static> = FileFinding {
        host_id: "web-01",
        path: "/opt/vendor/bin/scan.exe",
        sha256: "AB",
        namespace: "tools.yar",
        rule: "Hacktool_Scanner",
    };

    #[test]
    fn entries_match_by_content_rule_or_path_on_every_host_or_one() {
        let sha = "ab".repeat(32);
        let finding = FileFinding {
            sha256: &sha,
            ..FINDING
        };
        let by_sha = AllowMatch::parse("sha256", &sha.to_uppercase()).unwrap();
        assert!(entry(by_sha, None, None).matches(&finding, 1));
        let by_rule = AllowMatch::parse("rule", "Hacktool_Scanner").unwrap();
        assert!(entry(by_rule, None, None).matches(&finding, 1));
        let qualified = AllowMatch::parse("rule", "other.yar:Hacktool_Scanner").unwrap();
        assert!(!entry(qualified, None, None).matches(&finding, 1));
        let by_path = AllowMatch::parse("path", "/opt/vendor/**").unwrap();
        assert!(entry(by_path.clone(), None, None).matches(&finding, 1));
        let one_level = AllowMatch::parse("path", "/opt/*/scan.exe").unwrap();
        assert!(!entry(one_level, None, None).matches(&finding, 1));
        // One host only; and only until it expires.
        assert!(!entry(by_path.clone(), Some("web-02"), None).matches(&finding, 1));
        assert!(entry(by_path.clone(), Some("web-01"), Some(10)).matches(&finding, 9));
        assert!(!entry(by_path.clone(), None, Some(10)).matches(&finding, 10));
        let mut removed = entry(by_path, None, None);
        removed.removed = Some((5, "admin".into()));
        assert!(!removed.matches(&finding, 6));
        // A hash IOC has no rule: a rule entry never matches it.
        let ioc = FileFinding {
            rule: "",
            namespace: "",
            ..finding
        };
        assert!(!entry(AllowMatch::Rule(String::new()), None, None).matches(&ioc, 1));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        assert!(
            AllowMatch::parse("sha256", "abc")
                .unwrap_err()
                .contains("SHA-256")
        );
        assert!(
            AllowMatch::parse("path", "/opt/[")
                .unwrap_err()
                .contains("glob")
        );
        assert!(
            AllowMatch::parse("rule", "  ")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            AllowMatch::parse("md5", "x")
                .unwrap_err()
                .contains("sha256, rule or path")
        );
    }
}
