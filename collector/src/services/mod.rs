//! Services: the use cases the admin API (and the web console to come) call, over the store
//! and the domain modules. Domain modules (`intel`, `vuln`, `findings`, ...) never reach the
//! store; services do. Adapters turn their requests into a service call and the answer (or a
//! [`ServiceError`]) into their own shape; no use case is written in an adapter.

mod cleanup;
mod error;
mod fleet;
mod intel;
mod rules;
mod site;
mod sweeps;
mod vulns;

pub use cleanup::{Cleanup, Progress, parse_change, parse_kind, parse_state, snapshot_statuses};
pub use error::{ServiceError, ServiceResult};
pub use fleet::{CutOff, Fleet, HostQuery, HostView, parse_status};
pub use intel::Intel;
pub use rules::{Published, Rules};
pub use site::{Site, note_alive};
pub use sweeps::{StartedSweep, SweepRequest, Sweeps};
pub use vulns::{VulnError, Vulns};
