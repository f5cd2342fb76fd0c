#!/usr/bin/env bash
# Chime beside beanstalkd and a Redis delayed queue: the same workloads, one harness, one run.
#
#   bash bench/suite.sh                 the whole suite, 3 runs per figure (about 32 minutes)
#   bash bench/suite.sh --quick         smoke run for CI (under a minute, figures mean nothing)
#   bash bench/suite.sh --only publish,lateness --systems chime,redis    a part of it
#
# Steps: install what is missing (beanstalkd, redis-server, fio, gnuplot-nox) with apt-get;
# build chime and PeerBench (release in .build-bench; --quick uses the debug build in .build
# that `make test` made); measure the disk with fio (sequential write MB/s, fdatasync
# p50/p99); run PeerBench, which starts each system on 127.0.0.1 with its data in
# bench/.suite-data (or $BENCH_DIR), runs the workloads and writes
# bench/results/<date>-<host>.json, bench/results/latest.md and latest-lateness.png
# (quick mode: under bench/results/quick/, not kept in git).
#
# Other arguments go to PeerBench (.build-bench/release/PeerBench --help lists them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK=0
PASS=()
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1; PASS+=(--quick) ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) PASS+=("$arg") ;;
    esac
done

step() { printf '[suite.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v beanstalkd >/dev/null 2>&1 || missing+=(beanstalkd)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v gnuplot >/dev/null 2>&1 || missing+=(gnuplot-nox)
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing ${missing[*]} (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts a redis-server service on install where it can; the suite runs its own.
command -v beanstalkd redis-server fio >/dev/null

if [ "$QUICK" = 1 ]; then
    # The build `make test` made (a build of single products would link them again).
    step "build chime and PeerBench (debug, .build)"
    swift build --build-tests 2>&1 | tail -n 1 >&2
    BIN="$(swift build --show-bin-path)"
    FIO_SIZE=128M
    SYNC_SECONDS=1
else
    step "build chime and PeerBench (release, .build-bench)"
    swift build -c release --scratch-path .build-bench --product chime 2>&1 | tail -n 1 >&2
    swift build -c release --scratch-path .build-bench --product PeerBench 2>&1 | tail -n 1 >&2
    BIN="$(swift build -c release --scratch-path .build-bench --show-bin-path)"
    FIO_SIZE=2G
    SYNC_SECONDS=5
fi

BASE="${BENCH_DIR:-$ROOT/bench}"
WORK="$(mktemp -d "$BASE/.suite-data.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

step "fio: sequential write (bs=1M, $FIO_SIZE, final fsync), then 4 KiB write + fdatasync for ${SYNC_SECONDS} s"
fio --name=seqwrite --directory="$WORK" --rw=write --bs=1M --size="$FIO_SIZE" --ioengine=psync \
    --end_fsync=1 --output-format=json >"$WORK/seq.json"
rm -f "$WORK"/seqwrite.*
fio --name=syncwrite --directory="$WORK" --rw=write --bs=4k --size=256M --ioengine=psync \
    --fdatasync=1 --runtime="$SYNC_SECONDS" --time_based --output-format=json >"$WORK/sync.json"
rm -f "$WORK"/syncwrite.*
python3 - "$WORK/seq.json" "$WORK/sync.json" >"$WORK/disk.json" <<'EOF'
import json, sys
seq = json.load(open(sys.argv[1]))["jobs"][0]["write"]
sync = json.load(open(sys.argv[2]))["jobs"][0]["sync"]["lat_ns"]["percentile"]
print(json.dumps({
    "sequentialWriteMBps": seq["bw_bytes"] / 1e6,
    "fdatasyncP50Microseconds": sync["50.000000"] / 1e3,
    "fdatasyncP99Microseconds": sync["99.000000"] / 1e3,
}))
EOF
step "disk: $(cat "$WORK/disk.json")"

step "PeerBench ${PASS[*]:-}"
"$BIN/PeerBench" --chime "$BIN/chime" --work "$WORK/servers" --disk "$WORK/disk.json" ${PASS[@]+"${PASS[@]}"}

if [ "$QUICK" = 1 ]; then
    # The smoke test's check: a well-formed report, every workload in it, each table's rows
    # as wide as its header, and every system in the JSON. No figure is judged.
    python3 - bench/results/quick <<'EOF'
import glob, json, os, re, sys
d = sys.argv[1]
md = open(os.path.join(d, "latest.md")).read()
sections = re.findall(r"^## (\d)\. ", md, re.M)
assert sections == [str(i) for i in range(1, 10)], f"workload sections {sections}"
for block in md.split("\n## ")[1:]:
    rows = [l for l in block.splitlines() if l.startswith("|")]
    width = rows[0].count("|")
    assert len(rows) > 2 and all(r.count("|") == width for r in rows), f"ragged table in {block.splitlines()[0]}"
report = json.load(open(max(glob.glob(os.path.join(d, "*.json")), key=os.path.getmtime)))
systems = {r["system"] for r in report["rows"]}
assert systems == {"chime", "beanstalkd", "redis", "chime beanstalkd"}, systems
assert os.path.getsize(os.path.join(d, "latest-lateness.dat")) > 0
print(f"suite smoke: latest.md has workloads 1-9, {len(report['rows'])} rows for {sorted(systems)}; figures not judged")
EOF
fi
