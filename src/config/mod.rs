//! Policies from configuration files (feature `serde`).
//!
//! Every layer's settings deserialise ([`RetryConfig`],
//! [`CircuitBreakerConfig`], [`BulkheadConfig`], [`TimeoutConfig`],
//! [`ObserveConfig`]), as does a whole [`PolicySetConfig`]: named
//! [`PolicyConfig`]s, the policy of requests no route takes, and a table
//! of routes. Durations are written the human way (`"300ms"`, `"2s"`,
//! `"1m 30s"`); unknown fields are refused.
//!
//! A file also chooses levels: `per = "host"` makes a breaker or a
//! bulkhead one per host ([`PolicySetConfig::build_http_with`]), and a
//! [`HedgeConfig`] table hedges; each built policy is a [`ConfigPolicy`],
//! whose variant is the [`Policy`](crate::policy::Policy) type of the
//! levels chosen.
//!
//! A file holds data only. The settings that are code (classifiers,
//! replays, request ids, listeners, a key other than the host, fallback
//! sources) are attached after
//! loading, through [`PolicySetConfig::build_with`] or by applying a
//! layer's settings onto a builder made in code (`apply`).
//!
//! Loading checks every setting exactly as the builders do, because it
//! calls them: a bad value gives the same [`ConfigError`] as in code, its
//! field preceded by the setting's path in the file,
//! `routes."/users/{id}".retry.max_attempts`. A value of the wrong type
//! or an unknown field is reported at its path too.
//!
//! Settings are read once: a built policy does not follow its file. To
//! change settings at run time, load the file again, build a new set, and
//! route new calls through services made from it (for example behind an
//! `Arc` swapped by the application); the new policies start with fresh
//! breaker, bulkhead and budget state.
//!
//! ```
//! use steadfast::config::PolicySetConfig;
//!
//! let text = r#"
//!     default = "standard"
//!
//!     [policies.standard]
//!     timeout = { total = "5s", attempt = "1s" }
//!     retry = { max_attempts = 3, backoff = { base = "100ms", cap = "1s" } }
//!
//!     [routes."/users/{id}"]
//!     method = "GET"
//!     retry = { max_attempts = 0 }
//! "#;
//! let config = PolicySetConfig::from_deserializer(toml::Deserializer::parse(text)?)?;
//! let err = config.build().unwrap_err();
//! assert_eq!(err.field(), r#"routes."/users/{id}".retry.max_attempts"#);
//! assert_eq!(err.value(), "0");
//! assert_eq!(err.rule(), "must be at least 1");
//!
//! let unknown = "[policies.standard]\nretries = 3\n";
//! let err = PolicySetConfig::from_deserializer(toml::Deserializer::parse(unknown)?).unwrap_err();
//! assert_eq!(err.field(), "policies.standard.retries");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::classify::DefaultClassifier;
use crate::error::ConfigError;
use crate::observe::GenerateRequestId;
use crate::policy::PolicyBuilder;
use crate::retry::CloneReplay;

mod built;
mod layers;
mod policy;

pub use self::built::{
    ConfigFuture, ConfigPolicy, ConfigService, HostBreaker, HostBulkhead, HostLevel, NoHost,
};
pub use self::layers::{
    BackoffConfig, BackoffKind, BudgetConfig, BulkheadConfig, CircuitBreakerConfig, HedgeConfig,
    JitterConfig, ObserveConfig, Per, RetryConfig, TimeoutConfig,
};
pub use self::policy::{PolicyConfig, RouteConfig};

/// A set of named policies and a route table, as read from a file.
///
/// ```toml
/// default = "standard"      # requests no route takes (no policy if left out)
///
/// [policies.standard]
/// timeout = { total = "5s", attempt = "1s" }
///
/// [routes."/search"]        # a path pattern, as axum's router reads it
/// method = "GET"
/// policy = "standard"       # a named policy, shared ...
///
/// [routes."/users/{id}"]    # ... or settings of the route's own
/// retry = { max_attempts = 2 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicySetConfig {
    /// The name of the policy for requests no route takes.
    pub default: Option<String>,
    /// Named policies.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyConfig>,
    /// Routes, by path pattern.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
}

