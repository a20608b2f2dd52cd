//! What a rule set costs to scan with, measured before it reaches any agent.
//!
//! A pattern such as `/(a+)+$/` compiles, matches nothing, and costs a scanner time that grows
//! with the square of every run of the byte it starts with: one such rule makes every agent
//! spend its whole per-file timeout on some files. YARA-X warns about some of these patterns
//! (`slow_pattern`, `potentially_slow_loop`); the others show only when scanned. So the whole
//! set is run over a small built-in [`sample`] made of what trips such patterns (long runs of
//! every byte value, UTF-16 text, base64, words), each set on the files it would see. When
//! that takes longer than [`SET_BUDGET`], each rule file is compiled alone and timed on the
//! same sample, and the files far above the rest are named.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{RuleSet, RulesError, add_part, new_compiler};

/// Bytes of each run of one byte value in the sample: long enough that a quadratic pattern
/// costs most of a second, short enough that the sample stays near 2 MiB.
const RUN: usize = 8192;

/// The whole set may take this long over the sample before its files are timed one by one.
/// signature-base's 4,000 rules take a few milliseconds (see the test).
pub const SET_BUDGET: Duration = Duration::from_millis(250);

/// One file's rules are timed over the sample up to this long: past it they are slow by any
/// measure. Well above [`SET_BUDGET`], so that a slow file still stands [`FILE_FACTOR`] times
/// above the rest on a machine busy enough to make every scan several times slower.
const FILE_BUDGET: Duration = Duration::from_secs(1);

/// A file is slow when it takes longer than this over the sample...
pub const FILE_FLOOR: Duration = Duration::from_millis(50);
/// ...and this many times the median file.
pub const FILE_FACTOR: u32 = 20;

/// A scan of one sample file by one file's rules stops after this long: the file is slow
/// enough to name by then.
const SCAN_TIMEOUT: Duration = Duration::from_secs(1);

/// The built-in sample: files that are cheap for sound rules and costly for rules whose
/// patterns start on a common byte and backtrack.
pub fn sample() -> Vec<Vec<u8>> {
    let mut runs = Vec::with_capacity(256 * RUN);
    for byte in 0..=255u8 {
        runs.extend(std::iter::repeat_n(byte, RUN));
    }
    let utf16: Vec<u8> = "AAAAAAAAaaaaaaaa    "
        .repeat(RUN / 10)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let base64: Vec<u8> = (0..64 * 1024u32)
        .map(|i| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                [(i * 7 % 64) as usize]
        })
        .collect();
    let words = "powershell -enc cmd.exe /c http://example.com/a.php?id= <script> eval( "
        .repeat(1024)
        .into_bytes();
    vec![runs, utf16, base64, words]
}

/// A rule file that costs far more to scan with than the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowFile {
    pub path: PathBuf,
    /// Its time over the sample (at least: timing stops past [`FILE_BUDGET`]).
    pub took: Duration,
    /// The median file's.
    pub median: Duration,
}

/// What [`measure`] found.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// The whole set over the sample.
    pub set: Duration,
    /// Files far above the rest, the slowest first; empty when the set is within budget.
    pub slow: Vec<SlowFile>,
}

/// Times `set` over the [`sample`], and, if it is over [`SET_BUDGET`], each of its files.
pub fn measure(set: &RuleSet) -> Result<Cost, RulesError> {
    let sample = sample();
    let started = Instant::now();
    for data in &sample {
        scan_timed(&set.general, data);
        for (header, rules) in &set.by_header {
            let mut with_header = header.to_vec();
            with_header.extend_from_slice(data);
            scan_timed(rules, &with_header);
        }
        if started.elapsed() > SET_BUDGET {
            break;
        }
    }
    let whole = started.elapsed();
    if whole <= SET_BUDGET {
        return Ok(Cost {
            set: whole,
            slow: Vec::new(),
        });
    }
    let mut times = Vec::with_capacity(set.files.len());
    for file in &set.files {
        times.push((file, time_file(file, &sample)?));
    }
    let baseline = time_rules(&new_compiler().build(), &sample, FILE_BUDGET);
    Ok(Cost {
        set: whole,
        slow: far_above_the_rest(&times, baseline),
    })
}

/// The files whose time is above [`FILE_FLOOR`] and [`FILE_FACTOR`] times the median, the
/// median taken with `baseline` (a set without rules) among the times: a bundle of one or
/// two files is still measured against something sound, and the lower median of an even
/// count leaves a lone slow file out of its own yardstick.
fn far_above_the_rest(times: &[(&PathBuf, Duration)], baseline: Duration) -> Vec<SlowFile> {
    let mut sorted: Vec<Duration> = times.iter().map(|(_, t)| *t).collect();
    sorted.push(baseline);
    sorted.sort();
    let median = sorted[(sorted.len() - 1) / 2];
    let mut slow: Vec<SlowFile> = times
        .iter()
        .filter(|(_, took)| *took > FILE_FLOOR && *took > median * FILE_FACTOR)
        .map(|(path, took)| SlowFile {
            path: (*path).clone(),
            took: *took,
            median,
        })
        .collect();
    slow.sort_by_key(|s| std::cmp::Reverse(s.took));
    slow
}

/// How many times a file that looks slow (but not beyond doubt) is timed; its fastest run
/// counts, so that a stall of the machine (a busy collector, another process) does not name a
/// sound file.
const SLOW_RUNS: usize = 3;

