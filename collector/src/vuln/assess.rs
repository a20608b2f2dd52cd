//! Which CVEs a host still lacks the fix for.
//!
//! [`Catalogue`] indexes every imported month by product name: per product, each CVE with its
//! severity, CVSS base score, exploit status and the fixes (KB and `FixedBuild`) for it.
//! [`assess`] names the host's Windows and Microsoft programs ([`super::product`]) and, per CVE
//! of those products:
//!
//! - where a fix gives a build, the CVE is fixed when the host's build (or the program's
//!   version) is at or above it: any later cumulative update counts, which is what KB-by-KB
//!   checks get wrong;
//! - where no fix gives one, it is fixed when the host has the fix's KB or a KB that replaces
//!   it (`Supercedence`, followed through every imported month); the result says so
//!   (`basis: kb`);
//! - where neither is possible, the product is "not assessed", with the reason.
//!
//! A host whose Windows has no product in the imported documents is "not assessed", never
//! "up to date".

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::cvrf::{Advisory, Severity};
use super::product::{HostOs, ProgramProduct, os_product, program_product};

/// A dotted numeric build or version (`10.0.19045.3930`, `120.0.2210.121`, `15.2.1544.004`),
/// compared part by part as numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Build(Vec<u64>);

impl Build {
    /// `None` unless every part is a number and there are two to six of them.
    pub fn parse(text: &str) -> Option<Build> {
        let parts: Option<Vec<u64>> = text.trim().split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| (2..=6).contains(&p.len())).map(Build)
    }

    /// The third part: Windows' build number (19045 in 10.0.19045.3930).
    pub fn number(&self) -> u32 {
        self.0
            .get(2)
            .copied()
            .unwrap_or(0)
            .try_into()
            .unwrap_or(u32::MAX)
    }

    /// Whether `other` is a build of the same line: the same major.minor.build
    /// (10.0.19045.x). Microsoft's documents give, beside an OS's cumulative update, fixed
    /// builds of other things (Server 2012 R2's January lists "1.001" for an IE update): those
    /// say nothing of the OS's build.
    pub fn same_line(&self, other: &Build) -> bool {
        self.0.len() >= 3 && other.0.len() >= 3 && self.0[..3] == other.0[..3]
    }

    /// `self` is at least `fixed`; missing trailing parts count as 0.
    pub fn reaches(&self, fixed: &Build) -> bool {
        let len = self.0.len().max(fixed.0.len());
        let part = |b: &Build, i: usize| b.0.get(i).copied().unwrap_or(0);
        for i in 0..len {
            match part(self, i).cmp(&part(fixed, i)) {
                Ordering::Greater => return true,
                Ordering::Less => return false,
                Ordering::Equal => {}
            }
        }
        true
    }
}

/// `KB5034122`, `kb5034122` and `5034122` are the same update.
pub fn kb_number(text: &str) -> Option<&str> {
    let t = text.trim();
    let digits = t
        .strip_prefix("KB")
        .or_else(|| t.strip_prefix("kb"))
        .unwrap_or(t);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

fn product_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// One fix of a CVE for a product.
#[derive(Debug, Clone, PartialEq)]
struct Remedy {
    /// Digits only when it is a KB; empty otherwise.
    kb: String,
    /// As a result names it: `KB5034122`, or the document's name for a fix without a KB
    /// ("Release Notes").
    label: Arc<str>,
    fixed_build: Arc<str>,
    build: Option<Build>,
}

/// A CVE as it concerns one product, with its fixes: what a [`MissingFix`] points to.
#[derive(Debug, Clone, PartialEq)]
pub struct CveFix {
    /// The month that lists it (`2024-Jan`).
    pub advisory: Arc<str>,
    pub cve: Arc<str>,
    pub title: Arc<str>,
    pub product: Arc<str>,
    pub severity: Option<Severity>,
    pub cvss: Option<f32>,
    pub exploited: bool,
    remedies: Vec<Remedy>,
}

#[derive(Debug, Clone, Default)]
struct ProductEntry {
    name: Arc<str>,
    cves: Vec<Arc<CveFix>>,
}

/// A month as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryInfo {
    pub id: String,
    pub revision: String,
    pub current_release: String,
}

/// Every imported month, indexed for assessing hosts.
#[derive(Debug, Default)]
pub struct Catalogue {
    advisories: Vec<AdvisoryInfo>,
    products: HashMap<String, ProductEntry>,
    /// KB → the KBs that replace it.
    superseded_by: HashMap<String, Vec<String>>,
}

