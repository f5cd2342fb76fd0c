#!/usr/bin/env bash
# Timing-wheel benchmark: schedule and fire throughput, 64 vs 256 slots per level, and the
# lateness of a burst of same-second messages on the real clock.
#
#   bash bench/wheel.sh            1,000,000 messages per case; memory and recovery with 10,000,000 pending;
#                                  lateness at 100,000 due/s for 30 s
#   bash bench/wheel.sh --quick    100,000 per case; 1,000,000 pending; 5 s of lateness
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
    echo
    PENDING=10000000
    case " $* " in *" --quick "*) PENDING=1000000 ;; esac
    echo "memory and recovery with $PENDING pending (the timer log takes about $((PENDING / 6000)) MB of disk meanwhile)"
    .build-bench/release/WheelBench --dir "$BASE" --pending "$PENDING" | grep -v '^  scheduled'
    echo
    SECONDS_SUSTAINED=30
    case " $* " in *" --quick "*) SECONDS_SUSTAINED=5 ;; esac
    echo "lateness at 100,000 due/s for $SECONDS_SUSTAINED s, FiringLoop on the system clock"
    .build-bench/release/WheelBench --dir "$BASE" --sustained 100000 --for "$SECONDS_SUSTAINED"
    echo
    echo "the same as the broker runs it: a checkpoint every second (written off the loop), reclaim and compaction,"
    echo "with 100,000 more messages due in 30 days that compaction keeps moving forward (64 MiB segments)"
    .build-bench/release/WheelBench --dir "$BASE" --sustained 100000 --for "$SECONDS_SUSTAINED" --checkpoint --stragglers 100000 --segment-mib 64
} | tee "$OUT"
cp "$OUT" bench/results/wheel-latest.txt
echo "[wheel.sh] results: $OUT"