/// One file's rules, compiled alone (header-bound rules with the rest: every sample file is
/// scanned with them, with and without each header) and timed over the sample: the fastest
/// of up to [`SLOW_RUNS`] runs while it stays between [`FILE_FLOOR`] and [`FILE_BUDGET`].
fn time_file(file: &Path, sample: &[Vec<u8>]) -> Result<Duration, RulesError> {
    let source = std::fs::read(file).map_err(|source| RulesError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let mut compiler = new_compiler();
    add_part(&mut compiler, file, "probe", &source)?;
    let rules = compiler.build();
    let mut fastest = time_rules(&rules, sample, FILE_BUDGET);
    for _ in 1..SLOW_RUNS {
        if fastest <= FILE_FLOOR || fastest > FILE_BUDGET {
            break;
        }
        fastest = fastest.min(time_rules(&rules, sample, FILE_BUDGET));
    }
    Ok(fastest)
}

/// The time `rules` take over the sample, plain and after each common header; once past
/// `budget` the rest is not scanned (the rules are slow by any measure by then).
fn time_rules(rules: &yara_x::Rules, sample: &[Vec<u8>], budget: Duration) -> Duration {
    let started = Instant::now();
    for data in sample {
        for header in [&b""[..], b"MZ", b"\x7fE"] {
            let mut with_header = header.to_vec();
            with_header.extend_from_slice(data);
            scan_timed(rules, &with_header);
            if started.elapsed() > budget {
                return started.elapsed();
            }
        }
    }
    started.elapsed()
}

fn scan_timed(rules: &yara_x::Rules, data: &[u8]) {
    let mut scanner = yara_x::Scanner::new(rules);
    scanner.set_timeout(SCAN_TIMEOUT);
    // A timeout is what is being measured; other errors cannot happen on a byte slice.
    let _ = scanner.scan(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, rule: &str) {
        std::fs::write(dir.join(name), rule).unwrap();
    }

    #[test]
    // Timing over dependencies built unoptimised, under Wine, says nothing of the publish
    // check, which the collector runs (on Linux, optimised).
    #[cfg_attr(windows, ignore = "timing under Wine with unoptimised dependencies")]
    fn a_backtracking_pattern_is_named_among_sound_files() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..9 {
            write(
                dir.path(),
                &format!("sound{i}.yar"),
                &format!(
                    r#"rule sound{i} {{ strings: $a = "evil-{i}-thing" $b = {{ 4D 5A 90 00 0{i} }} condition: any of them }}"#
                ),
            );
        }
        write(
            dir.path(),
            "slow.yar",
            r#"rule slow { strings: $a = /(a+)+$/ condition: $a }"#,
        );
        let set = super::super::load(&[dir.path().to_path_buf()]).unwrap();
        let cost = measure(&set).unwrap();
        assert!(cost.set > SET_BUDGET, "{cost:?}");
        let names: Vec<_> = cost
            .slow
            .iter()
            .map(|s| s.path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["slow.yar"], "{cost:?}");
    }

    #[test]
    // Timing over dependencies built unoptimised, under Wine, says nothing of the publish
    // check, which the collector runs (on Linux, optimised).
    #[cfg_attr(windows, ignore = "timing under Wine with unoptimised dependencies")]
    fn signature_base_is_within_budget() {
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/signature-base/yara"
        ));
        let set = super::super::load(&[dir]).expect("../shared holds signature-base");
        let cost = measure(&set).unwrap();
        eprintln!("signature-base over the sample: {:?}", cost.set);
        assert!(cost.slow.is_empty(), "{cost:?}");
    }

    #[test]
    // Timing over dependencies built unoptimised, under Wine, says nothing of the publish
    // check, which the collector runs (on Linux, optimised).
    #[cfg_attr(windows, ignore = "timing under Wine with unoptimised dependencies")]
    fn sound_rules_are_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "sound.yar",
            r#"rule sound { strings: $a = "evil-thing" $b = /https?:\/\/[a-z]{3,20}\.example\/x/ condition: any of them }"#,
        );
        let set = super::super::load(&[dir.path().to_path_buf()]).unwrap();
        let cost = measure(&set).unwrap();
        assert!(cost.set <= SET_BUDGET && cost.slow.is_empty(), "{cost:?}");
    }

    #[test]
    fn only_files_far_above_the_median_and_the_floor_are_slow() {
        let paths: Vec<PathBuf> = (0..5).map(|i| PathBuf::from(format!("{i}.yar"))).collect();
        let ms = Duration::from_millis;
        let times: Vec<(&PathBuf, Duration)> = paths
            .iter()
            .zip([ms(1), ms(2), ms(2), ms(45), ms(300)])
            .collect();
        let slow = far_above_the_rest(&times, ms(1));
        assert_eq!(slow.len(), 1);
        assert_eq!(
            (slow[0].path.to_str(), slow[0].median),
            (Some("4.yar"), ms(2))
        );
        // Alone, or with one sound file, a slow file is measured against the baseline or
        // that file.
        let slow = far_above_the_rest(&times[4..], ms(1));
        assert_eq!(slow[0].median, ms(1));
        let slow = far_above_the_rest(&times[2..], ms(1));
        assert_eq!(slow.len(), 1);
        assert_eq!(slow[0].median, ms(2));
    }
}
