//! Helpers for the end-to-end tests: run the real `hygiene-collector`, `hygiene-agent` and
//! `hygienectl` binaries against each other over real mTLS on loopback, with a PKI made at test
//! time in a temporary directory.
//!
//! The binaries are the ones `cargo test --workspace` builds next to the test executables
//! (`target/<profile>/`). Every spawned process is killed when its handle drops.

pub mod loadgen;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The 68-byte EICAR test string; tests write it at run time.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
pub const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

/// Path of a workspace binary built by `cargo test --workspace` for this run's profile.
///
/// Cargo only rebuilds the binaries of the packages under test, so a test run with `-p` could
/// otherwise exercise a stale agent or collector and prove nothing: a binary older than any
/// source file it is built from is refused.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the tests with `cargo test --workspace`",
                path.display()
            )
        });
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    // Cargo's dep-info lists exactly the files the binary was built from (not, say, the
    // Windows-only modules on Linux).
    let dep_info = std::fs::read_to_string(dir.join(format!("{name}.d")));
    if let Ok(dep_info) = &dep_info {
        let listed = dep_info
            .split_once(": ")
            .map(|(_, deps)| deps)
            .unwrap_or_default()
            .replace("\\ ", "\u{0}");
        for file in listed.split_whitespace().map(|f| f.replace('\u{0}', " ")) {
            let newer = std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built);
            if newer {
                panic!(
                    "{} is older than {file}: run the tests with `cargo test --workspace` so that it is rebuilt",
                    path.display()
                );
            }
        }
    }
    // Without dep-info: every source of the package (other binaries' own files aside).
    let sources: &[&str] = match (name, dep_info.is_ok()) {
        ("hygiene-agent", true) => &["proto"],
        ("hygiene-agent", false) => &["agent/src", "rules/src", "proto"],
        ("hygienectl", true) => &["proto"],
        ("hygienectl", false) => &["ctl/src", "proto"],
        (_, true) => &["collector/migrations", "proto"],
        (_, false) => &[
            "collector/src",
            "collector/migrations",
            "rules/src",
            "proto",
        ],
    };
    for source in sources {
        if let Some(newer) = newer_source(&workspace.join(source), built, name) {
            panic!(
                "{} is older than {}: run the tests with `cargo test --workspace` so that it is rebuilt",
                path.display(),
                newer.display()
            );
        }
    }
    path
}

/// A file under `dir` modified after `time`, other than another binary's own `src/bin` file.
fn newer_source(dir: &Path, time: std::time::SystemTime, bin_name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let meta = entry.metadata().ok()?;
        if meta.is_dir() {
            if let Some(newer) = newer_source(&path, time, bin_name) {
                return Some(newer);
            }
        } else if meta.modified().is_ok_and(|m| m > time) && !other_binary(&path, bin_name) {
            return Some(path);
        }
    }
    None
}

/// Whether `path` is the main file of a binary other than `bin_name` (`src/bin/NAME.rs`):
/// editing hygienectl does not relink hygiene-collector.
fn other_binary(path: &Path, bin_name: &str) -> bool {
    path.parent().is_some_and(|p| p.ends_with("src/bin"))
        && path.file_stem().is_some_and(|stem| stem != bin_name)
}

/// `../shared` from the workspace root.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A PKI directory made with `hygiene-collector pki init`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn init(dir: &Path) -> anyhow::Result<Pki> {
        run_ok(
            Command::new(bin("hygiene-collector"))
                .args(["pki", "init", "--dir"])
                .arg(dir)
                .args(["--server-name", "127.0.0.1", "--server-name", "localhost"]),
        )?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// Issues an agent certificate into `out` with `pki issue-agent`.
    pub fn issue_agent(&self, host_id: &str, out: &Path) -> anyhow::Result<()> {
        run_ok(
            Command::new(bin("hygiene-collector"))
                .args(["pki", "issue-agent", "--dir"])
                .arg(&self.dir)
                .args(["--host-id", host_id, "--out"])
                .arg(out),
        )?;
        Ok(())
    }
}

