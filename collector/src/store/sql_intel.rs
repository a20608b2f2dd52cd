//! The SQLite backend's botnet lists and `botnet_ip` findings.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{COLLECTOR, SqlStore, Tx, insert_audit, insert_history, parse_state};
use super::{BundleStore, IntelStore, StoreError, async_trait};
use crate::findings::FindingState;
use crate::intel::iplist::{self, ParsedList};
use crate::intel::matcher::MatcherBuilder;
use crate::intel::{BotnetMatch, HostNetFacts, IpMatcher, MatchVia, no_longer_matches};
use crate::model::{
    BotnetChanges, BundleRecord, BundleReport, HostBundleState, IpList, NetConnection,
    NewAuditEntry, NewIpList,
};

const LIST_COLUMNS: &str = "id, source, version, file_name, format, sha256, imported_ms, imported_by, \
     entries, bad_lines, domains, retired_ms, retired_by";

/// What the newest bundle of `kind` with `version` holds (see `bundles.members`); `None`:
/// no such bundle (the agent's own files, or none).
pub(super) async fn bundle_members(
    tx: &mut Tx<'_>,
    kind: &str,
    version: &str,
) -> Result<Option<HashSet<String>>, StoreError> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT members FROM bundles WHERE kind = $1 AND version = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(kind)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("bundles.members of {kind} {version}: {e}")))
    })
    .transpose()
}

