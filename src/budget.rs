//! The retry budget: a bucket of retry tokens, earned by calls and capped.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ConfigError, check};
use crate::stripe::Striped;

/// One token, in the millionths the bucket counts in.
const ONE: u64 = 1_000_000;

/// Caps retries (and hedges) at a share of calls, with a bounded reserve,
/// so that a failing callee sees at most about `1 + ratio` times its
/// normal load, however long the healthy past before the failure was.
///
/// The budget is a bucket of tokens, as in gRPC's retry throttling. Each
/// logical call earns `ratio` tokens; each retry or hedge takes one, and is
/// not sent when less than one is left. The bucket starts with `reserve`
/// tokens and never holds more than that (or one token, if the reserve is
/// zero), so the healthy past can pay for at most `reserve` retries of an
/// outage; after those, an outage of `n` calls sees at most `ratio × n`
/// retries. Defaults: `ratio` 0.2, `reserve` 10.
///
/// A time window of past requests (Finagle's budget) lets a long healthy
/// phase pay for thousands of retries in the outage that follows, and a
/// per-second floor dominates at the low call rates an outage produces;
/// this bucket has neither.
///
/// One budget is shared by every clone of the layer that holds it and every
/// service those make; it can also be shared by several layers (say, a
/// retry and a hedge layer, or every route to one host). A logical call
/// deposits once, however many of the layers it crosses share the budget:
/// an inner layer called from within an outer one on the same budget does
/// not deposit again. It decides with atomics only, and a call on a full
/// bucket (the healthy case) writes only a count on its own core's line.
///
/// ```
/// use steadfast::retry::RetryBudget;
///
/// # fn main() -> Result<(), steadfast::ConfigError> {
/// let budget = RetryBudget::builder().ratio(0.1).reserve(0).build()?;
/// for _ in 0..30 {
///     budget.deposit();
/// }
/// // Without a reserve the bucket saves at most one token.
/// assert_eq!(budget.remaining(), 1);
///
/// let budget = RetryBudget::builder().ratio(0.1).reserve(5).build()?;
/// let granted = (0..10).filter(|_| budget.try_withdraw()).count();
/// assert_eq!(granted, 5); // the reserve
/// for _ in 0..30 {
///     budget.deposit();
/// }
/// let granted = (0..10).filter(|_| budget.try_withdraw()).count();
/// assert_eq!(granted, 3); // 10 % of 30 calls
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ratio: f64,
    reserve: u32,
    /// Millionths of a token earned per call.
    earn: u64,
    /// The most the bucket holds, in millionths.
    capacity: u64,
    /// Read on every call, written only while the bucket is not full.
    tokens: AtomicU64,
    /// Logical calls, counted on the caller's stripe so that calls on
    /// different cores do not write one line; [`RetryBudget::counts`] sums
    /// them.
    requests: Striped<AtomicU64>,
    retries: AtomicU64,
}

/// Builds a [`RetryBudget`].
///
/// ```
/// use steadfast::retry::RetryBudget;
///
/// let budget = RetryBudget::builder().ratio(0.1).reserve(5).build()?;
/// assert_eq!(budget.remaining(), 5); // the reserve allows 5 retries at once
/// assert!(budget.try_withdraw());
/// assert_eq!(budget.remaining(), 4);
///
/// let err = RetryBudget::builder().ratio(f64::NAN).build().unwrap_err();
/// assert_eq!(err.field(), "retry.budget.ratio");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    reserve: u32,
}

thread_local! {
    /// The budget whose layer is calling its inner service on this thread,
    /// as an address; 0 for none.
    static CALLING: Cell<usize> = const { Cell::new(0) };
}

