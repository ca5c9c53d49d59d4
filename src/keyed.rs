//! A bounded registry of per-key policy state (per host, per route, per
//! tenant), shared by the keyed breakers, bulkheads and rate limiters.
//!
//! Lookups take no lock: the map is papaya's lock-free hash table, and a hit
//! costs a hash, a probe and at most one relaxed store.
//!
//! Memory is bounded however many distinct keys arrive. Eviction is the
//! CLOCK (second chance) rule, run by the caller that inserts a new key when
//! the registry is full or an idle period has passed since the last sweep:
//!
//! - every entry has a *used* mark, set by each lookup and cleared by each
//!   sweep; a sweep drops the entries whose mark was already clear, so a key
//!   unused between two sweeps is dropped, and a key in steady use is kept
//!   however many one-off keys flood in (a new key starts unmarked);
//! - an entry still held by a call (or a handle) is never dropped, so a
//!   bulkhead's permits or a breaker's probes are never split between an old
//!   and a new state for the same key;
//! - if a sweep leaves the registry full, entries not held are dropped until
//!   it is nine tenths full; if every entry is held, a new key is given the
//!   registry's one *overflow* state, shared by every key that finds no
//!   room, and its owner is told (the keyed layers report an
//!   [`Event::KeyOverflow`](crate::event::Event::KeyOverflow)). A full registry never turns protection off: the overflow
//!   keys share one breaker, one bulkhead, one limiter (memory stays bounded
//!   by `max_keys` plus one). Once a place frees up, the next call of such a
//!   key registers state of its own.
//!
//! With an idle period, sweeps also happen at least that often (when a new
//! key arrives, or on [`KeyedRegistry::run_pending_tasks`]), so an unused key
//! is dropped within two idle periods. Time is tokio's, so this runs on
//! paused time in tests.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// How a keyed layer finds the key of a request: its breaker, bulkhead or
/// limiter is the key's own.
///
/// Any `Fn(&Req) -> K` is one (the key is made, then looked up). A key that
/// can be read from the request without copying it, such as
/// [`ByHost`](crate::http::ByHost)'s host and port, looks up with a
/// borrowed [`Lookup`](KeyOf::Lookup) and is copied into an owned
/// [`Key`](KeyOf::Key) only when it is first stored: a call of a known key
/// allocates nothing.
pub trait KeyOf<Req> {
    /// The key as the registry keeps it.
    type Key: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static;
    /// The key as read from a request, to look it up.
    type Lookup<'r>: LookupKey<Self::Key>
    where
        Req: 'r;

    /// Reads the key of `request`.
    fn key_of<'r>(&self, request: &'r Req) -> Self::Lookup<'r>;
}

impl<Req, K, F> KeyOf<Req> for F
where
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    type Key = K;
    type Lookup<'r>
        = K
    where
        Req: 'r;

    #[inline]
    fn key_of(&self, request: &Req) -> K {
        self(request)
    }
}

/// A key read from a request, looked up among stored keys of type `K`
/// without being copied.
///
/// Its [`Hash`] must feed the hasher exactly what `K`'s does for the key
/// it [`matches`](Self::matches).
pub trait LookupKey<K>: Hash {
    /// Whether `key` is this key.
    fn matches(&self, key: &K) -> bool;
    /// This key, owned, to store.
    fn to_key(&self) -> K;
    /// Runs `f` on this key as `K`: the key itself when it is one, else an
    /// owned copy (for what needs a `&K`, such as a rate limiter's tier
    /// function).
    #[inline]
    fn with_key<R>(&self, f: impl FnOnce(&K) -> R) -> R {
        f(&self.to_key())
    }
}

impl<K: Hash + Eq + Clone> LookupKey<K> for K {
    #[inline]
    fn matches(&self, key: &K) -> bool {
        self == key
    }

    fn to_key(&self) -> K {
        self.clone()
    }

    #[inline]
    fn with_key<R>(&self, f: impl FnOnce(&K) -> R) -> R {
        f(self)
    }
}

/// A lookup key as papaya compares it.
struct Probe<'a, Q>(&'a Q);

impl<Q: Hash> Hash for Probe<'_, Q> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl<Q: LookupKey<K>, K> papaya::Equivalent<K> for Probe<'_, Q> {
    #[inline]
    fn equivalent(&self, key: &K) -> bool {
        self.0.matches(key)
    }
}

/// The most keys a keyed breaker, bulkhead or rate limiter keeps, unless
/// told otherwise.
///
/// The same for all three, so that one setting means one thing: 10,000 is
/// more hosts than a client calls and more tenants than most servers see
/// in ten minutes, while it bounds memory to a few megabytes (a breaker's
/// state is its window's buckets, a bulkhead's and a limiter's a few
/// words) however many one-off keys arrive.
pub(crate) const DEFAULT_MAX_KEYS: u64 = 10_000;

