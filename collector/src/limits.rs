//! What one agent may cost the collector, so that a broken or hostile agent cannot fill the
//! store or starve the others: messages are paced to a rate per stream, and a sweep's
//! findings are stored up to a limit per host, the rest counted. A sweep whose findings were
//! not all stored proves nothing about the files it did not report: it is recorded as
//! failed, so that its silence resolves no finding.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// Messages per second one stream may send, on average.
    pub messages_per_second: u32,
    /// Messages a stream may send at once before pacing starts (an agent back from a long
    /// time offline replays its spool).
    pub burst: u32,
    /// Findings of one sweep stored for one host.
    pub findings_per_sweep: u64,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            messages_per_second: 200,
            burst: 2_000,
            findings_per_sweep: 50_000,
        }
    }
}

/// A token bucket: how long a stream's next message waits.
#[derive(Debug)]
pub struct Pace {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pace {
    pub fn new(limits: &AgentLimits, now: Instant) -> Self {
        let burst = f64::from(limits.burst.max(1));
        Pace {
            rate: f64::from(limits.messages_per_second.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token for a message arriving at `now`; `Some(wait)` when the stream is over
    /// its rate and the message is to be handled only after `wait`.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// A sweep's findings on one host: stored so far, and left out over the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepTally {
    pub stored: u64,
    pub dropped: u64,
}

/// The tallies of the sweeps under way, shared by every stream (an agent may reconnect
/// mid-sweep).
#[derive(Debug, Default)]
pub struct SweepFindings {
    tallies: Mutex<HashMap<(String, String), SweepTally>>,
}

impl SweepFindings {
    /// Whether `host`'s `sweep` has a tally (else start it with [`Self::start`] from what the
    /// store holds).
    pub fn knows(&self, host: &str, sweep: &str) -> bool {
        self.tallies
            .lock()
            .expect("tallies lock")
            .contains_key(&(host.to_owned(), sweep.to_owned()))
    }

    pub fn start(&self, host: &str, sweep: &str, stored: u64) {
        self.tallies
            .lock()
            .expect("tallies lock")
            .entry((host.to_owned(), sweep.to_owned()))
            .or_insert(SweepTally { stored, dropped: 0 });
    }

    /// Of `count` new findings, how many may be stored under `limit`; the rest are counted
    /// as dropped.
    pub fn admit(&self, host: &str, sweep: &str, count: usize, limit: u64) -> usize {
        let mut tallies = self.tallies.lock().expect("tallies lock");
        let tally = tallies
            .entry((host.to_owned(), sweep.to_owned()))
            .or_default();
        let room = limit.saturating_sub(tally.stored);
        let admitted = (count as u64).min(room);
        tally.stored += admitted;
        tally.dropped += count as u64 - admitted;
        admitted as usize
    }

    /// The sweep's tally, forgotten (its summary arrived).
    pub fn finish(&self, host: &str, sweep: &str) -> Option<SweepTally> {
        self.tallies
            .lock()
            .expect("tallies lock")
            .remove(&(host.to_owned(), sweep.to_owned()))
    }
}

/// Why a sweep is recorded as failed when its findings were not all stored: more reported
/// than the limit, or some left out (`tally`, when this collector saw them arrive).
pub fn over_limit_failure(reported: u64, tally: Option<SweepTally>, limit: u64) -> Option<String> {
    let dropped = tally.map_or(0, |t| t.dropped);
    (reported > limit || dropped > 0).then(|| {
        format!(
            "the sweep reported {reported} findings; at most {limit} per host and sweep are stored ({dropped} left out here), so it proves nothing about the rest"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_messages_are_paced_to_the_rate() {
        let limits = AgentLimits {
            messages_per_second: 100,
            burst: 10,
            findings_per_sweep: 1,
        };
        let start = Instant::now();
        let mut pace = Pace::new(&limits, start);
        for _ in 0..10 {
            assert_eq!(pace.take(start), None);
        }
        let wait = pace.take(start).unwrap();
        assert_eq!(wait, Duration::from_millis(10));
        // After waiting, the next one waits again as long: the rate holds.
        let wait = pace.take(start + wait).unwrap();
        assert_eq!(wait, Duration::from_millis(10));
        // A quiet second refills the burst, no more.
        let later = start + Duration::from_secs(5);
        for _ in 0..10 {
            assert_eq!(pace.take(later), None);
        }
        assert!(pace.take(later).is_some());
    }

    #[test]
    fn findings_beyond_the_limit_are_counted_not_admitted() {
        let tallies = SweepFindings::default();
        assert!(!tallies.knows("web-01", "s1"));
        tallies.start("web-01", "s1", 90);
        assert!(tallies.knows("web-01", "s1"));
        assert_eq!(tallies.admit("web-01", "s1", 8, 100), 8);
        assert_eq!(tallies.admit("web-01", "s1", 8, 100), 2);
        assert_eq!(tallies.admit("web-01", "s1", 8, 100), 0);
        // Another host's sweep has its own tally.
        assert_eq!(tallies.admit("web-02", "s1", 8, 100), 8);
        let tally = tallies.finish("web-01", "s1").unwrap();
        assert_eq!(
            tally,
            SweepTally {
                stored: 100,
                dropped: 14
            }
        );
        assert!(!tallies.knows("web-01", "s1"));
    }

    #[test]
    fn a_sweep_is_failed_when_its_findings_were_not_all_stored() {
        let within = Some(SweepTally {
            stored: 10,
            dropped: 0,
        });
        assert_eq!(over_limit_failure(10, within, 100), None);
        // Left out here, or more than the limit reported (findings left out before a
        // restart are known only from the summary).
        let dropped = Some(SweepTally {
            stored: 100,
            dropped: 3,
        });
        let failure = over_limit_failure(103, dropped, 100).unwrap();
        assert!(
            failure.contains("103 findings") && failure.contains("3 left out"),
            "{failure}"
        );
        assert!(over_limit_failure(150, None, 100).is_some());
    }
}
