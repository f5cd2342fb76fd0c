#!/usr/bin/env bash
# Append-throughput benchmark of ChimeStore, read against the disk's own figures.
#
#   bash bench/store.sh            full run (fio 2 GiB, StoreBench 3 s per case)
#   bash bench/store.sh --quick    short run (fio 256 MiB, StoreBench ~0.5 s per case)
#
# Steps: install fio if missing; build StoreBench (release, scratch path .build-bench so it
# never touches the default .build); fio sequential write (buffered, 1 MiB blocks, final
# fsync) and fio 4 KiB write+fdatasync latency in a temporary directory on the repo's
# filesystem (or under $BENCH_DIR); StoreBench with --fio-mbps. Everything printed is also
# written to bench/results/store-append-<UTC time>.txt (+ .jsonl) and copied to
# bench/results/store-append-latest.txt (+ .jsonl).
#
# Extra arguments after --quick are passed to StoreBench (e.g. --seconds 5).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK=0
PASS=()
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) PASS+=("$arg") ;;
    esac
done

if [ "$QUICK" = 1 ]; then
    FIO_SIZE=256M
    SYNC_SECONDS=2
    PASS=(--quick "${PASS[@]}")
else
    FIO_SIZE=2G
    SYNC_SECONDS=5
fi

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
OUT="$RESULTS/store-append-$STAMP.txt"
JSONL="$RESULTS/store-append-$STAMP.jsonl"

BASE="${BENCH_DIR:-$ROOT/bench}"
mkdir -p "$BASE"
WORK="$(mktemp -d "$BASE/.storebench.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n[store.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

run() {
    local started=$SECONDS

    step "machine"
    echo "kernel:   $(uname -srm)"
    echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//') ($(nproc) cores)"
    echo "memory:   $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "work dir: ${WORK#"$ROOT"/}"
    echo "fs:       $(df -hT "$WORK" | awk 'NR==2 {print $1 " " $2 ", " $5 " free"}')"
    echo "swift:    $(swift --version 2>&1 | head -1)"
    echo "mode:     $([ "$QUICK" = 1 ] && echo quick || echo full)"

    step "fio"
    if ! command -v fio >/dev/null 2>&1; then
        echo "fio not found: installing it with apt-get"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio
    fi
    echo "$(fio --version)"
    command -v python3 >/dev/null 2>&1 || { echo "python3 is needed to read fio's JSON" >&2; exit 1; }

    step "build StoreBench (release, --scratch-path .build-bench)"
    swift build -c release --scratch-path .build-bench --product StoreBench 2>&1 | tail -n 3
    local bin
    bin="$(swift build -c release --scratch-path .build-bench --show-bin-path)/StoreBench"
    [ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 1; }

    step "fio sequential write: bs=1M size=$FIO_SIZE psync, buffered, end_fsync=1 (3 runs, the median is the reference)"
    local i
    for i in 1 2 3; do
        fio --name=seqwrite --directory="$WORK" --rw=write --bs=1M --size="$FIO_SIZE" --ioengine=psync \
            --end_fsync=1 --output-format=json >"$WORK/seq$i.json"
        rm -f "$WORK"/seqwrite.*
        sync
    done
    # The median of three is the reference the target is judged against: this VM's disk has
    # swung by several times between back-to-back runs, and one run either way should not
    # decide. The best run is passed too, and StoreBench prints the stricter ratio against it.
    local fio_mbps fio_best fio_durable seq
    seq="$(python3 - "$WORK/fio.jsonl" "$WORK"/seq1.json "$WORK"/seq2.json "$WORK"/seq3.json <<'EOF'
import json, sys
rates = []
for path in sys.argv[2:]:
    job = json.load(open(path))["jobs"][0]
    w = job["write"]
    rates.append(w["bw_bytes"] / 1e6)
    print(f"seq write: {w['io_bytes'] / 2**20:.0f} MiB in {job['job_runtime'] / 1000:.2f} s "
          f"(runtime includes the final fsync) = {rates[-1]:.1f} MB/s", file=sys.stderr)
best, median = max(rates), sorted(rates)[1]
print(f"seq write reference: best {best:.1f} MB/s (median {median:.1f} MB/s)", file=sys.stderr)
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"type": "fio", "name": "seq_write_1M_end_fsync", "runs_mbps": rates,
                          "best_mbps": best, "median_mbps": median}) + "\n")