impl Catalogue {
    /// Indexes `advisories`; where two months speak of the same CVE and product, the later
    /// month's fixes count (months ordered by their first release: a revision of January
    /// published after February is still January).
    pub fn new(mut advisories: Vec<Advisory>) -> Catalogue {
        advisories.sort_by(|a, b| {
            let first = |d: &Advisory| {
                if d.initial_release.is_empty() {
                    d.current_release.clone()
                } else {
                    d.initial_release.clone()
                }
            };
            first(a).cmp(&first(b))
        });
        let mut catalogue = Catalogue::default();
        let mut at: HashMap<(String, String), (usize, Arc<str>)> = HashMap::new();
        for advisory in &advisories {
            catalogue.advisories.push(AdvisoryInfo {
                id: advisory.id.clone(),
                revision: advisory.revision.clone(),
                current_release: advisory.current_release.clone(),
            });
            let month: Arc<str> = advisory.id.as_str().into();
            for v in &advisory.vulnerabilities {
                let title: Arc<str> = v.title.as_str().into();
                for fix in &v.fixes {
                    let kb = kb_number(&fix.kb).unwrap_or("").to_owned();
                    if !kb.is_empty() {
                        for old in &fix.supersedes {
                            if let Some(old) = kb_number(old) {
                                let by = catalogue.superseded_by.entry(old.to_owned()).or_default();
                                if !by.contains(&kb) {
                                    by.push(kb.clone());
                                }
                            }
                        }
                    }
                    for pid in &fix.product_ids {
                        let Some(name) = advisory.products.get(pid) else {
                            continue;
                        };
                        let key = product_key(name);
                        let entry = catalogue.products.entry(key.clone()).or_default();
                        if &*entry.name != name.as_str() {
                            entry.name = name.as_str().into();
                        }
                        let remedy = Remedy {
                            kb: kb.clone(),
                            label: if kb.is_empty() {
                                fix.kb.as_str().into()
                            } else {
                                format!("KB{kb}").into()
                            },
                            fixed_build: fix.fixed_build.as_str().into(),
                            build: Build::parse(&fix.fixed_build),
                        };
                        let slot = (key, v.cve.clone());
                        match at.get(&slot) {
                            Some((index, from)) if Arc::ptr_eq(from, &month) => {
                                let cve = Arc::make_mut(&mut entry.cves[*index]);
                                if !cve.remedies.iter().any(|r| {
                                    r.kb == remedy.kb && r.fixed_build == remedy.fixed_build
                                }) {
                                    cve.remedies.push(remedy);
                                }
                            }
                            found => {
                                let cve = Arc::new(CveFix {
                                    advisory: month.clone(),
                                    cve: v.cve.as_str().into(),
                                    title: title.clone(),
                                    product: entry.name.clone(),
                                    severity: v.severity.get(pid).copied(),
                                    cvss: v.cvss.get(pid).copied(),
                                    exploited: v.exploited,
                                    remedies: vec![remedy],
                                });
                                let index = match found {
                                    Some((index, _)) => {
                                        let index = *index;
                                        entry.cves[index] = cve;
                                        index
                                    }
                                    None => {
                                        entry.cves.push(cve);
                                        entry.cves.len() - 1
                                    }
                                };
                                at.insert(slot, (index, month.clone()));
                            }
                        }
                    }
                }
            }
        }
        catalogue
    }

    pub fn advisories(&self) -> &[AdvisoryInfo] {
        &self.advisories
    }

    fn product(&self, name: &str) -> Option<&ProductEntry> {
        self.products.get(&product_key(name))
    }

    /// The products whose name starts with `prefix`.
    fn products_starting(&self, prefix: &str) -> Vec<&ProductEntry> {
        let prefix = product_key(prefix);
        self.products
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .map(|(_, entry)| entry)
            .collect()
    }

    /// Whether a host with updates `installed` (KB digits) has `kb` or one that replaces it.
    fn has_kb(&self, kb: &str, installed: &HashSet<&str>) -> bool {
        self.replaced_by_any(kb, |k| installed.contains(k))
    }

    /// Whether `later` replaces `kb`, directly or through others.
    fn supersedes(&self, later: &str, kb: &str) -> bool {
        later != kb && self.replaced_by_any(kb, |k| k == later)
    }

    /// Whether `kb`, or any KB that replaces it (transitively), is one `wanted` accepts.
    fn replaced_by_any(&self, kb: &str, wanted: impl Fn(&str) -> bool) -> bool {
        // Replacement chains are a KB a month: a few dozen at most, so a list beats a set.
        let mut seen: Vec<&str> = Vec::new();
        let mut todo = vec![kb];
        while let Some(kb) = todo.pop() {
            if wanted(kb) {
                return true;
            }
            if !seen.contains(&kb) {
                seen.push(kb);
                if let Some(by) = self.superseded_by.get(kb) {
                    todo.extend(by.iter().map(String::as_str));
                }
            }
        }
        false
    }
}