fn run_ok(command: &mut Command) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// A child process killed on drop, with its stderr captured to a file for diagnostics.
pub struct Process {
    child: Child,
    stderr_path: PathBuf,
}

impl Process {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    #[cfg(unix)]
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let child = &mut self.child;
        wait_for(timeout, "the process to exit after SIGTERM", || {
            child.try_wait().ok().flatten()
        })
    }

    pub fn has_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut command: Command, stderr_path: PathBuf, stdout: Stdio) -> anyhow::Result<Process> {
    let stderr = std::fs::File::create(&stderr_path)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env("HYGIENE_LOG", "info")
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    Ok(Process { child, stderr_path })
}

/// A running collector.
pub struct Collector {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Collector {
    /// Starts `hygiene-collector serve` on `listen` (use `127.0.0.1:0` for a free port) with an
    /// SQLite database in `dir`, and waits for its `listening on` line.
    pub fn start(dir: &Path, pki: &Pki, listen: &str) -> anyhow::Result<Collector> {
        Collector::start_with(dir, pki, listen, &[])
    }

    /// [`Collector::start`] with more `serve` flags.
    pub fn start_with(
        dir: &Path,
        pki: &Pki,
        listen: &str,
        extra: &[&str],
    ) -> anyhow::Result<Collector> {
        Collector::start_on(dir, pki, listen, &db_url(dir), extra)
    }

    /// [`Collector::start_with`] on the database `db` (logs still go to `dir`).
    pub fn start_on(
        dir: &Path,
        pki: &Pki,
        listen: &str,
        db: &str,
        extra: &[&str],
    ) -> anyhow::Result<Collector> {
        let mut command = Command::new(bin("hygiene-collector"));
        command
            .args(["serve", "--listen", listen, "--db", db])
            .arg("--pki")
            .arg(&pki.dir)
            .args(extra);
        let stderr_path = dir.join(format!("collector-{}.log", unique()));
        let mut process = spawn(command, stderr_path, Stdio::piped())?;
        let stdout = process.child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            bail!("collector did not start: {line:?}\n{}", process.stderr());
        };
        let addr = addr
            .parse()
            .with_context(|| format!("bad address in {line:?}"))?;
        Ok(Collector { process, addr })
    }

    pub fn url(&self) -> String {
        url(self.addr)
    }
}

/// The database of the collector site in `dir`: an SQLite file there, or with
/// `HYGIENE_TEST_BACKEND=postgres` a PostgreSQL database of its own on the server
/// `HYGIENE_TEST_POSTGRES` names (so that every end-to-end test runs on either engine).
pub fn db_url(dir: &Path) -> String {
    if on_postgres() {
        hygiene_collector::store::test_db::site_url(dir)
    } else {
        format!("sqlite://{}", dir.join("collector.db").display())
    }
}

/// Whether the end-to-end tests run on PostgreSQL (`HYGIENE_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("HYGIENE_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

pub fn url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// A free loopback port, for a collector that should start later at a known address.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running agent.
pub struct Agent {
    pub process: Process,
}

/// What an agent is started with.
pub struct AgentSpec<'a> {
    pub collector: String,
    pub cert_dir: &'a Path,
    pub state_dir: &'a Path,
    pub roots: Vec<&'a Path>,
    pub rules: Vec<&'a Path>,
    pub iocs: Vec<&'a Path>,
}

impl Agent {
    pub fn start(spec: &AgentSpec<'_>, log_dir: &Path) -> anyhow::Result<Agent> {
        Agent::start_with(spec, log_dir, &[])
    }

