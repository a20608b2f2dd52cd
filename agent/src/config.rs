//! Agent configuration: a TOML file (unknown keys rejected), overridden by command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The settings as written in the TOML file; every key is optional. Command-line flags are
/// parsed into the same shape and laid over it with [`ConfigFile::overlay`].
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `https://HOST:PORT` of the collector; a site with several replicas: a list of them
    /// (`collector = ["https://a:50051", "https://b:50051"]`) or the URLs separated by commas,
    /// tried in turn.
    #[serde(default, deserialize_with = "one_or_many")]
    pub collector: Option<String>,
    /// The local address the connection to the collector leaves from (multi-homed servers);
    /// the system's choice when unset.
    pub source_address: Option<std::net::IpAddr>,
    /// Directory holding `ca.pem`, `agent.pem` and `agent.key` (as `pki issue-agent` writes).
    pub cert_dir: Option<PathBuf>,
    /// Directory for the agent's own state.
    pub state_dir: Option<PathBuf>,
    /// Directories swept on start and on command.
    pub roots: Option<Vec<PathBuf>>,
    /// Globs of paths not walked (besides /proc, /sys, /dev and the state directory); `*` stays
    /// within one path component, `**` crosses them: `/var/lib/docker`, `**/node_modules`.
    pub exclude: Option<Vec<String>>,
    /// Scan threads (default: half the cores).
    pub threads: Option<usize>,
    /// Stay on the file system of each root.
    pub one_file_system: Option<bool>,
    /// CPU budget of a sweep in percent of one core (e.g. 50); no limit when unset.
    pub cpu_limit: Option<u32>,
    /// YARA rule files or directories of them.
    pub rules: Option<Vec<PathBuf>>,
    /// Hash IOC lists.
    pub iocs: Option<Vec<PathBuf>>,
    pub heartbeat_seconds: Option<u64>,
    /// Upper bound of the reconnect backoff.
    pub reconnect_max_seconds: Option<u64>,
    /// Files larger than this are hashed but not YARA-scanned.
    pub max_yara_size: Option<u64>,
    /// How often the inventory (OS, packages, updates, programs) is reported; default 6 h.
    pub inventory_interval_seconds: Option<u64>,
    /// How often the host's connections are reported; default 5 minutes.
    pub connections_interval_seconds: Option<u64>,
    /// How long the first sweep after a start waits for the collector's rule and IOC
    /// bundles; default 120 s. 0: do not wait.
    pub bundle_wait_seconds: Option<u64>,
    /// The bound of the on-disk spool of messages the collector has not acknowledged, in MiB;
    /// default 256. When full, progress reports, socket lists and inventories are dropped
    /// (and the collector told); findings and summaries never: the sweep waits.
    pub spool_max_mib: Option<u64>,
    /// An enrollment token (`hygienectl enroll create`): with no certificate in `cert_dir`,
    /// the agent enrolls with it at start. Needs `ca_fingerprint`.
    pub enroll_token: Option<String>,
    /// The collector's CA fingerprint printed with the token, `SHA256:HEX`.
    pub ca_fingerprint: Option<String>,
    /// The host id to enroll as (default: the host name and a hash of the machine's id).
    pub host_id: Option<String>,
}

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
    #[error("no collector address: set `collector` in the config file or pass --collector")]
    NoCollector,
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error(
        "an enrollment token needs the collector's CA fingerprint (ca_fingerprint, --ca-fingerprint, HYGIENE_CA_FINGERPRINT)"
    )]
    NoFingerprint,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// `self` with every value that `flags` sets replaced by the flag's value.
    pub fn overlay(self, flags: ConfigFile) -> ConfigFile {
        ConfigFile {
            collector: flags.collector.or(self.collector),
            source_address: flags.source_address.or(self.source_address),
            cert_dir: flags.cert_dir.or(self.cert_dir),
            state_dir: flags.state_dir.or(self.state_dir),
            roots: flags.roots.or(self.roots),
            exclude: flags.exclude.or(self.exclude),
            threads: flags.threads.or(self.threads),
            one_file_system: flags.one_file_system.or(self.one_file_system),
            cpu_limit: flags.cpu_limit.or(self.cpu_limit),
            rules: flags.rules.or(self.rules),
            iocs: flags.iocs.or(self.iocs),
            heartbeat_seconds: flags.heartbeat_seconds.or(self.heartbeat_seconds),
            reconnect_max_seconds: flags.reconnect_max_seconds.or(self.reconnect_max_seconds),
            max_yara_size: flags.max_yara_size.or(self.max_yara_size),
            inventory_interval_seconds: flags
                .inventory_interval_seconds
                .or(self.inventory_interval_seconds),
            connections_interval_seconds: flags
                .connections_interval_seconds
                .or(self.connections_interval_seconds),
            bundle_wait_seconds: flags.bundle_wait_seconds.or(self.bundle_wait_seconds),
            spool_max_mib: flags.spool_max_mib.or(self.spool_max_mib),
            enroll_token: flags.enroll_token.or(self.enroll_token),
            ca_fingerprint: flags.ca_fingerprint.or(self.ca_fingerprint),
            host_id: flags.host_id.or(self.host_id),
        }
    }
}

