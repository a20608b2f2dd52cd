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
//!
//! The same analysis finds the *per-file* rules: those whose verdict can differ between two
//! files with the same bytes, because they read an external variable (the file's name, path,
//! type or owner) or the `time` module, or depend on a rule that does. They can be compiled once more on their own,
//! with the rules they name and the global rules of their file: a file whose bytes were
//! already judged in a sweep (a hard link, a copy) needs a scan with these alone.

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
    /// The rule belongs in the per-file set: its verdict may depend on an external variable
    /// (it reads one or names a rule that does, or a global rule of its file does), or a rule
    /// that does depends on it.
    pub per_file: bool,
}

/// What [`analyse`] learned about one source file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The file's rules, in order; empty when the file is not analysed rule by rule.
    pub rules: Vec<RuleSpan>,
    /// The file names an external variable but is not analysed rule by rule (it does not
    /// parse, or it includes other files): all of it belongs in the per-file set.
    pub whole_file_per_file: bool,
}

/// The rules of one source file: where each is, whether it may move to a header's set and
/// whether it is per-file.
pub fn analyse(source: &[u8]) -> Analysis {
    // The `time` module's values change from one scan to the next: for rules that use them,
    // the same bytes need not give the same verdict either.
    let imports_time = source.windows(6).any(|w| w == b"\"time\"");
    let reads_externals = imports_time || names_an_external(source);
    // Parsing costs about as much as compiling: only files that may have a header condition
    // (`(0)`) or read an external variable are parsed.
    if !reads_externals && !source.windows(3).any(|w| w == b"(0)") {
        return Analysis::default();
    }
    let whole = Analysis {
        rules: Vec::new(),
        whole_file_per_file: reads_externals,
    };
    let ast = AST::from(Parser::new(source));
    if !ast.errors().is_empty() {
        return whole;
    }
    let mut rules = Vec::new();
    for item in ast.items() {
        match item {
            Item::Rule(rule) => rules.push(rule),
            Item::Include(_) => return whole,
            Item::Import(_) => {}
        }
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
        return whole;
    };
    let names: Vec<&str> = rules.iter().map(|r| r.identifier.name).collect();
    let named = references(source, &spans, &names);
    let global: Vec<bool> = rules
        .iter()
        .map(|r| r.flags.contains(RuleFlags::Global))
        .collect();
    let reads: Vec<bool> = rules
        .iter()
        .zip(&spans)
        .map(|(rule, span)| {
            // From the `condition` keyword on: the condition's own span leaves out a leading
            // `module.` (it starts at the field).
            let condition = rule.condition.span();
            let keyword = source
                .get(span.start..condition.start())
                .and_then(|before| before.windows(9).rposition(|w| w == b"condition"))
                .map_or(span.start, |at| span.start + at);
            let text = source.get(keyword..condition.end()).unwrap_or(source);
            names_an_external(text) || (imports_time && names_any(text, &[b"time"]))
        })
        .collect();
    let per_file = per_file_rules(reads, &global, &named);
    // A global rule gates every rule of its file: such a file is not split by header.
    let any_global = global.iter().any(|&g| g);
    let rules = rules
        .iter()
        .zip(spans)
        .enumerate()
        .map(|(i, (rule, span))| {
            let private = rule.flags.contains(RuleFlags::Private);
            let tangled = !named[i].is_empty() || named.iter().any(|n| n.contains(&i));
            let movable_to = if private || tangled || any_global {
                None
            } else {
                required_header(&rule.condition)
            };
            RuleSpan {
                span,
                movable_to,
                per_file: per_file[i],
            }
        })
        .collect();
    Analysis {
        rules,
        whole_file_per_file: false,
    }
}

