#!/usr/bin/env bash
# Fuzzes ChimeProtocol's frame decoder for SECONDS (default 60): builds with Fuzz/build.sh,
# starts from the seeds in Fuzz/corpus plus what earlier runs found (.build-fuzz/corpus),
# and prints a short summary. A crash, a trap, a leak, an allocation over 64 MiB or an
# input taking over 10 s fails the run (exit status 1) and leaves the input in
# .build-fuzz/crashes/ (Fuzz/README.md says what to do with it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
fuzzer=$(bash Fuzz/build.sh)
mkdir -p .build-fuzz/corpus .build-fuzz/crashes
log=.build-fuzz/fuzz.log
status=0
# The first corpus directory collects new inputs; the committed seeds are only read.
"$fuzzer" -max_total_time="$seconds" -max_len=8192 -malloc_limit_mb=64 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix=.build-fuzz/crashes/ .build-fuzz/corpus Fuzz/corpus >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: FrameFuzz FAILED (exit status $status); the input is in .build-fuzz/crashes/, the whole log in $log"
    exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
corpus=$(ls .build-fuzz/corpus | wc -l)
echo "fuzz: FrameFuzz ran ${runs:-?} inputs in ${seconds} s without a failure (coverage: ${cov:-?} edges, ${ft:-?} features; ${corpus} inputs in .build-fuzz/corpus)"
