#!/usr/bin/env bash
# Fan-out under load: a handler making 8 calls to a 100 ms upstream should answer in about
# 100 ms, not 800 ms, at any concurrency its threads are sized for. Runs the server of
# examples/fanout_bench.rs (upstream + handler in one process, 127.0.0.1 only) and drives
# GET /fanout with wrk at 1, 16 and 64 connections, then GET /sequential (the same 8 calls
# one after another) at 1 connection for comparison. Prints a markdown table.
# Threads (set in the example): 128 handler workers for up to 64 connections, 640 upstream
# workers for the 512 calls in flight; the fan-out is FanOut::shared(), whose calls are made
# by each handler's own thread. The server is a cargo example (not a file under bench/)
# so that it builds without a Cargo.toml entry and `cargo clippy --all-targets` checks it.
# Needs wrk (installed with apt-get if missing). Usage: bench/fanout.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}

if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -q --example fanout_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/fanout_bench

out=$(mktemp); trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
"$bin" 0 >"$out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$out")
[ -n "$url" ] || { echo "fanout_bench did not start" >&2; exit 1; }

# wrk reports latency as e.g. 101.23ms or 1.02s: print milliseconds.
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.1f", v / 1000; else if (v ~ /ms$/) printf "%.1f", v + 0; else if (v ~ /s$/) printf "%.0f", v * 1000; else print v }'; }

run() { # path connections seconds
  local threads=$(( $2 < 2 ? $2 : 2 ))
  wrk -t"$threads" -c"$2" -d"$3s" --timeout 10s --latency "$url$1"
}

run /fanout 64 1 >/dev/null # warm-up: threads and pooled connections
printf '| route | connections | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|---|\n'
for spec in "/fanout 1" "/fanout 16" "/fanout 64" "/sequential 1"; do
  set -- $spec
  report=$(run "$1" "$2" "$secs")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$report")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$report")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$report")
  errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {for (i = 4; i <= NF; i += 2) n += $i} END {print n + 0}' <<<"$report")
  printf '| `GET %s` | %s | %s | %s ms | %s ms | %s |\n' "$1" "$2" "$rps" "$(ms "$p50")" "$(ms "$p99")" "$errors"
done