/// What the store knows of a host's software.
#[derive(Debug, Clone, Default)]
pub struct HostSoftware {
    pub host_id: String,
    pub hostname: String,
    /// `None`: no inventory yet.
    pub os: Option<HostOs>,
    /// Installed updates, as reported (`KB5034441`).
    pub hotfixes: Vec<String>,
    /// Installed programs: name, version, publisher.
    pub programs: Vec<(String, String, String)>,
}

/// How a missing fix was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The host's build (or the program's version) is below the fixed build.
    Build,
    /// Microsoft gives no fixed build: neither the KB nor one replacing it is installed.
    Kb,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Build => "build",
            Basis::Kb => "kb",
        }
    }
}

/// A CVE whose fix the host lacks: the catalogue's [`CveFix`] (its fields read through this),
/// which of its fixes to install, and what the host has. Small, and sharing the catalogue's
/// text: a fleet's results hold millions of these.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingFix {
    fix: Arc<CveFix>,
    remedy: usize,
    /// The host's build or the program's version.
    pub installed: Arc<str>,
    pub basis: Basis,
}

impl std::ops::Deref for MissingFix {
    type Target = CveFix;

    fn deref(&self) -> &CveFix {
        &self.fix
    }
}

impl MissingFix {
    /// `KB5034122`, or the fix's name where it is none ("Release Notes").
    pub fn kb(&self) -> &str {
        &self.fix.remedies[self.remedy].label
    }

    pub fn fixed_build(&self) -> &str {
        &self.fix.remedies[self.remedy].fixed_build
    }
}

/// Software that could not be checked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAssessed {
    pub product: String,
    pub version: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VulnState {
    /// Some fix is missing.
    Missing,
    /// The host's Windows could not be checked (no inventory, unknown product or build).
    NotAssessed,
    /// Everything checked is fixed.
    UpToDate,
    /// Not Windows and no Microsoft program: nothing the documents speak of.
    NotApplicable,
}

impl VulnState {
    pub fn as_str(self) -> &'static str {
        match self {
            VulnState::Missing => "missing",
            VulnState::NotAssessed => "not_assessed",
            VulnState::UpToDate => "up_to_date",
            VulnState::NotApplicable => "not_applicable",
        }
    }
}

/// One host's result.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAssessment {
    pub host_id: String,
    pub hostname: String,
    /// Microsoft's name for the host's Windows, or what the host calls its OS.
    pub os_product: String,
    pub build: String,
    /// Whether the OS itself was checked.
    pub os_assessed: bool,
    /// The host runs Windows, or has not said what it runs yet.
    pub windows: bool,
    pub missing: Vec<MissingFix>,
    pub not_assessed: Vec<NotAssessed>,
}

/// Which missing fixes a view counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VulnFilter {
    pub min_severity: Option<Severity>,
    pub min_cvss: Option<f32>,
}

impl VulnFilter {
    pub fn accepts(&self, fix: &MissingFix) -> bool {
        let severity_ok = match self.min_severity {
            None => true,
            Some(min) => fix.severity.is_some_and(|s| s <= min),
        };
        let cvss_ok = match self.min_cvss {
            None => true,
            Some(min) => fix.cvss.is_some_and(|c| c >= min),
        };
        severity_ok && cvss_ok
    }
}

/// Counts of one host's missing fixes under a filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MissingCounts {
    pub cves: u64,
    pub critical: u64,
    pub important: u64,
    pub moderate: u64,
    pub low: u64,
    pub exploited: u64,
    pub max_cvss: Option<f32>,
}

impl HostAssessment {
    pub fn state(&self) -> VulnState {
        if !self.missing.is_empty() {
            VulnState::Missing
        } else if !self.os_assessed && self.windows {
            VulnState::NotAssessed
        } else if self.os_assessed {
            VulnState::UpToDate
        } else if !self.not_assessed.is_empty() {
            VulnState::NotAssessed
        } else {
            VulnState::NotApplicable
        }
    }

