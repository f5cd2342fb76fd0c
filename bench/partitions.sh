#!/usr/bin/env bash
# Many partitions on one broker (issue 13): what N topics × 4 partitions cost one
# `chime serve`, with a trickle of traffic on each and a hot topic beside them.
#
#   bash bench/partitions.sh                 2,500 topics × 4 = 10,000 partitions (a few minutes)
#   bash bench/partitions.sh --quick         50 topics, 5 s trickle, small hot topic: a smoke run
#   bash bench/partitions.sh --topics 500    another size
#   bash bench/partitions.sh --no-1024       skip the run under `ulimit -n 1024`
#
# Steps: build chime and PartitionBench in release (.build-bench); run the hot-topic cases
# of `chime bench` (publish, lateness) on an empty broker; start a fresh broker (port 0,
# no admin port, max_topics/max_partitions raised to fit), create the topics through the
# protocol, sample it idle, run the trickle (every partition a few messages, half of them
# scheduled; one group on the first topics) with the same hot-topic cases beside it,
# sampling once a second; stop it with SIGTERM, restart it on the same data directory and
# time until it serves ("Ctrl-C to stop"), sample again; then the same creation, a short
# trickle and a restart under `ulimit -n 1024`. Samples come from /proc/<pid>: VmRSS,
# VmHWM, Threads, and the entries of fd/.
#
# Writes bench/results/partitions-<UTC time>.{txt,json} and partitions-latest.{txt,json}
# (--quick: under bench/results/quick/, not kept in git). Goals are printed beside the
# figures and judged; nothing fails on a slow run, and a broker that falls over is a
# finding recorded in the results, not a reason to stop.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOPICS=2500
PARTITIONS=4
TRICKLE_SECONDS=20
PER_PARTITION=4
GROUP_TOPICS=250
HOT_MESSAGES=1000000
HOT_RATE=50000
HOT_SECONDS=10
RUN_1024=1
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; TOPICS=50; TRICKLE_SECONDS=5; GROUP_TOPICS=10; HOT_MESSAGES=100000; HOT_RATE=10000; HOT_SECONDS=3 ;;
        --topics) TOPICS="$2"; shift ;;
        --seconds) TRICKLE_SECONDS="$2"; shift ;;
        --no-1024) RUN_1024=0 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS=bench/results
[ "$QUICK" = 1 ] && RESULTS=bench/results/quick
mkdir -p "$RESULTS"
WORK="$(mktemp -d "${BENCH_DIR:-$ROOT/bench}/.partitions-bench.XXXXXX")"
SERVER=""
SAMPLER=""
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '[partitions.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# `note key value`: a figure the report reads (value as JSON: a number or a quoted string).
note() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/notes.tsv"; }
quote() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

step "build chime and PartitionBench (release, .build-bench)"
swift build -c release --scratch-path .build-bench --product chime 2>&1 | tail -n 1 >&2
swift build -c release --scratch-path .build-bench --product PartitionBench 2>&1 | tail -n 1 >&2
BIN="$(swift build -c release --scratch-path .build-bench --show-bin-path)"

# Room for the bench topics and the hot topic's cases (each of those makes a topic of 4).
MAX_TOPICS=$((TOPICS + 100 > 10000 ? TOPICS + 100 : 10000))
MAX_PARTITIONS=$((TOPICS * PARTITIONS + 400 > 10000 ? TOPICS * PARTITIONS + 400 : 10000))

