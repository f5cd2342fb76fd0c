# Sourced by the benchmark scripts that run against a `chime serve` of their own:
#   start_chime_server NAME DATA PORT [EXTRA_FILE...]
# builds chime in release (scratch path .build-bench), starts it on the data directory DATA
# and PORT (no admin port), waits until it serves, and on exit stops it and removes DATA,
# its log and the EXTRA_FILEs. Sets CHIME (the binary) and SERVER (its pid).
start_chime_server() {
    local name=$1 data=$2 port=$3
    shift 3
    local extra=("$@")
    rm -rf "$data"
    echo "[$name] build chime (release)"
    swift build -c release --scratch-path .build-bench --product chime 2>&1 | grep -E "error|Compiling|Build" | tail -3
    CHIME=.build-bench/release/chime
    "$CHIME" serve --data "$data" --port "$port" --no-admin >"$data.log" 2>&1 &
    SERVER=$!
    # Expanded now: the trap runs after this function's locals are gone.
    trap "kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf '$data' '$data.log' ${extra[*]+${extra[*]}}" EXIT
    for _ in $(seq 1 100); do grep -q "Ctrl-C to stop" "$data.log" 2>/dev/null && break; sleep 0.1; done
}
