//! Rule and IOC bundles from the collector: checked against the rule-signing key the agent was
//! issued with (`CERT_DIR/rules-signing.pub`), written under `STATE_DIR/bundles/KIND/VERSION/`,
//! compiled (rules) or read (IOCs), and only then swapped into the [`EngineSlot`]; a sweep
//! under way keeps the engine it started with. A bundle that fails any step is refused and the
//! set in use stays. The active bundle of each kind survives a restart (`KIND/active.json`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hygiene_proto::bundle::{self, IOCS, RULES};
use hygiene_proto::v1;

use crate::iocs::HashIocs;
use crate::scan::Engine;

/// The engine sweeps take when they start; a bundle replaces it whole.
pub struct EngineSlot(RwLock<Arc<Engine>>);

impl EngineSlot {
    pub fn new(engine: Engine) -> EngineSlot {
        EngineSlot(RwLock::new(Arc::new(engine)))
    }

    pub fn current(&self) -> Arc<Engine> {
        self.0.read().expect("engine lock").clone()
    }

    fn replace(&self, engine: Engine) {
        *self.0.write().expect("engine lock") = Arc::new(engine);
    }
}

/// Whether the agent has heard, since it started, which bundles the collector holds: an
/// agent's first sweep waits for that (a bounded time), so that a new agent whose collector
/// has rules never sweeps without them and calls the host clean.
pub struct BundleSync(tokio::sync::watch::Sender<[bool; 2]>);

impl Default for BundleSync {
    fn default() -> Self {
        BundleSync(tokio::sync::watch::Sender::new([false; 2]))
    }
}

impl BundleSync {
    /// The collector has answered for `kind`: it has nothing newer, or its bundle was applied
    /// or refused.
    pub fn settled(&self, kind: &str) {
        let index = match kind {
            RULES => 0,
            IOCS => 1,
            _ => return,
        };
        self.0.send_modify(|settled| settled[index] = true);
    }

    pub fn is_settled(&self) -> bool {
        *self.0.borrow() == [true; 2]
    }

    /// Waits until both kinds are settled or `timeout` passes; whether they were.
    pub async fn wait(&self, timeout: std::time::Duration) -> bool {
        let mut settled = self.0.subscribe();
        tokio::time::timeout(timeout, settled.wait_for(|s| *s == [true; 2]))
            .await
            .is_ok()
    }
}

/// The bundle of a kind the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Active {
    pub version: String,
    pub name: String,
    /// Agent clock, Unix ms.
    pub since_ms: i64,
}

/// The agent's bundle directory and the key bundles must be signed with.
pub struct Bundles {
    dir: PathBuf,
    /// The public key, or why there is none (every bundle is then refused with the reason).
    public_key: Result<Vec<u8>, String>,
}

impl Bundles {
    /// `state_dir/bundles`, and the key from `cert_dir/rules-signing.pub`.
    pub fn open(state_dir: &Path, cert_dir: &Path) -> Bundles {
        let key_path = cert_dir.join("rules-signing.pub");
        let public_key = std::fs::read_to_string(&key_path)
            .map_err(|e| {
                format!(
                    "{}: {e}; re-issue the agent's certificate (pki issue-agent) to get the collector's rule-signing key",
                    key_path.display()
                )
            })
            .and_then(|text| {
                bundle::decode_public_key(&text).map_err(|e| format!("{}: {e}", key_path.display()))
            });
        Bundles {
            dir: state_dir.join("bundles"),
            public_key,
        }
    }

    fn active_path(&self, kind: &str) -> PathBuf {
        self.dir.join(kind).join("active.json")
    }

    fn files_dir(&self, kind: &str, version: &str) -> PathBuf {
        self.dir.join(kind).join(version)
    }

    /// The active bundle of `kind` and the directory of its files.
    pub fn active(&self, kind: &str) -> Option<(Active, PathBuf)> {
        let text = std::fs::read_to_string(self.active_path(kind)).ok()?;
        let active: Active = serde_json::from_str(&text).ok()?;
        let dir = self.files_dir(kind, &active.version);
        dir.is_dir().then_some((active, dir))
    }

    /// The engine the configured files made, with the active bundles in their place. A bundle
    /// that no longer loads is logged and passed over.
    pub fn load_into(&self, engine: Engine) -> Engine {
        let mut engine = engine;
        if let Some((active, dir)) = self.active(RULES) {
            match load_rules(&dir) {
                Ok(rules) => {
                    tracing::info!(version = %active.version, name = %active.name, rules = rules.len(), "rule bundle loaded");
                    engine = engine.with_rules(rules, &active.version);
                }
                Err(reason) => {
                    tracing::error!(version = %active.version, "rule bundle left out: {reason}")
                }
            }
        }
        if let Some((active, dir)) = self.active(IOCS) {
            match load_iocs(&dir) {
                Ok(iocs) => {
                    tracing::info!(version = %active.version, name = %active.name, iocs = iocs.len(), "IOC bundle loaded");
                    engine = engine.with_iocs(iocs, &active.version);
                }
                Err(reason) => {
                    tracing::error!(version = %active.version, "IOC bundle left out: {reason}")
                }
            }
        }
        engine
    }