    /// The missing fixes `filter` accepts.
    pub fn missing_by<'a>(
        &'a self,
        filter: &'a VulnFilter,
    ) -> impl Iterator<Item = &'a MissingFix> {
        self.missing.iter().filter(move |m| filter.accepts(m))
    }

    /// Distinct CVEs (a CVE missing for two products counts once, at its worst).
    pub fn counts(&self, filter: &VulnFilter) -> MissingCounts {
        let mut worst: BTreeMap<&str, (Option<Severity>, bool)> = BTreeMap::new();
        let mut counts = MissingCounts::default();
        for m in self.missing_by(filter) {
            let slot = worst.entry(&m.cve).or_insert((m.severity, m.exploited));
            if let (Some(s), Some(w)) = (m.severity, slot.0) {
                slot.0 = Some(s.min(w));
            } else if slot.0.is_none() {
                slot.0 = m.severity;
            }
            slot.1 |= m.exploited;
            if let Some(c) = m.cvss {
                counts.max_cvss = Some(counts.max_cvss.map_or(c, |max: f32| max.max(c)));
            }
        }
        for (severity, exploited) in worst.values() {
            counts.cves += 1;
            counts.exploited += u64::from(*exploited);
            match severity {
                Some(Severity::Critical) => counts.critical += 1,
                Some(Severity::Important) => counts.important += 1,
                Some(Severity::Moderate) => counts.moderate += 1,
                Some(Severity::Low) => counts.low += 1,
                None => {}
            }
        }
        counts
    }
}

/// Per missing fix (in `assessment.missing` order, under `filter`), the update that closes it
/// on this host: its own KB, unless another needed KB replaces it (a later cumulative update
/// carries the earlier one's fixes); for fixes without a KB (Edge, .NET, PowerShell), the
/// product at the highest fixed version any of its missing fixes asks for.
pub fn updates_to_install(
    catalogue: &Catalogue,
    assessment: &HostAssessment,
    filter: &VulnFilter,
) -> Vec<(usize, Arc<str>)> {
    // Every KB the host needs, whatever the filter: a fix the filter keeps is closed by a later
    // cumulative update even when the filter leaves that update's own CVEs out.
    let needed: BTreeSet<&str> = assessment
        .missing
        .iter()
        .filter_map(|m| kb_number(m.kb()))
        .collect();
    // Per needed KB, the needed KB that replaces it last (itself when none does).
    let latest: HashMap<&str, Arc<str>> = needed
        .iter()
        .map(|kb| {
            let last = needed
                .iter()
                .filter(|later| catalogue.supersedes(later, kb))
                .find(|later| {
                    !needed
                        .iter()
                        .any(|even_later| catalogue.supersedes(even_later, later))
                })
                .unwrap_or(kb);
            (*kb, format!("KB{last}").into())
        })
        .collect();
    let mut highest: BTreeMap<&str, &MissingFix> = BTreeMap::new();
    for m in assessment.missing_by(filter) {
        if kb_number(m.kb()).is_none() {
            let slot = highest.entry(&m.product).or_insert(m);
            if Build::parse(m.fixed_build()) > Build::parse(slot.fixed_build()) {
                *slot = m;
            }
        }
    }
    let beyond: HashMap<&str, Arc<str>> = highest
        .into_iter()
        .map(|(product, top)| {
            let update = if top.fixed_build().is_empty() {
                format!("{product} ({})", top.kb())
            } else {
                format!("{product} {}", top.fixed_build())
            };
            (product, update.into())
        })
        .collect();
    assessment
        .missing
        .iter()
        .enumerate()
        .filter(|(_, m)| filter.accepts(m))
        .map(|(i, m)| {
            let update = match kb_number(m.kb()) {
                Some(kb) => latest[kb].clone(),
                None => beyond[&*m.product].clone(),
            };
            (i, update)
        })
        .collect()
}

/// The distinct updates of [`updates_to_install`], in order.
pub fn kbs_to_install(
    catalogue: &Catalogue,
    assessment: &HostAssessment,
    filter: &VulnFilter,
) -> Vec<String> {
    let mut kbs: Vec<String> = updates_to_install(catalogue, assessment, filter)
        .into_iter()
        .map(|(_, kb)| kb.to_string())
        .collect();
    kbs.sort();
    kbs.dedup();
    kbs
}

/// How a product's installed version is compared with fixed builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Versioning {
    /// Windows: only builds of the same major.minor.build line compare (a later cumulative
    /// update stays on the line; a fixed build of another line is another thing's version).
    OsBuild,
    /// A program: any later version is a fix (Edge 121 fixes what 120.0.2210.121 fixed).
    Program,
}