#[async_trait]
impl IntelStore for SqlStore {
    /// Stores a list and its entries as the source's next version (retiring the source's
    /// earlier lists when asked), with an audit entry, in one transaction.
    async fn import_ip_list(
        &self,
        list: &NewIpList,
        parsed: &ParsedList,
        now_ms: i64,
    ) -> Result<IpList, StoreError> {
        let entries = &parsed.entries;
        let mut tx = self.write().await?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM ip_lists WHERE source = $1",
        )
        .bind(&list.source)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO ip_lists (source, version, file_name, format, sha256, imported_ms, imported_by, \
                 entries, bad_lines, domains) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&list.source)
        .bind(version)
        .bind(&list.file_name)
        .bind(&list.format)
        .bind(&list.sha256)
        .bind(now_ms)
        .bind(&list.actor)
        .bind(entries.len() as i64)
        .bind(list.bad_lines as i64)
        .bind(list.domains as i64)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO ip_list_data (list_id, entries) VALUES ($1, $2)")
            .bind(id)
            .bind(encode_entries(parsed))
            .execute(&mut *tx)
            .await?;
        let mut detail = format!(
            "{} v{version} from {}: {} entries, {} bad lines, {} domains skipped",
            list.source,
            list.file_name,
            entries.len(),
            list.bad_lines,
            list.domains
        );
        if list.replace {
            let retired: Vec<i64> = sqlx::query_scalar(
                "UPDATE ip_lists SET retired_ms = $1, retired_by = $2 \
                 WHERE source = $3 AND id <> $4 AND retired_ms IS NULL RETURNING id",
            )
            .bind(now_ms)
            .bind(&list.actor)
            .bind(&list.source)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            if !retired.is_empty() {
                let ids: Vec<String> = retired.iter().map(i64::to_string).collect();
                detail.push_str(&format!("; replaces list {}", ids.join(", ")));
            }
        }
        insert_audit(
            &mut tx,
            &NewAuditEntry {
                at_ms: now_ms,
                actor: list.actor.clone(),
                action: "intel.import_ips".into(),
                target: format!("ip list {id}"),
                detail,
            },
        )
        .await?;
        let stored = list_by_id(&mut tx, id).await?.expect("inserted above");
        tx.commit().await?;
        Ok(stored)
    }

    /// Retires a list: its entries no longer match. Refused for an unknown or retired list.
    async fn retire_ip_list(
        &self,
        id: i64,
        actor: &str,
        now_ms: i64,
    ) -> Result<IpList, StoreError> {
        let mut tx = self.write().await?;
        let list = list_by_id(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Refused(format!("no ip list {id}")))?;
        if let Some(at) = list.retired_ms {
            return Err(StoreError::Refused(format!(
                "ip list {id} ({}) was already retired on {} by {}",
                list.label(),
                hygiene_proto::format_ms(at),
                list.retired_by.as_deref().unwrap_or("?")
            )));
        }
        sqlx::query("UPDATE ip_lists SET retired_ms = $1, retired_by = $2 WHERE id = $3")
            .bind(now_ms)
            .bind(actor)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &NewAuditEntry {
                at_ms: now_ms,
                actor: actor.to_owned(),
                action: "intel.remove".into(),
                target: format!("ip list {id}"),
                detail: format!("{} ({} entries) retired", list.label(), list.entries),
            },
        )
        .await?;
        let retired = list_by_id(&mut tx, id).await?.expect("exists");
        tx.commit().await?;
        Ok(retired)
    }

    /// Every list, active and retired, oldest first.
    async fn ip_lists(&self) -> Result<Vec<IpList>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {LIST_COLUMNS} FROM ip_lists ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(list_from_row).collect()
    }

    /// The matcher of every active list's entries, built from each list's blob (a list can
    /// hold millions of entries: they are never all held as rows or `ActiveEntry` values).
    async fn active_ip_matcher(&self) -> Result<IpMatcher, StoreError> {
        let lists: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT id, source, version, entries FROM ip_lists WHERE retired_ms IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut builder = MatcherBuilder::default();
        builder.reserve(lists.iter().map(|l| l.3.max(0) as usize).sum());
        for (id, source, version, _) in lists {
            let label = format!("{source} v{version}");
            let data: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT entries FROM ip_list_data WHERE list_id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
            let data = data.unwrap_or_default();
            let text = std::str::from_utf8(&data)
                .map_err(|e| StoreError::Corrupt(format!("ip list {id}: entries: {e}")))?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                let (network, note) = line.split_once('\t').unwrap_or((line, ""));
                let network = iplist::parse_network(network).map_err(|e| {
                    StoreError::Corrupt(format!("ip list {id}: entry {line:?}: {e}"))
                })?;
                builder.add(id, &label, network, note);
            }
        }
        Ok(builder.build())
    }

    /// Each host's addresses, egress address and latest sockets (one host, or all), keeping
    /// only the sockets whose remote address `keep` accepts: a fleet has hundreds of thousands
    /// of sockets, and a row is decoded whole only when kept.
    async fn host_net_facts(
        &self,
        host_id: Option<&str>,
        keep: &(dyn for<'s> Fn(&'s str) -> bool + Sync),
    ) -> Result<Vec<HostNetFacts>, StoreError> {
        let hosts = match host_id {
            Some(id) => {
                sqlx::query(
                    "SELECT host_id, ip_addresses, peer_address FROM hosts WHERE host_id = $1",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?
            }
            None => sqlx::query(
                "SELECT host_id, ip_addresses, peer_address FROM hosts WHERE removed_ms IS NULL \
                     ORDER BY host_id",
            )
            .fetch_all(&self.pool)
            .await?,
        };
        // Each host's distinct remote addresses as one string (SQLite concatenates far faster
        // than rows cross into Rust), then only the sockets to kept addresses, whole.
        let remotes = self.dialect.join_distinct("remote_addr");
        let remotes_sql = match host_id {
            Some(_) => format!(
                "SELECT host_id, {remotes} AS remotes FROM connections \
                 WHERE host_id = $1 GROUP BY host_id"
            ),
            None => {
                format!("SELECT host_id, {remotes} AS remotes FROM connections GROUP BY host_id")
            }
        };
        let mut query = sqlx::query(&remotes_sql);
        if let Some(id) = host_id {
            query = query.bind(id);
        }
        let mut wanted: Vec<(String, String)> = Vec::new();
        for row in query.fetch_all(&self.pool).await? {
            let host: String = row.try_get(0)?;
            let remotes: Option<&str> = row.try_get(1)?;
            for remote in remotes.unwrap_or_default().split(',') {
                if !remote.is_empty() && keep(remote) {
                    wanted.push((host.clone(), remote.to_owned()));
                }
            }
        }
        let mut by_host: HashMap<String, Vec<NetConnection>> = HashMap::new();
        if !wanted.is_empty() {
            let pairs = serde_json::to_string(&wanted).expect("strings serialize");
            let d = self.dialect;
            let rows = sqlx::query(&format!(
                "SELECT c.host_id, c.proto, c.local_addr, c.local_port, c.remote_addr, c.remote_port, \
                     c.state, c.pid, c.process \
                 FROM {} w JOIN connections c \
                     ON c.host_id = {} AND c.remote_addr = {}",
                d.json_elements("$1"),
                d.json_item("w.value", 0),
                d.json_item("w.value", 1),
            ))
            .bind(pairs)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                by_host
                    .entry(row.try_get(0)?)
                    .or_default()
                    .push(super::sql::connection_from_row(row)?);
            }
        }
        hosts
            .iter()
            .map(|row| {
                let host_id: String = row.try_get("host_id")?;
                let ips: String = row.try_get("ip_addresses")?;
                Ok(HostNetFacts {
                    addresses: serde_json::from_str(&ips)
                        .map_err(|e| StoreError::Corrupt(format!("hosts.ip_addresses: {e}")))?,
                    peer_address: row.try_get("peer_address")?,
                    connections: by_host.remove(&host_id).unwrap_or_default(),
                    host_id,
                })
            })
            .collect()
    }

    /// Makes each host's `botnet_ip` findings agree with its current matches, in one
    /// transaction. A match is a finding, one per host, way and address: new ones open, a
    /// resolved one that matches again reopens, a false positive stays one. A finding whose
    /// match no longer holds is resolved when (1) its address is on no active list, (2) it was
    /// the host's own or egress address and the host no longer has it, or (3) it was a
    /// connection, none is seen now, and a complete sweep of the host started after the last
    /// one was seen (the sweep followed the lead; its own findings say what it found).
    async fn apply_botnet_matches(
        &self,
        results: &[(String, Vec<BotnetMatch>)],
        listed: &(dyn Fn(IpAddr) -> bool + Sync),
        now_ms: i64,
    ) -> Result<BotnetChanges, StoreError> {
        let mut tx = self.write().await?;
        // Every host's botnet findings in one query (a re-check of the whole fleet), or the
        // one host's.
        let rows = match results {
            [(host_id, _)] => {
                sqlx::query(&format!("{EXISTING_SELECT} AND host_id = $1"))
                    .bind(host_id)
                    .fetch_all(&mut *tx)
                    .await?
            }
            _ => sqlx::query(EXISTING_SELECT).fetch_all(&mut *tx).await?,
        };
        let mut existing: HashMap<String, HashMap<(String, String), Existing>> = HashMap::new();
        for row in &rows {
            let state: String = row.try_get("state")?;
            let found = Existing {
                id: row.try_get("id")?,
                state: parse_state(&state)?,
                address: row.try_get("path")?,
                via: row.try_get("namespace")?,
                last_seen_ms: row.try_get("last_seen_ms")?,
            };
            existing
                .entry(row.try_get("host_id")?)
                .or_default()
                .insert((found.via.clone(), found.address.clone()), found);
        }
        let mut changes = BotnetChanges::default();
        for (host_id, matches) in results {
            let known = existing.remove(host_id).unwrap_or_default();
            // Most hosts of a fleet are on no list and never were: nothing to write.
            if matches.is_empty() && known.is_empty() {
                continue;
            }
            apply_host(
                &mut tx,
                host_id,
                matches,
                known,
                listed,
                now_ms,
                &mut changes,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changes)
    }
}

