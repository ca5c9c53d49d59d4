//! Stripes: per-thread slots of shared state, so that the counters a call
//! writes stay on a cache line of its own core.
//!
//! Each OS thread gets a small stable index on first use (round-robin over
//! the threads that ask); a [`Striped`] value holds one cache-line-padded
//! slot per stripe, a power of two at least the machine's parallelism (at
//! most [`MAX_STRIPES`]), and a thread uses the slot its index selects.
//! Two threads may share a slot (more threads than stripes); slots are
//! atomics, so that costs only contention, never correctness. Readers that
//! need a total sum the slots.

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most stripes a value is split into.
pub(crate) const MAX_STRIPES: usize = 64;

/// The next index to give a thread.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, below [`count`]; `usize::MAX` until first
    /// asked for.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, below [`count`].
#[cfg(test)]
fn index() -> usize {
    let stripe = STRIPE.with(Cell::get);
    if stripe < MAX_STRIPES {
        return stripe;
    }
    assign()
}

#[cold]
#[inline(never)]
fn assign() -> usize {
    let stripe = NEXT.fetch_add(1, Ordering::Relaxed) % count();
    STRIPE.with(|c| c.set(stripe));
    stripe
}

/// How many stripes a value is split into: the machine's parallelism
/// rounded up to a power of two, at most [`MAX_STRIPES`].
pub(crate) fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_STRIPES)
            .next_power_of_two()
    })
}

/// A value on a cache line (a pair of lines, for adjacent-line
/// prefetching) of its own.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Padded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One padded slot per stripe: [`count`] of them.
pub(crate) struct Striped<T> {
    slots: Box<[Padded<T>]>,
}

impl<T> Striped<T> {
    /// [`count`] slots, each made by `make`.
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        Self {
            slots: (0..count()).map(|_| Padded(make())).collect(),
        }
    }

    /// The slot of the calling thread.
    #[inline]
    pub(crate) fn local(&self) -> &T {
        // One comparison both finds a thread not yet given a stripe and
        // proves the index in bounds.
        match self.slots.get(STRIPE.with(Cell::get)) {
            Some(slot) => slot,
            None => self.first_local(),
        }
    }

    /// The slot of a thread not yet given a stripe.
    #[cold]
    #[inline(never)]
    fn first_local(&self) -> &T {
        self.get(assign())
    }

    /// The slot of a stripe (any number; it is reduced to the count).
    #[inline]
    pub(crate) fn get(&self, stripe: usize) -> &T {
        &self.slots[stripe % self.slots.len()]
    }

    /// Every slot, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &s.0)
    }
}

impl<T: fmt::Debug> fmt::Debug for Striped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_index_and_every_index_is_below_the_count() {
        let here = index();
        assert_eq!(index(), here);
        assert!(here < count());
        let there = std::thread::spawn(index).join().unwrap();
        assert!(there < count());
    }

    #[test]
    fn the_count_is_a_bounded_power_of_two() {
        let n = count();
        assert!(n.is_power_of_two() && n <= MAX_STRIPES);
        let s = Striped::new(|| AtomicUsize::new(1));
        assert_eq!(s.iter().count(), n);
        assert_eq!(
            s.iter().map(|a| a.load(Ordering::Relaxed)).sum::<usize>(),
            n
        );
        s.local().fetch_add(1, Ordering::Relaxed);
        assert_eq!(s.get(index()).load(Ordering::Relaxed), 2);
        assert_eq!(s.get(index() + n).load(Ordering::Relaxed), 2);
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 128);
    }
}