/// Whether `host` lacks update `kb`: the imported documents name it as a fix for the host's
/// Windows, and the host has neither it, nor one that replaces it, nor a build of the same
/// line at or past the build it brings. A KB the documents name only for other products (or
/// for a Windows this host cannot be shown to run) is not this host's to miss. `None`: no
/// imported document names the KB, so only the host's update list can tell.
pub fn lacks_kb(catalogue: &Catalogue, host: &HostSoftware, kb: &str) -> Option<bool> {
    let kb = kb_number(kb)?;
    let named = catalogue
        .products
        .values()
        .any(|p| p.cves.iter().any(|c| c.remedies.iter().any(|r| r.kb == kb)));
    if !named {
        return None;
    }
    let Some(os) = host.os.as_ref().filter(|os| os.family == "windows") else {
        return Some(false);
    };
    let Some(entry) = os_product(os)
        .ok()
        .and_then(|name| catalogue.product(&name))
    else {
        return Some(false);
    };
    let remedies: Vec<&Remedy> = entry
        .cves
        .iter()
        .flat_map(|cve| cve.remedies.iter())
        .filter(|r| r.kb == kb)
        .collect();
    if remedies.is_empty() {
        return Some(false);
    }
    let installed: HashSet<&str> = host.hotfixes.iter().filter_map(|k| kb_number(k)).collect();
    if catalogue.has_kb(kb, &installed) {
        return Some(false);
    }
    let build = Build::parse(&os.build);
    let reached = remedies.iter().any(|r| {
        r.build
            .as_ref()
            .zip(build.as_ref())
            .is_some_and(|(fixed, have)| {
                fixed.0.len() <= have.0.len() && have.same_line(fixed) && have.reaches(fixed)
            })
    });
    Some(!reached)
}

/// Checks one product's CVEs against the installed `version` (or the host's updates).
fn check_product(
    catalogue: &Catalogue,
    entry: &ProductEntry,
    version: &str,
    versioning: Versioning,
    installed_kbs: &HashSet<&str>,
    missing: &mut Vec<MissingFix>,
    not_assessed: &mut Vec<NotAssessed>,
) {
    let installed = Build::parse(version);
    let installed_text: Arc<str> = version.into();
    let mut unassessable = 0usize;
    for cve in &entry.cves {
        // The lowest fixed build is the one to reach. A build is compared only with fixed
        // builds no more precise than itself: a host that reports 10.0.19045 (no revision)
        // says nothing about 10.0.19045.3930, and goes by its updates instead.
        let comparable = |r: &Remedy| {
            r.build
                .as_ref()
                .zip(installed.as_ref())
                .is_some_and(|(fixed, have)| {
                    fixed.0.len() <= have.0.len()
                        && (versioning == Versioning::Program || have.same_line(fixed))
                })
        };
        let by_build = cve
            .remedies
            .iter()
            .enumerate()
            .filter(|(_, r)| comparable(r))
            .min_by(|(_, a), (_, b)| a.build.cmp(&b.build))
            .map(|(i, _)| i);
        let (fixed, basis, remedy) = if let (Some(have), Some(lowest)) = (&installed, by_build) {
            let fixed = cve
                .remedies
                .iter()
                .any(|r| comparable(r) && r.build.as_ref().is_some_and(|b| have.reaches(b)));
            (fixed, Basis::Build, lowest)
        } else if let Some(first) = cve.remedies.iter().position(|r| !r.kb.is_empty()) {
            let fixed = cve
                .remedies
                .iter()
                .filter(|r| !r.kb.is_empty())
                .any(|r| catalogue.has_kb(&r.kb, installed_kbs));
            (fixed, Basis::Kb, first)
        } else {
            unassessable += 1;
            continue;
        };
        if !fixed {
            missing.push(MissingFix {
                fix: cve.clone(),
                remedy,
                installed: installed_text.clone(),
                basis,
            });
        }
    }
    if unassessable > 0 {
        not_assessed.push(NotAssessed {
            product: entry.name.to_string(),
            version: version.to_owned(),
            reason: format!(
                "{unassessable} CVE(s) whose fix gives neither a build this version compares with nor a KB"
            ),
        });
    }
}

