#!/bin/sh
# Instructions per call of each row of `benches/calls.rs`, under callgrind:
# the count for 20,000 calls minus the count for 10,000, divided by 10,000.
# Run from the repository root after
#   cargo build --release -p steadfast-benches --bin calls
# Arguments: rows to count (default: all).
set -eu
bin=${CARGO_TARGET_DIR:-target}/release/calls
rows=${*:-"bare bulkhead/steadfast bulkhead/tower rate_limit/steadfast rate_limit/tower rate_limit/keyed retry/steadfast retry/tower retry/suite_echo retry/tower_suite_echo retry_budget/steadfast retry_budget/tower policy/steadfast policy/observed policy/observed_info_listener policy/standard policy/service_builder part/total_deadline part/bulkhead part/retry part/circuit_breaker part/attempt_timeout policy/attempt policy/empty fallback/steadfast chaos/switched_off chaos/zero_rates"}
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
for row in $rows; do
    small=$(count "$row" 10000)
    large=$(count "$row" 20000)
    echo "$row $(( (large - small) / 10000 ))"
done