#[async_trait]
impl BundleStore for SqlStore {
    /// Stores a signed bundle (the newest of its kind is the current one), with an audit
    /// entry.
    async fn save_bundle(
        &self,
        bundle: &BundleRecord,
        members: &[String],
    ) -> Result<BundleRecord, StoreError> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO bundles (kind, name, version, created_ms, created_by, files, items, bytes, payload, signature, members) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(&bundle.kind)
        .bind(&bundle.name)
        .bind(&bundle.version)
        .bind(bundle.created_ms)
        .bind(&bundle.created_by)
        .bind(bundle.files as i64)
        .bind(bundle.items as i64)
        .bind(bundle.bytes as i64)
        .bind(&bundle.payload)
        .bind(&bundle.signature)
        .bind(serde_json::to_string(members).expect("strings serialize"))
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &NewAuditEntry {
                at_ms: bundle.created_ms,
                actor: bundle.created_by.clone(),
                action: format!("{}.publish", bundle.kind),
                target: format!("{} bundle {id}", bundle.kind),
                detail: format!(
                    "{} {}: {} files, {} {}",
                    bundle.name,
                    bundle.version,
                    bundle.files,
                    bundle.items,
                    if bundle.kind == "rules" {
                        "rules"
                    } else {
                        "hashes"
                    }
                ),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(BundleRecord {
            id,
            ..bundle.clone()
        })
    }

