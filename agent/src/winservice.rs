//! The agent as a Windows service (`hygiene-agent service install|uninstall|run`).
//!
//! The MSI registers the service (wixl writes `ServiceInstall`), but cannot write recovery
//! actions, so the service sets them on itself at every start: restart after 1, 5 and 15
//! minutes, the count reset after a day, also when it stops with an error. Stop and
//! pre-shutdown end the agent as Ctrl-C does: the current file finishes, what the collector has
//! not acknowledged stays in the spool, and the process exits within [`STOP_WAIT_HINT`].
//! The service reads `C:\ProgramData\Hygiene\agent.toml`; the MSI's `COLLECTOR`,
//! `ENROLL_TOKEN` and `CA_FINGERPRINT` properties reach it as registry values under
//! [`SETTINGS_KEY`].

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

pub const SERVICE_NAME: &str = "HygieneAgent";
const DISPLAY_NAME: &str = "Hygiene agent";
const DESCRIPTION: &str =
    "Sweeps this computer for malware and reports to the Hygiene collector over mutual TLS.";
/// What the service tells Windows a stop may take: the agent's own shutdown bound plus slack.
pub const STOP_WAIT_HINT: Duration = Duration::from_secs(20);
/// Where the MSI's public properties land (values `Collector`, `EnrollToken`,
/// `CaFingerprint`).
pub const SETTINGS_KEY: &str = r"SOFTWARE\Hygiene\Agent";

/// The agent's data directory on Windows: certificates, state, logs, config.
pub fn data_dir() -> PathBuf {
    PathBuf::from(r"C:\ProgramData\Hygiene")
}

/// The service's config file.
pub fn config_path() -> PathBuf {
    data_dir().join("agent.toml")
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The Windows error itself, not the crate's wrapper ("IO error in winapi call").
    #[error("service {SERVICE_NAME}: {what}: {}", winapi_cause(cause))]
    Windows {
        what: &'static str,
        cause: windows_service::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn windows(what: &'static str) -> impl FnOnce(windows_service::Error) -> ServiceError {
    move |cause| ServiceError::Windows { what, cause }
}

fn winapi_cause(error: &windows_service::Error) -> String {
    match std::error::Error::source(error) {
        Some(inner) => inner.to_string(),
        None => error.to_string(),
    }
}

/// Registers the service: this executable with `service run`, started automatically (delayed)
/// as LocalSystem, with its recovery actions.
pub fn install() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(windows("open the service manager"))?;
    let executable_path =
        std::env::current_exe().map_err(|e| ServiceError::Other(format!("own path: {e}")))?;
    let info = ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from(DISPLAY_NAME),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path,
        launch_arguments: vec![OsString::from("service"), OsString::from("run")],
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(windows("create"))?;
    service
        .set_description(DESCRIPTION)
        .map_err(windows("set the description"))?;
    configure(&service)
}

/// Stops the service if it runs and removes it.
pub fn uninstall() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(windows("open the service manager"))?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(windows("open"))?;
    if service
        .query_status()
        .map_err(windows("query"))?
        .current_state
        != ServiceState::Stopped
    {
        let _ = service.stop();
        let deadline = std::time::Instant::now() + STOP_WAIT_HINT;
        while std::time::Instant::now() < deadline
            && service.query_status().map(|s| s.current_state).ok() != Some(ServiceState::Stopped)
        {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    service.delete().map_err(windows("delete"))
}

/// Delayed automatic start and the recovery actions, which the MSI cannot set. Each is tried
/// even when another fails (Wine, for one, has no delayed start), and each failure is named.
fn configure(service: &windows_service::service::Service) -> Result<(), ServiceError> {
    let restart = |minutes: u64| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(minutes * 60),
    };
    let failures: Vec<String> = [
        (
            "set delayed automatic start",
            service.set_delayed_auto_start(true),
        ),
        (
            "set the recovery actions",
            service.update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
                reboot_msg: None,
                command: None,
                actions: Some(vec![restart(1), restart(5), restart(15)]),
            }),
        ),
        (
            "apply the recovery actions to errors",
            service.set_failure_actions_on_non_crash_failures(true),
        ),
    ]
    .into_iter()
    .filter_map(|(what, result)| result.err().map(|e| windows(what)(e).to_string()))
    .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Other(failures.join("; ")))
    }
}

/// Sets the recovery actions on the installed service (done at every start: the MSI cannot).
fn configure_installed() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(windows("open the service manager"))?;
    let service = manager
        .open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)
        .map_err(windows("open"))?;
    configure(&service)
}

/// The agent's body: runs until the future it is given resolves.
pub type Body = fn(shutdown: Pin<Box<dyn Future<Output = ()> + Send>>) -> Result<(), anyhow::Error>;

static BODY: OnceLock<Body> = OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Runs `body` as the service (`service run`, started by the service manager); returns when
/// the service has stopped.
pub fn run(body: Body) -> Result<(), ServiceError> {
    let _ = BODY.set(body);
    windows_service::service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(windows(
        "connect to the service manager (is this started by it?)",
    ))
}

