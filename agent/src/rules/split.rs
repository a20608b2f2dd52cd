//! Splitting rule files by the file header their rules require.
//!
//! Most of a rule set like signature-base is Windows malware: over half its rules begin their
//! condition with `uint16(0) == 0x5a4d`, so they can only ever match a file that starts with
//! "MZ". YARA-X still searches every file for every such rule's patterns, and that search costs
//! more than linearly in the number of patterns. So rules whose condition requires a two-byte
//! header are compiled apart, one rule set per header, and a file is searched with the general
//! set plus at most the one set for its own first two bytes. A Linux tree then never pays for
//! Windows PE rules. The verdicts are the same: a rule moved out could not have matched a file
//! with another header.
//!
//! A rule moves only when that is plainly safe: the file parses, has no global rules and no
//! includes, the rule is not private, no other rule of the file names it (or a wildcard that
//! covers it) and it names no other rule of the file. Everything else stays in the general part.
//! Parts are the original source with the other rules blanked out (newlines kept), so compile
//! errors keep their original lines and offsets.

use std::collections::{HashMap, HashSet};

use yara_x_parser::Parser;
use yara_x_parser::ast::{AST, BinaryExpr, Expr, Item, RuleFlags, WithSpan};

/// The first two bytes a file must start with.
pub type Header = [u8; 2];

/// One rule of a file: where its declaration is and the header it requires, if it may move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpan {
    pub span: std::ops::Range<usize>,
    /// The header the rule requires, when the rule may be compiled apart.
    pub movable_to: Option<Header>,
}

/// The rules of one source file, in order; empty when the file is not to be split.
pub fn analyse(source: &[u8]) -> Vec<RuleSpan> {
    // Parsing costs about as much as compiling; a file without `(0)` has no header condition.
    if !source.windows(3).any(|w| w == b"(0)") {
        return Vec::new();
    }
    let ast = AST::from(Parser::new(source));
    if !ast.errors().is_empty() {
        return Vec::new();
    }
    let mut rules = Vec::new();
    for item in ast.items() {
        match item {
            Item::Rule(rule) => rules.push(rule),
            Item::Include(_) => return Vec::new(),
            Item::Import(_) => {}
        }
    }
    if rules.iter().any(|r| r.flags.contains(RuleFlags::Global)) {
        return Vec::new();
    }
    // The AST has no span for a whole declaration; it runs from the `rule` keyword before the
    // name to the brace after the condition. Anything unexpected there: the file stays whole.
    let Some(spans) = rules
        .iter()
        .map(|rule| {
            let start = keyword_before(source, rule.identifier.span().start())?;
            let end = closing_brace_after(source, rule.condition.span().end())?;
            Some(start..end)
        })
        .collect::<Option<Vec<_>>>()
    else {
        return Vec::new();
    };
    let names: Vec<&str> = rules.iter().map(|r| r.identifier.name).collect();
    let tangled = tangled_rules(source, &spans, &names);
    rules
        .iter()
        .zip(spans)
        .enumerate()
        .map(|(i, (rule, span))| {
            let private = rule.flags.contains(RuleFlags::Private);
            let movable_to = if private || tangled.contains(&i) {
                None
            } else {
                required_header(&rule.condition)
            };
            RuleSpan { span, movable_to }
        })
        .collect()
}

/// Where the declaration of the rule named at `name` starts: its `rule` keyword, or the
/// `private`/`global` before that, with only whitespace between.
fn keyword_before(source: &[u8], name: usize) -> Option<usize> {
    let word_before = |end: usize, word: &[u8]| {
        let start = source[..end].trim_ascii_end().strip_suffix(word)?.len();
        (start == 0 || !is_word_byte(source[start - 1])).then_some(start)
    };
    let mut start = word_before(name.min(source.len()), b"rule")?;
    while let Some(modifier) =
        word_before(start, b"private").or_else(|| word_before(start, b"global"))
    {
        start = modifier;
    }
    Some(start)
}

