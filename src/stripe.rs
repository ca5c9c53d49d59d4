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
//!
//! [`Spread`] applies the same idea to reference counts: a value shared by
//! handles that count their references on their thread's stripe, so that
//! a call on each of two cores can take and drop a reference without
//! writing a line the other core writes.

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// The most stripes a value is split into.
pub(crate) const MAX_STRIPES: usize = 64;

/// The next index to give a thread.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, below [`MAX_STRIPES`]; `usize::MAX` until
    /// first asked for.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, below [`MAX_STRIPES`]. A value split into `n`
/// slots (a power of two, so a divisor of `MAX_STRIPES`) uses slot
/// `index() & (n - 1)`: threads given consecutive stripes use different
/// slots.
#[inline]
pub(crate) fn index() -> usize {
    let stripe = STRIPE.with(Cell::get);
    if stripe < MAX_STRIPES {
        return stripe;
    }
    assign()
}

/// Gives the calling thread the next stripe. Nothing in it can panic or
/// call out, so that taking a thread's stripe never needs a landing pad in
/// the caller (a clone of a [`Spread`] happens while futures are live).
#[inline]
fn assign() -> usize {
    let stripe = NEXT.fetch_add(1, Ordering::Relaxed) % MAX_STRIPES;
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
    /// The number of slots (a power of two), less one.
    mask: usize,
}

