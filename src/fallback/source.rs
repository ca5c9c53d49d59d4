//! Which source gave a fallback answer.
//!
//! Why a fallback fires is in `reason`; how responses are passed on and
//! kept, in `kind`; the sources themselves, in `alternate` and `last`.

pub use super::alternate::{Alternate, AlternateSource, NoAlternate};
pub use super::kind::{Mark, NoMark, Plain, ResponseKind};
pub use super::last::{Computed, LastResort, NoLast, Static};
pub use super::reason::{Cause, Reason, Trigger};
pub use crate::event::FallbackSource;
