//! Sliding windows of call outcomes, updated with atomics only.
//!
//! The count window is a ring of one-byte outcome slots. A call takes the
//! next index with `fetch_add`, swaps its outcome into that slot and moves
//! the running totals by the difference between what entered and what
//! left, so the oldest outcome leaves as each new one enters. The totals are
//! three biased 21-bit fields of one `AtomicU64`: every writer applies its
//! own difference, so they always sum to the slots' contents once the
//! writers are done, and the bias keeps a field from borrowing from its
//! neighbour while two writers of the same slot race.
//!
//! The time window is a ring of buckets tagged with their epoch (the index
//! of the bucket-long period they count). The first writer of a new period
//! takes the bucket with a compare-exchange, zeroes it and publishes the new
//! tag; a reader sums the buckets whose tags fall in the window.
//!
//! Plain successes are batched per thread. Each thread that calls holds
//! one of [`LANES`] lane numbers of its own while it lives (the first
//! threads to call; any later thread records every outcome at once), and a
//! window keeps one pending-success counter per lane, on a cache line of
//! its own. A success only moves the counter of the lane its call was made
//! on (a `fetch_add` on a line no other core writes unless the call moved
//! threads); when the counter reaches the window's
//! batch, the batch enters the window in one step: one `fetch_add` on the
//! ring's head, or one clock read and one bucket update. Failures and slow
//! calls enter at once, as does every outcome of a window whose batch is 1.
//! So most successful calls write no cache line another core reads, and a
//! time window without a slow-call threshold reads the clock once a batch.
//! A time window's batch is added to the bucket its lane's previous batch
//! entered before the clock is read, and moved (with the bucket locked for
//! the few instructions it takes) when the clock names another bucket: the
//! clock read orders the instructions around it, so a write after it would
//! only start to take the bucket's line, which every core's batches write,
//! once the read is done.
//!
//! The price is a bounded error: at most `batch - 1` successes per lane are
//! waiting at any time. For a count window, the window holds the last N
//! outcomes entered, which differs from the last N calls by at most that
//! many outcomes on either side, so each of its counts is within
//! `(batch - 1) × lanes in use` of the exact count. For a time window, the
//! failure and slow-call counts are exact and the call count is within the
//! same bound (a waiting success enters the bucket of the moment its batch
//! fills). The batch is the largest power of two up to an eighth of the
//! count window, or of the minimum calls of a time window, at most 64:
//! windows and minimums below 16 are exact.

use std::cell::Cell;

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, Ordering::Relaxed};

/// Keeps a hot atomic on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

/// An outcome as kept in a slot: 0 is an empty slot.
pub(crate) const RECORDED: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const SLOW: u8 = 4;

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const BIAS: u64 = 1 << 20;
const BIASED_ZERO: u64 = BIAS | (BIAS << FIELD_BITS) | (BIAS << (2 * FIELD_BITS));

/// How often a writer waits for a bucket being rolled over before it gives
/// its outcome up.
const MAX_SPINS: u32 = 1_000;

/// How many threads may batch their successes at once.
pub(crate) const LANES: usize = 16;
/// The largest batch.
const MAX_BATCH: u64 = 64;

/// The lane numbers held by live threads, one bit each.
static HELD: AtomicU32 = AtomicU32::new(0);
const UNSET: u8 = u8::MAX;
const NO_LANE: u8 = u8::MAX - 1;

thread_local! {
    /// This thread's lane number: `UNSET` until its first call, `NO_LANE`
    /// when every lane was held then, or once the thread is ending.
    static LANE: Cell<u8> = const { Cell::new(UNSET) };
    /// Gives the lane number back when the thread ends; first touched when
    /// the thread takes a lane, so that reading the number costs no check
    /// of a destructor's state.
    static LANE_GUARD: LaneGuard = const { LaneGuard };
}

struct LaneGuard;

impl Drop for LaneGuard {
    fn drop(&mut self) {
        let id = LANE.with(|lane| lane.replace(NO_LANE));
        if usize::from(id) < LANES {
            HELD.fetch_and(!(1 << id), Ordering::AcqRel);
        }
    }
}