    /// [`Agent::start`] with more `hygiene-agent run` flags (`--cpu-limit 1`, ...).
    pub fn start_with(
        spec: &AgentSpec<'_>,
        log_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        let mut command = Command::new(bin("hygiene-agent"));
        command
            .args(["run", "--collector", &spec.collector, "--cert-dir"])
            .arg(spec.cert_dir)
            .arg("--state-dir")
            .arg(spec.state_dir)
            .args(["--heartbeat-seconds", "1", "--reconnect-max-seconds", "2"])
            // A socket list taken every 2 s soon holds the agent's own stream; an inventory
            // every 2 s shows the deltas that follow the first complete one.
            .args(["--connections-interval-seconds", "2"])
            .args(["--inventory-interval-seconds", "2"]);
        for root in &spec.roots {
            command.arg("--root").arg(root);
        }
        for rules in &spec.rules {
            command.arg("--rules").arg(rules);
        }
        for iocs in &spec.iocs {
            command.arg("--iocs").arg(iocs);
        }
        command.args(extra);
        let stderr_path = log_dir.join(format!("agent-{}.log", unique()));
        Ok(Agent {
            process: spawn(command, stderr_path, Stdio::null())?,
        })
    }
}

/// A running `hygiene-loadgen`, its stdout (one JSON line per sweep that reached every
/// simulated agent) kept in a file.
pub struct Loadgen {
    pub process: Process,
    stdout_path: PathBuf,
}

impl Loadgen {
    pub fn start(
        collector: &str,
        pki: &Pki,
        agents: u32,
        inventory: Option<&Path>,
        log_dir: &Path,
    ) -> anyhow::Result<Loadgen> {
        let mut command = Command::new(bin("hygiene-loadgen"));
        command
            .args(["--collector", collector, "--pki"])
            .arg(&pki.dir)
            .args(["--agents", &agents.to_string(), "--heartbeat-seconds", "2"]);
        if let Some(inventory) = inventory {
            command.arg("--inventory").arg(inventory);
        }
        let id = unique();
        let stdout_path = log_dir.join(format!("loadgen-{id}.out"));
        let stdout = std::fs::File::create(&stdout_path)?;
        let process = spawn(
            command,
            log_dir.join(format!("loadgen-{id}.log")),
            stdout.into(),
        )?;
        Ok(Loadgen {
            process,
            stdout_path,
        })
    }