/// Which rules belong in the per-file set, from which read an external variable themselves
/// (`reads`), which are global and which rules each names (`named`): those whose verdict may
/// depend on an external (they read one, name a rule that does, or a global rule does), and
/// everything those need to compile and to give the same verdict (the rules they name, the
/// file's global rules).
fn per_file_rules(mut reads: Vec<bool>, global: &[bool], named: &[Vec<usize>]) -> Vec<bool> {
    // Whether a verdict depends on an external spreads to the rules that name the rule.
    loop {
        let global_reads = reads.iter().zip(global).any(|(&r, &g)| r && g);
        let mut changed = false;
        for i in 0..reads.len() {
            if !reads[i] && (global_reads || named[i].iter().any(|&j| reads[j])) {
                reads[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut per_file = reads;
    if per_file.iter().any(|&p| p) {
        for (p, &g) in per_file.iter_mut().zip(global) {
            *p |= g;
        }
    }
    // What a per-file rule names comes along, and what that names, and so on.
    let mut pending: Vec<usize> = (0..per_file.len()).filter(|&i| per_file[i]).collect();
    while let Some(i) = pending.pop() {
        for &j in &named[i] {
            if !per_file[j] {
                per_file[j] = true;
                pending.push(j);
            }
        }
    }
    per_file
}

/// Whether `text` names one of the external variables (a whole word, not a pattern's `$name`).
fn names_an_external(text: &[u8]) -> bool {
    // One pass over the text for all of them: this runs over every rule file at start-up.
    let names = crate::EXTERNAL_VARIABLES.map(str::as_bytes);
    names_any(text, &names)
}

/// Whether `text` holds one of `names` as a whole word, not a pattern's `$name`.
fn names_any(text: &[u8], names: &[&[u8]]) -> bool {
    words(text).any(|word| !word.sigil && names.contains(&word.text))
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

/// For each rule, the other rules of the file it names, directly or through a wildcard
/// (`any of (prefix*)`). Textual and therefore conservative: a name that appears in the rule's
/// strings or metadata also counts.
fn references(source: &[u8], spans: &[std::ops::Range<usize>], names: &[&str]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    spans
        .iter()
        .enumerate()
        .map(|(i, span)| {
            let mut named = HashSet::new();
            for word in words(&source[span.clone()]) {
                if word.wildcard {
                    named.extend(
                        names
                            .iter()
                            .enumerate()
                            .filter(|(j, n)| *j != i && n.as_bytes().starts_with(word.text))
                            .map(|(j, _)| j),
                    );
                } else if let Some(&j) = std::str::from_utf8(word.text)
                    .ok()
                    .and_then(|w| index.get(w))
                    && j != i
                {
                    named.insert(j);
                }
            }
            let mut named: Vec<usize> = named.into_iter().collect();
            named.sort_unstable();
            named
        })
        .collect()
}

/// An identifier-like word of a rule's text.
#[derive(Debug, PartialEq, Eq)]
struct Word<'t> {
    text: &'t [u8],
    /// `$`, `#`, `@` or `!` comes before it: a pattern's name.
    sigil: bool,
    /// `*` follows it: a wildcard.
    wildcard: bool,
}

/// Identifier-like words of `text`, pattern wildcards such as `$s*` left out (rule wildcards
/// such as `apt_*` are kept).
fn words(text: &[u8]) -> impl Iterator<Item = Word<'_>> {
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
            return Some(Word {
                text: &text[start..i],
                sigil,
                wildcard,
            });
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
            .rules
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
        let found: Vec<Word> = words(source).collect();
        assert!(found.contains(&Word {
            text: b"apt_",
            sigil: false,
            wildcard: true
        }));
        assert!(!found.iter().any(|w| w.text == b"s"));
        assert!(found.contains(&Word {
            text: b"c",
            sigil: true,
            wildcard: false
        }));
    }

    #[test]
    fn files_with_global_rules_includes_or_errors_are_not_split() {
        for source in [
            "global rule g { condition: filesize < 1MB } rule r { condition: uint16(0) == 0x5a4d }",
            "include \"other.yar\"\nrule r { condition: uint16(0) == 0x5a4d }",
            "rule r { condition: uint16(0) == 0x5a4d } rule broken { condition: ",
        ] {
            let analysis = analyse(source.as_bytes());
            assert!(
                analysis.rules.iter().all(|r| r.movable_to.is_none()),
                "{source}"
            );
        }
    }

    #[test]
    fn declarations_span_from_keyword_to_closing_brace() {
        let source = "import \"pe\"\nrule a : tag { condition: uint16(0) == 0x5a4d /* } */ // }\n}\nprivate rule b { condition: true }\n";
        let rules = analyse(source.as_bytes()).rules;
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
        let rules = analyse(source.as_bytes()).rules;
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

    fn per_file(source: &str) -> Vec<bool> {
        analyse(source.as_bytes())
            .rules
            .into_iter()
            .map(|r| r.per_file)
            .collect()
    }

    #[test]
    fn rules_reading_externals_and_what_they_need_are_per_file() {
        let source = r#"
rule reads { condition: helper and filename matches /x/ }
rule helper { condition: filesize > 10 }
rule user { condition: reads }
rule plain { meta: note = "filename" strings: $filename = "a" condition: $filename }
rule by_name { condition: user or plain }
private rule unrelated { condition: owner_like }
rule owner_like { condition: true }
"#;
        assert_eq!(
            per_file(source),
            vec![true, true, true, true, true, false, false]
        );
        // Every external counts, in any rule of a header group too.
        for name in crate::EXTERNAL_VARIABLES {
            let source = format!("rule r {{ condition: uint16(0) == 0x5a4d and {name} == \"\" }}");
            let rules = analyse(source.as_bytes()).rules;
            assert!(
                rules[0].per_file && rules[0].movable_to == Some(MZ),
                "{name}"
            );
        }
    }

    #[test]
    fn rules_reading_the_time_are_per_file() {
        let source = "import \"time\"\nrule recent { condition: time.now() > 0 }\nrule plain { condition: filesize > 0 }";
        assert_eq!(per_file(source), vec![true, false]);
        let source = "import \"time\"\nrule c { condition: /* condition */ time.now() > 0 }";
        assert_eq!(per_file(source), vec![true]);
        // Outside a condition, "time" does not count.
        let source = "rule r { meta: note = \"time\" condition: uint16(0) == 0x5a4d }";
        assert_eq!(per_file(source), vec![false]);
    }

    #[test]
    fn global_rules_spread_and_follow_per_file_rules() {
        let reading_global = "global rule g { condition: not filepath contains \"tmp\" }\nrule a { condition: true }\nrule b { condition: filesize > 1 }";
        assert_eq!(per_file(reading_global), vec![true, true, true]);
        let plain_global = "global rule g { condition: filesize < 1MB }\nrule a { condition: extension == \".exe\" }\nrule b { condition: true }";
        assert_eq!(per_file(plain_global), vec![true, true, false]);
        let no_externals = "global rule g { condition: filesize < 1MB }\nrule a { condition: uint16(0) == 0x5a4d }";
        assert_eq!(per_file(no_externals), vec![false, false]);
    }

    #[test]
    fn files_not_analysed_rule_by_rule_are_per_file_when_they_name_an_external() {
        let included = analyse(b"include \"x.yar\"\nrule r { condition: filetype == \"EXE\" }");
        assert!(included.rules.is_empty() && included.whole_file_per_file);
        let broken = analyse(b"rule r { condition: filename == ");
        assert!(broken.rules.is_empty() && broken.whole_file_per_file);
        let broken_plain = analyse(b"rule r { condition: uint16(0) == ");
        assert!(broken_plain.rules.is_empty() && !broken_plain.whole_file_per_file);
        assert_eq!(analyse(b"rule r { condition: true }"), Analysis::default());
    }
}
