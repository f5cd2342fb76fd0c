#!/usr/bin/env bash
# Issue 18's figures: lock acquire/release pairs per second, callbacks parked and
# completed per second, the broker's memory for many parked callbacks (each completed
# exactly once), callback timeout lateness, abort → cancellation latency, and a flow of
# 100,000 no-op children from spawn to continuation.
#
#   bash bench/coordination.sh                    100,000 callbacks (a minute or two)
#   bash bench/coordination.sh --callbacks 1000000  the million of the issue's goal
#   bash bench/coordination.sh --quick            small counts: a smoke run
#
# Builds chime and CoordinationBench in release (.build-bench); CoordinationBench starts
# `chime serve` on a fresh data directory and reads its memory from /proc. Writes
# bench/results/coordination-<UTC time>.txt and coordination-latest.txt (--quick: under
# bench/results/quick/, not kept in git). Goals are printed beside the figures; nothing
# fails on a slow run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ARGS=()
RESULTS=bench/results
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RESULTS=bench/results/quick; ARGS+=(--lock-names 2000 --callbacks 5000 --completions 2000 --aborts 20 --children 10000) ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done
mkdir -p "$RESULTS"
echo "[coordination.sh] build chime and CoordinationBench (release, .build-bench)" >&2
swift build -c release --scratch-path .build-bench --product chime 2>&1 | tail -n 1 >&2
swift build -c release --scratch-path .build-bench --product CoordinationBench 2>&1 | tail -n 1 >&2
BIN="$(swift build -c release --scratch-path .build-bench --show-bin-path)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$RESULTS/coordination-$STAMP.txt"
{
    echo "# bench/coordination.sh $STAMP, main at $(git rev-parse --short HEAD)${ARGS[*]:+, ${ARGS[*]}}"
    "$BIN/CoordinationBench" --chime "$BIN/chime" --work "${BENCH_DIR:-$ROOT/bench}" ${ARGS[@]+"${ARGS[@]}"}
} | tee "$OUT"
cp "$OUT" "$RESULTS/coordination-latest.txt"