/// This thread's lane number, taken on first use, or [`LANES`] when
/// every lane is held by another live thread.
#[inline]
pub(crate) fn lane_slot() -> usize {
    let mut id = LANE.with(Cell::get);
    if id == UNSET {
        id = claim_lane();
        LANE.with(|lane| lane.set(id));
    }
    usize::from(id).min(LANES)
}

#[cold]
fn claim_lane() -> u8 {
    // A thread that is ending keeps no lane: its guard is gone.
    if LANE_GUARD.try_with(|_| ()).is_err() {
        return NO_LANE;
    }
    let mut held = HELD.load(Ordering::Acquire);
    loop {
        let free = (!held).trailing_zeros();
        if free as usize >= LANES {
            return NO_LANE;
        }
        match HELD.compare_exchange_weak(
            held,
            held | (1 << free),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // `free` is below `LANES`, 16.
            Ok(_) => return free as u8,
            Err(now) => held = now,
        }
    }
}

/// Successes waiting to enter a window, one counter per lane: the lane of
/// the thread that made the call. A counter only grows, so a call that
/// ended on another thread still counts exactly once.
#[derive(Debug)]
struct Pending {
    batch: u64,
    /// `batch - 1`: a batch fills when a counter's low bits are all 0.
    mask: u64,
    lanes: Box<[CachePadded<Lane>]>,
}

/// One lane's line.
#[derive(Debug, Default)]
struct Lane {
    /// Successes counted on the lane so far.
    waiting: AtomicU64,
    /// A time window's tag of the bucket the lane's latest batch entered (0:
    /// none yet): where the next batch most likely enters. Only a hint,
    /// checked against the clock; any value is safe.
    entered: AtomicU64,
}

impl Pending {
    /// `of` is the count window's size or the time window's minimum calls.
    fn new(of: u64) -> Self {
        // A power of two, so that a batch fills on a mask, not a division.
        let batch = match (of / 8).clamp(1, MAX_BATCH) {
            1 => 1,
            n => 1 << n.ilog2(),
        };
        let lanes = if batch > 1 { LANES } else { 0 };
        Self {
            batch,
            mask: batch - 1,
            lanes: (0..lanes).map(|_| CachePadded(Lane::default())).collect(),
        }
    }

    /// Counts one success on lane `slot`; `Some(batch)` when a batch is
    /// ready to enter, `None` when the success waits. A success without a
    /// lane (`slot` [`LANES`]) enters at once.
    #[inline]
    fn add_success(&self, slot: usize) -> Option<u64> {
        // A window whose batch is 1 has no lanes.
        let Some(pending) = self.lanes.get(slot) else {
            return Some(1);
        };
        // The counter only grows: `batch - 1` successes at most wait.
        let waiting = pending.0.waiting.fetch_add(1, Relaxed).wrapping_add(1);
        (waiting & self.mask == 0).then_some(self.batch)
    }
}