    /// The JSON lines printed so far.
    pub fn reports(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.stdout_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// Runs `hygienectl --collector URL --pki DIR ARGS...`.
pub fn ctl(collector: &str, pki_dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Command::new(bin("hygienectl"))
        .args(["--collector", collector, "--pki"])
        .arg(pki_dir)
        .args(args)
        .env_remove("HYGIENECTL_CONFIG")
        .output()
        .context("cannot run hygienectl")
}

/// Runs hygienectl with `--format json` appended and parses stdout; exit codes 0 and 1 are
/// both success for a listing (1 means findings).
pub fn ctl_json(
    collector: &str,
    pki_dir: &Path,
    args: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json"]);
    let output = ctl(collector, pki_dir, &all)?;
    match output.status.code() {
        Some(0 | 1) => Ok(serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "hygienectl printed no JSON: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?),
        _ => bail!(
            "hygienectl {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test site: a temporary directory holding a PKI and a collector's database, the collector
/// on a loopback port of its own (so that it can be restarted at the same address), and
/// hygienectl at hand.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub collector: Collector,
    pub listen: String,
    /// The collector's database URL.
    pub db: String,
    /// The collector's extra `serve` flags, kept for restarts.
    collector_flags: Vec<String>,
}

impl Site {
    pub fn start() -> anyhow::Result<Site> {
        Site::start_with(&[])
    }

    /// [`Site::start`] with more `hygiene-collector serve` flags.
    pub fn start_with(collector_flags: &[&str]) -> anyhow::Result<Site> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::init(&dir.path().join("pki"))?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let db = db_url(dir.path());
        let collector = Collector::start_on(dir.path(), &pki, &listen, &db, collector_flags)?;
        Ok(Site {
            dir,
            pki,
            collector,
            listen,
            db,
            collector_flags: collector_flags.iter().map(|f| f.to_string()).collect(),
        })
    }

    /// Stops the collector and starts it again on the same address and database.
    pub fn restart_collector(&mut self) -> anyhow::Result<()> {
        self.collector.process.terminate(Duration::from_secs(10))?;
        self.start_collector()
    }

    /// Stops the collector, runs `hygiene-collector db migrate` from the site's database into
    /// `to` and, when it succeeds, starts the collector again on `to`. The migration's output.
    pub fn move_database(&mut self, to: &str) -> anyhow::Result<Output> {
        self.collector.process.terminate(Duration::from_secs(10))?;
        let output = Command::new(bin("hygiene-collector"))
            .args(["db", "migrate", "--from", &self.db, "--to", to])
            .output()?;
        if output.status.success() {
            self.db = to.to_owned();
        }
        self.start_collector()?;
        Ok(output)
    }

    /// Starts the collector (after it was stopped) on the site's address and database.
    fn start_collector(&mut self) -> anyhow::Result<()> {
        let flags: Vec<&str> = self.collector_flags.iter().map(String::as_str).collect();
        self.collector =
            Collector::start_on(self.dir.path(), &self.pki, &self.listen, &self.db, &flags)?;
        Ok(())
    }

    /// `hygienectl ARGS...` against this site's collector.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(&self.collector.url(), &self.pki.dir, args).expect("hygienectl runs")
    }

    /// [`ctl_json`] against this site's collector; panics when the call fails.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        ctl_json(&self.collector.url(), &self.pki.dir, args).unwrap()
    }

    /// Starts the agent of host `id` with one root and one rules path, under `DIR/ID/`
    /// (`root`, `certs`, `state`); its certificate is issued on first start. `files` (name,
    /// content) are written into the root on first start too.
    pub fn start_agent(
        &self,
        id: &str,
        files: &[(&str, &str)],
        rules: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        self.start_agent_with_rules(id, files, &[rules], extra)
    }

    /// [`Site::start_agent`] with any number of rule paths (none: the agent has only what the
    /// collector sends it).
    pub fn start_agent_with_rules(
        &self,
        id: &str,
        files: &[(&str, &str)],
        rules: &[&Path],
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        let base = self.dir.path().join(id);
        let root = base.join("root");
        let certs = base.join("certs");
        if !certs.exists() {
            std::fs::create_dir_all(&root)?;
            for (name, content) in files {
                std::fs::write(root.join(name), content)?;
            }
            self.pki.issue_agent(id, &certs)?;
        }
        let state = base.join("state");
        let spec = AgentSpec {
            collector: self.collector.url(),
            cert_dir: &certs,
            state_dir: &state,
            roots: vec![&root],
            rules: rules.to_vec(),
            iocs: vec![],
        };
        Agent::start_with(&spec, self.dir.path(), extra)
    }

    /// The root directory of host `id`'s agent (see [`Site::start_agent`]).
    pub fn root_of(&self, id: &str) -> PathBuf {
        self.dir.path().join(id).join("root")
    }

    /// `hosts show ID` as JSON; null while the collector does not know the host.
    pub fn host(&self, id: &str) -> serde_json::Value {
        ctl_json(&self.collector.url(), &self.pki.dir, &["hosts", "show", id])
            .unwrap_or(serde_json::Value::Null)
    }

    /// The host's status (`hosts show`).
    pub fn status(&self, id: &str) -> String {
        self.host(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The host's findings (`findings list --host ID`).
    pub fn findings(&self, id: &str) -> Vec<serde_json::Value> {
        self.json(&["findings", "list", "--host", id])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Writes `text` to `name` under the site's directory (creating directories on the way).
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("directory");
        }
        std::fs::write(&path, text).expect("file written");
        path
    }
}

/// The serial number of the certificate in a PEM file, in lower-case hex (as the collector
/// shows serials).
pub fn serial_of(pem: &Path) -> String {
    let pem = std::fs::read(pem).expect("certificate file");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM certificate");
    let cert = pem.parse_x509().expect("X.509 certificate");
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
