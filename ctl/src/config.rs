//! hygienectl's configuration file (TOML, unknown keys rejected).

use std::path::{Path, PathBuf};

use serde::Deserialize;

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

/// `hygienectl --config FILE`.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CtlConfig {
    /// `https://HOST:PORT` of the collector.
    pub collector: Option<String>,
    /// Directory with `ca.pem`, `admin.pem`, `admin.key`.
    pub pki: Option<PathBuf>,
}

/// Where `hygienectl` looks for its config when given none: `$XDG_CONFIG_HOME/hygiene/
/// hygienectl.toml`, else `~/.config/hygiene/hygienectl.toml`, else the collector package's
/// `/etc/hygiene/hygienectl.toml`; `None` when none of them exists.
pub fn default_path() -> Option<PathBuf> {
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .map(|base| base.join("hygiene").join("hygienectl.toml"));
    let system = cfg!(unix).then(|| PathBuf::from("/etc/hygiene/hygienectl.toml"));
    user.into_iter().chain(system).find(|path| path.is_file())
}

impl CtlConfig {
    /// Reads `path`; a missing file, bad TOML or an unknown key is an error naming the file.
    pub fn read(path: &Path) -> Result<CtlConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects_unknown_keys_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hygienectl.toml");
        std::fs::write(&path, "collector = \"https://c:50051\"\npki = \"/p\"\n").unwrap();
        let config = CtlConfig::read(&path).unwrap();
        assert_eq!(config.collector.as_deref(), Some("https://c:50051"));
        std::fs::write(&path, "collector = \"https://c:50051\"\nserver = \"x\"\n").unwrap();
        let err = CtlConfig::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("hygienectl.toml") && err.contains("server"),
            "{err}"
        );
        let missing = CtlConfig::read(&dir.path().join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("none.toml"), "{missing}");
    }
}
