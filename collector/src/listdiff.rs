//! What a host's report of a list (packages, Windows updates, programs) changes in the list
//! stored for it: the one comparison the store applies to all three, tested without a
//! database (the store persists what this decides).
//!
//! A report is complete, or a delta: the items that appeared or changed, and the keys that
//! left (only those leave).

use std::collections::HashMap;
use std::hash::Hash;

/// A report compared with the stored list.
#[derive(Debug, PartialEq)]
pub struct ListDiff<'a, T, K, V> {
    /// Reported items that are new or whose value changed, with the stored value they replace.
    pub upserts: Vec<(&'a T, Option<V>)>,
    /// Reported items stored with the same value, with that stored value.
    pub unchanged: Vec<(&'a T, V)>,
    /// Stored items that leave, with their stored value.
    pub gone: Vec<(K, V)>,
}

/// Compares `reported` with `stored` (key → stored value). `key` gives a reported item's key;
/// `same` says whether a stored value still describes the reported item. With `removed` (a
/// delta) only those stored keys leave; otherwise every stored key not reported leaves.
pub fn diff<'a, T, K, V>(
    mut stored: HashMap<K, V>,
    reported: &'a [T],
    key: impl Fn(&T) -> K,
    same: impl Fn(&V, &T) -> bool,
    removed: Option<&[K]>,
) -> ListDiff<'a, T, K, V>
where
    K: Eq + Hash,
{
    let mut upserts = Vec::new();
    let mut unchanged = Vec::new();
    for item in reported {
        match stored.remove(&key(item)) {
            Some(value) if same(&value, item) => unchanged.push((item, value)),
            old => upserts.push((item, old)),
        }
    }
    if let Some(removed) = removed {
        stored.retain(|key, _| removed.contains(key));
    }
    ListDiff {
        upserts,
        unchanged,
        gone: stored.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Package {
        name: &'static str,
        version: &'static str,
    }

    fn stored(items: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        items.iter().copied().collect()
    }

    fn package_diff<'a>(
        before: &[(&'static str, &'static str)],
        reported: &'a [Package],
        removed: Option<&[&'static str]>,
    ) -> ListDiff<'a, Package, &'static str, &'static str> {
        let mut diff = diff(
            stored(before),
            reported,
            |p| p.name,
            |version, p| *version == p.version,
            removed,
        );
        diff.gone.sort();
        diff
    }

    #[test]
    fn a_complete_report_tells_new_changed_unchanged_and_gone() {
        let reported = [
            Package {
                name: "bash",
                version: "5.2",
            },
            Package {
                name: "curl",
                version: "8.5",
            },
            Package {
                name: "zsh",
                version: "5.9",
            },
        ];
        let diff = package_diff(
            &[("bash", "5.2"), ("curl", "7.88"), ("telnet", "0.17")],
            &reported,
            None,
        );
        assert_eq!(
            diff.upserts,
            [(&reported[1], Some("7.88")), (&reported[2], None)]
        );
        assert_eq!(diff.unchanged, [(&reported[0], "5.2")]);
        assert_eq!(diff.gone, [("telnet", "0.17")]);
    }

    #[test]
    fn a_delta_removes_only_what_it_names_and_only_if_stored() {
        let reported = [Package {
            name: "curl",
            version: "8.5",
        }];
        let diff = package_diff(
            &[("bash", "5.2"), ("curl", "7.88"), ("telnet", "0.17")],
            &reported,
            Some(&["telnet", "never-installed"]),
        );
        assert_eq!(diff.upserts, [(&reported[0], Some("7.88"))]);
        assert!(diff.unchanged.is_empty());
        // bash was not reported, but a delta leaves it alone.
        assert_eq!(diff.gone, [("telnet", "0.17")]);
    }

    #[test]
    fn an_empty_complete_report_empties_the_list() {
        let diff = package_diff(&[("bash", "5.2")], &[], None);
        assert!(diff.upserts.is_empty() && diff.unchanged.is_empty());
        assert_eq!(diff.gone, [("bash", "5.2")]);
    }
}