    /// The version of the newest bundle of `kind`, without its bytes (asked on every agent
    /// connect).
    async fn current_bundle_version(&self, kind: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT version FROM bundles WHERE kind = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The newest bundle of `kind`.
    async fn current_bundle(&self, kind: &str) -> Result<Option<BundleRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, kind, name, version, created_ms, created_by, files, items, bytes, payload, signature \
             FROM bundles WHERE kind = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(BundleRecord {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                name: row.try_get("name")?,
                version: row.try_get("version")?,
                created_ms: row.try_get("created_ms")?,
                created_by: row.try_get("created_by")?,
                files: row.try_get::<i64, _>("files")? as u64,
                items: row.try_get::<i64, _>("items")? as u64,
                bytes: row.try_get::<i64, _>("bytes")? as u64,
                payload: row.try_get("payload")?,
                signature: row.try_get("signature")?,
            })
        })
        .transpose()
    }

    /// Records what a host's agent said of a bundle kind. A refusal is kept with the refused
    /// version until the host runs another one, so that the collector does not offer the
    /// refused version again on every connect.
    async fn record_bundle_report(
        &self,
        host_id: &str,
        report: &BundleReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (refused, error) = if report.ok {
            (String::new(), String::new())
        } else {
            (report.version.clone(), report.reason.clone())
        };
        sqlx::query(
            "INSERT INTO host_bundles (host_id, kind, version, since_ms, refused_version, error, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (host_id, kind) DO UPDATE SET \
                 refused_version = CASE WHEN excluded.error <> '' THEN excluded.refused_version \
                     WHEN excluded.version <> host_bundles.version THEN '' ELSE host_bundles.refused_version END, \
                 error = CASE WHEN excluded.error <> '' THEN excluded.error \
                     WHEN excluded.version <> host_bundles.version THEN '' ELSE host_bundles.error END, \
                 version = excluded.version, since_ms = excluded.since_ms, updated_ms = excluded.updated_ms",
        )
        .bind(host_id)
        .bind(&report.kind)
        .bind(&report.active_version)
        .bind(report.active_since_ms)
        .bind(refused)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every host with what it runs, as its agent last said.
    /// Notes that bundle `version` of `kind` was put on the host's stream.
    async fn record_bundle_offer(
        &self,
        host_id: &str,
        kind: &str,
        version: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO host_bundles (host_id, kind, version, since_ms, updated_ms, offered_version, offered_ms) \
             VALUES ($1, $2, '', 0, $3, $4, $5) \
             ON CONFLICT (host_id, kind) DO UPDATE SET offered_version = excluded.offered_version, \
                 offered_ms = excluded.offered_ms",
        )
        .bind(host_id)
        .bind(kind)
        .bind(now_ms)
        .bind(version)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn host_bundles(&self) -> Result<Vec<HostBundleState>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.host_id, h.connected, b.kind, b.version, b.since_ms, b.refused_version, b.error, \
                 b.offered_version \
             FROM hosts h LEFT JOIN host_bundles b ON b.host_id = h.host_id \
             WHERE h.removed_ms IS NULL ORDER BY h.host_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut hosts: Vec<HostBundleState> = Vec::new();
        for row in rows {
            let host_id: String = row.try_get("host_id")?;
            if hosts.last().is_none_or(|h| h.host_id != host_id) {
                hosts.push(HostBundleState {
                    host_id: host_id.clone(),
                    online: row.try_get::<i64, _>("connected")? != 0,
                    ..HostBundleState::default()
                });
            }
            let host = hosts.last_mut().expect("pushed above");
            let kind: Option<String> = row.try_get("kind")?;
            let Some(kind) = kind else { continue };
            let version: String = row.try_get("version")?;
            let since: i64 = row.try_get("since_ms")?;
            let refused: String = row.try_get("refused_version")?;
            let error: String = row.try_get("error")?;
            let offered: String = row.try_get("offered_version")?;
            // A row made by an offer alone (no report yet) says nothing of what the host runs.
            let running = (since != 0 || !version.is_empty()).then_some((version, since));
            match kind.as_str() {
                "rules" => {
                    host.rules = running;
                    host.refused_rules = refused;
                    host.offered_rules = offered;
                }
                "iocs" => {
                    host.iocs = running;
                    host.refused_iocs = refused;
                    host.offered_iocs = offered;
                }
                _ => {}
            }
            if !error.is_empty() {
                host.error = error;
            }
        }
        Ok(hosts)
    }

    /// The version of `kind` a host refused last (empty: none).
    async fn answered_bundle(
        &self,
        host_id: &str,
        kind: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM host_bundles WHERE host_id = $1 AND kind = $2 \
             AND (version = $3 OR refused_version = $4)",
        )
        .bind(host_id)
        .bind(kind)
        .bind(version)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn refused_version(&self, host_id: &str, kind: &str) -> Result<String, StoreError> {
        let refused: Option<String> = sqlx::query_scalar(
            "SELECT refused_version FROM host_bundles WHERE host_id = $1 AND kind = $2",
        )
        .bind(host_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        Ok(refused.unwrap_or_default())
    }
}

