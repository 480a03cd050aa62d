#!/usr/bin/env bash
# Session pool versus one lock per model: requests/s and peak memory of `tinyserve serve`
# on the bundled iris model, each configuration run twice, interleaved (the machine is noisy).
# Needs wrk (apt-get install wrk). Usage: bench/session-pool.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}; conns=${2:-16}; port=8021
cargo build --release -q
body=$(mktemp); trap 'rm -f "$body"' EXIT
cat > "$body" <<'LUA'
wrk.method = "POST"
wrk.body = '{"inputs":{"input":[[5.1,3.5,1.4,0.2]]}}'
wrk.headers["Content-Type"] = "application/json"
LUA
printf '| sessions | intra-op threads | round | requests/s | peak RSS |\n|---|---|---|---|---|\n'
for round in 1 2; do
  for cfg in "1 2" "2 1" "1 1" "2 2"; do
    set -- $cfg
    ./target/release/tinyserve serve --port $port --sessions-per-model "$1" --intra-threads "$2" >/dev/null 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
    rps=$(wrk -t2 -c"$conns" -d"${secs}s" -s "$body" "http://127.0.0.1:$port/predict" | awk '/Requests\/sec/ {print $2}')
    hwm=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$round" "$rps" "$hwm"
  done
done