impl RetryBudget {
    /// A budget of 20 % of calls with a reserve of 10 retries.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ratio: 0.2,
            reserve: 10,
        }
    }

    /// Records a logical call: earns `ratio` tokens.
    #[inline]
    pub fn deposit(&self) {
        self.inner.deposit();
    }

    /// Records a logical call unless a layer sharing this budget is
    /// already calling through (the call was counted there).
    #[inline]
    pub(crate) fn deposit_once(&self) {
        if CALLING.with(Cell::get) != self.id() {
            self.inner.deposit();
        }
    }

    /// Runs `call` (a layer calling its inner service) with this budget
    /// marked as counted for the call, so inner layers sharing it don't
    /// deposit again.
    #[inline(always)]
    pub(crate) fn calling<T>(&self, call: impl FnOnce() -> T) -> T {
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                CALLING.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CALLING.with(|c| c.replace(self.id())));
        call()
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.inner.try_withdraw()
    }

    /// Takes one retry from the budget, to be given back if the retry is
    /// never sent (its call dropped during the backoff).
    pub(crate) fn withdraw(&self) -> Option<Withdrawal> {
        self.inner.try_withdraw().then(|| Withdrawal {
            budget: Some(self.clone()),
        })
    }

    /// Logical calls and retries counted since the budget was made.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner
                .requests
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .fold(0, u64::wrapping_add),
            self.inner.retries.load(Ordering::Relaxed),
        )
    }

    /// How many more retries the budget would grant now.
    pub fn remaining(&self) -> u64 {
        self.inner.tokens.load(Ordering::Acquire) / ONE
    }
}

impl RetryBudgetBuilder {
    /// Tokens earned per logical call, between 0 and 1 (counted in
    /// millionths): the share of calls that may be retried.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// The retries saved up for a burst or a quiet client: the bucket
    /// starts with this many tokens and never holds more (at least one,
    /// so that a ratio below 1 can grow into a retry). Default 10.
    pub fn reserve(mut self, retries: u32) -> Self {
        self.reserve = retries;
        self
    }

    /// Checks the settings and builds the budget.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        check::in_closed("retry.budget.ratio", self.ratio, 0.0, 1.0)?;
        let capacity = u64::from(self.reserve.max(1)) * ONE;
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                ratio: self.ratio,
                reserve: self.reserve,
                // In [0, 1] millions: exact in an f64 and a u64.
                earn: (self.ratio * ONE as f64).round() as u64,
                capacity,
                tokens: AtomicU64::new(u64::from(self.reserve) * ONE),
                requests: Striped::new(|| AtomicU64::new(0)),
                retries: AtomicU64::new(0),
            }),
        })
    }
}

impl Inner {
    #[inline(never)]
    fn deposit(&self) {
        self.requests.local().fetch_add(1, Ordering::Relaxed);
        // A full bucket (the healthy case) is only read.
        if self.earn != 0 && self.tokens.load(Ordering::Acquire) < self.capacity {
            self.earn();
        }
    }

    /// Earns a call's tokens into a bucket that is not full.
    #[cold]
    #[inline(never)]
    fn earn(&self) {
        let (earn, capacity) = (self.earn, self.capacity);
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                (tokens < capacity).then(|| (tokens + earn).min(capacity))
            });
    }

    fn try_withdraw(&self) -> bool {
        let taken = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                tokens.checked_sub(ONE)
            })
            .is_ok();
        if taken {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Gives back a retry that was never sent.
    fn refund(&self) {
        let capacity = self.capacity;
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                Some((tokens + ONE).min(capacity))
            });
        let _ = self
            .retries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// A retry taken from a budget: given back when dropped unless it was
/// [`spent`](Withdrawal::spend).
pub(crate) struct Withdrawal {
    budget: Option<RetryBudget>,
}

impl Withdrawal {
    /// The retry was sent: it stays counted.
    pub(crate) fn spend(mut self) {
        self.budget = None;
    }
}

impl Drop for Withdrawal {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.inner.refund();
        }
    }
}