const EXISTING_SELECT: &str = "SELECT host_id, id, state, path, namespace, last_seen_ms FROM findings \
     WHERE kind = 'botnet_ip'";

struct Existing {
    id: i64,
    state: FindingState,
    address: String,
    via: String,
    last_seen_ms: i64,
}

async fn apply_host(
    tx: &mut Tx<'_>,
    host_id: &str,
    matches: &[BotnetMatch],
    mut existing: HashMap<(String, String), Existing>,
    listed: &(dyn Fn(IpAddr) -> bool + Sync),
    now_ms: i64,
    changes: &mut BotnetChanges,
) -> Result<(), StoreError> {
    for m in matches {
        let key = (m.via.as_str().to_owned(), m.address.to_string());
        match existing.remove(&key) {
            Some(found) => {
                let reopen = found.state == FindingState::Resolved;
                sqlx::query(
                    "UPDATE findings SET rule = $1, list_id = $2, evidence = $3, last_seen_ms = $4, \
                         observed_at_ms = $5, state = CASE WHEN state = 'resolved' THEN 'reopened' ELSE state END, \
                         state_changed_ms = CASE WHEN state = 'resolved' THEN $6 ELSE state_changed_ms END \
                     WHERE id = $7",
                )
                .bind(&m.network)
                .bind(m.list_id)
                .bind(&m.evidence)
                .bind(now_ms)
                .bind(now_ms)
                .bind(now_ms)
                .bind(found.id)
                .execute(&mut **tx)
                .await?;
                if reopen {
                    changes.reopened += 1;
                    insert_history(
                        tx,
                        found.id,
                        now_ms,
                        COLLECTOR,
                        Some(FindingState::Resolved),
                        FindingState::Reopened,
                        &format!("matches again: {}", m.evidence),
                    )
                    .await?;
                }
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO findings (host_id, kind, path, sha256, size, rule, namespace, ioc_comment, \
                         state, first_seen_ms, last_seen_ms, observed_at_ms, sweep_id, state_changed_ms, \
                         list_id, evidence) \
                     VALUES ($1, 'botnet_ip', $2, '', 0, $3, $4, '', 'open', $5, $6, $7, '', $8, $9, $10) RETURNING id",
                )
                .bind(host_id)
                .bind(m.address.to_string())
                .bind(&m.network)
                .bind(m.via.as_str())
                .bind(now_ms)
                .bind(now_ms)
                .bind(now_ms)
                .bind(now_ms)
                .bind(m.list_id)
                .bind(&m.evidence)
                .fetch_one(&mut **tx)
                .await?;
                changes.opened += 1;
                insert_history(
                    tx,
                    id,
                    now_ms,
                    COLLECTOR,
                    None,
                    FindingState::Open,
                    &m.evidence,
                )
                .await?;
            }
        }
    }
    // What no longer matches.
    let mut last_sweep: Option<Option<(String, i64)>> = None;
    for found in existing.into_values() {
        if !found.state.is_open() {
            continue;
        }
        let address: Option<IpAddr> = found.address.parse().ok();
        let still_listed = address.is_some_and(listed);
        let via = MatchVia::parse(&found.via);
        // Only a connection's match needs the host's last complete sweep: read once, if so.
        if still_listed && !via.is_some_and(MatchVia::is_own_address) && last_sweep.is_none() {
            last_sweep = Some(last_complete_sweep(tx, host_id).await?);
        }
        let sweep = last_sweep
            .as_ref()
            .and_then(Option::as_ref)
            .map(|(id, started)| (id.as_str(), *started));
        let note = no_longer_matches(via, &found.address, still_listed, found.last_seen_ms, sweep);
        let Some(note) = note else { continue };
        sqlx::query("UPDATE findings SET state = 'resolved', state_changed_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(found.id)
            .execute(&mut **tx)
            .await?;
        insert_history(
            tx,
            found.id,
            now_ms,
            COLLECTOR,
            Some(found.state),
            FindingState::Resolved,
            &note,
        )
        .await?;
        changes.resolved += 1;
    }
    Ok(())
}

