#!/bin/sh
# Instructions per call of each closed-breaker case (benches/breaker_calls.rs):
# callgrind counts a run of 200,000 calls and one of 100,000, and the
# difference over 100,000 is the cost of one call, start-up excluded.
# `BIN=path benches/callgrind.sh count` counts another build of the harness.
set -eu
bin=${BIN:-$(ls -t target/release/deps/breaker_calls-* | grep -v '\.d$' | head -n 1)}
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" calls "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for case in ${*:-bare count time recloser failsafe}; do
    small=$(count "$case" 100000)
    large=$(count "$case" 200000)
    echo "$case $(( (large - small) / 100000 )) instructions per call"
done