impl<T> Striped<T> {
    /// [`count`] slots, each made by `make`.
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        let count = count();
        Self {
            slots: (0..count).map(|_| Padded(make())).collect(),
            mask: count - 1,
        }
    }

    /// The slot of the calling thread.
    #[inline]
    pub(crate) fn local(&self) -> &T {
        match self.slots.get(index() & self.mask) {
            Some(slot) => slot,
            None => self.get(0),
        }
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

/// A value shared by reference, like an [`Arc`], whose reference counts
/// are kept per stripe.
///
/// A handle is one word: a reference to a *lane*. Each value has one lane
/// per stripe (each on cache lines of its own), and root lanes. A root,
/// made by [`Spread::new`] or [`Spread::root`], keeps every lane alive; a
/// clone of a root takes the calling thread's lane, and a clone of a
/// lane's handle that same lane. So two threads that each clone and drop
/// handles, call after call, write only their own lanes' counts.
///
/// A handle that moved to another thread (a service cloned on one thread
/// and called on another) still counts on the lane it was made for, which
/// the threads of that lane share; [`Spread::rehome`] moves it to the
/// calling thread's lane, as long as some root is still alive. Services
/// rehome on each call, where they hold `&mut self`: the check is two
/// comparisons of the lane's stripe.
///
/// The value is dropped with the last handle, as with an `Arc`. Roots own
/// the lanes and a lane refers back to them only weakly, so no cycle keeps
/// anything alive.
pub(crate) struct Spread<T>(Arc<Lane<T>>);

/// Every stripe's lane, owned by the roots.
struct Lanes<T> {
    lanes: Box<[Spread<T>]>,
    /// The number of lanes (a power of two), less one.
    mask: usize,
}

/// A lane: one stripe's reference to the value, or a root's. Aligned so
/// that its count, at the start of its allocation, has a cache line (pair)
/// of its own.
#[repr(align(128))]
pub(crate) struct Lane<T> {
    value: Arc<T>,
    /// Every lane, for a root.
    root: Option<Arc<Lanes<T>>>,
    /// Every lane, while a root is alive.
    lanes: Weak<Lanes<T>>,
    /// The stripe it counts for; [`FIXED`] for a root's lane and a lane
    /// of its own, which never move.
    stripe: usize,
    /// Its value's [`Lanes::mask`].
    mask: usize,
}

/// The stripe of a lane that never moves.
const FIXED: usize = usize::MAX;

impl<T> Spread<T> {
    /// A root handle to `value`.
    pub(crate) fn new(value: T) -> Self {
        let value = Arc::new(value);
        let count = count();
        let lanes = Arc::new_cyclic(|weak: &Weak<Lanes<T>>| Lanes {
            lanes: (0..count)
                .map(|stripe| {
                    Spread(Arc::new(Lane {
                        value: Arc::clone(&value),
                        root: None,
                        lanes: weak.clone(),
                        stripe,
                        mask: count - 1,
                    }))
                })
                .collect(),
            mask: count - 1,
        });
        Self::root_of(value, lanes)
    }

    fn root_of(value: Arc<T>, lanes: Arc<Lanes<T>>) -> Self {
        Spread(Arc::new(Lane {
            value,
            lanes: Arc::downgrade(&lanes),
            mask: lanes.mask,
            root: Some(lanes),
            stripe: FIXED,
        }))
    }

    /// A root handle, which keeps every lane alive: for a service made from
    /// a layer, which may outlive the layer. (A plain clone is a lane's
    /// handle, cheaper to take and drop, but one whose later clones can no
    /// longer change lanes once every root is gone.)
    pub(crate) fn root(&self) -> Self {
        if self.0.root.is_some() {
            return Spread(Arc::clone(&self.0));
        }
        match self.0.lanes.upgrade() {
            Some(lanes) => Self::root_of(Arc::clone(&self.0.value), lanes),
            None => Spread(Arc::clone(&self.0)),
        }
    }

    /// Moves a lane's handle made for another thread's stripe to the
    /// calling thread's, if a root is still alive to reach it by. (A root
    /// needs no moving: its clones take their own thread's lane.)
    #[inline]
    pub(crate) fn rehome(&mut self) {
        let stripe = self.0.stripe;
        if stripe != FIXED && stripe != index() & self.0.mask {
            self.rehome_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn rehome_slow(&mut self) {
        if let Some(lanes) = self.0.lanes.upgrade() {
            if let Some(lane) = lanes.local() {
                *self = lane.clone();
            }
        }
    }

    /// The shared value's own reference, cloned: an ordinary `Arc`.
    pub(crate) fn to_arc(&self) -> Arc<T> {
        Arc::clone(&self.0.value)
    }

    /// Whether the handle counts on the calling thread's lane.
    #[cfg(test)]
    pub(crate) fn counts_here(&self) -> bool {
        self.0.stripe == index() & self.0.mask
    }
}

impl<T> Lanes<T> {
    /// The calling thread's lane (always there; `None` only to the
    /// compiler, so that taking it has no path that panics).
    #[inline]
    fn local(&self) -> Option<&Spread<T>> {
        self.lanes.get(index() & self.mask)
    }
}

impl<T> Clone for Spread<T> {
    /// The calling thread's lane, for a root; the same lane, for a lane's
    /// handle.
    #[inline]
    fn clone(&self) -> Self {
        let lane = match self.0.root.as_deref().and_then(Lanes::local) {
            Some(lane) => &lane.0,
            None => &self.0,
        };
        Spread(Arc::clone(lane))
    }
}

impl<T> Deref for Spread<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Spread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T> Lane<T> {
    /// A lane of its own, for a value one registry entry owns (a keyed
    /// layer's): an `Arc` of it is a [`Spread`] handle that never moves.
    pub(crate) fn single(value: T) -> Self {
        Self {
            value: Arc::new(value),
            root: None,
            lanes: Weak::new(),
            stripe: FIXED,
            mask: 0,
        }
    }

    /// The shared value's own reference, cloned: an ordinary `Arc`.
    pub(crate) fn to_arc(&self) -> Arc<T> {
        Arc::clone(&self.value)
    }
}

impl<T> From<Arc<Lane<T>>> for Spread<T> {
    #[inline]
    fn from(lane: Arc<Lane<T>>) -> Self {
        Self(lane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_thread_keeps_its_index_and_every_index_is_below_the_count() {
        let here = index();
        assert_eq!(index(), here);
        assert!(here < MAX_STRIPES);
        let there = std::thread::spawn(index).join().unwrap();
        assert!(there < MAX_STRIPES);
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

    /// A value that counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The address of a handle's lane.
    fn lane_of<T>(handle: &Spread<T>) -> usize {
        Arc::as_ptr(&handle.0) as usize
    }

    #[test]
    fn a_clone_of_a_root_takes_its_threads_lane_and_a_lanes_clone_keeps_it() {
        let root = Spread::new(7u32);
        let here = root.clone();
        assert_eq!(*here, 7);
        assert_eq!(lane_of(&here.clone()), lane_of(&here), "a lane's clone");
        assert_eq!(lane_of(&root.clone()), lane_of(&here), "the same thread");
        assert_ne!(
            lane_of(&root),
            lane_of(&here),
            "a root's own lane is not a stripe's"
        );
        // Each thread's clone counts on the lane of its own stripe.
        for _ in 0..4 {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let there = root.clone();
                    assert_eq!(there.0.stripe, index() & there.0.mask);
                    assert!(there.0.stripe < count());
                });
            });
        }
        assert_eq!(here.0.stripe, index() & here.0.mask);
    }

    #[test]
    fn rehome_moves_a_lanes_handle_to_the_calling_threads_lane_while_a_root_lives() {
        let root = Spread::new(1u8);
        let mut moved = root.clone();
        let (after, its_lane) = std::thread::scope(|s| {
            s.spawn(|| {
                moved.rehome();
                (lane_of(&moved), lane_of(&root.clone()))
            })
            .join()
            .unwrap()
        });
        assert_eq!(after, its_lane);
        // With every root gone, a handle stays on its lane.
        let mut orphan = root.clone();
        let before = lane_of(&orphan);
        drop(root);
        std::thread::scope(|s| {
            s.spawn(|| orphan.rehome());
        });
        assert_eq!(lane_of(&orphan), before);
        assert_eq!(*orphan, 1);
        // A root made from a lane's handle keeps the lanes again; with no
        // root left to reach them, it is that same lane.
        assert_eq!(lane_of(&orphan.root()), before);
    }

    #[test]
    fn a_single_lane_never_moves() {
        let single = Spread::from(Arc::new(Lane::single(3u8)));
        let mut moved = single.clone();
        std::thread::scope(|s| {
            s.spawn(|| moved.rehome());
        });
        assert_eq!(lane_of(&moved), lane_of(&single));
        assert_eq!(*single.root(), 3);
    }

    /// What a step of the model does to one handle, from one of three
    /// threads.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Clone,
        Root,
        Rehome,
        Drop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Clone),
            Just(Op::Root),
            Just(Op::Rehome),
            Just(Op::Drop)
        ]
    }

    proptest! {
        /// Whatever handles are made, moved and dropped, on whichever
        /// threads: every handle reads the value, the value lives exactly
        /// as long as some handle does, and it is dropped once, with
        /// everything that referred to it.
        #[test]
        fn the_value_lives_as_long_as_a_handle_and_is_dropped_once(
            ops in proptest::collection::vec((op(), any::<prop::sample::Index>(), 0usize..3), 1..120),
        ) {
            let drops = Arc::new(AtomicUsize::new(0));
            let first = Spread::new(Counted(Arc::clone(&drops)));
            let weak = Arc::downgrade(&first.to_arc());
            let mut handles = vec![first];
            for (op, which, thread) in ops {
                if handles.is_empty() {
                    break;
                }
                let i = which.index(handles.len());
                let run = |f: &mut (dyn FnMut() + Send)| {
                    if thread == 0 {
                        f();
                    } else {
                        std::thread::scope(|s| {
                            s.spawn(f);
                        });
                    }
                };
                match op {
                    Op::Clone | Op::Root => {
                        let mut made = None;
                        let from = &handles[i];
                        run(&mut || {
                            made = Some(match op {
                                Op::Clone => from.clone(),
                                _ => from.root(),
                            });
                        });
                        handles.extend(made);
                    }
                    Op::Rehome => {
                        let handle = &mut handles[i];
                        run(&mut || handle.rehome());
                    }
                    Op::Drop => {
                        let mut handle = Some(handles.swap_remove(i));
                        run(&mut || drop(handle.take()));
                    }
                }
                prop_assert_eq!(drops.load(Ordering::SeqCst), usize::from(handles.is_empty()));
                for handle in &handles {
                    prop_assert!(Arc::ptr_eq(&handle.to_arc(), &weak.upgrade().unwrap()));
                }
            }
            drop(handles);
            prop_assert_eq!(drops.load(Ordering::SeqCst), 1);
            prop_assert!(weak.upgrade().is_none());
        }
    }
}