/// Outcome counts of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// The outcomes a breaker judges.
// One per breaker, behind its `Arc`: the padding that keeps the hot atomics
// on lines of their own is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records an outcome completed `elapsed_nanos` after the breaker was
    /// made, on lane `slot` ([`LANES`] for none); `timed` when the caller
    /// read the clock for this call already (a time window then places
    /// even a success at once). Returns the window's counts when they may
    /// have grown towards a threshold (they cannot when a success replaced
    /// a success, waits in its batch, or enters a time window that holds
    /// no failed or slow outcome).
    #[inline]
    pub(crate) fn record_on(
        &self,
        code: u8,
        slot: usize,
        timed: bool,
        elapsed_nanos: impl FnOnce() -> u64,
    ) -> Option<Counts> {
        match self {
            Window::Count(window) => window.record_on(code, slot),
            Window::Time(window) => window.record_on(code, slot, timed, elapsed_nanos),
        }
    }

    /// Counts a plain success on lane `slot` ([`LANES`] for none);
    /// `Some(n)` when `n` successes are to enter the window now (see
    /// [`enter_successes`](Self::enter_successes)), `None` when it waits in
    /// its lane's batch. `timed` as for [`record_on`](Self::record_on).
    #[inline]
    pub(crate) fn pend_success(&self, slot: usize, timed: bool) -> Option<u64> {
        match self {
            Window::Count(window) => window.pending.add_success(slot),
            Window::Time(_) if timed => Some(1),
            Window::Time(window) => window.pending.add_success(slot),
        }
    }

    /// Enters `n` plain successes of lane `slot` completed `elapsed_nanos`
    /// after the breaker was made; the counts as
    /// [`record_on`](Self::record_on) returns them.
    #[inline]
    pub(crate) fn enter_successes(
        &self,
        n: u64,
        slot: usize,
        elapsed_nanos: impl FnOnce() -> u64,
    ) -> Option<Counts> {
        match self {
            Window::Count(window) if n == 1 => window.enter(RECORDED),
            Window::Count(window) => window.enter_successes(n),
            Window::Time(window) if n == 1 => window.add_successes(1, elapsed_nanos()),
            Window::Time(window) => window.enter_batch(n, slot, elapsed_nanos),
        }
    }

    pub(crate) fn counts(&self, elapsed_nanos: impl FnOnce() -> u64) -> Counts {
        match self {
            Window::Count(window) => decode(window.totals.0.load(Relaxed)),
            Window::Time(window) => window.sum(elapsed_nanos() / window.bucket_nanos),
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Window::Count(window) => window.clear(),
            Window::Time(window) => window.clear(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct CountWindow {
    head: CachePadded<AtomicU64>,
    totals: CachePadded<AtomicU64>,
    slots: Box<[AtomicU8]>,
    pending: Pending,
}

impl CountWindow {
    /// `size` is checked by the builder: 1 to a million.
    pub(crate) fn new(size: u64) -> Self {
        Self {
            head: CachePadded(AtomicU64::new(0)),
            totals: CachePadded(AtomicU64::new(BIASED_ZERO)),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            pending: Pending::new(size),
        }
    }

    #[cfg(test)]
    fn record(&self, code: u8, lane: Option<usize>) -> Option<Counts> {
        self.record_on(code, lane.unwrap_or(LANES))
    }

    #[inline(always)]
    fn record_on(&self, code: u8, slot: usize) -> Option<Counts> {
        if code == RECORDED {
            match self.pending.add_success(slot) {
                None => return None,
                Some(1) => {}
                Some(batch) => return self.enter_successes(batch),
            }
        }
        self.enter(code)
    }

    /// Enters `n` successes at once.
    #[inline]
    fn enter_successes(&self, n: u64) -> Option<Counts> {
        let len = self.slots.len();
        // The index is below the slot count, which came from a `usize`.
        let mut index = (self.head.0.fetch_add(n, Relaxed) % len as u64) as usize;
        let mut left = n;
        let mut delta = 0u64;
        while left > 0 {
            // The run of slots up to the end of the ring, then from its start.
            let run = &self.slots[index..];
            let run = &run[..run.len().min(usize::try_from(left).unwrap_or(usize::MAX))];
            for slot in run {
                if slot.load(Relaxed) != RECORDED {
                    let old = slot.swap(RECORDED, Relaxed);
                    delta =
                        delta.wrapping_add(contribution(RECORDED).wrapping_sub(contribution(old)));
                }
            }
            left -= run.len() as u64;
            index = 0;
        }
        if delta == 0 {
            return None;
        }
        let before = self.totals.0.fetch_add(delta, Relaxed);
        Some(decode(before.wrapping_add(delta)))
    }

    #[inline]
    fn enter(&self, code: u8) -> Option<Counts> {
        let index = self.head.0.fetch_add(1, Relaxed) % self.slots.len() as u64;
        // The index is below the slot count, which came from a `usize`.
        let slot = &self.slots[index as usize];
        let seen = slot.load(Relaxed);
        if seen == code {
            // Nothing changes; a success replacing a success can't open.
            return (code != RECORDED).then(|| decode(self.totals.0.load(Relaxed)));
        }
        let old = slot.swap(code, Relaxed);
        let delta = contribution(code).wrapping_sub(contribution(old));
        let before = self.totals.0.fetch_add(delta, Relaxed);
        Some(decode(before.wrapping_add(delta)))
    }

    fn clear(&self) {
        let mut removed = 0u64;
        for slot in &self.slots {
            removed = removed.wrapping_add(contribution(slot.swap(0, Relaxed)));
        }
        self.totals.0.fetch_add(removed.wrapping_neg(), Relaxed);
    }
}

#[inline]
fn contribution(code: u8) -> u64 {
    if code == 0 {
        return 0;
    }
    1 | (u64::from(code & FAILED != 0) << FIELD_BITS)
        | (u64::from(code & SLOW != 0) << (2 * FIELD_BITS))
}

#[inline]
fn decode(totals: u64) -> Counts {
    let field = |shift: u32| ((totals >> shift) & FIELD_MASK).saturating_sub(BIAS);
    Counts {
        calls: field(0),
        failures: field(FIELD_BITS),
        slow: field(2 * FIELD_BITS),
    }
}

/// Marks a bucket being rolled over to a new epoch.
const LOCKED: u64 = 1 << 63;

#[derive(Debug, Default)]
struct Bucket {
    /// The bucket's epoch plus one; 0 when unused.
    tag: AtomicU64,
    /// Calls in the low 32 bits, failures in the high 32.
    calls: AtomicU64,
    slow: AtomicU64,
}

/// The tag of the bucket that counts `epoch`.
#[inline]
fn tag_of(epoch: u64) -> u64 {
    epoch.saturating_add(1) & !LOCKED
}

impl Bucket {
    /// Whether the bucket counts the period tagged `tag`, after rolling it
    /// over to that period if it counted an earlier one; `false` when it
    /// counts a later one (an outcome that old is out of the window), or
    /// when it stays locked by another writer too long.
    #[inline]
    fn holds(&self, tag: u64) -> bool {
        self.tag.load(Ordering::Acquire) == tag || self.roll_to(tag)
    }

    /// Takes back `n` successes added while the bucket counted the period
    /// tagged `tag`, unless it was rolled over since (which dropped them).
    /// The bucket is locked meanwhile, so that no writer rolls it over
    /// between the check and the subtraction.
    #[cold]
    #[inline(never)]
    fn take_back(&self, tag: u64, n: u64) {
        let mut spins = 0;
        loop {
            let seen = self.tag.load(Ordering::Acquire);
            if seen == tag {
                if self
                    .tag
                    .compare_exchange(tag, tag | LOCKED, Ordering::Acquire, Relaxed)
                    .is_ok()
                {
                    // Never more than the bucket holds: had it been cleared
                    // and rolled over to the same period since, the `n` are
                    // gone already.
                    let _ = self.calls.fetch_update(Relaxed, Relaxed, |calls| {
                        (calls & u64::from(u32::MAX) >= n).then(|| calls - n)
                    });
                    self.tag.store(tag, Ordering::Release);
                    return;
                }
            } else if seen == tag | LOCKED {
                // Another lane takes back from the same bucket.
                spins += 1;
                if spins > MAX_SPINS {
                    return;
                }
                spin_loop();
            } else {
                return;
            }
        }
    }

    /// [`holds`](Self::holds) when the bucket was not on `tag` yet.
    #[inline(never)]
    fn roll_to(&self, tag: u64) -> bool {
        let mut spins = 0;
        loop {
            let seen = self.tag.load(Ordering::Acquire);
            if seen == tag {
                return true;
            }
            if seen & LOCKED != 0 {
                spins += 1;
                if spins > MAX_SPINS {
                    return false;
                }
                spin_loop();
                continue;
            }
            if seen > tag {
                // The bucket already counts a later period: this outcome is
                // older than the window.
                return false;
            }
            if self
                .tag
                .compare_exchange(seen, tag | LOCKED, Relaxed, Relaxed)
                .is_ok()
            {
                self.calls.store(0, Relaxed);
                self.slow.store(0, Relaxed);
                self.tag.store(tag, Ordering::Release);
                return true;
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[CachePadded<Bucket>]>,
    pending: Pending,
    /// The latest epoch, plus one, that a failed or slow outcome entered
    /// (0: none yet). While it is older than the window, the window holds
    /// no failure and no slow call, so successes cannot bring a rate to
    /// its threshold and enter without reading the buckets' sums.
    marked: CachePadded<AtomicU64>,
}

impl TimeWindow {
    /// `span` and `buckets` are checked by the builder: each bucket lasts
    /// at least a nanosecond, and there are 1 to 1,000 buckets.
    /// `minimum_calls` sets the batch of successes.
    pub(crate) fn new(span: std::time::Duration, buckets: u32, minimum_calls: u64) -> Self {
        let span = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        Self {
            bucket_nanos: (span / u64::from(buckets)).max(1),
            buckets: (0..buckets)
                .map(|_| CachePadded(Bucket::default()))
                .collect(),
            pending: Pending::new(minimum_calls),
            marked: CachePadded(AtomicU64::new(0)),
        }
    }

    #[cfg(test)]
    fn record(
        &self,
        code: u8,
        lane: Option<usize>,
        timed: bool,
        elapsed_nanos: impl FnOnce() -> u64,
    ) -> Option<Counts> {
        self.record_on(code, lane.unwrap_or(LANES), timed, elapsed_nanos)
    }

    #[inline]
    fn record_on(
        &self,
        code: u8,
        slot: usize,
        timed: bool,
        elapsed_nanos: impl FnOnce() -> u64,
    ) -> Option<Counts> {
        if code == RECORDED && !timed {
            match self.pending.add_success(slot) {
                None => return None,
                Some(1) => {}
                Some(batch) => return self.enter_batch(batch, slot, elapsed_nanos),
            }
        }
        self.add(code, 1, elapsed_nanos())
    }

    /// Enters a full batch of `n` plain successes of lane `slot`, in the
    /// bucket of the moment `elapsed_nanos` reads.
    ///
    /// The batch is added to the bucket the lane's previous batch entered
    /// before the clock is read, and moved if the clock then names another
    /// bucket (once a bucket's period per lane at most). Reading the clock
    /// orders the instructions around it (on x86, `rdtsc` behind an
    /// `lfence`): added after it, the batch could only start to take the
    /// bucket's cache line (written by every core's batches) once the read
    /// was done, and the core would wait for the line. Added before it, the
    /// line is on its way while the call runs up to the read.
    #[inline]
    fn enter_batch(
        &self,
        n: u64,
        slot: usize,
        elapsed_nanos: impl FnOnce() -> u64,
    ) -> Option<Counts> {
        let lane = self.pending.lanes.get(slot).map(|lane| &lane.0);
        let guess = lane.map_or(0, |lane| lane.entered.load(Relaxed));
        // Only into a bucket already counting that period: this add never
        // rolls a bucket over.
        let early = (guess != 0)
            .then(|| self.bucket(guess - 1))
            .filter(|bucket| bucket.tag.load(Ordering::Acquire) == guess);
        if let Some(bucket) = early {
            bucket.calls.fetch_add(n, Relaxed);
        }
        let elapsed_nanos = elapsed_nanos();
        let epoch = elapsed_nanos / self.bucket_nanos;
        let tag = tag_of(epoch);
        if let Some(bucket) = early {
            if tag == guess {
                return self.after_successes(tag, epoch);
            }
            bucket.take_back(guess, n);
        }
        if let Some(lane) = lane {
            lane.entered.store(tag, Relaxed);
        }
        self.add_successes(n, elapsed_nanos)
    }

    /// Adds `n` outcomes of kind `code` completed `elapsed_nanos` after the
    /// breaker was made.
    fn add(&self, code: u8, n: u64, elapsed_nanos: u64) -> Option<Counts> {
        if code == RECORDED {
            return self.add_successes(n, elapsed_nanos);
        }
        let epoch = elapsed_nanos / self.bucket_nanos;
        let tag = tag_of(epoch);
        // Marked before the outcome is counted, so that a success that
        // finds no mark in the window finds no such outcome in it either.
        if code & (FAILED | SLOW) != 0 && self.marked.0.load(Relaxed) < tag {
            self.marked.0.fetch_max(tag, Relaxed);
        }
        let bucket = self.bucket(epoch);
        if bucket.holds(tag) {
            bucket
                .calls
                .fetch_add(n | ((u64::from(code & FAILED != 0) * n) << 32), Relaxed);
            if code & SLOW != 0 {
                bucket.slow.fetch_add(n, Relaxed);
            }
        }
        Some(self.sum(epoch))
    }

    /// Adds `n` plain successes completed `elapsed_nanos` after the breaker
    /// was made: [`add`](Self::add) with `RECORDED`, kept short for the
    /// batches of successes.
    #[inline]
    fn add_successes(&self, n: u64, elapsed_nanos: u64) -> Option<Counts> {
        let epoch = elapsed_nanos / self.bucket_nanos;
        let tag = tag_of(epoch);
        let bucket = self.bucket(epoch);
        if bucket.holds(tag) {
            bucket.calls.fetch_add(n, Relaxed);
        }
        self.after_successes(tag, epoch)
    }

    /// The counts after successes entered the bucket of `epoch`, tagged
    /// `tag`, or `None` when they cannot have brought a rate to its
    /// threshold.
    #[inline]
    fn after_successes(&self, tag: u64, epoch: u64) -> Option<Counts> {
        let marked = self.marked.0.load(Relaxed);
        let span = self.buckets.len() as u64;
        // No failed or slow outcome in epochs `epoch - span + 1 ..= epoch`:
        // both rates are 0, below every threshold.
        if marked == 0 || marked.saturating_add(span) <= tag {
            return None;
        }
        Some(self.sum(epoch))
    }

    /// The bucket that counts `epoch`.
    #[inline]
    fn bucket(&self, epoch: u64) -> &Bucket {
        &self.buckets[(epoch % self.buckets.len() as u64) as usize].0
    }

    /// The counts of the buckets of epochs `epoch - buckets + 1 ..= epoch`.
    #[inline(never)]
    fn sum(&self, epoch: u64) -> Counts {
        let span = self.buckets.len() as u64;
        let mut counts = Counts::default();
        for bucket in &self.buckets[..] {
            let mut tag = bucket.0.tag.load(Ordering::Acquire);
            // A bucket is locked while it is rolled over or a batch is taken
            // back from it: both take a few instructions.
            let mut spins = 0;
            while tag & LOCKED != 0 && spins < MAX_SPINS {
                spins += 1;
                spin_loop();
                tag = bucket.0.tag.load(Ordering::Acquire);
            }
            if tag == 0 || tag & LOCKED != 0 {
                continue;
            }
            let bucket_epoch = tag - 1;
            if bucket_epoch <= epoch && bucket_epoch.saturating_add(span) > epoch {
                let calls = bucket.0.calls.load(Relaxed);
                counts.calls += calls & u64::from(u32::MAX);
                counts.failures += calls >> 32;
                counts.slow += bucket.0.slow.load(Relaxed);
            }
        }
        counts
    }

    fn clear(&self) {
        for bucket in &self.buckets[..] {
            let mut spins = 0;
            loop {
                let seen = bucket.0.tag.load(Relaxed);
                if seen == 0 {
                    break;
                }
                if seen & LOCKED != 0 {
                    spins += 1;
                    if spins > MAX_SPINS {
                        break;
                    }
                    spin_loop();
                    continue;
                }
                if bucket
                    .0
                    .tag
                    .compare_exchange(seen, 0, Relaxed, Relaxed)
                    .is_ok()
                {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn count_window_slides() {
        let window = CountWindow::new(3);
        for _ in 0..3 {
            window.record(RECORDED | FAILED, None);
        }
        assert_eq!(
            decode(window.totals.0.load(Relaxed)),
            Counts {
                calls: 3,
                failures: 3,
                slow: 0
            }
        );
        window.record(RECORDED | SLOW, None);
        let counts = window.record(RECORDED, None).unwrap_or_default();
        assert_eq!(
            counts,
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        window.clear();
        assert_eq!(decode(window.totals.0.load(Relaxed)), Counts::default());
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let window = TimeWindow::new(Duration::from_nanos(40), 4, 1);
        window.add(RECORDED | FAILED, 1, 5);
        window.add(RECORDED, 1, 15);
        assert_eq!(window.sum(3).calls, 2);
        assert_eq!(window.sum(4).calls, 1);
        assert_eq!(window.sum(5).calls, 0);
        // An outcome older than the bucket's period is dropped.
        window.add(RECORDED, 1, 45);
        window.add(RECORDED, 1, 5);
        assert_eq!(window.sum(4).calls, 2);
        window.clear();
        assert_eq!(window.sum(4).calls, 0);
    }

    #[test]
    fn a_batch_moves_out_of_the_bucket_its_lane_entered_before() {
        // Minimum calls 16: batches of 2, in two buckets of 100 ns.
        let window = TimeWindow::new(Duration::from_nanos(200), 2, 16);
        assert_eq!(window.pending.batch, 2);
        let batch = |at: u64| {
            for _ in 0..2 {
                window.record(RECORDED, Some(0), false, || at);
            }
        };
        batch(50);
        assert_eq!(window.sum(0).calls, 2);
        // Added to the lane's bucket of epoch 0 first, then moved to the
        // bucket of epoch 1, where the clock says it belongs.
        batch(150);
        assert_eq!(window.bucket(0).calls.load(Relaxed), 2);
        assert_eq!(window.sum(1).calls, 4);
        assert_eq!(window.sum(2).calls, 2);
        // Epoch 2 rolls bucket 0 over: the batch is added to the lane's
        // bucket (epoch 1), taken back, and counted once, in epoch 2.
        batch(250);
        assert_eq!(window.sum(2).calls, 4);
        assert_eq!(window.sum(3).calls, 2);
        // A lane whose bucket left the window long ago adds nothing early.
        batch(1_050);
        assert_eq!(window.sum(10).calls, 2);
        assert_eq!(window.sum(11).calls, 2);
        assert_eq!(window.sum(12).calls, 0);
    }

    #[test]
    fn taking_back_leaves_a_rolled_over_bucket_alone() {
        let bucket = Bucket::default();
        bucket.tag.store(5, Relaxed);
        bucket.calls.store(3, Relaxed);
        // Added while the bucket counted period 4: the roll-over dropped it.
        bucket.take_back(4, 2);
        assert_eq!(bucket.calls.load(Relaxed), 3);
        // Never more than the bucket holds, and failures untouched.
        bucket.calls.store(1 | (7 << 32), Relaxed);
        bucket.take_back(5, 2);
        assert_eq!(bucket.calls.load(Relaxed), 1 | (7 << 32));
        bucket.take_back(5, 1);
        assert_eq!(bucket.calls.load(Relaxed), 7 << 32);
        assert_eq!(bucket.tag.load(Relaxed), 5);
    }

    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// An outcome on a lane (`None`: a thread without one).
        Outcome(Option<usize>, u8),
        /// Time passes, in nanoseconds.
        Advance(u64),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let lane = prop_oneof![8 => (0usize..3).prop_map(Some), 1 => Just(None)];
        let code = prop_oneof![
            6 => Just(RECORDED),
            2 => Just(RECORDED | FAILED),
            1 => Just(RECORDED | SLOW),
            1 => Just(RECORDED | FAILED | SLOW),
        ];
        let step = prop_oneof![
            12 => (lane, code).prop_map(|(lane, code)| Step::Outcome(lane, code)),
            1 => (1u64..400).prop_map(Step::Advance),
        ];
        prop::collection::vec(step, 0..600)
    }

    /// How far a window may be from the exact counts: `batch - 1`
    /// successes waiting on each lane used.
    fn bound(batch: u64, steps: &[Step]) -> u64 {
        let mut used = [false; LANES];
        for step in steps {
            if let Step::Outcome(Some(lane), _) = step {
                used[lane % LANES] = true;
            }
        }
        (batch - 1) * used.iter().filter(|u| **u).count() as u64
    }

    fn within(got: u64, exact: u64, bound: u64) -> bool {
        got.abs_diff(exact) <= bound
    }

    proptest! {
        /// The count window against the last `size` outcomes, exactly as
        /// they happened: every count within the bound, at every step.
        #[test]
        fn batched_count_window_stays_within_its_bound(
            size in prop_oneof![1u64..16, 16u64..300],
            steps in steps(),
        ) {
            let window = CountWindow::new(size);
            let batch = window.pending.batch;
            prop_assert_eq!(batch == 1, size < 16);
            let bound = bound(batch, &steps);
            let mut last: std::collections::VecDeque<u8> = Default::default();
            for step in &steps {
                let Step::Outcome(lane, code) = *step else { continue };
                let _ = window.record(code, lane);
                last.push_back(code);
                if last.len() as u64 > size {
                    last.pop_front();
                }
                let got = decode(window.totals.0.load(Relaxed));
                let exact = Counts {
                    calls: last.len() as u64,
                    failures: last.iter().filter(|c| **c & FAILED != 0).count() as u64,
                    slow: last.iter().filter(|c| **c & SLOW != 0).count() as u64,
                };
                if batch == 1 {
                    prop_assert_eq!(got, exact);
                }
                prop_assert!(within(got.calls, exact.calls, bound), "{:?} {:?} {}", got, exact, bound);
                prop_assert!(within(got.failures, exact.failures, bound), "{:?} {:?} {}", got, exact, bound);
                prop_assert!(within(got.slow, exact.slow, bound), "{:?} {:?} {}", got, exact, bound);
                prop_assert!(got.calls <= size);
            }
        }

        /// The time window against every outcome at its own time: failures
        /// and slow calls exact, calls within the bound, at every step.
        #[test]
        fn batched_time_window_stays_within_its_bound(
            minimum in prop_oneof![1u64..16, 16u64..300],
            buckets in 1u32..5,
            steps in steps(),
        ) {
            let bucket_nanos = 100;
            let window = TimeWindow::new(
                Duration::from_nanos(bucket_nanos * u64::from(buckets)),
                buckets,
                minimum,
            );
            let batch = window.pending.batch;
            prop_assert_eq!(batch == 1, minimum < 16);
            let bound = bound(batch, &steps);
            let mut now = 0u64;
            let mut all: Vec<(u64, u8)> = Vec::new();
            for step in &steps {
                match *step {
                    Step::Advance(nanos) => now += nanos,
                    Step::Outcome(lane, code) => {
                        let _ = window.record(code, lane, false, || now);
                        all.push((now / bucket_nanos, code));
                    }
                }
                let epoch = now / bucket_nanos;
                let live = all
                    .iter()
                    .filter(|(e, _)| *e <= epoch && e + u64::from(buckets) > epoch);
                let exact = live.fold(Counts::default(), |mut counts, (_, code)| {
                    counts.calls += 1;
                    counts.failures += u64::from(code & FAILED != 0);
                    counts.slow += u64::from(code & SLOW != 0);
                    counts
                });
                let got = window.sum(epoch);
                if batch == 1 {
                    prop_assert_eq!(got, exact);
                }
                prop_assert_eq!(got.failures, exact.failures);
                prop_assert_eq!(got.slow, exact.slow);
                prop_assert!(within(got.calls, exact.calls, bound), "{:?} {:?} {}", got, exact, bound);
            }
        }
    }
}
