//! Package version ordering as the package managers define it: Debian's (dpkg) and RPM's.
//! `hygienectl hosts list --package-below NAME=VERSION` compares with these.

use std::cmp::Ordering;

/// Which package manager's rules order the versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Dpkg,
    Rpm,
}

impl Scheme {
    /// The package manager's name as agents report it and the store keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Dpkg => "dpkg",
            Scheme::Rpm => "rpm",
        }
    }

    /// The scheme of a package manager named `dpkg` or `rpm`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Scheme> {
        match name {
            "dpkg" => Some(Scheme::Dpkg),
            "rpm" => Some(Scheme::Rpm),
            _ => None,
        }
    }
}

/// Compares two versions under `scheme`.
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Ordering {
    match scheme {
        Scheme::Dpkg => dpkg_compare(a, b),
        Scheme::Rpm => rpm_compare(a, b),
    }
}

/// `[epoch:]upstream[-revision]`, compared part by part (dpkg's `dpkg_version_compare`).
pub fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_parts(a);
    let (eb, ub, rb) = dpkg_parts(b);
    ea.cmp(&eb)
        .then_with(|| dpkg_verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| dpkg_verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

fn dpkg_parts(version: &str) -> (u64, &str, &str) {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) && !epoch.is_empty() => {
            (epoch.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's `verrevcmp`: alternating non-digit parts (letters sort before other characters,
/// `~` before everything, even the end) and numeric parts.
fn dpkg_verrevcmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    fn order(c: Option<&u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(b'~') => -1,
            Some(c) => i32::from(*c) + 256,
        }
    }
    let digit = |s: &[u8]| s.first().is_some_and(u8::is_ascii_digit);
    while !a.is_empty() || !b.is_empty() {
        while (!a.is_empty() && !digit(a)) || (!b.is_empty() && !digit(b)) {
            let (ac, bc) = (order(a.first()), order(b.first()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let ordering = numeric_cmp(&a[..na], &b[..nb]);
        if ordering != Ordering::Equal {
            return ordering;
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

/// Compares digit strings as numbers of any length.
fn numeric_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `[epoch:]version[-release]`: epoch, then version, then release, each with `rpmvercmp`.
pub fn rpm_compare(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| {
        let v = v.trim();
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
                (e.parse::<u64>().unwrap_or(u64::MAX), rest)
            }
            _ => (0, v),
        };
        let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (epoch, version.to_owned(), release.to_owned())
    };
    let (ea, va, ra) = parts(a);
    let (eb, vb, rb) = parts(b);
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(va.as_bytes(), vb.as_bytes()))
        .then_with(|| {
            // A missing release matches any release, as rpm treats an unversioned request.
            if ra.is_empty() || rb.is_empty() {
                Ordering::Equal
            } else {
                rpmvercmp(ra.as_bytes(), rb.as_bytes())
            }
        })
}

/// RPM's `rpmvercmp`: alphanumeric segments, numbers newer than letters, `~` older than
/// anything (pre-releases), `^` newer than the end (post-release snapshots).
fn rpmvercmp(mut one: &[u8], mut two: &[u8]) -> Ordering {
    if one == two {
        return Ordering::Equal;
    }
    let separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        while one.first().is_some_and(separator) {
            one = &one[1..];
        }
        while two.first().is_some_and(separator) {
            two = &two[1..];
        }
        match (one.first(), two.first()) {
            (Some(b'~'), Some(b'~')) => {
                one = &one[1..];
                two = &two[1..];
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (Some(b'^'), Some(b'^')) => {
                one = &one[1..];
                two = &two[1..];
                continue;
            }
            (None, Some(b'^')) => return Ordering::Less,
            (Some(b'^'), None) => return Ordering::Greater,
            (Some(b'^'), _) => return Ordering::Less,
            (_, Some(b'^')) => return Ordering::Greater,
            (None, _) | (_, None) => break,
            _ => {}
        }
        let numeric = one[0].is_ascii_digit();
        let take = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (n1, n2) = (take(one), take(two));
        if n2 == 0 {
            // Segments of different kinds: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let ordering = if numeric {
            numeric_cmp(&one[..n1], &two[..n2])
        } else {
            one[..n1].cmp(&two[..n2])
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
        one = &one[n1..];
        two = &two[n2..];
    }
    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn dpkg_ordering_table() {
        let table = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("1.0", "1.0-1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1-1", "1.0~rc2-1", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0a", "1.0", Greater),
            ("1.0+b1", "1.0", Greater),
            ("1.0+b1", "1.0a", Greater),
            ("1:0.1", "2.0", Greater),
            ("2.0", "10.0", Less),
            ("1.001", "1.1", Equal),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", Greater),
            ("1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3", Less),
            ("1.2.3-4", "1.2.3-10", Less),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                Less,
            ),
        ];
        for (a, b, want) in table {
            assert_eq!(dpkg_compare(a, b), want, "{a} vs {b}");
            assert_eq!(dpkg_compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// Where dpkg is installed, it agrees on pairs of this machine's real package versions.
    #[test]
    fn dpkg_agrees_with_dpkg_compare_versions() {
        let Ok(out) = std::process::Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}\n"])
            .output()
        else {
            return;
        };
        let versions: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for pair in versions.windows(2).step_by(7).take(40) {
            let (a, b) = (&pair[0], &pair[1]);
            let dpkg_says = |op: &str| {
                std::process::Command::new("dpkg")
                    .args(["--compare-versions", a, op, b])
                    .status()
                    .unwrap()
                    .success()
            };
            let want = if dpkg_says("lt") {
                Less
            } else if dpkg_says("gt") {
                Greater
            } else {
                Equal
            };
            assert_eq!(dpkg_compare(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn rpm_ordering_table() {
        let table = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("1.0a", "1.0.1", Less),
            ("5.5p1", "5.5p10", Less),
            ("10b2", "10a1", Greater),
            ("1.01", "1.1", Equal),
            ("1:1.0-1", "2.0-1", Greater),
            ("3.0.7-25.el9_3", "3.0.7-24.el9", Greater),
            ("3.0.7-25.el9_3", "3.0.7", Equal),
            ("1.0-1", "1.0-1.1", Less),
        ];
        for (a, b, want) in table {
            assert_eq!(rpm_compare(a, b), want, "{a} vs {b}");
            assert_eq!(rpm_compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