fn service_main(_arguments: Vec<OsString>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop_tx = std::sync::Mutex::new(Some(stop_tx));
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Preshutdown | ServiceControl::Shutdown => {
            if let Some(tx) = stop_tx.lock().expect("stop lock").take() {
                let _ = tx.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = match service_control_handler::register(SERVICE_NAME, handler) {
        Ok(status) => status,
        Err(err) => {
            tracing::error!("cannot register the service's control handler: {err}");
            return;
        }
    };
    let report = move |state, accepted, exit_code, wait_hint| {
        let _ = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accepted,
            exit_code,
            checkpoint: 0,
            wait_hint,
            process_id: None,
        });
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN,
        ServiceExitCode::Win32(0),
        Duration::ZERO,
    );
    if let Err(err) = configure_installed() {
        tracing::warn!("{err}");
    }
    // Certificates, spool and logs: SYSTEM and Administrators only (the MSI cannot set an
    // ACL with wixl).
    let data = data_dir();
    if let Err(err) = std::fs::create_dir_all(&data)
        .map_err(|e| e.to_string())
        .and_then(|()| crate::quarantine::restrict_to_system(&data).map_err(|e| e.to_string()))
    {
        tracing::warn!(dir = %data.display(), "cannot restrict the data directory: {err}");
    }
    let body = BODY
        .get()
        .expect("service body set before the dispatcher starts");
    let stop_requested = std::sync::Arc::new(OnceLock::new());
    let stopped = Box::pin({
        let stop_requested = stop_requested.clone();
        async move {
            let _ = stop_rx.await;
            let _ = stop_requested.set(std::time::Instant::now());
            // At once, so that whoever stops the service (an installer replacing it, the
            // shutdown) waits for it to finish instead of taking it for stuck.
            report(
                ServiceState::StopPending,
                ServiceControlAccept::empty(),
                ServiceExitCode::Win32(0),
                STOP_WAIT_HINT,
            );
            tracing::info!("stop requested by the service manager");
        }
    });
    let result = body(stopped);
    // How long the stop took, against the STOP_WAIT_HINT Windows was promised.
    if let Some(requested) = stop_requested.get() {
        tracing::info!(
            millis = requested.elapsed().as_millis() as u64,
            "service stopped"
        );
    }
    let exit_code = match result {
        Ok(()) => ServiceExitCode::Win32(0),
        Err(err) => {
            tracing::error!("the agent stopped: {err:#}");
            ServiceExitCode::ServiceSpecific(2)
        }
    };
    report(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit_code,
        Duration::ZERO,
    );
}

/// Writes the service's config file with the collector's address the MSI was given, so that
/// an upgrade, which writes the MSI's settings again (empty when not given), keeps it.
pub fn write_config(path: &std::path::Path, collector: &str) -> Result<(), ServiceError> {
    let mut table = toml::Table::new();
    table.insert("collector".into(), collector.into());
    let text = format!(
        "# Written by the Hygiene agent service at its first start from the MSI's COLLECTOR.\n{}",
        toml::to_string(&table).map_err(|e| ServiceError::Other(e.to_string()))?
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ServiceError::Other(format!("{}: {e}", dir.display())))?;
    }
    std::fs::write(path, text).map_err(|e| ServiceError::Other(format!("{}: {e}", path.display())))
}

/// Removes the enrollment token from the registry (where any local user could read it) once
/// the agent has its certificate.
pub fn forget_token() {
    if let Err(err) = crate::inventory::delete_hklm_value(SETTINGS_KEY, "EnrollToken") {
        tracing::warn!("cannot remove the used enrollment token from HKLM\\{SETTINGS_KEY}: {err}");
    }
}

/// Sends the agent's errors to the Application event log too (source [`SERVICE_NAME`]), where
/// Windows administrators and their monitoring look first.
pub struct EventLogLayer {
    source: EventSource,
}

struct EventSource(windows_sys::Win32::Foundation::HANDLE);

// SAFETY: an event source handle may be used from any thread (ReportEventW is thread-safe).
unsafe impl Send for EventSource {}
// SAFETY: as above; the handle is only passed to ReportEventW.
unsafe impl Sync for EventSource {}

impl EventLogLayer {
    /// `None` when the event log cannot be opened (the file log still works).
    pub fn open() -> Option<Self> {
        let name = wide(SERVICE_NAME);
        // SAFETY: `name` is NUL-terminated; a null server name is the local computer.
        let handle = unsafe {
            windows_sys::Win32::System::EventLog::RegisterEventSourceW(
                std::ptr::null(),
                name.as_ptr(),
            )
        };
        (!handle.is_null()).then(|| EventLogLayer {
            source: EventSource(handle),
        })
    }

    fn report(&self, text: &str) {
        use windows_sys::Win32::System::EventLog::{EVENTLOG_ERROR_TYPE, ReportEventW};
        let text = wide(text);
        let strings = [text.as_ptr()];
        // SAFETY: the handle is open; one NUL-terminated string, no binary data.
        unsafe {
            ReportEventW(
                self.source.0,
                EVENTLOG_ERROR_TYPE,
                0,
                1,
                std::ptr::null_mut(),
                1,
                0,
                strings.as_ptr(),
                std::ptr::null(),
            );
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventLogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let mut text = String::new();
        event.record(&mut EventText(&mut text));
        self.report(&text);
    }
}

/// The event's message and fields as one line.
struct EventText<'a>(&'a mut String);

impl tracing::field::Visit for EventText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

/// The MSI's settings (`Collector`, `EnrollToken`, `CaFingerprint` under [`SETTINGS_KEY`]),
/// each `None` when absent or empty.
pub fn msi_settings() -> [Option<String>; 3] {
    ["Collector", "EnrollToken", "CaFingerprint"]
        .map(|name| crate::inventory::hklm_string(SETTINGS_KEY, name).filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_written_at_first_start_reads_back_with_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("agent.toml");
        write_config(&path, "https://collector.example.gov:50051").unwrap();
        let file = crate::config::ConfigFile::read(&path).unwrap();
        assert_eq!(
            file.collector.as_deref(),
            Some("https://collector.example.gov:50051")
        );
        // Text that would break TOML if pasted in is escaped.
        write_config(&path, "https://a\"b").unwrap();
        let file = crate::config::ConfigFile::read(&path).unwrap();
        assert_eq!(file.collector.as_deref(), Some("https://a\"b"));
    }
}