    /// What the agent runs with, per kind, for the collector after each connect.
    pub fn statuses(&self) -> Vec<v1::BundleStatus> {
        [RULES, IOCS]
            .into_iter()
            .map(|kind| {
                let active = self.active(kind).map(|(a, _)| a);
                v1::BundleStatus {
                    kind: kind.to_owned(),
                    ok: true,
                    active_version: active
                        .as_ref()
                        .map(|a| a.version.clone())
                        .unwrap_or_default(),
                    active_since_ms: active.as_ref().map_or(0, |a| a.since_ms),
                    version: active
                        .as_ref()
                        .map(|a| a.version.clone())
                        .unwrap_or_default(),
                    name: active.map(|a| a.name).unwrap_or_default(),
                    reason: String::new(),
                }
            })
            .collect()
    }

    /// Checks, writes, loads and swaps in `signed`: the answer for the collector, and whether
    /// the set in use changed (not a refusal, not the bundle already active): the agent's
    /// "nothing found" then refers to other rules. Blocking (rules compile for seconds).
    pub fn apply(
        &self,
        signed: &v1::SignedBundle,
        slot: &EngineSlot,
        now_ms: i64,
    ) -> (v1::BundleStatus, bool) {
        let refused = |kind: &str, version: &str, name: &str, reason: String| {
            tracing::warn!(kind, version, "bundle refused: {reason}");
            let active = self.active(kind).map(|(a, _)| a);
            v1::BundleStatus {
                kind: kind.to_owned(),
                version: version.to_owned(),
                name: name.to_owned(),
                ok: false,
                reason,
                active_version: active
                    .as_ref()
                    .map(|a| a.version.clone())
                    .unwrap_or_default(),
                active_since_ms: active.map_or(0, |a| a.since_ms),
            }
        };
        // What the bundle claims to be, unverified: only to say which one a refusal is about.
        let claimed = <v1::BundlePayload as prost::Message>::decode(signed.payload.as_slice())
            .unwrap_or_default();
        let key = match &self.public_key {
            Ok(key) => key,
            Err(reason) => {
                return (
                    refused(
                        &claimed.kind,
                        &claimed.version,
                        &claimed.name,
                        reason.clone(),
                    ),
                    false,
                );
            }
        };
        let payload = match bundle::verify(signed, key) {
            Ok(payload) => payload,
            Err(err) => {
                return (
                    refused(
                        &claimed.kind,
                        &claimed.version,
                        &claimed.name,
                        format!("bundle not accepted: {err}"),
                    ),
                    false,
                );
            }
        };
        let (kind, version, name) = (
            payload.kind.as_str(),
            payload.version.as_str(),
            payload.name.as_str(),
        );
        if let Some((active, _)) = self.active(kind)
            && active.version == version
        {
            return (self.ok_status(kind, active), false);
        }
        let dir = self.files_dir(kind, version);
        if let Err(err) = write_files(&dir, &payload.files) {
            let _ = std::fs::remove_dir_all(&dir);
            return (
                refused(
                    kind,
                    version,
                    name,
                    format!("{}: cannot write the bundle: {err}", dir.display()),
                ),
                false,
            );
        }
        let current = slot.current();
        let engine = match kind {
            RULES => load_rules(&dir).map(|rules| current.with_rules(rules, version)),
            _ => load_iocs(&dir).map(|iocs| current.with_iocs(iocs, version)),
        };
        let engine = match engine {
            Ok(engine) => engine,
            Err(reason) => {
                let _ = std::fs::remove_dir_all(&dir);
                return (refused(kind, version, name, reason), false);
            }
        };
        let active = Active {
            version: version.to_owned(),
            name: name.to_owned(),
            since_ms: now_ms,
        };
        if let Err(err) = self.set_active(kind, &active) {
            let _ = std::fs::remove_dir_all(&dir);
            return (refused(kind, version, name, err), false);
        }
        slot.replace(engine);
        self.remove_others(kind, version);
        tracing::info!(kind, version, name, "bundle applied");
        (self.ok_status(kind, active), true)
    }

    fn ok_status(&self, kind: &str, active: Active) -> v1::BundleStatus {
        v1::BundleStatus {
            kind: kind.to_owned(),
            version: active.version.clone(),
            name: active.name,
            ok: true,
            reason: String::new(),
            active_version: active.version,
            active_since_ms: active.since_ms,
        }
    }