impl fmt::Debug for Withdrawal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Withdrawal")
            .field("pending", &self.budget.is_some())
            .finish()
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, retries) = self.counts();
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("reserve", &self.inner.reserve)
            .field("remaining", &self.remaining())
            .field("requests", &requests)
            .field("retries", &retries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn budget(ratio: f64, reserve: u32) -> RetryBudget {
        RetryBudget::builder()
            .ratio(ratio)
            .reserve(reserve)
            .build()
            .unwrap()
    }

    #[test]
    fn the_reserve_is_spent_once_then_only_the_ratio_pays() {
        let b = budget(0.2, 10);
        // A long healthy past saves no more than the reserve.
        for _ in 0..100_000 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 10);
        // An outage of 1,000 calls, each asking for a retry.
        let mut granted = 0;
        for _ in 0..1_000 {
            b.deposit();
            granted += u32::from(b.try_withdraw());
        }
        // The reserve, then 20 % of the calls after the first (whose
        // earning found the bucket full).
        assert_eq!(granted, 10 + 199);
    }

    #[test]
    fn a_withdrawal_not_spent_is_given_back() {
        let b = budget(0.0, 1);
        let w = b.withdraw().unwrap();
        assert!(b.withdraw().is_none(), "the reserve of one is taken");
        drop(w);
        assert_eq!(b.counts(), (0, 0));
        assert_eq!(b.remaining(), 1);
        b.withdraw().unwrap().spend();
        assert_eq!(b.counts(), (0, 1));
        assert!(b.withdraw().is_none());
    }

    #[test]
    fn nested_layers_on_one_budget_deposit_once() {
        let b = budget(1.0, 0);
        let other = budget(1.0, 0);
        b.calling(|| {
            b.deposit_once();
            other.deposit_once();
            other.calling(|| b.deposit_once());
        });
        b.deposit_once();
        // Once inside its own call, once inside the other budget's, once
        // outside any.
        assert_eq!(b.counts().0, 2);
        assert_eq!(other.counts().0, 1);
    }

    #[test]
    fn bad_settings_are_refused() {
        for ratio in [-0.1, 1.5, f64::NAN, f64::INFINITY, f64::MAX] {
            let err = RetryBudget::builder().ratio(ratio).build().unwrap_err();
            assert_eq!(err.field(), "retry.budget.ratio");
        }
        let b = budget(1.0, u32::MAX);
        assert_eq!(b.remaining(), u64::from(u32::MAX));
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.remaining(), u64::from(u32::MAX));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deposit,
        Withdraw,
        WithdrawAndDrop,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                6 => Just(Op::Deposit),
                4 => Just(Op::Withdraw),
                1 => Just(Op::WithdrawAndDrop),
            ],
            1..400,
        )
    }

    proptest! {
        /// Over any sequence, the budget grants a retry exactly when a
        /// plain model of the bucket holds a whole token: `ratio` earned per
        /// call, capped at the reserve (at least one token), one taken per
        /// retry, one given back per retry never sent.
        #[test]
        fn grants_exactly_what_the_bucket_holds(
            ratio in 0.0f64..=1.0,
            reserve in 0u32..5,
            ops in ops(),
        ) {
            let b = budget(ratio, reserve);
            let earn = (ratio * 1e6).round() as u64;
            let capacity = u64::from(reserve.max(1)) * ONE;
            let mut tokens = u64::from(reserve) * ONE;
            let (mut requests, mut retries) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Deposit => {
                        b.deposit();
                        requests += 1;
                        tokens = (tokens + earn).min(capacity);
                    }
                    Op::Withdraw => {
                        let expected = tokens >= ONE;
                        prop_assert_eq!(b.try_withdraw(), expected);
                        if expected {
                            tokens -= ONE;
                            retries += 1;
                        }
                    }
                    Op::WithdrawAndDrop => {
                        let expected = tokens >= ONE;
                        prop_assert_eq!(b.withdraw().is_some(), expected);
                    }
                }
                prop_assert!(tokens <= capacity);
                prop_assert_eq!(b.counts(), (requests, retries));
                prop_assert_eq!(b.remaining(), tokens / ONE);
            }
        }
    }
}
