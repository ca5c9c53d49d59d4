//! The GCRA script and its reply.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script};
use tower_service::Service;

pub(super) const GCRA: &str = include_str!("script.lua");

/// One script call: the two keys and the nine arguments.
pub(super) struct Invocation {
    pub(super) rate_key: String,
    pub(super) quota_key: String,
    pub(super) args: [i64; 9],
}

/// The script's answer, clamped to what a caller may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) granted: u64,
    pub(super) wait: Duration,
    pub(super) remaining: u64,
    pub(super) used: u64,
    pub(super) limit: u64,
    pub(super) reset_unix: u64,
    pub(super) full_in: Duration,
    /// The script's clock, in microseconds since the epoch.
    pub(super) now_us: u64,
}

impl Reply {
    /// Reads the script's eight integers; anything else is an error.
    pub(super) fn parse(values: &[i64]) -> Option<Self> {
        let &[granted, wait, remaining, used, limit, reset, full_in, now] = values else {
            return None;
        };
        let pos = |v: i64| u64::try_from(v).unwrap_or(0);
        Some(Self {
            granted: pos(granted),
            wait: Duration::from_micros(pos(wait)),
            remaining: pos(remaining),
            used: pos(used),
            limit: pos(limit),
            reset_unix: pos(reset),
            full_in: Duration::from_micros(pos(full_in)),
            now_us: pos(now),
        })
    }
}

/// Sends the script on one multiplexed connection, made on first use.
#[derive(Clone)]
pub(super) struct ScriptService {
    pub(super) shared: Arc<Connector>,
}

pub(super) struct Connector {
    client: Client,
    timeout: Duration,
    conn: OnceLock<Result<ConnectionManager, RedisError>>,
    script: Script,
    pub(super) round_trips: AtomicU64,
}

impl Connector {
    pub(super) fn new(client: Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            conn: OnceLock::new(),
            script: Script::new(GCRA),
            round_trips: AtomicU64::new(0),
        }
    }

    fn connection(&self) -> Result<ConnectionManager, RedisError> {
        self.conn
            .get_or_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .clone()
    }
}

impl Service<Invocation> for ScriptService {
    type Response = Vec<i64>;
    type Error = RedisError;
    type Future = Pin<Box<dyn Future<Output = Result<Vec<i64>, RedisError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Invocation) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut conn = shared.connection()?;
            shared.round_trips.fetch_add(1, Ordering::Relaxed);
            let mut invocation = shared.script.key(call.rate_key);
            invocation.key(call.quota_key);
            for arg in call.args {
                invocation.arg(arg);
            }
            invocation.invoke_async(&mut conn).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_the_wrong_shape_are_refused() {
        assert_eq!(Reply::parse(&[1, 2, 3]), None);
        let reply = Reply::parse(&[1, -5, 3, 4, 5, 6, -7, 8]).unwrap();
        assert_eq!(reply.wait, Duration::ZERO);
        assert_eq!(reply.full_in, Duration::ZERO);
        assert_eq!(reply.granted, 1);
    }
}
