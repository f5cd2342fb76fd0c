#!/usr/bin/env bash
# The consumer loop a newcomer writes, at full speed: one consumer acking every message.
# Against a `chime serve` started here on a scratch data directory (durability always),
# in one run:
#   - the plain loop, `for try await m in client.consume(…) { try await m.ack() }`
#     (`chime bench --only consume`, first row), timed until the broker has every ack;
#   - the batch API, `nextBatch()` and one `ack(batch)` per batch (second row);
#   - `chime consume --count N --json > file`, acks on, as a process.
#
#   bash bench/consume.sh              200,000 messages per case, three runs
#   bash bench/consume.sh --quick      50,000 messages, one run
#
# Builds chime in release (scratch path .build-bench) and writes what it prints to
# bench/results/consume-<UTC time>.txt and bench/results/consume-latest.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="bench/results/consume-$STAMP.txt"
DATA="${BENCH_DIR:-bench/.consume-bench}"
N=200000
RUNS=3
if [ "${1:-}" = "--quick" ]; then N=50000; RUNS=1; fi
mkdir -p bench/results
PORT="${BENCH_PORT:-7492}"
source bench/serve.sh
start_chime_server consume.sh "$DATA" "$PORT" "$DATA.jsonl"
{
    echo "consumer loop, one consumer, acks on, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores; client and server share them)"
    echo "server: chime serve --data $DATA (durability always); $N messages of 100 B per case"
    echo
    for run in $(seq 1 "$RUNS"); do
        echo "[run $run of $RUNS]"
        "$CHIME" bench --port "$PORT" --only consume --messages "$N" 2>/dev/null
        topic="cli-consume-$run"
        "$CHIME" publish --port "$PORT" --topic "$topic" --count "$N" --size 100 >/dev/null
        start=$(date +%s%N)
        "$CHIME" consume --port "$PORT" --topic "$topic" --group "cli-$run" --count "$N" --json >"$DATA.jsonl"
        end=$(date +%s%N)
        lines=$(wc -l <"$DATA.jsonl")
        awk -v n="$lines" -v ns="$((end - start))" 'BEGIN {
            rate = n / (ns / 1e9)
            printf "chime consume --json > file: %d messages in %.2f s: %d messages/s (target ≥ 100000: %s)\n", n, ns / 1e9, rate, (rate >= 100000 ? "met" : "NOT met")
        }'
    done
} | tee "$OUT"
cp "$OUT" bench/results/consume-latest.txt
echo "[consume.sh] results: $OUT"
