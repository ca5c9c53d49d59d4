//! Which source gave a fallback answer.
//!
//! Why a fallback fires is in `reason`; how responses are passed on and
//! kept, in `kind`; the sources themselves, in `alternate` and `last`.

use std::fmt;
use std::time::Duration;

pub use super::alternate::{Alternate, AlternateSource, NoAlternate};
pub use super::kind::{Mark, NoMark, Plain, ResponseKind};
pub use super::last::{Computed, LastResort, NoLast, Static};
pub use super::reason::{Cause, Reason, Trigger};

/// Which source gave a fallback answer.
///
/// HTTP responses carry it in their extensions (see
/// [`FallbackLayerBuilder::http`](super::FallbackLayerBuilder::http)); other
/// responses can be marked with
/// [`FallbackLayerBuilder::mark`](super::FallbackLayerBuilder::mark). A
/// response without it is the primary service's own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FallbackSource {
    /// The alternate service answered.
    Alternate,
    /// A cached answer to an earlier, identical request.
    Cache {
        /// How long ago the answer was recorded (tokio clock).
        age: Duration,
    },
    /// The static or computed answer.
    Static,
}

impl FallbackSource {
    /// A stable lowercase name, as used in events and in the source header:
    /// `alternate`, `cache` or `static`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            FallbackSource::Alternate => "alternate",
            FallbackSource::Cache { .. } => "cache",
            FallbackSource::Static => "static",
        }
    }
}

impl fmt::Display for FallbackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
