#!/usr/bin/env bash
# Broker engine benchmark, in-process: publish → (fire) → deliver → ack with one group.
#
#   bash bench/broker.sh            2,000,000 messages per case, each case three times
#   bash bench/broker.sh --quick    200,000 messages, once
#
# Builds BrokerBench in release (scratch path .build-bench), runs it with its data under
# bench/ (or $BENCH_DIR), and writes what it prints to bench/results/broker-<UTC time>.txt
# and bench/results/broker-latest.txt. Extra arguments go to every BrokerBench run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="bench/results/broker-$STAMP.txt"
BASE="${BENCH_DIR:-bench/.broker-bench}"
mkdir -p bench/results "$BASE"
RUNS=3
case " $* " in *" --quick "*) RUNS=1 ;; esac
echo "[broker.sh] build BrokerBench (release)"
swift build -c release --scratch-path .build-bench --product BrokerBench 2>&1 | grep -E "error|Compiling|Build" | tail -3
{
    echo "broker engine benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
    echo "swift: $(swift --version 2>&1 | head -1)"
    echo
    for part in immediate scheduled; do
        for run in $(seq 1 "$RUNS"); do
            echo "[$part, run $run of $RUNS]"
            .build-bench/release/BrokerBench --dir "$BASE" --only "$part" "$@" | grep -v '^BrokerBench:' || true
        done
    done
    echo "[scheduled, publish calls of 5,000]"
    .build-bench/release/BrokerBench --dir "$BASE" --only scheduled --batch 5000 "$@" | grep -v '^BrokerBench:' || true
    echo "[durability never, for comparison]"
    .build-bench/release/BrokerBench --dir "$BASE" --only scheduled --durability never "$@" | grep -v '^BrokerBench:' || true
    echo "[memory of in-flight tracking]"
    .build-bench/release/BrokerBench --dir "$BASE" --only memory "$@" | grep -v '^BrokerBench:' || true
} | tee "$OUT"
cp "$OUT" bench/results/broker-latest.txt
echo "[broker.sh] results: $OUT"