impl PolicySetConfig {
    /// Reads the settings from any serde format, reporting a value of the
    /// wrong type or an unknown field as a [`ConfigError`] at its path.
    pub fn from_deserializer<'de, D: Deserializer<'de>>(input: D) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(input).map_err(|err| {
            let path = Path(err.path()).to_string();
            let rule = err.into_inner().to_string();
            ConfigError::unreadable(path, rule.trim().to_owned())
        })
    }

    /// Builds every policy with the default classifier, replay and
    /// request ids; see [`build_with`](Self::build_with).
    pub fn build(&self) -> Result<PolicySet, ConfigError> {
        self.build_with(|_, builder| builder)
    }

    /// Builds every policy, each passed first through `attach` with its
    /// name (a route's own policy is named by its path) to receive what
    /// is not data: a classifier, a replay, request ids, listeners.
    ///
    /// Each named policy is built once; the routes that name it, and the
    /// default, get clones of it and so share its breaker, bulkhead,
    /// hedging and budget. Errors name the full path of the setting in
    /// the file.
    ///
    /// Requests may be of any type, so a level `per = "host"` is refused;
    /// [`build_http_with`](Self::build_http_with) reads hosts.
    pub fn build_with<C, P, R>(
        &self,
        attach: impl FnMut(&str, PolicyBuilder) -> PolicyBuilder<C, P, R>,
    ) -> Result<PolicySet<C, P, R>, ConfigError>
    where
        C: Clone + Send + Sync + 'static,
        P: Clone,
        R: Clone,
    {
        self.build_set(attach)
    }

    /// As [`build_with`](Self::build_with), for HTTP requests (feature
    /// `http`): a breaker or a bulkhead with `per = "host"` is one per
    /// host and port of the request ([`ByHost`](crate::http::ByHost)), as
    /// in [`Policy::standard_http_client`](crate::policy::Policy::standard_http_client).
    ///
    /// ```
    /// use steadfast::config::PolicySetConfig;
    /// use steadfast::http::{HttpClassifier, HttpReplay};
    ///
    /// let text = r#"
    ///     [policies.api]
    ///     circuit_breaker = { consecutive_failures = 5, per = "host" }
    ///     hedge = { max_hedges = 1, delay = "100ms" }
    /// "#;
    /// let config = PolicySetConfig::from_deserializer(toml::Deserializer::parse(text)?)?;
    /// let set = config.build_http_with(|_, builder| {
    ///     builder.classifier(HttpClassifier::new()).replay(HttpReplay::new())
    /// })?;
    /// let api = set.policy("api").unwrap();
    /// assert!(api.breaker_per_host());
    /// assert_eq!(api.hedge().map(|h| h.max_hedges()), Some(1));
    ///
    /// // Without hosts, a level per host is refused at its path.
    /// let err = config.build().unwrap_err();
    /// assert_eq!(err.field(), "policies.api.circuit_breaker.per");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn build_http_with<C, P, R>(
        &self,
        attach: impl FnMut(&str, PolicyBuilder) -> PolicyBuilder<C, P, R>,
    ) -> Result<PolicySet<C, P, R, crate::http::ByHost>, ConfigError>
    where
        C: Clone + Send + Sync + 'static,
        P: Clone,
        R: Clone,
    {
        self.build_set(attach)
    }

    fn build_set<C, P, R, K>(
        &self,
        mut attach: impl FnMut(&str, PolicyBuilder) -> PolicyBuilder<C, P, R>,
    ) -> Result<PolicySet<C, P, R, K>, ConfigError>
    where
        C: Clone + Send + Sync + 'static,
        P: Clone,
        R: Clone,
        K: HostLevel + Clone,
    {
        let mut policies = BTreeMap::new();
        for (name, config) in &self.policies {
            let prefix = format!("policies.{}", Key(name));
            let policy = config
                .builder(name.clone())
                .and_then(|builder| config.build_policy(attach(name, builder)))
                .map_err(|err| err.within(&prefix))?;
            policies.insert(name.clone(), policy);
        }
        let named = |field: String, name: &str| {
            policies.get(name).cloned().ok_or_else(|| {
                ConfigError::new(
                    field,
                    name.to_owned(),
                    "no policy of this name in `policies`",
                )
            })
        };
        let default = match &self.default {
            Some(name) => named("default".to_owned(), name)?,
            None => {
                ConfigPolicy::Plain(attach("default", crate::policy::Policy::builder()).build()?)
            }
        };
        let mut routes = Vec::with_capacity(self.routes.len());
        for (path, route) in &self.routes {
            let prefix = format!("routes.{}", Key(path));
            let policy = match &route.policy {
                Some(name) if route.has_own() => {
                    return Err(ConfigError::new(
                        format!("{prefix}.policy"),
                        name.clone(),
                        "a route names a policy or has settings of its own, not both",
                    ));
                }
                Some(name) => named(format!("{prefix}.policy"), name)?,
                None => {
                    let mut own = route.own();
                    if let Some(observe) = &mut own.observe {
                        observe.route.get_or_insert_with(|| path.clone());
                    }
                    own.builder(path.clone())
                        .and_then(|builder| own.build_policy(attach(path, builder)))
                        .map_err(|err| err.within(&prefix))?
                }
            };
            routes.push((
                path.clone(),
                route.method.clone(),
                route.host.clone(),
                policy,
            ));
        }
        #[cfg(feature = "http")]
        let table = route_table(&default, &routes)?;
        Ok(PolicySet {
            policies,
            default,
            #[cfg(feature = "http")]
            table,
            routes: routes
                .into_iter()
                .map(|(path, _, _, policy)| (path, policy))
                .collect(),
        })
    }
}