/// Assesses one host against every imported month.
pub fn assess(catalogue: &Catalogue, host: &HostSoftware) -> HostAssessment {
    let mut result = HostAssessment {
        host_id: host.host_id.clone(),
        hostname: host.hostname.clone(),
        os_product: String::new(),
        build: String::new(),
        os_assessed: false,
        windows: host.os.as_ref().is_none_or(|os| os.family == "windows"),
        missing: Vec::new(),
        not_assessed: Vec::new(),
    };
    let installed_kbs: HashSet<&str> = host.hotfixes.iter().filter_map(|k| kb_number(k)).collect();
    match &host.os {
        None => {
            result.not_assessed.push(NotAssessed {
                product: "operating system".to_owned(),
                version: String::new(),
                reason: "no inventory from this host yet".to_owned(),
            });
        }
        Some(os) if os.family != "windows" => {
            result.os_product = os.product_name.clone();
            result.build = os.build.clone();
        }
        Some(os) => {
            result.build = os.build.clone();
            match os_product(os) {
                Err(reason) => {
                    result.os_product = if os.product_name.is_empty() {
                        "Windows".to_owned()
                    } else {
                        os.product_name.clone()
                    };
                    result.not_assessed.push(NotAssessed {
                        product: result.os_product.clone(),
                        version: os.build.clone(),
                        reason,
                    });
                }
                Ok(name) => match catalogue.product(&name) {
                    None => {
                        result.not_assessed.push(NotAssessed {
                            product: name.clone(),
                            version: os.build.clone(),
                            reason: "no imported document lists this product".to_owned(),
                        });
                        result.os_product = name;
                    }
                    Some(entry) => {
                        result.os_product = entry.name.to_string();
                        result.os_assessed = true;
                        check_product(
                            catalogue,
                            entry,
                            &os.build,
                            Versioning::OsBuild,
                            &installed_kbs,
                            &mut result.missing,
                            &mut result.not_assessed,
                        );
                    }
                },
            }
        }
    }
    for (name, version, publisher) in &host.programs {
        match program_product(name, version, publisher) {
            None => {}
            Some(ProgramProduct::NotAssessed { reason }) => result.not_assessed.push(NotAssessed {
                product: name.clone(),
                version: version.clone(),
                reason,
            }),
            Some(ProgramProduct::Versioned {
                product,
                prefix,
                version,
            }) => {
                let entry = if prefix {
                    match catalogue.products_starting(&product).as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    }
                } else {
                    catalogue.product(&product)
                };
                match entry {
                    Some(entry) => check_product(
                        catalogue,
                        entry,
                        &version,
                        Versioning::Program,
                        &installed_kbs,
                        &mut result.missing,
                        &mut result.not_assessed,
                    ),
                    // Microsoft programs no imported month speaks of have nothing to miss,
                    // except the families the documents always cover.
                    None if product.starts_with("Microsoft Edge")
                        || product.starts_with(".NET")
                        || product.starts_with("PowerShell")
                        || product.starts_with("ASP.NET") =>
                    {
                        result.not_assessed.push(NotAssessed {
                            product: name.clone(),
                            version,
                            reason: format!("no imported document lists {product}"),
                        })
                    }
                    None => {}
                }
            }
        }
    }
    // Most severe first, then by CVSS, then by CVE.
    let rank = |m: &MissingFix| m.severity.map_or(4, |s| s as u8);
    result.missing.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(b.cvss.partial_cmp(&a.cvss).unwrap_or(Ordering::Equal))
            .then_with(|| a.cve.cmp(&b.cve))
    });
    result
}

#[cfg(test)]
mod tests {
    use super::super::cvrf::{self, tests::shared};
    use super::*;

    fn windows(build: &str, kind: &str) -> HostSoftware {
        HostSoftware {
            host_id: format!("h-{build}"),
            hostname: String::new(),
            os: Some(HostOs {
                family: "windows".into(),
                product_name: if kind == "client" {
                    "Windows 10 Pro".into()
                } else {
                    "Windows Server Datacenter".into()
                },
                display_version: String::new(),
                build: build.into(),
                arch: "x86_64".into(),
                installation_type: kind.into(),
            }),
            hotfixes: Vec::new(),
            programs: Vec::new(),
        }
    }

    fn catalogue(months: &[&str]) -> Catalogue {
        Catalogue::new(
            months
                .iter()
                .map(|m| cvrf::parse(&shared(m)).unwrap())
                .collect(),
        )
    }

    /// Server 2012 R2's January documents give the IE cumulative update's fixed build as
    /// "1.001" beside the rollup's 6.3.9600.21763: "1.001" is no build of the OS, and a host
    /// at December's build must still miss January.
    #[test]
    fn a_fixed_build_of_another_line_is_never_a_fix_by_build() {
        let jan = catalogue(&["2024-Jan"]);
        let december = assess(&jan, &windows("6.3.9600.21715", "server"));
        assert_eq!(december.os_product, "Windows Server 2012 R2");
        let ie = december
            .missing
            .iter()
            .find(|m| &*m.cve == "CVE-2024-20652")
            .expect("CVE-2024-20652 is missing at December's build");
        assert_eq!(ie.basis, Basis::Build);
        assert!(
            ie.fixed_build().starts_with("6.3.9600."),
            "{}",
            ie.fixed_build()
        );
        let b = |t| Build::parse(t).unwrap();
        assert!(b("6.3.9600.21715").same_line(&b("6.3.9600.21763")));
        assert!(!b("6.3.9600.21715").same_line(&b("1.001")));
        assert!(!b("10.0.19045.3930").same_line(&b("10.0.22631.3007")));
    }