/// How long a key of a keyed breaker, bulkhead or rate limiter may go
/// without a call before its state is dropped, unless told otherwise.
///
/// Ten minutes for all three: a key idle that long carries nothing worth
/// keeping. A breaker's window (30 s for the HTTP preset) has emptied and
/// its open period (seconds) is over; an idle bulkhead holds no permit; a
/// limiter's bucket has refilled (its idle period is raised to its refill
/// time if that is longer). Dropping such keys bounds memory under key
/// churn without ever resetting state that still judges calls.
pub(crate) const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// How events, metric labels and snapshots name the overflow state.
pub(crate) const OVERFLOW_KEY: &str = "(overflow)";

/// A key as events, metric labels and snapshots name it: its `Debug`
/// form, without the quotes of a string key (`api.example`, not
/// `"api.example"`). The empty string keeps them, to differ from the
/// empty key label of an unkeyed breaker.
pub(crate) fn key_name<K: fmt::Debug>(key: &K) -> Box<str> {
    let name = format!("{key:?}");
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(unquoted) if !unquoted.is_empty() => unquoted.into(),
        _ => name.into(),
    }
}

pub(crate) struct KeyedRegistry<K, V> {
    inner: Arc<Inner<K, V>>,
}

struct Inner<K, V> {
    map: papaya::HashMap<K, Slot<V>>,
    max_keys: u64,
    idle: Option<Duration>,
    start: Instant,
    /// Entries held or about to be inserted: reserved before an insert,
    /// given back when the insert loses a race or an entry is dropped, so
    /// that the map never holds more than `max_keys` entries, however many
    /// callers insert at once.
    count: AtomicU64,
    /// When the last sweep ran, in milliseconds since `start`.
    last_sweep: AtomicU64,
    sweeping: AtomicBool,
    /// The state shared by the keys that found every place held.
    overflow: OnceLock<Arc<V>>,
    /// Told when a key finds every place held (the owner reports it).
    on_overflow: Option<Box<dyn Fn() + Send + Sync>>,
    /// Told of each entry a sweep drops, before it goes.
    on_evict: Option<EvictHook<K, V>>,
}

/// Told of each key and state a sweep drops.
type EvictHook<K, V> = Box<dyn Fn(&K, &V) + Send + Sync>;

struct Slot<V> {
    value: Arc<V>,
    used: AtomicBool,
}

impl<V> Slot<V> {
    #[inline]
    fn mark(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    #[inline]
    fn touch(&self) -> Arc<V> {
        self.mark();
        Arc::clone(&self.value)
    }

    /// Whether a call or a handle holds this state.
    fn held(&self) -> bool {
        Arc::strong_count(&self.value) > 1
    }
}

impl<K, V> KeyedRegistry<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A registry of at most `max_keys` entries (callers validate that it is
    /// at least 1), dropping entries unused for `idle`.
    pub(crate) fn new(max_keys: u64, idle: Option<Duration>) -> Self {
        let capacity = usize::try_from(max_keys.min(1024)).unwrap_or(1024);
        Self {
            inner: Arc::new(Inner {
                map: papaya::HashMap::builder().capacity(capacity).build(),
                max_keys,
                idle,
                start: Instant::now(),
                count: AtomicU64::new(0),
                last_sweep: AtomicU64::new(0),
                sweeping: AtomicBool::new(false),
                overflow: OnceLock::new(),
                on_overflow: None,
                on_evict: None,
            }),
        }
    }

    /// Calls `hook` each time a key finds every place held and shares the
    /// overflow state. Set before the registry is shared.
    pub(crate) fn on_overflow(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.on_overflow = Some(Box::new(hook));
        }
        self
    }

