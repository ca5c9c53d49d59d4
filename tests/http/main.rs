//! The HTTP layers against real servers on 127.0.0.1, through reqwest and
//! hyper-util, and the parsers under arbitrary input.
//!
//! These tests use real sockets, so they run on the real clock: it is read
//! only to record when requests arrive and to assert lower bounds on their
//! spacing, never an upper bound on a duration.

mod backend;
mod config;
#[cfg(feature = "h2")]
mod h2;
mod hyper_client;
mod parsing;
mod post_rule;
mod reqwest_client;
mod route_stacks;
mod routes;
mod server;