# `start_server NAME DIR [NOFILE]`: starts chime serve on DIR (soft open-file limit NOFILE
# when given, the shell's otherwise) and waits until it serves. Sets SERVER and PORT and
# notes NAME.startSeconds, or NAME.startError when it exits or is not serving in 300 s.
start_server() {
    local name="$1" dir="$2" nofile="${3:-}" log="$WORK/$1.log" t0
    t0="$(now)"
    (
        if [ -n "$nofile" ]; then ulimit -n "$nofile"; fi
        exec env CHIME_MAX_TOPICS="$MAX_TOPICS" CHIME_MAX_PARTITIONS="$MAX_PARTITIONS" \
            "$BIN/chime" serve --data "$dir" --port 0 --no-admin
    ) >"$log" 2>&1 &
    SERVER=$!
    PORT=""
    local deadline=$(( $(date +%s) + 300 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if grep -q "Ctrl-C to stop" "$log" 2>/dev/null; then
            note "$name.startSeconds" "$(since "$t0")"
            PORT="$(grep -o 'protocol on [^ ]*' "$log" | tail -n 1 | sed 's/.*://' | tr -dc '0-9')"
            step "$name: serving on port $PORT after $(since "$t0") s (pid $SERVER)"
            return 0
        fi
        if ! kill -0 "$SERVER" 2>/dev/null; then
            wait "$SERVER" 2>/dev/null || true
            SERVER=""
            note "$name.startError" "$(quote "exited before serving: $(tail -n 3 "$log" | tr '\n' ' ')")"
            step "$name: the server exited before serving: $(tail -n 3 "$log")"
            return 1
        fi
        sleep 0.02
    done
    note "$name.startError" "$(quote "not serving after 300 s")"
    kill -KILL "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    return 1
}

# `stop_server NAME`: SIGTERM, wait; notes the time it took and the exit status.
stop_server() {
    local name="$1" t0 status=0
    [ -n "$SERVER" ] || return 0
    t0="$(now)"
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || status=$?
    note "$name.stopSeconds" "$(since "$t0")"
    note "$name.exitStatus" "$status"
    SERVER=""
}

# `sample LABEL`: the server's memory, threads and descriptors, one JSON line.
sample() {
    local label="$1" pid="$SERVER" status
    if [ -z "$pid" ] || ! status="$(cat "/proc/$pid/status" 2>/dev/null)"; then
        printf '{"label":"%s","gone":true}\n' "$label" >>"$WORK/samples.jsonl"
        return 0
    fi
    local fds rss hwm threads
    fds="$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)"
    rss="$(awk '/^VmRSS:/ { print $2 }' <<<"$status")"
    hwm="$(awk '/^VmHWM:/ { print $2 }' <<<"$status")"
    threads="$(awk '/^Threads:/ { print $2 }' <<<"$status")"
    # A process that has exited but not been waited for has a status without memory lines.
    if [ -z "$rss" ] || [ -z "$hwm" ] || [ -z "$threads" ]; then
        printf '{"label":"%s","gone":true}\n' "$label" >>"$WORK/samples.jsonl"
        return 0
    fi
    printf '{"label":"%s","time":%s,"rssKiB":%s,"hwmKiB":%s,"threads":%s,"fds":%s}\n' "$label" "$(now)" \
        "$rss" "$hwm" "$threads" "$fds" >>"$WORK/samples.jsonl"
}

# `thread_names LABEL`: the server's threads by name, most common first (where they come from).
thread_names() {
    [ -n "$SERVER" ] || return 0
    cat /proc/"$SERVER"/task/*/comm 2>/dev/null | sort | uniq -c | sort -rn | head -n 8 >"$WORK/threads-$1.txt" || true
}

# `sample_every LABEL`: a sample a second in the background until SAMPLER is killed.
sample_every() {
    ( while true; do sample "$1"; sleep 1; done ) &
    SAMPLER=$!
}
stop_sampling() { [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""; }

# `hot NAME`: the hot topic's publish and lateness cases; one JSON line per case into NAME.jsonl.
hot() {
    step "$1: chime bench --only publish,lateness --messages $HOT_MESSAGES --rate $HOT_RATE --seconds $HOT_SECONDS"
    "$BIN/chime" bench --port "$PORT" --only publish,lateness --messages "$HOT_MESSAGES" --rate "$HOT_RATE" \
        --seconds "$HOT_SECONDS" --json >"$WORK/$1.jsonl" 2>"$WORK/$1.err" || note "$1.error" "$(quote "$(tail -n 3 "$WORK/$1.err" | tr '\n' ' ')")"
    cat "$WORK/$1.jsonl" >&2
}

pbench() { "$BIN/PartitionBench" "$@" --port "$PORT" --topics "$TOPICS" --partitions "$PARTITIONS"; }

# `create NAME`: the topics, through the protocol; the JSON line into NAME.json.
create() {
    step "$1: creating $TOPICS topics × $PARTITIONS partitions"
    pbench create >"$WORK/$1.json" || true
    cat "$WORK/$1.json" >&2
    if [ -n "$SERVER" ] && ! kill -0 "$SERVER" 2>/dev/null; then
        note "$1.serverDied" "$(quote "$(tail -n 3 "$2" | tr '\n' ' ')")"
        step "$1: the server died: $(tail -n 3 "$2")"
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
}

# `trickle NAME SECONDS`: the trickle, sampled; the hot cases beside it unless SECONDS is short.
trickle() {
    local name="$1" seconds="$2" with_hot="$3"
    step "$name: trickle over $seconds s, $PER_PARTITION messages per partition, a group on $GROUP_TOPICS topics"
    sample_every "$name"
    pbench trickle --seconds "$seconds" --per-partition "$PER_PARTITION" --group-topics "$GROUP_TOPICS" >"$WORK/$name.json" &
    local client=$!
    if [ "$with_hot" = 1 ]; then sleep 2; hot hot-loaded; fi
    wait "$client" || true
    stop_sampling
    cat "$WORK/$name.json" >&2
}

note ulimitSoft "$(quote "$(ulimit -n)")"
note ulimitHard "$(quote "$(ulimit -Hn)")"
note topicsRequested "$TOPICS"
note partitionsPerTopic "$PARTITIONS"
note quick "$QUICK"

# 1. The hot topic alone.
if start_server empty "$WORK/empty"; then
    sleep 1
    sample empty-start
    hot hot-empty
    sample empty-after-hot
    stop_server empty
fi
rm -rf "$WORK/empty"

# 2. N topics at the shell's open-file limit.
MAIN="$WORK/main"
if start_server main "$MAIN"; then
    sleep 1
    sample main-start
    t0="$(now)"
    create create "$WORK/main.log"
    if [ -n "$SERVER" ]; then
        sleep 5
        sample idle-after-create
        thread_names idle-after-create
        trickle trickle "$TRICKLE_SECONDS" 1
        sample after-trickle
        [ -n "$SERVER" ] && ! kill -0 "$SERVER" 2>/dev/null && note trickle.serverDied "$(quote "$(tail -n 3 "$WORK/main.log" | tr '\n' ' ')")"
        stop_server main
    fi
    step "restart on the same data directory"
    if start_server restart "$MAIN"; then
        sample restart-serving
        pbench count >"$WORK/count.json" || true
        sleep 5
        sample idle-after-restart
        stop_server restart
    fi
fi
cat "$WORK"/main.log "$WORK"/restart.log 2>/dev/null | grep -iE "error|fail|descriptor" | head -n 5 >"$WORK/main-errors.txt" || true

# 3. The same under `ulimit -n 1024`.
if [ "$RUN_1024" = 1 ]; then
    D1024="$WORK/nofile1024"
    step "the same under ulimit -n 1024"
    if start_server n1024 "$D1024" 1024; then
        sleep 1
        sample n1024-start
        create n1024-create "$WORK/n1024.log"
        if [ -n "$SERVER" ]; then
            sleep 2
            sample n1024-idle-after-create
            thread_names n1024-idle-after-create
            trickle n1024-trickle 5 0
            sample n1024-after-trickle
            stop_server n1024
        fi
        if start_server n1024-restart "$D1024" 1024; then
            sample n1024-restart-serving
            pbench count >"$WORK/n1024-count.json" || true
            stop_server n1024-restart
        fi
    fi
    cat "$WORK"/n1024.log "$WORK"/n1024-restart.log 2>/dev/null | grep -iE "error|fail|descriptor" | head -n 5 >"$WORK/n1024-errors.txt" || true
fi

# The end of every server log (a trap's message is the last thing a crashed server printed).
for name in main restart n1024 n1024-restart; do
    [ -f "$WORK/$name.log" ] && tail -n 6 "$WORK/$name.log" | cut -c1-300 >"$WORK/$name-tail.txt" || true
done

step "report"
{
    echo "Many partitions on one broker (bench/partitions.sh), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores; clients and server share them)"
    echo "swift: $(swift --version 2>&1 | head -1)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources || echo ' (Sources modified)')"
} >"$WORK/header.txt"
python3 bench/partitions_report.py "$WORK" "$RESULTS/partitions-$STAMP" "$HOT_MESSAGES" "$HOT_RATE" "$HOT_SECONDS" "$TRICKLE_SECONDS" "$PER_PARTITION" "$GROUP_TOPICS"
cp "$RESULTS/partitions-$STAMP.txt" "$RESULTS/partitions-latest.txt"
cp "$RESULTS/partitions-$STAMP.json" "$RESULTS/partitions-latest.json"
step "results: $RESULTS/partitions-$STAMP.txt and .json"
