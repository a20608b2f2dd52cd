//! The views over host assessments: a row per host, and the patch order (per update, what
//! installing it closes across the fleet).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::assess::{
    Catalogue, HostAssessment, MissingCounts, VulnFilter, VulnState, kbs_to_install,
    updates_to_install,
};
use super::cvrf::Severity;

/// One host in `vuln hosts`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostVulnRow {
    pub host_id: String,
    pub hostname: String,
    pub os_product: String,
    pub build: String,
    pub state: VulnState,
    pub counts: MissingCounts,
    pub kbs: Vec<String>,
    pub not_assessed: u64,
    /// Why the OS was not assessed.
    pub reason: String,
}

/// A host's row under `filter`: its state is `missing` only when some fix `filter` accepts is.
pub fn host_row(catalogue: &Catalogue, a: &HostAssessment, filter: &VulnFilter) -> HostVulnRow {
    let counts = a.counts(filter);
    let state = match a.state() {
        VulnState::Missing if counts.cves == 0 => {
            if a.windows && !a.os_assessed {
                VulnState::NotAssessed
            } else {
                VulnState::UpToDate
            }
        }
        state => state,
    };
    let reason = if a.os_assessed {
        String::new()
    } else {
        a.not_assessed
            .first()
            .filter(|n| n.product == a.os_product || n.product == "operating system")
            .map(|n| n.reason.clone())
            .unwrap_or_default()
    };
    HostVulnRow {
        host_id: a.host_id.clone(),
        hostname: a.hostname.clone(),
        os_product: a.os_product.clone(),
        build: a.build.clone(),
        state,
        kbs: kbs_to_install(catalogue, a, filter),
        counts,
        not_assessed: a.not_assessed.len() as u64,
        reason,
    }
}

/// Per CVE: its worst severity (over the products it is missing for) and whether it is
/// exploited.
type WorstPerCve<'a> = HashMap<&'a str, (Option<Severity>, bool)>;

/// An update and what installing it closes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KbNeed {
    pub kb: String,
    pub products: BTreeSet<String>,
    pub hosts: u64,
    pub cves: u64,
    /// Host × CVE pairs closed, per kind.
    pub critical: u64,
    pub important: u64,
    pub exploited: u64,
    pub max_cvss: Option<f32>,
}

/// Per update, what it closes on the hosts that need it; the updates closing the most
/// critical (then important, then exploited) host × CVE pairs first, then the most hosts.
pub fn patch_order(
    catalogue: &Catalogue,
    assessments: &[HostAssessment],
    filter: &VulnFilter,
) -> Vec<KbNeed> {
    struct Tally {
        need: KbNeed,
        cves: HashSet<Arc<str>>,
        products: BTreeSet<Arc<str>>,
    }
    let mut needs: HashMap<Arc<str>, Tally> = HashMap::new();
    for a in assessments {
        // Per update, per CVE: its worst severity on this host and whether it is exploited.
        let mut on_host: HashMap<Arc<str>, WorstPerCve> = HashMap::new();
        for (i, kb) in updates_to_install(catalogue, a, filter) {
            let m = &a.missing[i];
            let tally = needs.entry(kb.clone()).or_insert_with(|| Tally {
                need: KbNeed {
                    kb: kb.to_string(),
                    ..KbNeed::default()
                },
                cves: HashSet::new(),
                products: BTreeSet::new(),
            });
            if !tally.products.contains(&m.product) {
                tally.products.insert(m.product.clone());
            }
            if !tally.cves.contains(&m.cve) {
                tally.cves.insert(m.cve.clone());
            }
            if let Some(c) = m.cvss {
                tally.need.max_cvss = Some(tally.need.max_cvss.map_or(c, |max: f32| max.max(c)));
            }
            let slot = on_host
                .entry(kb)
                .or_default()
                .entry(&m.cve)
                .or_insert((m.severity, m.exploited));
            slot.0 = match (slot.0, m.severity) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            slot.1 |= m.exploited;
        }
        for (kb, cves) in on_host {
            let need = &mut needs.get_mut(&kb).expect("inserted above").need;
            need.hosts += 1;
            for (severity, exploited) in cves.values() {
                match severity {
                    Some(Severity::Critical) => need.critical += 1,
                    Some(Severity::Important) => need.important += 1,
                    _ => {}
                }
                need.exploited += u64::from(*exploited);
            }
        }
    }
    let mut order: Vec<KbNeed> = needs
        .into_values()
        .map(|tally| KbNeed {
            cves: tally.cves.len() as u64,
            products: tally.products.iter().map(|p| p.to_string()).collect(),
            ..tally.need
        })
        .collect();
    order.sort_by(|a, b| {
        (b.critical, b.important, b.exploited, b.hosts)
            .cmp(&(a.critical, a.important, a.exploited, a.hosts))
            .then_with(|| a.kb.cmp(&b.kb))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::super::assess::{HostSoftware, assess};
    use super::super::cvrf::{self, tests::shared};
    use super::super::product::HostOs;
    use super::*;

    fn host(id: &str, build: &str) -> HostSoftware {
        HostSoftware {
            host_id: id.into(),
            hostname: id.into(),
            os: Some(HostOs {
                family: "windows".into(),
                product_name: "Windows 10 Pro".into(),
                display_version: "22H2".into(),
                build: build.into(),
                arch: "x86_64".into(),
                installation_type: "client".into(),
            }),
            ..HostSoftware::default()
        }
    }

    #[test]
    fn the_patch_order_counts_what_each_update_closes() {
        let jan = Catalogue::new(vec![cvrf::parse(&shared("2024-Jan")).unwrap()]);
        let mut server = host("srv", "10.0.17763.5206");
        server.os.as_mut().unwrap().installation_type = "server".into();
        let hosts: Vec<HostAssessment> = [
            host("a", "10.0.19045.3803"),
            host("b", "10.0.19045.3803"),
            host("c", "10.0.19045.3930"),
            server,
        ]
        .iter()
        .map(|h| assess(&jan, h))
        .collect();
        let filter = VulnFilter::default();
        let order = patch_order(&jan, &hosts, &filter);
        let win10 = order.iter().find(|n| n.kb == "KB5034122").unwrap();
        assert_eq!(win10.hosts, 2);
        assert_eq!(win10.cves, hosts[0].counts(&filter).cves);
        assert_eq!(win10.critical, 2 * hosts[0].counts(&filter).critical);
        let server_kb = order.iter().find(|n| n.kb == "KB5034127").unwrap();
        assert_eq!(server_kb.hosts, 1);
        assert_eq!(
            order[0].kb, "KB5034122",
            "two hosts' worth of critical CVEs come first"
        );
        let row = host_row(&jan, &hosts[2], &filter);
        assert_eq!(row.state, VulnState::UpToDate);
        assert!(row.kbs.is_empty());
        let row = host_row(
            &jan,
            &hosts[0],
            &VulnFilter {
                min_severity: None,
                min_cvss: Some(9.9),
            },
        );
        assert_eq!(
            row.state,
            VulnState::UpToDate,
            "nothing at or above 9.9 is missing"
        );
    }
}
