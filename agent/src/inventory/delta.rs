//! Inventory deltas: what changed in the package, update and program lists since the last
//! complete inventory sent, so that a quiet host's six-hourly report is a few entries, not
//! thousands.
//!
//! Each complete set of lists has a digest (SHA-256 over the sorted entries). A delta names the
//! digest it applies to and the digest after it; the collector applies it only onto lists with
//! that base digest, and otherwise asks for a complete inventory.

use std::collections::BTreeMap;

use sha2::Digest;

use super::{Hotfix, Inventory, Package, Program};

/// Above this share of changed entries (1/N of all), a complete inventory is sent instead.
const DELTA_SHARE: usize = 10;

/// The lists of the last complete inventory sent, keyed as the collector keys them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lists {
    packages: BTreeMap<(String, String), Package>,
    hotfixes: BTreeMap<String, Hotfix>,
    programs: BTreeMap<(String, String, String), Program>,
}

/// What changed between two sets of lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Packages, updates and programs that appeared or changed.
    pub packages: Vec<Package>,
    pub hotfixes: Vec<Hotfix>,
    pub programs: Vec<Program>,
    /// What left: packages (as they were), updates, programs.
    pub removed_packages: Vec<Package>,
    pub removed_hotfixes: Vec<Hotfix>,
    pub removed_programs: Vec<Program>,
}

impl Delta {
    fn len(&self) -> usize {
        self.packages.len()
            + self.hotfixes.len()
            + self.programs.len()
            + self.removed_packages.len()
            + self.removed_hotfixes.len()
            + self.removed_programs.len()
    }
}

impl Lists {
    /// The lists of `inventory`; `None` when one of them is partial, since a partial list is
    /// no base for a delta.
    pub fn of(inventory: &Inventory) -> Option<Lists> {
        let partial = |source: &str| inventory.partial.iter().any(|p| p.source == source);
        if partial("packages") || partial("hotfixes") || partial("programs") {
            return None;
        }
        Some(Lists {
            packages: inventory
                .packages
                .iter()
                .map(|p| ((p.name.clone(), p.arch.clone()), p.clone()))
                .collect(),
            hotfixes: inventory
                .hotfixes
                .iter()
                .map(|h| (h.kb.clone(), h.clone()))
                .collect(),
            programs: inventory
                .programs
                .iter()
                .map(|p| {
                    (
                        (p.name.clone(), p.version.clone(), p.publisher.clone()),
                        p.clone(),
                    )
                })
                .collect(),
        })
    }

    /// SHA-256 over every entry, in key order, fields separated so that no two lists collide.
    pub fn digest(&self) -> [u8; 32] {
        let mut hash = sha2::Sha256::new();
        let mut field = |tag: u8, parts: &[&str]| {
            hash.update([tag]);
            for part in parts {
                hash.update((part.len() as u64).to_le_bytes());
                hash.update(part.as_bytes());
            }
        };
        for p in self.packages.values() {
            let source = p.source.as_deref().unwrap_or("");
            field(b'P', &[&p.name, &p.arch, &p.version, source, p.manager]);
        }
        for h in self.hotfixes.values() {
            field(
                b'H',
                &[&h.kb, &h.title, h.installed_on.as_deref().unwrap_or("")],
            );
        }
        for p in self.programs.values() {
            field(b'S', &[&p.name, &p.version, &p.publisher]);
        }
        hash.finalize().into()
    }

    /// What changed from `self` to `now`; `None` when so much changed that a complete
    /// inventory is the better message.
    pub fn delta_to(&self, now: &Lists) -> Option<Delta> {
        let mut delta = Delta::default();
        changes(
            &self.packages,
            &now.packages,
            &mut delta.packages,
            &mut delta.removed_packages,
        );
        changes(
            &self.hotfixes,
            &now.hotfixes,
            &mut delta.hotfixes,
            &mut delta.removed_hotfixes,
        );
        changes(
            &self.programs,
            &now.programs,
            &mut delta.programs,
            &mut delta.removed_programs,
        );
        let total = now.packages.len() + now.hotfixes.len() + now.programs.len();
        (delta.len() * DELTA_SHARE <= total).then_some(delta)
    }
}

/// Entries of `now` that are new or differ from `before` into `changed`; entries of `before`
/// whose key is gone into `removed`.
fn changes<K: Ord, V: Clone + PartialEq>(
    before: &BTreeMap<K, V>,
    now: &BTreeMap<K, V>,
    changed: &mut Vec<V>,
    removed: &mut Vec<V>,
) {
    changed.extend(
        now.iter()
            .filter(|(key, value)| before.get(key) != Some(value))
            .map(|(_, value)| value.clone()),
    );
    removed.extend(
        before
            .iter()
            .filter(|(key, _)| !now.contains_key(key))
            .map(|(_, value)| value.clone()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Partial;

    fn package(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: None,
            manager: "dpkg",
        }
    }

    fn inventory(packages: Vec<Package>) -> Inventory {
        Inventory {
            packages,
            ..Inventory::default()
        }
    }

    fn many(n: usize) -> Vec<Package> {
        (0..n)
            .map(|i| package(&format!("p{i:03}"), "1.0-1"))
            .collect()
    }

    #[test]
    fn a_small_change_is_a_delta_with_what_came_changed_and_left() {
        let before = Lists::of(&inventory(many(100))).unwrap();
        let mut now = many(100);
        now[3].version = "1.0-2".into();
        now.remove(7);
        now.push(package("new", "0.1"));
        let after = Lists::of(&inventory(now)).unwrap();
        let delta = before.delta_to(&after).unwrap();
        let names = |v: &[Package]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&delta.packages), vec!["new", "p003"]);
        assert_eq!(names(&delta.removed_packages), vec!["p007"]);
        assert_ne!(before.digest(), after.digest());
        assert!(before.delta_to(&before).unwrap().len() == 0);
    }

    #[test]
    fn a_large_change_or_a_partial_list_is_no_delta() {
        let before = Lists::of(&inventory(many(100))).unwrap();
        let mut now = many(100);
        for p in now.iter_mut().take(20) {
            p.version = "2.0-1".into();
        }
        assert!(
            before
                .delta_to(&Lists::of(&inventory(now)).unwrap())
                .is_none()
        );
        let mut partial = inventory(many(100));
        partial
            .partial
            .push(Partial::new("hotfixes", "WMI timed out"));
        assert!(Lists::of(&partial).is_none());
        // A partial OS part does not matter: the lists are whole.
        let mut os_gap = inventory(many(100));
        os_gap.partial.push(Partial::new("os", "no UBR"));
        assert_eq!(Lists::of(&os_gap).unwrap().digest(), before.digest());
    }

    #[test]
    fn the_digest_depends_on_content_not_order() {
        let mut reversed = many(10);
        reversed.reverse();
        assert_eq!(
            Lists::of(&inventory(many(10))).unwrap().digest(),
            Lists::of(&inventory(reversed)).unwrap().digest()
        );
        let mut other = many(10);
        other[0].source = Some("src".into());
        assert_ne!(
            Lists::of(&inventory(many(10))).unwrap().digest(),
            Lists::of(&inventory(other)).unwrap().digest()
        );
    }
}
