//! Services: the use cases the admin API (and the web console to come) call, over the store
//! and the domain modules. Domain modules (`intel`, `vuln`, `findings`, ...) never reach the
//! store; services do.

mod intel;
mod vulns;

pub use intel::Intel;
pub use vulns::{VulnError, Vulns};
