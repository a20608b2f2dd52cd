//! Generated gRPC types for the Hygiene protocol, `hygiene.v1`.
//!
//! Two services share one mTLS listener on the collector:
//! - [`v1::agent_service_server::AgentService`]: one long-lived bidirectional stream per agent
//!   (`Session`). Every [`v1::AgentMessage`] carries a per-agent sequence number; the collector
//!   answers each one with an [`v1::Ack`] only after its effect is committed to the store.
//! - [`v1::admin_service_server::AdminService`]: the unary calls behind `hygienectl`.
//!
//! These types stop at the edge: the collector's store and the CLI's output work on their own
//! domain types and convert at the service boundary.

pub mod bundle;

/// The largest collector message an agent takes (a rule bundle: signature-base is 7 MB); the
/// collector refuses to publish a bundle that would not fit.
pub const MAX_AGENT_COMMAND_SIZE: usize = 64 * 1024 * 1024;

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("hygiene.v1");
}

/// Displays an error followed by its sources (`outer: inner: root cause`). Transport errors
/// hide the useful part ("connection refused", "certificate unknown") in the chain; a source
/// whose text is already said (several layers repeat their inner error) is said once.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        let mut source = self.0.source();
        while let Some(inner) = source {
            let text = inner.to_string();
            if !said.contains(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            source = inner.source();
        }
        f.write_str(&said)
    }
}