/// A `collector` given as one URL or a list of them; a list is kept comma-separated.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(url) => Ok(Some(url)),
        OneOrMany::Many(urls) if urls.is_empty() => Err(serde::de::Error::custom(
            "collector: an empty list; give at least one https://HOST:PORT",
        )),
        OneOrMany::Many(urls) => Ok(Some(urls.join(","))),
    }
}

/// The resolved configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub collector: String,
    pub source_address: Option<std::net::IpAddr>,
    pub cert_dir: PathBuf,
    pub state_dir: PathBuf,
    pub roots: Vec<PathBuf>,
    pub exclude: Vec<String>,
    pub threads: usize,
    pub one_file_system: bool,
    pub cpu_limit: Option<u32>,
    pub rules: Vec<PathBuf>,
    pub iocs: Vec<PathBuf>,
    pub heartbeat: Duration,
    pub reconnect_max: Duration,
    pub max_yara_size: u64,
    pub inventory_interval: Duration,
    pub connections_interval: Duration,
    pub bundle_wait: Duration,
    /// Bytes.
    pub spool_limit: u64,
    /// How to enroll when `cert_dir` holds no certificate.
    pub enrollment: Option<EnrollSettings>,
}

/// An enrollment token and what goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollSettings {
    pub token: String,
    pub ca_fingerprint: String,
    pub host_id: Option<String>,
}

impl AgentConfig {
    /// Fills in the defaults of an installed agent.
    pub fn resolve(file: ConfigFile) -> Result<Self, ConfigError> {
        let heartbeat_seconds = file.heartbeat_seconds.unwrap_or(30);
        if heartbeat_seconds == 0 {
            return Err(ConfigError::Zero {
                what: "heartbeat_seconds",
            });
        }
        let reconnect_max_seconds = file.reconnect_max_seconds.unwrap_or(60);
        if reconnect_max_seconds == 0 {
            return Err(ConfigError::Zero {
                what: "reconnect_max_seconds",
            });
        }
        let interval = |value: Option<u64>, default: u64, what| match value {
            Some(0) => Err(ConfigError::Zero { what }),
            value => Ok(Duration::from_secs(value.unwrap_or(default))),
        };
        Ok(AgentConfig {
            inventory_interval: interval(
                file.inventory_interval_seconds,
                6 * 3600,
                "inventory_interval_seconds",
            )?,
            connections_interval: interval(
                file.connections_interval_seconds,
                300,
                "connections_interval_seconds",
            )?,
            bundle_wait: Duration::from_secs(file.bundle_wait_seconds.unwrap_or(120)),
            spool_limit: match file.spool_max_mib {
                Some(0) => {
                    return Err(ConfigError::Zero {
                        what: "spool_max_mib",
                    });
                }
                Some(mib) => mib.saturating_mul(1024 * 1024),
                None => crate::spool::DEFAULT_LIMIT,
            },
            enrollment: match (file.enroll_token, file.ca_fingerprint) {
                (Some(token), Some(ca_fingerprint)) => Some(EnrollSettings {
                    token,
                    ca_fingerprint,
                    host_id: file.host_id,
                }),
                (Some(_), None) => return Err(ConfigError::NoFingerprint),
                (None, _) => None,
            },
            collector: file.collector.ok_or(ConfigError::NoCollector)?,
            source_address: file.source_address,
            cert_dir: file.cert_dir.unwrap_or_else(|| default_dir("certs")),
            state_dir: file.state_dir.unwrap_or_else(|| default_dir("state")),
            roots: file.roots.unwrap_or_else(default_roots),
            exclude: file.exclude.unwrap_or_default(),
            threads: match file.threads {
                Some(0) => return Err(ConfigError::Zero { what: "threads" }),
                Some(n) => n,
                None => crate::scan::default_threads(),
            },
            one_file_system: file.one_file_system.unwrap_or(false),
            cpu_limit: match file.cpu_limit {
                Some(0) => return Err(ConfigError::Zero { what: "cpu_limit" }),
                limit => limit,
            },
            rules: file.rules.unwrap_or_default(),
            iocs: file.iocs.unwrap_or_default(),
            heartbeat: Duration::from_secs(heartbeat_seconds),
            reconnect_max: Duration::from_secs(reconnect_max_seconds),
            max_yara_size: file
                .max_yara_size
                .unwrap_or(crate::scan::DEFAULT_MAX_YARA_SIZE),
        })
    }
}

