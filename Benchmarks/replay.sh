#!/usr/bin/env bash
# Replay benchmark: generate a stream (default 100k children, 170 days, seed 42: ~1.03M events), then
# replay it through the shipped pack three times with a release build, reporting wall time, events/s and
# peak RSS (GNU time). Usage: Benchmarks/replay.sh [children] [days] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
children=${1:-100000}; days=${2:-170}; seed=${3:-42}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
swift build -c release --product vigil >/dev/null
bin=.build/release/vigil
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
$bin generate --children "$children" --days "$days" --seed "$seed" > "$work/events.jsonl" 2> "$work/gen.txt"
cat "$work/gen.txt"
events=$(wc -l < "$work/events.jsonl")
echo "input: $events events, $(du -h "$work/events.jsonl" | cut -f1)"
for run in 1 2 3; do
  /usr/bin/time -v $bin replay "$work/events.jsonl" > "$work/alerts.jsonl" 2> "$work/time.txt"
  wall=$(grep "Elapsed (wall clock)" "$work/time.txt" | awk '{print $NF}')
  secs=$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(grep "Maximum resident set size" "$work/time.txt" | awk '{print $NF}')
  alerts=$(wc -l < "$work/alerts.jsonl")
  printf 'run %d: %s s, %.0f events/s, peak RSS %d MiB, %d alerts\n' "$run" "$secs" "$(echo "$events / $secs" | bc -l)" "$((rss / 1024))" "$alerts"
done