print(f"{median:.1f} {best:.1f}")
EOF
)"
    read -r fio_mbps fio_best <<<"$seq"

    step "fio durable stream (information only): bs=256k size=$FIO_SIZE psync, fdatasync every 4 writes"
    fio --name=durable --directory="$WORK" --rw=write --bs=256k --size="$FIO_SIZE" --ioengine=psync \
        --fdatasync=4 --output-format=json >"$WORK/fio-durable.json"
    rm -f "$WORK"/durable.*
    sync
    fio_durable="$(python3 - "$WORK/fio.jsonl" "$WORK/fio-durable.json" <<'EOF'
import json, sys
job = json.load(open(sys.argv[2]))["jobs"][0]
w = job["write"]
print(f"durable stream: {w['io_bytes'] / 2**20:.0f} MiB in {job['job_runtime'] / 1000:.2f} s = "
      f"{w['bw_bytes'] / 1e6:.1f} MB/s (scenario B's I/O pattern from one thread: 1 MiB per fdatasync)", file=sys.stderr)
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"type": "fio", "name": "durable_256k_fdatasync_4", "mbps": w["bw_bytes"] / 1e6}) + "\n")
print(f"{w['bw_bytes'] / 1e6:.1f}")
EOF
)"

    step "fio fdatasync latency: bs=4k, write + fdatasync per write, ${SYNC_SECONDS} s"
    fio --name=syncwrite --directory="$WORK" --rw=write --bs=4k --size=256M --ioengine=psync \
        --fdatasync=1 --runtime="$SYNC_SECONDS" --time_based --output-format=json >"$WORK/sync.json"
    rm -f "$WORK"/syncwrite.*
    python3 - "$WORK/fio.jsonl" "$WORK/sync.json" <<'EOF'
import json, sys
job = json.load(open(sys.argv[2]))["jobs"][0]
lat = job["sync"]["lat_ns"]          # fio 3.x: jobs[].sync.lat_ns.{N,mean,percentile{"50.000000":ns}}
p = lat["percentile"]
us = lambda key: p[key] / 1000
print(f"fdatasync: {lat['N']} syncs, {job['write']['iops']:.0f} writes/s, "
      f"mean {lat['mean'] / 1000:.0f} µs, p50 {us('50.000000'):.0f} µs, p99 {us('99.000000'):.0f} µs, "
      f"max {lat['max'] / 1000:.0f} µs")
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"type": "fio", "name": "fdatasync_4k", "syncs": lat["N"], "mean_us": lat["mean"] / 1000,
                          "p50_us": us("50.000000"), "p99_us": us("99.000000"), "max_us": lat["max"] / 1000}) + "\n")
EOF

    step "StoreBench --fio-mbps $fio_mbps --fio-best-mbps $fio_best --fio-durable-mbps $fio_durable ${PASS[*]:-}"
    "$bin" --dir "${WORK#"$ROOT"/}" --fio-mbps "$fio_mbps" --fio-best-mbps "$fio_best" --fio-durable-mbps "$fio_durable" \
        --json "$JSONL" "${PASS[@]}"
    cat "$WORK/fio.jsonl" >>"$JSONL"

    step "done in $((SECONDS - started)) s; results: ${OUT#"$ROOT"/}, ${JSONL#"$ROOT"/}"
}

run 2>&1 | tee "$OUT"
cp "$OUT" "$RESULTS/store-append-latest.txt"
[ -f "$JSONL" ] && cp "$JSONL" "$RESULTS/store-append-latest.jsonl"
echo "copied to bench/results/store-append-latest.txt"