/// Where certificates are when the config does not say.
pub fn default_cert_dir() -> PathBuf {
    default_dir("certs")
}

fn default_dir(leaf: &str) -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\ProgramData\Hygiene").join(leaf)
    } else if leaf == "state" {
        PathBuf::from("/var/lib/hygiene-agent")
    } else {
        PathBuf::from("/etc/hygiene-agent")
    }
}

/// Every fixed drive on Windows (`C:\` if none is found), `/` elsewhere.
fn default_roots() -> Vec<PathBuf> {
    #[cfg(windows)]
    {
        let drives = crate::inventory::fixed_drives();
        if drives.is_empty() {
            vec![PathBuf::from(r"C:\")]
        } else {
            drives
        }
    }
    #[cfg(not(windows))]
    {
        vec![PathBuf::from("/")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let file: ConfigFile = toml::from_str(
            "collector = \"https://c:1\"\nroots = [\"/srv\"]\nrules = [\"/etc/rules\"]\nheartbeat_seconds = 5\n\
             exclude = [\"**/node_modules\"]\nthreads = 3\none_file_system = true\n",
        )
        .unwrap();
        let flags = ConfigFile {
            roots: Some(vec![PathBuf::from("/home")]),
            ..ConfigFile::default()
        };
        let config = AgentConfig::resolve(file.overlay(flags)).unwrap();
        assert_eq!(config.collector, "https://c:1");
        assert_eq!(config.roots, vec![PathBuf::from("/home")]);
        assert_eq!(config.rules, vec![PathBuf::from("/etc/rules")]);
        assert_eq!(config.heartbeat, Duration::from_secs(5));
        assert_eq!(config.max_yara_size, crate::scan::DEFAULT_MAX_YARA_SIZE);
        assert_eq!(config.exclude, vec!["**/node_modules".to_owned()]);
        assert_eq!((config.threads, config.one_file_system), (3, true));
    }

    #[test]
    fn zero_cpu_limit_is_an_error() {
        let file = ConfigFile {
            collector: Some("https://c:1".into()),
            cpu_limit: Some(0),
            ..ConfigFile::default()
        };
        assert!(matches!(
            AgentConfig::resolve(file),
            Err(ConfigError::Zero { what: "cpu_limit" })
        ));
    }

    #[test]
    fn several_collector_addresses_are_a_list() {
        let file: ConfigFile =
            toml::from_str("collector = [\"https://a:50051\", \"https://b:50051\"]").unwrap();
        let collector = file.collector.unwrap();
        assert_eq!(
            crate::session::collector_addresses(&collector),
            ["https://a:50051", "https://b:50051"]
        );
        assert_eq!(
            crate::session::collector_addresses("https://a:1, https://b:2"),
            ["https://a:1", "https://b:2"]
        );
        let empty = toml::from_str::<ConfigFile>("collector = []").unwrap_err();
        assert!(empty.to_string().contains("empty list"), "{empty}");
    }

    #[test]
    fn unknown_keys_and_missing_collector_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "collecter = \"https://typo:1\"\n").unwrap();
        let err = ConfigFile::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("agent.toml") && err.contains("collecter"),
            "{err}"
        );
        assert!(matches!(
            AgentConfig::resolve(ConfigFile::default()),
            Err(ConfigError::NoCollector)
        ));
        let zero = ConfigFile {
            collector: Some("https://c:1".into()),
            heartbeat_seconds: Some(0),
            ..ConfigFile::default()
        };
        assert!(matches!(
            AgentConfig::resolve(zero),
            Err(ConfigError::Zero { .. })
        ));
    }
}