    /// A filter that leaves February's CVEs out still recommends February's cumulative
    /// update where it replaces January's (Server 2016: January's KB5034119 is replaced by
    /// February's KB5034767, whose own CVEs all score below 8.5).
    #[test]
    fn a_filtered_view_still_recommends_the_latest_cumulative_update() {
        let both = catalogue(&["2024-Jan", "2024-Feb"]);
        let host = assess(&both, &windows("10.0.14393.6529", "server"));
        assert_eq!(host.os_product, "Windows Server 2016");
        for filter in [
            VulnFilter::default(),
            VulnFilter {
                min_cvss: Some(8.5),
                ..VulnFilter::default()
            },
        ] {
            assert_eq!(
                kbs_to_install(&both, &host, &filter),
                ["KB5034767"],
                "{filter:?}"
            );
        }
    }

    #[test]
    fn a_kb_is_missing_only_where_it_is_the_hosts_update() {
        let both = catalogue(&["2024-Jan", "2024-Feb"]);
        let mut jan_patched = windows("10.0.19045.3930", "client");
        // Windows 10's February update: missing at January's build.
        assert_eq!(lacks_kb(&both, &jan_patched, "KB5034763"), Some(true));
        // Not at February's build, listed or not.
        let feb = windows("10.0.19045.4046", "client");
        assert_eq!(lacks_kb(&both, &feb, "KB5034763"), Some(false));
        // Not where it or a later one is installed.
        jan_patched.hotfixes = vec!["KB5034763".into()];
        assert_eq!(lacks_kb(&both, &jan_patched, "KB5034763"), Some(false));
        // January's is replaced by February's.
        let mut feb_kb = windows("10.0.19045.3803", "client");
        feb_kb.hotfixes = vec!["KB5034763".into()];
        assert_eq!(lacks_kb(&both, &feb_kb, "KB5034122"), Some(false));
        // Another Windows' update is not this host's to miss.
        assert_eq!(
            lacks_kb(&both, &windows("10.0.17763.5329", "server"), "KB5034763"),
            Some(false)
        );
        // A KB no document names: only the update list can tell.
        assert_eq!(lacks_kb(&both, &feb, "KB1234567"), None);
    }

    #[test]
    fn builds_compare_as_numbers() {
        let b = |t| Build::parse(t).unwrap();
        assert!(b("10.0.19045.3930").reaches(&b("10.0.19045.3930")));
        assert!(b("10.0.19045.10000").reaches(&b("10.0.19045.3930")));
        assert!(!b("10.0.19045.3803").reaches(&b("10.0.19045.3930")));
        assert!(b("121.0.2277.83").reaches(&b("120.0.2210.144")));
        assert!(!b("7.4.0.0").reaches(&b("7.4.1")));
        assert!(b("7.4.1.0").reaches(&b("7.4.1")));
        assert_eq!(Build::parse("https://aka.ms/OfficeSecurityReleases"), None);
        assert_eq!(Build::parse("10"), None);
        assert_eq!(kb_number("KB5034122"), Some("5034122"));
        assert_eq!(kb_number("Release Notes"), None);
    }

    #[test]
    fn a_build_below_the_fixed_build_misses_the_month() {
        let jan = catalogue(&["2024-Jan"]);
        let before = assess(&jan, &windows("10.0.19045.3803", "client"));
        assert_eq!(
            before.os_product,
            "Windows 10 Version 22H2 for x64-based Systems"
        );
        assert_eq!(before.state(), VulnState::Missing);
        assert!(
            before
                .missing
                .iter()
                .all(|m| m.fixed_build() == "10.0.19045.3930" && m.basis == Basis::Build)
        );
        assert_eq!(
            kbs_to_install(&jan, &before, &VulnFilter::default()),
            ["KB5034122"]
        );
        let at = assess(&jan, &windows("10.0.19045.3930", "client"));
        assert_eq!(at.state(), VulnState::UpToDate);
        // A later cumulative update, whatever its KB, counts as the fix.
        let after = assess(&jan, &windows("10.0.19045.4046", "client"));
        assert_eq!(after.state(), VulnState::UpToDate);
    }

    #[test]
    fn a_later_month_replaces_the_kb_to_install() {
        let both = catalogue(&["2024-Jan", "2024-Feb"]);
        let old = assess(&both, &windows("10.0.19045.3803", "client"));
        // January's KB5034122 is replaced by February's cumulative update.
        let kbs = kbs_to_install(&both, &old, &VulnFilter::default());
        assert_eq!(
            kbs,
            ["KB5034763"],
            "{:?}",
            old.missing.iter().map(|m| m.kb()).collect::<Vec<_>>()
        );
        let jan_patched = assess(&both, &windows("10.0.19045.3930", "client"));
        assert!(
            jan_patched
                .missing
                .iter()
                .all(|m| &*m.advisory == "2024-Feb")
        );
        assert!(!jan_patched.missing.is_empty());
    }

