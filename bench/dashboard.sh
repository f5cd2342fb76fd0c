#!/usr/bin/env bash
# Issue 19's figure: the dashboard and the admin API answer as fast with many topics as
# with a few, because lists are cut into pages on the server. Starts `chime serve` (release,
# .build-bench) on a fresh data directory twice — with 10 topics, then with --topics N
# (10,000 by default) — and times each page and listing with curl (median of 20 requests,
# after one to warm up). Writes bench/results/dashboard-<UTC time>.txt and
# dashboard-latest.txt.
#
#   bash bench/dashboard.sh               10 topics beside 10,000
#   bash bench/dashboard.sh --topics 2000 a shorter run
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MANY=10000
while [ $# -gt 0 ]; do
    case "$1" in
        --topics) MANY="$2"; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
    shift
done
echo "[dashboard.sh] build chime (release, .build-bench)" >&2
swift build -c release --scratch-path .build-bench --product chime 2>&1 | tail -n 1 >&2
BIN="$(swift build -c release --scratch-path .build-bench --show-bin-path)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="bench/results/dashboard-$STAMP.txt"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/chime-dashboard-bench.XXXXXX")"
SERVE=""
trap '[ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null; rm -rf "$WORK"' EXIT

median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] * 1000 }'; }

run() {
    local topics="$1" dir="$WORK/data-$1"
    "$BIN/chime" serve --data "$dir" --port 0 --admin-port 0 --token bench --partitions 1 > "$WORK/serve-$topics.log" 2>&1 &
    SERVE=$!
    local port=""
    for _ in $(seq 1 100); do
        port="$(sed -n 's/.*admin HTTP on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/serve-$topics.log")"
        [ -n "$port" ] && break
        sleep 0.1
    done
    local base="http://127.0.0.1:$port" auth="Authorization: Bearer bench"
    echo "[dashboard.sh] creating $topics topics" >&2
    local start=$SECONDS
    seq 1 "$topics" | xargs -P 4 -I{} curl -s -o /dev/null -H "$auth" -X POST "$base/v2/topics" -d '{"name":"topic-{}","partitions":1}'
    echo "[dashboard.sh] created in $((SECONDS - start)) s" >&2
    curl -s -o /dev/null -c "$WORK/cookies" -d token=bench "$base/login"
    for page in / /topics /groups /schedules /v2/topics?limit=50 /v1/topics; do
        local args=(-s -o /dev/null -w '%{time_total}\n')
        case "$page" in /v*) args+=(-H "$auth") ;; *) args+=(-b "$WORK/cookies") ;; esac
        local status
        status="$(curl -s -o /dev/null -w '%{http_code}' "${args[@]:5}" "$base$page")"
        [ "$status" = 200 ] || { echo "[dashboard.sh] $page answered $status, not 200" >&2; exit 1; }
        local ms
        ms="$(for _ in $(seq 1 20); do curl "${args[@]}" "$base$page"; done | median)"
        printf '%-22s %7s topics  %8s ms\n' "$page" "$topics" "$ms"
    done
    # The overview's sums come from a snapshot of every topic taken at most every 5 s:
    # what the first view after it expires costs.
    sleep 6
    printf '%-22s %7s topics  %8s ms\n' "/ (snapshot refresh)" "$topics" \
        "$(curl -s -o /dev/null -w '%{time_total}\n' -b "$WORK/cookies" "$base/" | median)"
    kill "$SERVE"
    wait "$SERVE" 2>/dev/null || true
    SERVE=""
}

{
    echo "# bench/dashboard.sh $STAMP, main at $(git rev-parse --short HEAD); median of 20 requests, curl on loopback"
    run 10
    run "$MANY"
    echo "# /v1/topics lists every topic in one answer (v1 has no pages): it grows with the count by design."
} | tee "$OUT"
cp "$OUT" bench/results/dashboard-latest.txt
