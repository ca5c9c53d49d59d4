//! The status values layers report for health snapshots, beside their
//! events.

#[cfg(feature = "serde")]
use serde::Serialize;

/// The state of a rate limiter's shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct StoreStatus {
    /// `redis`.
    pub kind: &'static str,
    /// The namespace of its keys.
    pub namespace: String,
    /// Whether the store is failing and the fail mode decides.
    pub degraded: bool,
    /// The fail mode: `fail_open`, `fail_closed` or `local`.
    pub on_failure: &'static str,
    /// `exact` or `leased`.
    pub consistency: &'static str,
    /// The state of the breaker in front of the store.
    pub breaker: &'static str,
    /// Script calls sent.
    pub round_trips: u64,
    /// Store calls that failed or timed out.
    pub failures: u64,
    /// The usage the store last reported for the keys seen most recently
    /// (at most 64).
    pub usage: Vec<KeyUsage>,
}

/// A key's real-time usage of its tier, as the store last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct KeyUsage {
    /// The tier.
    pub tier: String,
    /// The key, as the store names it.
    pub key: String,
    /// Calls counted in the current period (zero without a period quota).
    pub used: u64,
    /// The period quota (zero without one).
    pub limit: u64,
    /// When the period ends, in seconds since the Unix epoch (zero without
    /// a period quota).
    pub reset_unix: u64,
    /// Calls the rate allowed at once after the last decision.
    pub remaining_burst: u64,
}
