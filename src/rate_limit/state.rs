//! Tiers and their limiters: one governor GCRA limiter per key and tier,
//! held in a bounded registry.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;

use super::Mode;
use super::clock::TokioClock;
pub(crate) use super::gcra::Lease;
pub(crate) use super::gcra::Limiter;
use super::gcra::{NotUntil, Snapshot};
use super::quota::Quota;
pub(crate) use super::tier::{Tier, emit_rejected, emit_throttled, keyed_limiter, new_limiter};
use crate::keyed::KeyedRegistry;
use crate::keyed::LookupKey;

/// Maps a key to a tier index; `None` for a name that is no tier.
pub(crate) type TierFn<K> = Box<dyn Fn(&K, &Tiers) -> Option<usize> + Send + Sync>;

pub(crate) struct Tiers {
    pub(crate) list: Box<[Tier]>,
    pub(crate) default: usize,
}

impl Tiers {
    /// The index of the tier called `name`.
    #[inline]
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|tier| tier.name == name)
    }
}

/// The limiters: one per tier, or one per key in each tier.
pub(crate) enum Store<K> {
    Global(Box<[Arc<Limiter>]>),
    Keyed(Box<[KeyedRegistry<K, Limiter>]>),
}

/// Everything a rate limiter decides with, except how to key a request.
pub(crate) struct Limits<K> {
    /// The limiter every call takes from, when there is one: an unkeyed
    /// limiter without a tier function (its default tier's).
    pub(crate) only: Option<Arc<Limiter>>,
    pub(crate) tiers: Tiers,
    pub(crate) tier_of: Option<TierFn<K>>,
    pub(crate) store: Store<K>,
    pub(crate) mode: Mode,
    pub(crate) max_keys: u64,
    /// The shared store, when the state lives outside the process.
    #[cfg(feature = "redis")]
    pub(crate) remote: Option<super::redis::Remote<K>>,
}

/// A refused check: how long until a call would pass, and the limiter to
/// check again when throttling.
pub(crate) struct Denied {
    pub(crate) wait: Duration,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) tier: usize,
}

impl<K> Limits<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// Takes one call from `key`'s allowance, or says how long to wait;
    /// an unkeyed limiter without a tier function takes it from `lease`
    /// while that lasts (see [`Lease`]).
    #[inline]
    pub(crate) fn check<Q: LookupKey<K>>(&self, key: &Q, lease: &mut Lease) -> Result<(), Denied> {
        // Only the unkeyed builder makes `only`, with the key `()`: a keyed
        // limiter's check is compiled without this branch.
        if size_of::<K>() != 0 {
            return self.check_stored(key);
        }
        if let Some(limiter) = &self.only {
            // The tier is read only where the decision is reported; a
            // listening slot is told the exact allowance, so its call
            // takes no lease.
            let outcome = if super::report::listening() {
                limiter.check().map(|snapshot| {
                    self.report(self.tiers.default, Ok(snapshot));
                })
            } else {
                limiter.check_leased(lease)
            };
            return match outcome {
                Ok(()) => Ok(()),
                Err(not_until) => {
                    let tier = self.tiers.default;
                    Err(Denied {
                        wait: self.refused(tier, &not_until),
                        limiter: Arc::clone(limiter),
                        tier,
                    })
                }
            };
        }
        self.check_stored(key)
    }

    /// [`check`](Self::check) without `only`: from the store.
    #[inline(always)]
    fn check_stored<Q: LookupKey<K>>(&self, key: &Q) -> Result<(), Denied> {
        let tier = match self.tier_of {
            Some(_) => key.with_key(|key| self.tier_index(key)),
            None => self.tiers.default,
        };
        match &self.store {
            Store::Global(limiters) => {
                let limiter = &limiters[tier];
                self.decided(tier, limiter.check()).map_err(|wait| Denied {
                    wait,
                    limiter: Arc::clone(limiter),
                    tier,
                })
            }
            Store::Keyed(registries) => {
                let quota = self.tiers.list[tier].governor;
                registries[tier].with(
                    key,
                    |key| keyed_limiter(quota, key),
                    |limiter| {
                        self.decided(tier, limiter.check()).map_err(|wait| Denied {
                            wait,
                            limiter: Arc::clone(limiter),
                            tier,
                        })
                    },
                )
            }
        }
    }
}