    /// Writes `active.json` through a temporary file and a rename: a crash leaves the old or
    /// the new one, never half of one.
    fn set_active(&self, kind: &str, active: &Active) -> Result<(), String> {
        let path = self.active_path(kind);
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string(active).expect("serializes");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Removes the files of every other version of `kind`.
    fn remove_others(&self, kind: &str, keep: &str) {
        let Ok(entries) = std::fs::read_dir(self.dir.join(kind)) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.path().is_dir() && entry.file_name() != keep {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn write_files(dir: &Path, files: &[v1::BundleFile]) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for file in files {
        // Names were checked with the signature: plain file names, nothing else.
        std::fs::write(dir.join(&file.name), &file.content)?;
    }
    Ok(())
}

/// The rules of a bundle directory, all of which must compile: the collector compiled them the
/// same way before signing, so a failure here means this agent differs, and the set in use
/// stays.
fn load_rules(dir: &Path) -> Result<crate::rules::RuleSet, String> {
    let rules = crate::rules::load(&[dir.to_path_buf()]).map_err(|e| e.to_string())?;
    if let Some(first) = rules.broken.first() {
        return Err(format!(
            "{} rule file(s) do not compile here, first: {first}",
            rules.broken.len()
        ));
    }
    Ok(rules)
}

fn load_iocs(dir: &Path) -> Result<HashIocs, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let iocs = HashIocs::load(&files).map_err(|e| e.to_string())?;
    if iocs.is_empty() {
        return Err("the bundle holds no hash".into());
    }
    Ok(iocs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR_RULE: &str =
        "rule EICAR { strings: $a = \"EICAR-STANDARD-ANTIVIRUS-TEST-FILE\" condition: $a }";

    struct Setup {
        _dir: tempfile::TempDir,
        bundles: Bundles,
        key: Vec<u8>,
        slot: EngineSlot,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = bundle::generate_key().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(
            certs.join("rules-signing.pub"),
            bundle::encode_public_key(&public),
        )
        .unwrap();
        let bundles = Bundles::open(&dir.path().join("state"), &certs);
        Setup {
            _dir: dir,
            bundles,
            key,
            slot: EngineSlot::new(Engine::new(None, HashIocs::default())),
        }
    }

    fn rules_bundle(key: &[u8], source: &str) -> v1::SignedBundle {
        bundle::sign(
            v1::BundlePayload {
                kind: RULES.into(),
                name: "test".into(),
                version: String::new(),
                created_ms: 1,
                files: vec![v1::BundleFile {
                    name: "test.yar".into(),
                    content: source.as_bytes().to_vec(),
                }],
            },
            key,
        )
        .unwrap()
    }

    #[test]
    fn a_good_bundle_swaps_in_and_a_bad_one_leaves_the_set_in_use() {
        let s = setup();
        let good = rules_bundle(&s.key, EICAR_RULE);
        // What a sweep under way holds (it takes the engine when it starts).
        let in_flight = s.slot.current();
        let status = s.bundles.apply(&good, &s.slot, 10).0;
        assert!(status.ok, "{}", status.reason);
        let first = s.slot.current();
        assert_eq!(first.rule_count(), 1);
        assert_eq!(
            in_flight.rule_count(),
            0,
            "the sweep under way keeps its rules"
        );
        assert_eq!(s.bundles.active(RULES).unwrap().0.version, status.version);

        // Tampered in transit: refused, the engine untouched.
        let mut tampered = rules_bundle(&s.key, "rule other { condition: true }");
        let at = tampered.payload.len() / 2;
        tampered.payload[at] ^= 0x20;
        let refused = s.bundles.apply(&tampered, &s.slot, 11).0;
        assert!(!refused.ok);
        assert!(refused.reason.contains("signature"), "{}", refused.reason);
        assert!(Arc::ptr_eq(&first, &s.slot.current()));

        // Signed but not compiling here: refused with the file and line, files removed.
        let broken = rules_bundle(&s.key, "rule broken { condition: nonsense( }");
        let refused = s.bundles.apply(&broken, &s.slot, 12).0;
        assert!(!refused.ok);
        assert!(refused.reason.contains("test.yar:1"), "{}", refused.reason);
        assert_eq!(refused.active_version, status.version);
        assert!(Arc::ptr_eq(&first, &s.slot.current()));
        assert!(!s.bundles.files_dir(RULES, &refused.version).exists());

        // The same bundle again changes nothing; a restart loads the active one.
        let again = s.bundles.apply(&good, &s.slot, 13).0;
        assert!(again.ok && again.active_since_ms == 10);
        let restarted = s.bundles.load_into(Engine::new(None, HashIocs::default()));
        assert_eq!(restarted.rule_count(), 1);
    }

    #[test]
    fn without_the_signing_key_every_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bundles = Bundles::open(&dir.path().join("state"), &dir.path().join("certs"));
        let (key, _) = bundle::generate_key().unwrap();
        let slot = EngineSlot::new(Engine::new(None, HashIocs::default()));
        let status = bundles.apply(&rules_bundle(&key, EICAR_RULE), &slot, 1).0;
        assert!(!status.ok);
        assert!(
            status.reason.contains("rules-signing.pub"),
            "{}",
            status.reason
        );
    }
}
