#!/usr/bin/env bash
# The storm with wrk as the load generator: the load benchmark's servers (`load_bench serve
# KIND`, release build), one at a time, each under 16 connections on `/boom` (a panic on every
# request) while 4 connections measure `/ok`, for 5 s after 1 s of warm-up, in rounds whose order
# rotates. Prints one table row per server and round: answers per second from wrk, `/ok` p99, and
# the server's CPU time (user and system, from /proc) per answered request, and wrk's own (both
# wrk processes). RUST_BACKTRACE is unset for every server: tower-http's comparison is std's hook
# without traces.
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

printf '| round | server | /boom answered/s | /ok req/s | /ok p99 | server CPU per request | wrk CPU per request |\n'
printf '|---:|---|---:|---:|---:|---:|---:|\n'
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
    # The two wrk run as children of one shell, which, once it has waited for them, reports
    # their CPU time as its children's (fields 16 and 17 of its stat).
    client=$(bash -c '
      wrk -t1 -c16 -d5s "http://$1/boom" >"$2/boom" &
      wrk -t1 -c4 -d5s --latency "http://$1/ok" >"$2/ok"
      wait
      awk "{print \$16 + \$17}" /proc/$$/stat' _ "$address" "$out")
    after=$(cpu_ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    answered=$(( $(requests "$out/boom") + $(requests "$out/ok") ))
    cpu=$(python3 -c "print(f'{($after - $before) / $ticks / $answered * 1e6:.1f} µs')")
    client_cpu=$(python3 -c "print(f'{$client / $ticks / $answered * 1e6:.1f} µs')")
    printf '| %d | %s | %s | %s | %s | %s | %s |\n' "$round" "$kind" "$(rate "$out/boom")" \
      "$(rate "$out/ok")" "$(p99 "$out/ok")" "$cpu" "$client_cpu"
    rm -rf "$out" "$stderr_dir/wrk-storm-$kind.stderr"
  done
done