    /// Calls `hook` with each key and state a sweep drops, as it drops
    /// them (for example to remove the key's metric series). Set before
    /// the registry is shared.
    pub(crate) fn on_evict(mut self, hook: impl Fn(&K, &V) + Send + Sync + 'static) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.on_evict = Some(Box::new(hook));
        }
        self
    }

    /// The state of `key`, made by `make` if the key has none. `make` is
    /// given the key it makes state for, or `None` when it makes the
    /// overflow state.
    #[cfg(any(test, feature = "redis"))]
    #[inline]
    pub(crate) fn get_or_insert_with(&self, key: &K, make: impl FnOnce(Option<&K>) -> V) -> Arc<V> {
        self.get_or_insert_by(key, make)
    }

    /// The state of the key `lookup` reads, made by `make` if the key has
    /// none: the key is copied only then.
    #[inline]
    pub(crate) fn get_or_insert_by<Q: LookupKey<K>>(
        &self,
        lookup: &Q,
        make: impl FnOnce(Option<&K>) -> V,
    ) -> Arc<V> {
        let map = self.inner.map.pin();
        if let Some(slot) = map.get(&Probe(lookup)) {
            return slot.touch();
        }
        self.insert(&lookup.to_key(), make)
    }

    /// Runs `f` on the state of `key` (made by `make` if the key has none)
    /// without taking a reference of its own: for callers that use the
    /// state only while they run.
    #[inline]
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) fn with<R, Q: LookupKey<K>>(
        &self,
        key: &Q,
        make: impl FnOnce(Option<&K>) -> V,
        f: impl FnOnce(&Arc<V>) -> R,
    ) -> R {
        {
            let map = self.inner.map.pin();
            if let Some(slot) = map.get(&Probe(key)) {
                slot.mark();
                return f(&slot.value);
            }
        }
        f(&self.insert(&key.to_key(), make))
    }

    #[inline(never)]
    fn insert(&self, key: &K, make: impl FnOnce(Option<&K>) -> V) -> Arc<V> {
        let inner = &*self.inner;
        inner.maintain(false);
        if !inner.reserve() {
            // Every entry is held: the key shares the overflow state.
            inner.emit_overflow();
            return Arc::clone(inner.overflow.get_or_init(|| Arc::new(make(None))));
        }
        let map = inner.map.pin();
        let inserted = map.try_insert_with(key.clone(), || Slot {
            value: Arc::new(make(Some(key))),
            used: AtomicBool::new(false),
        });
        match inserted {
            Ok(slot) => Arc::clone(&slot.value),
            Err(existing) => {
                // Another caller inserted the key first.
                inner.count.fetch_sub(1, Ordering::AcqRel);
                existing.touch()
            }
        }
    }

    /// The state of `key`, if it has any.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        self.get_by(key)
    }

    /// The state of the key `lookup` reads, if it has any.
    pub(crate) fn get_by<Q: LookupKey<K>>(&self, lookup: &Q) -> Option<Arc<V>> {
        self.inner.map.pin().get(&Probe(lookup)).map(Slot::touch)
    }

    /// How many keys are held, counting inserts under way: never more than
    /// `max_keys`, and exact when no insert is under way. (papaya's own
    /// count sums striped counters and can be off while others insert.)
    pub(crate) fn len(&self) -> u64 {
        self.inner.count.load(Ordering::Acquire)
    }

    /// The most keys the registry holds.
    pub(crate) fn max_keys(&self) -> u64 {
        self.inner.max_keys
    }

    /// Every key and its state, for snapshots.
    pub(crate) fn entries(&self) -> Vec<(K, Arc<V>)> {
        self.inner
            .map
            .pin()
            .iter()
            .map(|(key, slot)| (key.clone(), Arc::clone(&slot.value)))
            .collect()
    }

    /// Runs a sweep now if the idle period has passed since the last one.
    pub(crate) fn run_pending_tasks(&self) {
        self.inner.maintain(true);
    }
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    fn millis_since_start(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.start)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    }

    #[cold]
    #[inline(never)]
    fn emit_overflow(&self) {
        if let Some(hook) = &self.on_overflow {
            hook();
        }
    }

    /// Tells the eviction hook that a sweep drops `key`; always `true`.
    /// (papaya asks a predicate again only about a value replaced while
    /// it is removed, and the registry never replaces one.)
    fn evicts(&self, key: &K, slot: &Slot<V>) -> bool {
        if let Some(hook) = &self.on_evict {
            hook(key, &slot.value);
        }
        true
    }

    /// Takes one of the `max_keys` places; `false` when all are taken.
    fn reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < self.max_keys).then_some(count + 1)
            })
            .is_ok()
    }

    /// Sweeps when the registry is full or an idle period is over.
    fn maintain(&self, idle_only: bool) {
        let now = self.millis_since_start();
        let idle_due = self.idle.is_some_and(|idle| {
            let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
            now.saturating_sub(self.last_sweep.load(Ordering::Relaxed)) >= idle
        });
        let full = !idle_only && self.count.load(Ordering::Acquire) >= self.max_keys;
        if !(idle_due || full) {
            return;
        }
        if self.sweeping.swap(true, Ordering::Acquire) {
            return; // another caller is sweeping
        }
        let map = self.map.pin();
        let mut removed = 0u64;
        // Second chance: keep what is held or was used since the last sweep,
        // clearing the mark.
        map.retain(|key, slot| {
            let keep = slot.held() || slot.used.swap(false, Ordering::Relaxed);
            removed += u64::from(!keep);
            keep || !self.evicts(key, slot)
        });
        self.last_sweep.store(now, Ordering::Relaxed);
        let target = self.max_keys - self.max_keys / 10;
        let held = self.count.load(Ordering::Acquire).saturating_sub(removed);
        let mut excess = held.saturating_sub(target.saturating_sub(1));
        if full && excess > 0 {
            map.retain(|key, slot| {
                if excess == 0 || slot.held() {
                    return true;
                }
                excess -= 1;
                removed += 1;
                !self.evicts(key, slot)
            });
        }
        self.count.fetch_sub(removed, Ordering::AcqRel);
        self.sweeping.store(false, Ordering::Release);
    }
}

