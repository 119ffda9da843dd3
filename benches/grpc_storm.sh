#!/usr/bin/env bash
# A gRPC storm: the fixtures' tonic server (`grpc_service`, release build), one at a time, while
# its own tonic client calls a panicking method from 16 tasks on one HTTP/2 connection and `Ping`
# from 4 on another, for 5 s after 1 s of warm-up, in rounds whose order rotates. Prints one row
# per server and round: panicking calls answered per second and the status the client saw,
# `Ping`'s p99 during the storm, and the server's CPU time (user and system, from /proc) per
# call. RUST_BACKTRACE is unset for every server.
#
# The servers: `tonic alone` (no layer, std's panic hook: what a tonic service has without
# crashguard), `layer` (`CrashGuardLayer` catching an unguarded method), `attribute` (the method
# under `#[crash_guarded(http)]`, inside the layer).
#
#   bash benches/grpc_storm.sh [ROUNDS]     (2 by default; needs python3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
kinds=(tonic-alone layer attribute)

cargo build --quiet --release -p crashguard-fixtures --bin grpc_service
binary=target/release/grpc_service
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '| round | server | panicking calls answered/s | status seen | Ping p99 | server CPU per call |\n'
printf '|---:|---|---:|---|---:|---:|\n'
for round in $(seq 1 "$rounds"); do
  for offset in $(seq 0 $((${#kinds[@]} - 1))); do
    kind=${kinds[$(((round - 1 + offset) % ${#kinds[@]}))]}
    case $kind in
      tonic-alone) guard=none method=/test.Echo/UnguardedBoom ;;
      layer) guard=crashguard method=/test.Echo/UnguardedBoom ;;
      attribute) guard=crashguard method=/test.Echo/Boom ;;
    esac
    out=$(mktemp -d)
    env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE GRPC_GUARD=$guard ADDR=127.0.0.1:0 \
      CRASHGUARD_TERMINATION_LOG= "$binary" >"$out/stdout" 2>/dev/null &
    pid=$!
    until grep -q "listening on" "$out/stdout" 2>/dev/null; do sleep 0.1; done
    url=$(grep "listening on" "$out/stdout" | sed 's/listening on //')
    "$binary" storm "$url" "$method" 1 >/dev/null 2>&1
    before=$(cpu_ticks "$pid")
    "$binary" storm "$url" "$method" 5 >"$out/storm" 2>/dev/null
    after=$(cpu_ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    python3 - "$out/storm" "$round" "$kind" "$((after - before))" "$ticks" <<'PY'
import json, sys
storm = json.load(open(sys.argv[1]))
round_, kind, cpu, ticks = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
calls = sum(storm["codes"].values())
per_call = cpu / ticks / (calls + storm["healthy_calls"]) * 1e6
seen = ", ".join(storm["codes"])
print(f"| {round_} | {kind} | {calls / 5:,.0f} | {seen} | {storm['healthy_p99_ms']:.2f} ms | {per_call:.1f} µs |")
PY
    rm -rf "$out"
  done
done
