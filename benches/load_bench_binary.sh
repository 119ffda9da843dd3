#!/usr/bin/env bash
# Builds the load benchmark (release, `bench` profile) and prints the path of its executable,
# which `serve KIND` turns into one of its servers.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --features axum --bench load_bench --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "load_bench" and message.get("executable"):
        print(message["executable"])'
