#!/usr/bin/env bash
# The happy path as instruction counts: each server of the load benchmark (`load_bench serve
# KIND`) runs under `valgrind --tool=callgrind` while one keep-alive connection sends it N
# requests for `/ok`, then 2N; the difference over N is what one request costs, start-up and
# shutdown left out. Instructions, unlike seconds, repeat from run to run on a shared machine.
#
#   bash benches/instructions.sh [N]       (N = 2000 by default; needs valgrind and python3)
#
# ROUTE=/boom counts a panicking request instead (each server answers it 500; RUST_BACKTRACE is
# unset, so tower-http's is std's hook without a trace, crashguard's one trace per location).
# KINDS="unprotected crashguard-layer" measures only those servers; BINARY=path measures that
# build of the load benchmark instead of building it (to compare two versions of the code).
#
# With CALLGRIND_DIR=dir, each run's profile is kept there as KIND-COUNT.callgrind, for
# `callgrind_annotate --inclusive=no` to say where a server's extra instructions go.
#
# The watcher is turned off (CRASHGUARD_WATCH_INTERVAL=0): its look every 5 s would count
# against the slower run, which takes longer under valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-2000}

binary=${BINARY:-$(bash benches/load_bench_binary.sh)}

# Sends `count` requests for /ok on one keep-alive connection to the address on stdin's first
# line, checking each answer.
client='
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port))
route = sys.argv[3]
for _ in range(int(sys.argv[2])):
    connection.request("GET", route)
    response = connection.getresponse()
    body = response.read()
    assert (response.status, body) == (200, b"ok") or route != "/ok", response.status
    assert response.status in (200, 500), response.status
'

# Prints the instructions the server `kind` executed while answering `count` requests.
instructions() {
  local kind=$1 count=$2 out
  out=$(mktemp -d)
  env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE CRASHGUARD_WATCH_INTERVAL=0 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
    "$binary" serve "$kind" >"$out/stdout" 2>"$out/stderr" &
  local pid=$!
  until grep -q "listening on" "$out/stdout" 2>/dev/null; do sleep 0.2; done
  local address
  address=$(grep "listening on" "$out/stdout" | sed 's/listening on //')
  python3 -c "$client" "$address" "$count" "${ROUTE:-/ok}"
  kill -TERM "$pid"
  wait "$pid" || true
  grep -E "^(summary|totals):" "$out/callgrind.out"* | head -1 | awk '{print $2}'
  if [ -n "${CALLGRIND_DIR:-}" ]; then
    mkdir -p "$CALLGRIND_DIR"
    cp "$out/callgrind.out" "$CALLGRIND_DIR/$kind-$count.callgrind"
  fi
  rm -rf "$out"
}

printf '| server | instructions per request | runs (N, 2N) |\n|---|---:|---|\n'
for kind in ${KINDS:-unprotected tower-http crashguard crashguard-layer}; do
  once=$(instructions "$kind" "$requests")
  twice=$(instructions "$kind" $((2 * requests)))
  per_request=$(( (twice - once) / requests ))
  printf '| %s | %d | %d, %d |\n' "$kind" "$per_request" "$once" "$twice"
done
