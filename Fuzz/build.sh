#!/usr/bin/env bash
# Builds the libFuzzer target for ChimeProtocol's frame decoder (Fuzz/FrameFuzz) with
# coverage and AddressSanitizer, in a scratch directory of its own (.build-fuzz), so the
# everyday build in .build is neither rebuilt nor slowed. Prints the binary's path.
#
# FUZZ_CONFIGURATION=debug (the default) builds fastest and keeps assertions: for short
# runs. release runs about 8 times as many inputs a second: for long runs (`make fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
configuration=${FUZZ_CONFIGURATION:-debug}
# SwiftPM hands each --sanitize to swiftc as a -sanitize= flag of its own and swiftc keeps
# only the last one, so the combined flag after them is what instruments the Swift code
# for both; the --sanitize flags still instrument the C targets and pick the link step's
# runtimes. CHIME_FUZZ compiles the entry point instead of the seed writer's main.
"$SWIFT" build -c "$configuration" --scratch-path .build-fuzz --product FrameFuzz \
    --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address -Xswiftc -DCHIME_FUZZ >&2
echo ".build-fuzz/$configuration/FrameFuzz"