    #[test]
    fn without_a_fixed_build_the_kb_or_a_later_one_decides() {
        let mut jan = cvrf::parse(&shared("2024-Jan")).unwrap();
        for v in &mut jan.vulnerabilities {
            for f in &mut v.fixes {
                f.fixed_build.clear();
            }
        }
        let feb = cvrf::parse(&shared("2024-Feb")).unwrap();
        let only_jan = Catalogue::new(vec![jan.clone()]);
        let mut host = windows("10.0.19045", "client");
        let none = assess(&only_jan, &host);
        assert!(!none.missing.is_empty());
        assert!(none.missing.iter().all(|m| m.basis == Basis::Kb));
        host.hotfixes = vec!["KB5034122".into()];
        assert_eq!(assess(&only_jan, &host).state(), VulnState::UpToDate);
        // February's update replaces January's: having it fixes January's CVEs.
        let mut feb_without_builds = feb.clone();
        for v in &mut feb_without_builds.vulnerabilities {
            for f in &mut v.fixes {
                f.fixed_build.clear();
            }
        }
        let both = Catalogue::new(vec![jan, feb_without_builds]);
        host.hotfixes = vec!["KB5034763".into()];
        assert_eq!(assess(&both, &host).state(), VulnState::UpToDate);
    }

    #[test]
    fn a_build_without_its_revision_goes_by_the_updates() {
        let jan = catalogue(&["2024-Jan"]);
        // The agent could not read UBR: 10.0.19045 says nothing of 10.0.19045.3930.
        let mut host = windows("10.0.19045", "client");
        let unknown = assess(&jan, &host);
        assert!(!unknown.missing.is_empty());
        assert!(
            unknown
                .missing
                .iter()
                .all(|m| m.basis == Basis::Kb && m.kb() == "KB5034122")
        );
        host.hotfixes = vec!["KB5034122".into()];
        assert_eq!(assess(&jan, &host).state(), VulnState::UpToDate);
    }

    #[test]
    fn unknown_windows_and_office_are_not_assessed() {
        let jan = catalogue(&["2024-Jan"]);
        let future = assess(&jan, &windows("10.0.26100.2033", "client"));
        assert_eq!(future.state(), VulnState::NotAssessed);
        assert_eq!(
            future.not_assessed[0].reason,
            "no imported document lists this product"
        );
        let mut office = windows("10.0.19045.3930", "client");
        office.programs = vec![
            (
                "Microsoft 365 Apps for enterprise - en-us".into(),
                "16.0.17126.20132".into(),
                "Microsoft Corporation".into(),
            ),
            (
                "Microsoft Edge".into(),
                "120.0.2210.91".into(),
                "Microsoft Corporation".into(),
            ),
            (
                "PowerShell 7-x64".into(),
                "7.4.1.0".into(),
                "Microsoft Corporation".into(),
            ),
        ];
        let a = assess(&jan, &office);
        assert_eq!(a.not_assessed.len(), 1);
        assert!(a.not_assessed[0].product.starts_with("Microsoft 365"));
        // Edge 120.0.2210.91 misses every Edge fix of January; PowerShell 7.4.1 has its fix.
        assert!(
            a.missing
                .iter()
                .all(|m| &*m.product == "Microsoft Edge (Chromium-based)")
        );
        assert!(a.missing.len() >= 5);
        // Edge has no KB: the version that closes every one of them is the update.
        assert_eq!(
            kbs_to_install(&jan, &a, &VulnFilter::default()),
            ["Microsoft Edge (Chromium-based) 121.0.2277.83"]
        );
        assert!(a.missing.iter().all(|m| m.kb() == "Release Notes"));
        let none = HostSoftware {
            host_id: "x".into(),
            ..HostSoftware::default()
        };
        assert_eq!(assess(&jan, &none).state(), VulnState::NotAssessed);
        let mut linux = windows("6.1.0", "client");
        linux.os.as_mut().unwrap().family = "linux".into();
        assert_eq!(assess(&jan, &linux).state(), VulnState::NotApplicable);
    }

    #[test]
    fn filters_count_what_they_accept() {
        let jan = catalogue(&["2024-Jan"]);
        let a = assess(&jan, &windows("10.0.19045.3803", "client"));
        let all = a.counts(&VulnFilter::default());
        let critical = a.counts(&VulnFilter {
            min_severity: Some(Severity::Critical),
            min_cvss: None,
        });
        assert_eq!(critical.cves, all.critical);
        assert!(critical.cves < all.cves);
        let high = a.counts(&VulnFilter {
            min_severity: None,
            min_cvss: Some(8.0),
        });
        assert!(high.max_cvss.unwrap() >= 8.0 && high.cves < all.cves);
    }
}