/// The end of the `}` that closes a rule whose condition ends at `end`: only whitespace,
/// comments and the closing parentheses of a parenthesised condition (the AST drops them) may
/// come between.
fn closing_brace_after(source: &[u8], end: usize) -> Option<usize> {
    let mut rest = source.get(end..)?;
    loop {
        rest = rest.trim_ascii_start();
        if let Some(after) = rest.strip_prefix(b")") {
            rest = after;
        } else if let Some(comment) = rest.strip_prefix(b"//") {
            let newline = comment.iter().position(|&b| b == b'\n')?;
            rest = &comment[newline..];
        } else if let Some(comment) = rest.strip_prefix(b"/*") {
            let close = comment.windows(2).position(|w| w == b"*/")?;
            rest = &comment[close + 2..];
        } else if rest.first() == Some(&b'}') {
            return Some(source.len() - rest.len() + 1);
        } else {
            return None;
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Indexes of rules that name another rule of the file or are named by one, directly or
/// through a wildcard (`any of (prefix*)`). Textual and therefore conservative: a name that
/// appears in another rule's strings or metadata also counts.
fn tangled_rules(
    source: &[u8],
    spans: &[std::ops::Range<usize>],
    names: &[&str],
) -> HashSet<usize> {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut tangled = HashSet::new();
    for (i, span) in spans.iter().enumerate() {
        for (word, wildcard) in words(&source[span.clone()]) {
            if wildcard {
                let covered: Vec<usize> = names
                    .iter()
                    .enumerate()
                    .filter(|(j, n)| *j != i && n.as_bytes().starts_with(word))
                    .map(|(j, _)| j)
                    .collect();
                if !covered.is_empty() {
                    tangled.insert(i);
                    tangled.extend(covered);
                }
            } else if let Some(&j) = std::str::from_utf8(word).ok().and_then(|w| index.get(w))
                && j != i
            {
                tangled.insert(i);
                tangled.insert(j);
            }
        }
    }
    tangled
}

/// Identifier-like words of `text`, each with whether a `*` follows it (a rule wildcard;
/// pattern wildcards such as `$s*` are skipped).
fn words(text: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let is_word = is_word_byte;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < text.len() {
            if !is_word(text[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < text.len() && is_word(text[i]) {
                i += 1;
            }
            let sigil = start > 0 && matches!(text[start - 1], b'$' | b'#' | b'@' | b'!');
            let wildcard = text.get(i) == Some(&b'*');
            if sigil && wildcard {
                continue;
            }
            return Some((&text[start..i], wildcard));
        }
        None
    })
}

/// The two bytes a file must start with for `condition` to hold: one of its conjuncts
/// compares `uint16(0)`, `uint32(0)`, `uint16be(0)` or `uint32be(0)` with a constant.
fn required_header(condition: &Expr) -> Option<Header> {
    conjuncts(condition)
        .into_iter()
        .find_map(|expr| match expr {
            Expr::Eq(eq) => header_of(eq),
            _ => None,
        })
}

/// The expressions that must all hold for `condition` to hold: its `and` operands, nested
/// ones included (the AST keeps `(a and b) and c` as written).
fn conjuncts<'a, 'src>(condition: &'a Expr<'src>) -> Vec<&'a Expr<'src>> {
    match condition {
        Expr::And(and) => and.operands().flat_map(conjuncts).collect(),
        other => vec![other],
    }
}

fn header_of(eq: &BinaryExpr) -> Option<Header> {
    let (call, value) = match (&eq.lhs, &eq.rhs) {
        (Expr::FuncCall(call), Expr::LiteralInteger(value))
        | (Expr::LiteralInteger(value), Expr::FuncCall(call)) => (call, value),
        _ => return None,
    };
    let at_zero =
        matches!(call.args.as_slice(), [Expr::LiteralInteger(offset)] if offset.value == 0);
    if call.object.is_some() || !at_zero || value.value < 0 {
        return None;
    }
    let value = value.value as u64;
    let bytes: Vec<u8> = match call.identifier.name {
        "uint16" if value <= 0xffff => (value as u16).to_le_bytes().to_vec(),
        "uint16be" if value <= 0xffff => (value as u16).to_be_bytes().to_vec(),
        "uint32" if value <= 0xffff_ffff => (value as u32).to_le_bytes().to_vec(),
        "uint32be" if value <= 0xffff_ffff => (value as u32).to_be_bytes().to_vec(),
        _ => return None,
    };
    Some([bytes[0], bytes[1]])
}

/// `source` with the declarations of the rules `keep` rejects blanked out: every byte but
/// newlines becomes a space, so lines and offsets stay those of the original file.
pub fn part(source: &[u8], rules: &[RuleSpan], keep: impl Fn(&RuleSpan) -> bool) -> Vec<u8> {
    let mut out = source.to_vec();
    for rule in rules.iter().filter(|r| !keep(r)) {
        for byte in &mut out[rule.span.clone()] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MZ: Header = *b"MZ";

    fn headers(source: &str) -> Vec<Option<Header>> {
        analyse(source.as_bytes())
            .into_iter()
            .map(|r| r.movable_to)
            .collect()
    }

    #[test]
    fn header_conditions_are_recognised_in_all_spellings() {
        let source = r#"
import "pe"
rule a { strings: $a = "x" condition: uint16(0) == 0x5a4d and $a }
rule b { condition: filesize < 10KB and 0x5A4D == uint16(0) }
rule c { condition: uint32(0) == 0x464c457f }
rule d { condition: uint32be(0) == 0xd0cf11e0 and true }
rule e { condition: uint16be(0) == 0x4d5a }
rule f { condition: uint16(0) == 0x5a4d or true }
rule g { condition: uint16(2) == 0x5a4d }
rule h { condition: pe.is_pe }
rule i { condition: (filesize < 10KB and uint16(0) == 0x5a4d) and true }
"#;
        assert_eq!(
            headers(source),
            vec![
                Some(MZ),
                Some(MZ),
                Some([0x7f, b'E']),
                Some([0xd0, 0xcf]),
                Some(MZ),
                None,
                None,
                None,
                Some(MZ)
            ]
        );
    }

    #[test]
    fn rules_that_name_each_other_stay_together() {
        let source = r#"
rule helper { condition: uint16(0) == 0x5a4d }
rule user { condition: uint16(0) == 0x5a4d and helper }
rule apt_one { condition: uint16(0) == 0x5a4d }
rule apt_two { condition: uint16(0) == 0x5a4d }
rule any_apt { condition: any of (apt_one, apt_two) }
rule alone { strings: $s1 = "a" condition: uint16(0) == 0x5a4d and any of ($s*) }
private rule hidden { condition: uint16(0) == 0x5a4d }
"#;
        assert_eq!(
            headers(source),
            vec![None, None, None, None, None, Some(MZ), None]
        );
    }

    #[test]
    fn wildcards_cover_rule_names_but_not_pattern_names() {
        let source = b"rule r { condition: any of (apt_*) and any of ($s*) and #c > 1 }";
        let found: Vec<(&[u8], bool)> = words(source).collect();
        assert!(found.contains(&(&b"apt_"[..], true)));
        assert!(!found.iter().any(|(w, _)| *w == b"s"));
        assert!(found.contains(&(&b"c"[..], false)));
    }

    #[test]
    fn files_with_global_rules_includes_or_errors_are_not_split() {
        for source in [
            "global rule g { condition: filesize < 1MB } rule r { condition: uint16(0) == 0x5a4d }",
            "include \"other.yar\"\nrule r { condition: uint16(0) == 0x5a4d }",
            "rule r { condition: uint16(0) == 0x5a4d } rule broken { condition: ",
        ] {
            assert!(analyse(source.as_bytes()).is_empty(), "{source}");
        }
    }

    #[test]
    fn declarations_span_from_keyword_to_closing_brace() {
        let source = "import \"pe\"\nrule a : tag { condition: uint16(0) == 0x5a4d /* } */ // }\n}\nprivate rule b { condition: true }\n";
        let rules = analyse(source.as_bytes());
        let text: Vec<&str> = rules.iter().map(|r| &source[r.span.clone()]).collect();
        assert_eq!(
            text,
            vec![
                "rule a : tag { condition: uint16(0) == 0x5a4d /* } */ // }\n}",
                "private rule b { condition: true }"
            ]
        );
    }

    #[test]
    fn parts_keep_lines_and_offsets() {
        let source = "import \"pe\"\n// note\nrule a { condition: uint16(0) == 0x5a4d }\nrule b {\n  condition: true\n}\n";
        let rules = analyse(source.as_bytes());
        let general = part(source.as_bytes(), &rules, |r| r.movable_to.is_none());
        let mz = part(source.as_bytes(), &rules, |r| r.movable_to == Some(MZ));
        assert_eq!(general.len(), source.len());
        assert_eq!(mz.len(), source.len());
        let general = String::from_utf8(general).unwrap();
        let mz = String::from_utf8(mz).unwrap();
        assert_eq!(general.lines().count(), source.lines().count());
        assert!(general.starts_with("import \"pe\"\n// note\n"));
        assert!(!general.contains("rule a") && general.contains("rule b {"));
        assert!(mz.contains("rule a {") && !mz.contains("rule b"));
        assert!(mz.starts_with("import \"pe\"\n"));
    }
}