/// The host's latest sweep carried out whole, and when it started on the collector's clock
/// (its first progress report; the agent's clock where none arrived).
async fn last_complete_sweep(
    tx: &mut Tx<'_>,
    host_id: &str,
) -> Result<Option<(String, i64)>, StoreError> {
    let row = sqlx::query(
        "SELECT complete_sweep_id, complete_started_ms FROM hosts \
         WHERE host_id = $1 AND complete_sweep_id IS NOT NULL",
    )
    .bind(host_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get("complete_sweep_id")?,
            row.try_get::<Option<i64>, _>("complete_started_ms")?
                .unwrap_or(0),
        ))
    })
    .transpose()
}

async fn list_by_id(tx: &mut Tx<'_>, id: i64) -> Result<Option<IpList>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {LIST_COLUMNS} FROM ip_lists WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(list_from_row).transpose()
}

fn list_from_row(row: &AnyRow) -> Result<IpList, StoreError> {
    Ok(IpList {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        version: row.try_get("version")?,
        file_name: row.try_get("file_name")?,
        format: row.try_get("format")?,
        sha256: row.try_get("sha256")?,
        imported_ms: row.try_get("imported_ms")?,
        imported_by: row.try_get("imported_by")?,
        entries: row.try_get::<i64, _>("entries")? as u64,
        bad_lines: row.try_get::<i64, _>("bad_lines")? as u64,
        domains: row.try_get::<i64, _>("domains")? as u64,
        retired_ms: row.try_get("retired_ms")?,
        retired_by: row.try_get("retired_by")?,
    })
}

