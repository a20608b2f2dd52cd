//! Where a bundle's rollout stands on each host (`hygienectl rules status`).

use std::fmt;

/// One host's state for the current bundle of a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    /// None of this kind was ever published: the agent's own files are what there is.
    NoBundle,
    /// Not put on the host's stream yet (offline, or waiting for its batch).
    Queued,
    /// Put on the host's stream; no answer yet.
    Sent,
    /// The host runs it.
    Applied,
    /// The host refused it, and why.
    Refused(String),
}

impl RolloutState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutState::NoBundle => "no_bundle",
            RolloutState::Queued => "queued",
            RolloutState::Sent => "sent",
            RolloutState::Applied => "applied",
            RolloutState::Refused(_) => "refused",
        }
    }
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutState::Refused(reason) if !reason.is_empty() => {
                write!(f, "refused ({reason})")
            }
            other => f.write_str(other.as_str()),
        }
    }
}

/// What a host reported and was sent for one kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostKindState<'a> {
    /// The version it runs; empty: its own files.
    pub running: &'a str,
    /// The version it last refused, and why.
    pub refused: &'a str,
    pub reason: &'a str,
    /// The version last put on its stream.
    pub offered: &'a str,
}

/// Where the rollout of `current` (the current bundle's version, `None`: none published)
/// stands on a host.
pub fn rollout_state(current: Option<&str>, host: &HostKindState<'_>) -> RolloutState {
    let Some(current) = current else {
        return RolloutState::NoBundle;
    };
    if host.running == current {
        RolloutState::Applied
    } else if host.refused == current {
        RolloutState::Refused(host.reason.to_owned())
    } else if host.offered == current {
        RolloutState::Sent
    } else {
        RolloutState::Queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_rollout_state_follows_what_it_was_sent_and_said() {
        let host = |running, refused, offered| HostKindState {
            running,
            refused,
            reason: "bad signature",
            offered,
        };
        assert_eq!(
            rollout_state(None, &host("", "", "")),
            RolloutState::NoBundle
        );
        assert_eq!(
            rollout_state(Some("v2"), &host("v1", "", "")),
            RolloutState::Queued
        );
        assert_eq!(
            rollout_state(Some("v2"), &host("v1", "", "v2")),
            RolloutState::Sent
        );
        assert_eq!(
            rollout_state(Some("v2"), &host("v2", "", "v2")),
            RolloutState::Applied
        );
        let refused = rollout_state(Some("v2"), &host("v1", "v2", "v2"));
        assert_eq!(refused.to_string(), "refused (bad signature)");
        // An old refusal does not hold the new bundle back.
        assert_eq!(
            rollout_state(Some("v3"), &host("v1", "v2", "v2")),
            RolloutState::Queued
        );
    }
}
