#!/usr/bin/env bash
# The broker over loopback TCP: `chime bench` against a `chime serve` started here on a
# scratch data directory (durability always, the default).
#
#   bash bench/net.sh               every case, 1,000,000 messages each, three runs
#   bash bench/net.sh --quick       200,000 messages, lateness 5 s, one run
#
# Builds chime in release (scratch path .build-bench), and writes what it prints to
# bench/results/net-<UTC time>.txt and bench/results/net-latest.txt. Extra arguments go
# to every `chime bench` run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="bench/results/net-$STAMP.txt"
DATA="${BENCH_DIR:-bench/.net-bench}"
RUNS=3
ARGS=()
for a in "$@"; do
    if [ "$a" = "--quick" ]; then RUNS=1; ARGS+=(--messages 200000 --seconds 5); else ARGS+=("$a"); fi
done
mkdir -p bench/results
PORT="${BENCH_PORT:-7491}"
source bench/serve.sh
start_chime_server net.sh "$DATA" "$PORT"
{
    echo "chime bench over loopback TCP, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores; client and server share them)"
    echo "swift: $(swift --version 2>&1 | head -1)"
    echo "server: chime serve --data $DATA (durability always)"
    echo
    for run in $(seq 1 "$RUNS"); do
        echo "[run $run of $RUNS]"
        "$CHIME" bench --port "$PORT" ${ARGS[@]+"${ARGS[@]}"} 2>/dev/null
    done
} | tee "$OUT"
cp "$OUT" bench/results/net-latest.txt
echo "[net.sh] results: $OUT"