#[cfg(feature = "http")]
type RouteEntry<C, P, R, K> = (
    String,
    Option<String>,
    Option<String>,
    ConfigPolicy<C, P, R, K>,
);

#[cfg(feature = "http")]
fn route_table<C: Clone, P: Clone, R: Clone, K: HostLevel + Clone>(
    default: &ConfigPolicy<C, P, R, K>,
    routes: &[RouteEntry<C, P, R, K>],
) -> Result<crate::http::RouteTable<ConfigPolicy<C, P, R, K>>, ConfigError> {
    use crate::http::{Route, RouteTable};

    let mut table = RouteTable::builder(default.clone());
    for (path, method, host, policy) in routes {
        let prefix = format!("routes.{}", Key(path));
        let mut route = match method {
            None => Route::any(path.clone()),
            Some(method) => {
                let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| {
                        ConfigError::new(
                            format!("{prefix}.method"),
                            method.clone(),
                            "must be an HTTP method",
                        )
                    })?;
                Route::new(method, path.clone())
            }
        };
        if let Some(host) = host {
            route = route.host(host.clone());
        }
        table = table.route(route, policy.clone());
    }
    // The table names the path pattern it refuses.
    table.build().map_err(|err| {
        ConfigError::new(
            format!("routes.{}", Key(err.value())),
            err.value().to_owned(),
            err.rule().to_owned(),
        )
    })
}

/// The policies a [`PolicySetConfig`] describes, built: each a
/// [`ConfigPolicy`], whose per-host levels are keyed by `K`.
pub struct PolicySet<
    C = DefaultClassifier,
    P = CloneReplay,
    R = GenerateRequestId,
    K: HostLevel = NoHost,
> {
    policies: BTreeMap<String, ConfigPolicy<C, P, R, K>>,
    default: ConfigPolicy<C, P, R, K>,
    routes: Vec<(String, ConfigPolicy<C, P, R, K>)>,
    #[cfg(feature = "http")]
    table: crate::http::RouteTable<ConfigPolicy<C, P, R, K>>,
}

impl<C, P, R, K: HostLevel> PolicySet<C, P, R, K> {
    /// The named policy, if there is one.
    pub fn policy(&self, name: &str) -> Option<&ConfigPolicy<C, P, R, K>> {
        self.policies.get(name)
    }

    /// Every named policy, by name.
    pub fn policies(&self) -> impl Iterator<Item = (&str, &ConfigPolicy<C, P, R, K>)> {
        self.policies
            .iter()
            .map(|(name, policy)| (name.as_str(), policy))
    }

    /// The policy of requests no route takes (a policy with no layer if the
    /// file names none).
    pub fn default_policy(&self) -> &ConfigPolicy<C, P, R, K> {
        &self.default
    }

    /// Every route's policy, by path pattern.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &ConfigPolicy<C, P, R, K>)> {
        self.routes
            .iter()
            .map(|(path, policy)| (path.as_str(), policy))
    }

    /// The route table (feature `http`): layer it over a client to send
    /// each request through its route's policy.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn route_table(&self) -> &crate::http::RouteTable<ConfigPolicy<C, P, R, K>> {
        &self.table
    }
}

impl<C, P, R, K: HostLevel> fmt::Debug for PolicySet<C, P, R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet")
            .field("policies", &self.policies)
            .field("default", &self.default)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// A map key as TOML writes it in a dotted path: bare if it can be,
/// quoted otherwise.
struct Key<'a>(&'a str);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = !self.0.is_empty()
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if bare {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// A path from `serde_path_to_error`, written as [`Key`]s joined by dots.
struct Path<'a>(&'a serde_path_to_error::Path);

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use serde_path_to_error::Segment;

        let mut first = true;
        for segment in self.0.iter() {
            match segment {
                Segment::Seq { index } => write!(f, "[{index}]")?,
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    if !first {
                        f.write_str(".")?;
                    }
                    write!(f, "{}", Key(key))?;
                }
                Segment::Unknown => f.write_str(if first { "?" } else { ".?" })?,
            }
            first = false;
        }
        if first {
            f.write_str(".")?;
        }
        Ok(())
    }
}
