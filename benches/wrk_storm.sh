#!/usr/bin/env bash
# The storm with wrk as the load generator: the load benchmark's servers (`load_bench serve
# KIND`, release build), one at a time, each under 16 connections on `/boom` (a panic on every
# request) while 4 connections measure `/ok`, for 5 s after 1 s of warm-up, in rounds whose order
# rotates. Prints one table row per server and round: answers per second from wrk, `/ok` p99, and
# the server's CPU time (user and system, from /proc) per answered request. RUST_BACKTRACE is
# unset for every server: tower-http's comparison is std's hook without traces.
#
#   bash benches/wrk_storm.sh [ROUNDS]     (2 by default; needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
kinds=(tower-http crashguard crashguard-layer)

binary=$(bash benches/load_bench_binary.sh)
stderr_dir=/dev/shm
[ -d "$stderr_dir" ] || stderr_dir=$(mktemp -d)
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The requests wrk completed, and its `Requests/sec`.
requests() { awk '/requests in/ {print $1}' "$1"; }
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }

printf '| round | server | /boom answered/s | /ok req/s | /ok p99 | server CPU per request |\n'
printf '|---:|---|---:|---:|---:|---:|\n'
for round in $(seq 1 "$rounds"); do
  for offset in $(seq 0 $((${#kinds[@]} - 1))); do
    kind=${kinds[$(((round - 1 + offset) % ${#kinds[@]}))]}
    out=$(mktemp -d)
    env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$binary" serve "$kind" >"$out/stdout" 2>"$stderr_dir/wrk-storm-$kind.stderr" &
    pid=$!
    until grep -q "listening on" "$out/stdout" 2>/dev/null; do sleep 0.1; done
    address=$(grep "listening on" "$out/stdout" | sed 's/listening on //')
    wrk -t1 -c16 -d1s "http://$address/boom" >/dev/null
    before=$(cpu_ticks "$pid")
    wrk -t1 -c16 -d5s "http://$address/boom" >"$out/boom" &
    storm=$!
    wrk -t1 -c4 -d5s --latency "http://$address/ok" >"$out/ok"
    wait "$storm"
    after=$(cpu_ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    answered=$(( $(requests "$out/boom") + $(requests "$out/ok") ))
    cpu=$(python3 -c "print(f'{($after - $before) / $ticks / $answered * 1e6:.1f} µs')")
    printf '| %d | %s | %s | %s | %s | %s |\n' "$round" "$kind" "$(rate "$out/boom")" \
      "$(rate "$out/ok")" "$(p99 "$out/ok")" "$cpu"
    rm -rf "$out" "$stderr_dir/wrk-storm-$kind.stderr"
  done
done