/// A list's entries as stored: `NETWORK` or `NETWORK<TAB>NOTE` lines, an address bare.
fn encode_entries(parsed: &ParsedList) -> Vec<u8> {
    use std::fmt::Write;
    let mut text = String::with_capacity(parsed.entries.len() * 16);
    for entry in &parsed.entries {
        let network = entry.network;
        if network.prefix_len() == network.max_prefix_len() {
            let _ = write!(text, "{}", network.addr());
        } else {
            let _ = write!(text, "{network}");
        }
        let note = parsed.note(entry);
        if !note.is_empty() {
            text.push('\t');
            text.extend(
                note.chars()
                    .map(|c| if c == '\t' || c == '\n' { ' ' } else { c }),
            );
        }
        text.push('\n');
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::iplist::{ListFormat, parse};
    use crate::intel::match_host;
    use crate::model::{ConnectionReport, FindingFilter, FindingKind, HostHello, SweepReport};
    use crate::store::{FindingStore, FleetStore, InventoryStore, SweepStore};

    async fn host(store: &SqlStore, id: &str, peer: &str, remote: &str) {
        store
            .record_hello(
                &HostHello {
                    host_id: id.into(),
                    hostname: id.into(),
                    os_name: String::new(),
                    os_version: String::new(),
                    kernel_version: String::new(),
                    arch: String::new(),
                    ip_addresses: vec!["10.0.0.5".into()],
                    agent_version: String::new(),
                    boot_time: 0,
                    peer_address: Some(format!("{peer}:40000")),
                },
                1,
            )
            .await
            .unwrap();
        let report = ConnectionReport {
            collected_ms: 1,
            connections: vec![NetConnection {
                proto: "tcp".into(),
                local_addr: "10.0.0.5".into(),
                local_port: 50000,
                remote_addr: remote.into(),
                remote_port: 443,
                state: "ESTABLISHED".into(),
                pid: Some(7),
                process: Some("beacon".into()),
            }],
            partial_reason: None,
        };
        store.record_connections(id, &report, 1).await.unwrap();
    }

    async fn import(store: &SqlStore, text: &str) -> IpList {
        let (parsed, _) = parse("l.txt", text.as_bytes(), ListFormat::Plain).unwrap();
        let list = NewIpList {
            source: "cert".into(),
            file_name: "l.txt".into(),
            format: "plain".into(),
            sha256: String::new(),
            bad_lines: 0,
            domains: 0,
            replace: false,
            actor: "admin".into(),
        };
        store.import_ip_list(&list, &parsed, 2).await.unwrap()
    }

    /// The matcher from the store's active lists, applied to every host.
    async fn recheck(store: &SqlStore, now: i64) -> BotnetChanges {
        let matcher = store.active_ip_matcher().await.unwrap();
        let results: Vec<_> = store
            .host_net_facts(None, &|_| true)
            .await
            .unwrap()
            .iter()
            .map(|h| (h.host_id.clone(), match_host(&matcher, h)))
            .collect();
        let listed = |ip| matcher.contains(ip);
        store
            .apply_botnet_matches(&results, &listed, now)
            .await
            .unwrap()
    }

    async fn states(store: &SqlStore, host: &str) -> Vec<(String, String, String)> {
        store
            .list_findings(&FindingFilter {
                host_id: Some(host.into()),
                kind: Some(FindingKind::BotnetIp),
                ..FindingFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.namespace, f.path, f.state.as_str().to_owned()))
            .collect()
    }

    async fn matches_open_stay_reopen_and_resolve_by_their_evidence(store: SqlStore) {
        host(&store, "h1", "192.0.2.44", "198.51.100.9").await;
        host(&store, "h2", "192.0.2.45", "203.0.113.1").await;

        let first = import(&store, "192.0.2.44\n198.51.100.0/24\n").await;
        assert_eq!((first.version, first.entries), (1, 2));
        let changes = recheck(&store, 10).await;
        assert_eq!((changes.opened, changes.resolved), (2, 0));
        assert_eq!(
            states(&store, "h1").await,
            [
                ("egress_address".into(), "192.0.2.44".into(), "open".into()),
                ("connection".into(), "198.51.100.9".into(), "open".into()),
            ]
        );
        assert!(states(&store, "h2").await.is_empty());
        // Nothing changed: nothing new, nothing resolved.
        assert_eq!(recheck(&store, 11).await, BotnetChanges::default());

        // The host moved behind another egress address and its beacon stopped: the egress
        // match resolves at once; the connection match waits for a sweep that followed it.
        host(&store, "h1", "192.0.2.99", "203.0.113.1").await;
        let changes = recheck(&store, 12).await;
        assert_eq!((changes.opened, changes.resolved), (0, 1));
        let sweep = SweepReport {
            sweep_id: "s1".into(),
            started_at_ms: 13,
            finished_at_ms: 14,
            files: 1,
            bytes: 1,
            findings: 0,
            errors: Default::default(),
            roots: vec!["/".into()],
            failures: Vec::new(),
            failures_truncated: false,
            failure: String::new(),
            sets: Default::default(),
        };
        store.record_sweep_report("h1", &sweep, 14).await.unwrap();
        let changes = recheck(&store, 15).await;
        assert_eq!(changes.resolved, 1);
        assert_eq!(
            states(&store, "h1").await,
            [
                (
                    "egress_address".into(),
                    "192.0.2.44".into(),
                    "resolved".into()
                ),
                (
                    "connection".into(),
                    "198.51.100.9".into(),
                    "resolved".into()
                ),
            ]
        );

        // Back on the listed address: reopened, with the history saying so.
        host(&store, "h1", "192.0.2.44", "203.0.113.1").await;
        let changes = recheck(&store, 16).await;
        assert_eq!(changes.reopened, 1);
        let egress = store
            .list_findings(&FindingFilter {
                host_id: Some("h1".into()),
                kind: Some(FindingKind::BotnetIp),
                ..FindingFilter::default()
            })
            .await
            .unwrap()
            .remove(0);
        assert_eq!(egress.state, FindingState::Reopened);
        let history = store.finding_history(egress.id).await.unwrap().unwrap().1;
        let notes: Vec<&str> = history.iter().map(|c| c.note.as_str()).collect();
        assert!(
            notes[1].contains("no longer connects from 192.0.2.44"),
            "{notes:?}"
        );
        assert!(notes[2].starts_with("matches again"), "{notes:?}");

        // Retired: the address is on no active list any more.
        store.retire_ip_list(first.id, "admin", 17).await.unwrap();
        assert!(store.retire_ip_list(first.id, "admin", 18).await.is_err());
        let changes = recheck(&store, 18).await;
        assert_eq!(changes.resolved, 1);
        // A second list of the same source is its version 2.
        assert_eq!(import(&store, "10.9.9.9\n").await.version, 2);
        let lists = store.ip_lists().await.unwrap();
        assert_eq!(lists.len(), 2);
        assert!(lists[0].retired_ms.is_some() && lists[1].retired_ms.is_none());
    }

    on_both_backends!(matches_open_stay_reopen_and_resolve_by_their_evidence,);
}