impl<K> Limits<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Reports a decision to a listening slot; answers the wait of a
    /// refusal.
    #[inline]
    fn decided(&self, tier: usize, outcome: Result<Snapshot, NotUntil>) -> Result<(), Duration> {
        match outcome {
            Ok(snapshot) => {
                if super::report::listening() {
                    self.report(tier, Ok(snapshot));
                }
                Ok(())
            }
            Err(not_until) => Err(self.refused(tier, &not_until)),
        }
    }

    /// The wait of a refused call, reported to a listening slot.
    #[cold]
    #[inline(never)]
    fn refused(&self, tier: usize, not_until: &NotUntil) -> Duration {
        let wait = not_until.wait_time_from(TokioClock.now());
        if super::report::listening() {
            self.report(tier, Err(wait));
        }
        wait
    }

    /// Writes the allowance left (or the wait of a refusal) to the slot of
    /// a layer that listens, if one is open for this call.
    #[inline(never)]
    fn report(&self, tier: usize, outcome: Result<Snapshot, Duration>) {
        super::report::report(|| {
            let (remaining, wait) = match outcome {
                Ok(snapshot) => (u64::from(snapshot.remaining_burst_capacity()), None),
                Err(wait) => (0, Some(wait)),
            };
            let t = &self.tiers.list[tier];
            let interval = t.quota.period() / t.quota.per_period().max(1);
            let burst = u64::from(t.quota.burst_size());
            let empty = u32::try_from(burst.saturating_sub(remaining)).unwrap_or(u32::MAX);
            super::report::Allowance {
                tier: t.name.clone(),
                limit: burst,
                remaining,
                reset: wait.unwrap_or_else(|| interval.saturating_mul(empty)),
                window: t.governor.burst_size_replenished_in(),
                quota: None,
            }
        });
    }

    /// The tier of `key`.
    #[inline]
    pub(crate) fn tier_index(&self, key: &K) -> usize {
        match &self.tier_of {
            Some(tier_of) => match tier_of(key, &self.tiers) {
                Some(tier) => tier,
                None => {
                    emit_unknown_tier(self.tier_name(self.tiers.default));
                    self.tiers.default
                }
            },
            None => self.tiers.default,
        }
    }

    /// The tier at `tier`, if there is one.
    pub(crate) fn tier(&self, tier: usize) -> Option<&Tier> {
        self.tiers.list.get(tier)
    }

    pub(crate) fn tier_name(&self, tier: usize) -> &str {
        self.tiers.list.get(tier).map_or("", |t| &t.name)
    }

    /// Keys held now, over every tier.
    pub(crate) fn keys(&self) -> u64 {
        match &self.store {
            Store::Global(_) => 0,
            Store::Keyed(registries) => registries.iter().map(KeyedRegistry::len).sum(),
        }
    }

    /// The allowance of `key` in whichever tier holds it.
    pub(crate) fn get(&self, key: &K) -> Option<super::AllowanceHandle> {
        let Store::Keyed(registries) = &self.store else {
            return None;
        };
        registries
            .iter()
            .zip(self.tiers.list.iter())
            .find_map(|(registry, tier)| {
                registry
                    .get(key)
                    .map(|limiter| super::AllowanceHandle::new(limiter, tier))
            })
    }

    /// Every key held, with its allowance, tier by tier.
    pub(crate) fn handles(&self) -> Vec<(K, super::AllowanceHandle)> {
        let Store::Keyed(registries) = &self.store else {
            return Vec::new();
        };
        registries
            .iter()
            .zip(self.tiers.list.iter())
            .flat_map(|(registry, tier)| {
                registry
                    .entries()
                    .into_iter()
                    .map(|(key, limiter)| (key, super::AllowanceHandle::new(limiter, tier)))
            })
            .collect()
    }

    pub(crate) fn sync(&self) {
        if let Store::Keyed(registries) = &self.store {
            registries.iter().for_each(KeyedRegistry::run_pending_tasks);
        }
    }
}

impl<K> Limits<K> {
    /// Gives back what `lease` holds unspent (a service value dropped).
    #[cold]
    fn give_back(&self, lease: &Lease) {
        if let Some(limiter) = &self.only {
            limiter.give_back(lease);
        }
    }
}

/// The limits a service value shares, and the calls it leased from them:
/// given back when the value is dropped.
pub(crate) struct Held<K> {
    pub(crate) limits: Arc<Limits<K>>,
    pub(crate) lease: Lease,
}

impl<K> Held<K> {
    /// `limits`, with nothing leased.
    #[inline]
    pub(crate) fn new(limits: Arc<Limits<K>>) -> Self {
        Self {
            limits,
            lease: Lease::new(),
        }
    }
}

impl<K> Clone for Held<K> {
    /// The same limits; a fresh clone leases nothing yet.
    #[inline]
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.limits))
    }
}

impl<K> Drop for Held<K> {
    #[inline]
    fn drop(&mut self) {
        if self.lease.holds() {
            self.limits.give_back(&self.lease);
        }
    }
}

impl<K> fmt::Debug for Limits<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tiers: Vec<(&str, &Quota)> = self
            .tiers
            .list
            .iter()
            .map(|t| (&*t.name, &t.quota))
            .collect();
        f.debug_struct("RateLimit")
            .field("tiers", &tiers)
            .field("default_tier", &self.tiers.list[self.tiers.default].name)
            .field("mode", &self.mode)
            .field("keyed", &matches!(self.store, Store::Keyed(_)))
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

#[cold]
fn emit_unknown_tier(tier: &str) {
    crate::event::emit(&crate::event::Event::UnknownTier { tier });
}
