//! gRPC tests.
