#!/usr/bin/env bash
# Timing-wheel benchmark: schedule and fire throughput, 64 vs 256 slots per level, and the
# lateness of a burst of same-second messages on the real clock.
#
#   bash bench/wheel.sh            1,000,000 messages per case
#   bash bench/wheel.sh --quick    100,000 messages per case
#
# Builds WheelBench in release (scratch path .build-bench), runs it in a temporary directory
# under bench/ (or $BENCH_DIR), and writes what it prints to
# bench/results/wheel-<UTC time>.txt and bench/results/wheel-latest.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="bench/results/wheel-$STAMP.txt"
BASE="${BENCH_DIR:-bench}"
mkdir -p bench/results "$BASE"
echo "[wheel.sh] build WheelBench (release)"
swift build -c release --scratch-path .build-bench --product WheelBench 2>&1 | grep -E "error|Compiling|Build" | tail -3
{
    echo "wheel benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
    echo "swift: $(swift --version 2>&1 | head -1)"
    echo
    .build-bench/release/WheelBench --dir "$BASE" "$@"
} | tee "$OUT"
cp "$OUT" bench/results/wheel-latest.txt
echo "[wheel.sh] results: $OUT"
