#!/usr/bin/env bash
# Restart after SIGKILL: seconds from restarting a killed `vigil run` until it has its partitions again.
#   Benchmarks/restart.sh dynamic|static [extra vigil run arguments...]
# Starts `vigil broker`, produces a small generated stream with kcat, runs one instance until caught up,
# SIGKILLs it, restarts it at once (static: with the same --instance-id) and times the restart to the
# "partitions assigned" log line. VIGIL picks the binary (default .build/release/vigil).
set -euo pipefail
cd "$(dirname "$0")/.."
vigil=${VIGIL:-.build/release/vigil}
mode=${1:?dynamic or static}; shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/vigil-restart.XXXXXX")
pids=()
# The measurement is done: SIGKILL (a clean stop would checkpoint, and wait for the broker killed beside it).
trap 'kill -9 "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
"$vigil" broker --partitions 4 > "$dir/broker.out" 2> "$dir/broker.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '127.0.0.1:' "$dir/broker.out" 2>/dev/null && break; sleep 0.1; done
brokers=$(grep -o '127.0.0.1:[0-9]*' "$dir/broker.out" | head -1)
"$vigil" generate --children 200 --days 90 --seed 1 2>/dev/null | kcat -P -b "$brokers" -t agency-events -q
args=(run --brokers "$brokers" --group restart --rules Rules --audit-file "$dir/audit.jsonl" --clock event "$@")
[ "$mode" = static ] && args+=(--instance-id restart-bench)
"$vigil" "${args[@]}" > "$dir/run1.log" 2>&1 &
first=$!
for _ in $(seq 1 600); do grep -q "caught up" "$dir/run1.log" && break; sleep 0.1; done
kill -9 "$first"; wait "$first" 2>/dev/null || true
t0=$(date +%s.%N)
"$vigil" "${args[@]}" > "$dir/run2.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 1200); do grep -q "partitions assigned" "$dir/run2.log" && break; sleep 0.1; done
t1=$(date +%s.%N)
echo "$mode $*: $(echo "$t1 - $t0" | bc) s from the restart to partitions assigned"
