//! The collector's configuration file (TOML, unknown keys rejected).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:50051";
pub const DEFAULT_DB: &str = "sqlite://hygiene-collector.db";
pub const DEFAULT_PKI: &str = "pki";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

/// `hygiene-collector serve --config FILE`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Address to listen on, e.g. `0.0.0.0:50051`.
    pub listen: Option<String>,
    /// `sqlite://PATH` (default `sqlite://hygiene-collector.db`).
    pub db: Option<String>,
    /// Directory written by `pki init`.
    pub pki: Option<PathBuf>,
    /// Hours a host may stay silent before its status is `stale` (default 168: a week).
    pub stale_after_hours: Option<u64>,
    /// Findings of one sweep stored per host (default 50,000); beyond, they are counted and
    /// the sweep is recorded as failed.
    pub max_findings_per_sweep: Option<u64>,
    /// Messages per second one agent may send on average (default 200); faster ones are
    /// handled at that pace.
    pub max_agent_messages_per_second: Option<u32>,
    /// How long the agent certificates this collector signs are valid, e.g. `90d` (the
    /// default); agents renew theirs two-thirds of the way through.
    pub agent_cert_lifetime: Option<String>,
}

/// Reads a TOML config file of type `T`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\ndb = \"sqlite://x.db\"\npki = \"/p\"\n",
        )
        .unwrap();
        let config: CollectorConfig = read(&path).unwrap();
        assert_eq!(config.listen.as_deref(), Some("127.0.0.1:1"));
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\ndatabase = \"x\"\n").unwrap();
        let err = read::<CollectorConfig>(&path).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("database"), "{err}");
        let missing = read::<CollectorConfig>(&dir.path().join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("none.toml"), "{missing}");
    }
}
