#!/usr/bin/env bash
# The crate is a stack of levels, lowest first:
#
#   0 primitives   error, classify, keyed, replay, budget, random, deadline,
#                  oneshot, intern, clock, stripe
#   1 event core   src/event/
#   2 layers       timeout, retry, circuit_breaker, bulkhead, adaptive,
#                  rate_limit, hedge, scatter, fallback, chaos, http, grpc
#   3 observe      src/observe/ (the observe layer, health snapshots)
#   4 policy       policy/, config/, http/route.rs, grpc/preset.rs
#
# A file may name (`crate::a::...` in code, not in comments or docs) only
# modules of its own level or lower. This prints each upward import with its
# file and line, and fails if there is one. src/lib.rs declares every
# module and is not checked.
set -euo pipefail
cd "$(dirname "$0")/.."

# The level of a source file, or of the module a `crate::` path names.
level_of_file() {
  case "$1" in
    src/policy.rs | src/policy/* | src/config/* | src/http/route.rs | src/grpc/preset.rs) echo 4 ;;
    src/observe/*) echo 3 ;;
    src/event/*) echo 1 ;;
    src/error.rs | src/classify.rs | src/keyed.rs | src/replay.rs | src/budget.rs | \
      src/random.rs | src/deadline.rs | src/oneshot.rs | src/intern.rs | src/clock.rs | src/stripe.rs) echo 0 ;;
    src/*/*) echo 2 ;;
    *) echo "" ;;
  esac
}

level_of_path() {
  # $1: the path after `crate::`, e.g. `http::route::RouteTable`.
  case "$1" in
    policy | policy::* | config | config::* | http::route | http::route::* | \
      http::RouteTable* | grpc::preset | grpc::preset::*) echo 4 ;;
    observe | observe::*) echo 3 ;;
    event | event::*) echo 1 ;;
    error | error::* | classify | classify::* | keyed | keyed::* | replay | replay::* | \
      budget | budget::* | random | random::* | deadline | deadline::* | oneshot | oneshot::* | intern | intern::* | clock | clock::* | stripe | stripe::* | \
      BoxError | ConfigError) echo 0 ;;
    *) echo 2 ;;
  esac
}

name_of_level() {
  case "$1" in
    0) echo primitives ;; 1) echo "event core" ;; 2) echo layers ;;
    3) echo observe ;; 4) echo policy ;;
  esac
}

upward=0
declare -A checked
while IFS= read -r file; do
  own=$(level_of_file "$file")
  [ -n "$own" ] || continue
  checked[$own]=$(( ${checked[$own]:-0} + 1 ))
  # Code lines only: drop `//` comments (docs included), then every
  # `crate::` path on what is left.
  while IFS=: read -r line path; do
    target=$(level_of_path "$path")
    if [ "$target" -gt "$own" ]; then
      echo "$file:$line: $(name_of_level "$own") names crate::$path ($(name_of_level "$target"))"
      upward=$((upward + 1))
    fi
  done < <(sed -e 's://.*$::' "$file" | grep -n -o 'crate::[A-Za-z_][A-Za-z0-9_:]*' |
    sed -e 's/:crate::/:/' -e 's/::$//')
done < <(find src -name '*.rs' ! -path src/lib.rs | sort)

for level in 0 1 2 3 4; do
  echo "level $level ($(name_of_level "$level")): ${checked[$level]:-0} files"
done
if [ "$upward" -gt 0 ]; then
  echo "levels: $upward upward import(s)" >&2
  exit 1
fi
echo "levels: no import points up"