impl<K, V> Clone for KeyedRegistry<K, V> {
    /// A clone shares the same entries.
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for KeyedRegistry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRegistry")
            .field("max_keys", &self.inner.max_keys)
            .field("idle", &self.inner.idle)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn unreachable_state() -> AtomicU32 {
        AtomicU32::new(99)
    }

    #[tokio::test(start_paused = true)]
    async fn same_key_same_state() {
        let registry = KeyedRegistry::<String, AtomicU32>::new(8, None);
        let a = registry.get_or_insert_with(&"a".to_owned(), |_| AtomicU32::default());
        a.fetch_add(1, Ordering::Relaxed);
        let again = registry.get_or_insert_with(&"a".to_owned(), |_| unreachable_state());
        assert!(Arc::ptr_eq(&a, &again));
        assert!(registry.get(&"b".to_owned()).is_none());
        assert_eq!(registry.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_keys_stays_bounded_and_keeps_the_key_in_use() {
        let registry = KeyedRegistry::<u64, u64>::new(100, None);
        let steady = u64::MAX;
        for key in 0..20_000 {
            registry.get_or_insert_with(&key, |_| key);
            registry.get_or_insert_with(&steady, |_| 0);
            assert!(registry.len() <= 100, "held {} keys", registry.len());
        }
        assert!(registry.entries().len() <= 100);
        assert!(
            registry.get(&steady).is_some(),
            "the key in steady use survives"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn held_state_is_never_dropped_and_a_full_registry_stays_bounded() {
        let registry = KeyedRegistry::<u64, u64>::new(4, None);
        let held: Vec<_> = (0..4)
            .map(|k| registry.get_or_insert_with(&k, |_| k))
            .collect();
        // Every entry is held: new keys share the overflow state.
        let fifth = registry.get_or_insert_with(&4, |key| if key.is_none() { 40 } else { 4 });
        assert_eq!(*fifth, 40);
        let sixth = registry.get_or_insert_with(&6, |_| 6);
        assert!(Arc::ptr_eq(&fifth, &sixth));
        assert_eq!(registry.len(), 4);
        for k in 0..4 {
            let again = registry.get_or_insert_with(&k, |_| 1_000);
            assert!(Arc::ptr_eq(&again, &held[k as usize]));
        }
        drop(held);
        registry.get_or_insert_with(&5, |_| 5);
        assert!(registry.len() <= 4);
        assert!(registry.get(&5).is_some());
    }

    #[test]
    fn racing_inserts_never_exceed_the_bound() {
        let registry = KeyedRegistry::<u64, u64>::new(32, None);
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let registry = &registry;
                scope.spawn(move || {
                    for n in 0..20_000u64 {
                        let key = (n * 7 + thread * 13) % 500;
                        // While another thread sweeps, a full registry
                        // hands out the overflow state.
                        let state = registry
                            .get_or_insert_with(&key, |key| key.copied().unwrap_or(u64::MAX));
                        assert!(*state == key || *state == u64::MAX);
                        assert!(registry.len() <= 32, "held {} keys", registry.len());
                    }
                });
            }
        });
        assert!(registry.len() <= 32);
        assert_eq!(
            registry.inner.map.len() as u64,
            registry.len(),
            "every place is an entry once the inserts are over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_dropped_within_two_idle_periods() {
        let idle = Duration::from_secs(60);
        let registry = KeyedRegistry::<&str, u8>::new(100, Some(idle));
        registry.get_or_insert_with(&"idle", |_| 1);
        registry.get_or_insert_with(&"busy", |_| 2);
        for _ in 0..2 {
            tokio::time::advance(idle).await;
            registry.get(&"busy");
            registry.run_pending_tasks();
        }
        assert!(registry.get(&"busy").is_some());
        assert!(registry.get(&"idle").is_none());
        assert_eq!(registry.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_time_passing_nothing_idle_is_dropped() {
        let registry = KeyedRegistry::<&str, u8>::new(100, Some(Duration::from_secs(60)));
        registry.get_or_insert_with(&"a", |_| 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        registry.run_pending_tasks();
        registry.run_pending_tasks();
        assert!(registry.get(&"a").is_some());
    }
}
