# Chime — the commands README.md gives. `make run` sets up a fresh machine and starts the
# broker; `make test` runs the whole test suite (what CI runs).
SWIFT ?= swift
DATA ?= ./data
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

# How long `make fuzz` fuzzes the frame decoder, and the short run `make test` ends with.
FUZZ_SECONDS ?= 3600
FUZZ_SMOKE_SECONDS ?= 60
# `make test`'s run: with its build from clean (about a minute) it stays within 90 s.
FUZZ_TEST_SECONDS ?= 15

.PHONY: run test soak deps test-deps build release openapi screenshots bench bench-quick bench-broker bench-net bench-consume bench-suite bench-partitions clean fuzz fuzz-smoke

## Install what is missing (liblz4-dev), build in release mode, start `chime serve` on ./data.
run: deps release
	./.build/release/chime serve --data $(DATA)

## Build and run every test (unit, recovery, fault injection, SIGKILL crash, CLI), then
## fuzz the frame decoder briefly (its own build included: see Fuzz/README.md), then the
## peer suite's quick mode as a smoke test (installs beanstalkd and redis-server if missing).
## The suites that drive other programs (a browser, an OpenAPI fuzzer, promtool, beanstalkd) run after
## the rest, not beside it: on two cores their processes starved the timing of others. The
## beanstalkd comparison runs alone last: it compares 1-second TTRs as both servers see them.
TOOL_SUITES = DashboardBrowserTests|OpenAPIConformanceTests|MetricsLintTests
TIMED_SUITES = BeanstalkConformanceTests
test: deps test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest --skip '$(TOOL_SUITES)|$(TIMED_SUITES)'
	$(SWIFT) test --skip-build --disable-xctest --filter '$(TOOL_SUITES)'
	$(SWIFT) test --skip-build --disable-xctest --filter '$(TIMED_SUITES)'
	SWIFT=$(SWIFT) bash Fuzz/run.sh $(FUZZ_TEST_SECONDS)
	bash bench/suite.sh --quick

## The seeded whole-broker simulation of `make test` (BrokerSimulationTests: publish,
## fire, consume, restarts, crash images, full disks, failed syncs, wall-clock steps),
## longer and over more seeds: `make soak SOAK_STEPS=20000 SOAK_SEEDS=1,2,3,4`.
SOAK_STEPS ?= 20000
SOAK_SEEDS ?= 101,102,103,104,105,106,107,108
soak: deps
	$(SWIFT) build --build-tests
	CHIME_SIMULATION_STEPS=$(SOAK_STEPS) CHIME_SIMULATION_SEEDS=$(SOAK_SEEDS) $(SWIFT) test --skip-build --disable-xctest --filter BrokerSimulationTests

## libFuzzer on the frame decoder and payload codecs (Fuzz/README.md): `make fuzz
## FUZZ_SECONDS=3600`; `make fuzz-smoke` for a minute.
fuzz:
	SWIFT=$(SWIFT) FUZZ_CONFIGURATION=release bash Fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke:
	SWIFT=$(SWIFT) bash Fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

## Debian packages the build needs: liblz4-dev (and pkg-config to find it); tzdata, the
## time zone database schedules in a zone are computed with.
deps:
	@if ! pkg-config --exists liblz4 2>/dev/null; then \
		echo "installing liblz4-dev and pkg-config (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq liblz4-dev pkg-config; \
	fi
	@if [ ! -e /usr/share/zoneinfo/America/New_York ]; then \
		echo "installing tzdata (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tzdata; \
	fi

## What the tests need beyond the build: faketime (libfaketime steps a real server's wall
## clock in ClockStepServeTests); promtool (Debian's prometheus: MetricsLintTests lints
## /metrics); chromium and chromium-driver (DashboardBrowserTests); python3-venv and, in
## .venv-test/, schemathesis (OpenAPIConformanceTests) and selenium from PyPI; beanstalkd
## (Debian's, the peer the beanstalkd protocol tests compare with) and greenstalk (PyPI, a
## beanstalkd client written by others) for BeanstalkClientTests.
test-deps:
	@if ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then \
		echo "installing faketime (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime; \
	fi
	@if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "installing python3-venv (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	fi
	@if ! command -v promtool >/dev/null 2>&1; then \
		echo "installing prometheus for promtool (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	fi
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing chromium and chromium-driver (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	fi
	@if ! command -v beanstalkd >/dev/null 2>&1; then \
		echo "installing beanstalkd (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq beanstalkd; \
	fi
	@if [ ! -x .venv-test/bin/schemathesis ] || ! .venv-test/bin/python -c 'import selenium, greenstalk' 2>/dev/null; then \
		echo "installing schemathesis, selenium and greenstalk into .venv-test (PyPI)"; \
		python3 -m venv .venv-test && .venv-test/bin/pip install -q 'schemathesis>=4,<5' 'selenium>=4,<5' 'greenstalk>=2,<3'; \
	fi

## The dashboard's screenshots in docs/screenshots, taken by DashboardBrowserTests.
screenshots: deps test-deps
	$(SWIFT) build --build-tests
	CHIME_SCREENSHOTS=$(CURDIR)/docs/screenshots $(SWIFT) test --skip-build --disable-xctest --filter DashboardBrowserTests

build: deps
	$(SWIFT) build

## The admin API's OpenAPI document: edit docs/openapi.json, then `make openapi` copies it
## into the binary (Sources/ChimeServer/AdminOpenAPI.swift); a test checks the two agree.
openapi:
	{ printf '%s\n' '// Made by `make openapi` from docs/openapi.json: edit that file, not this one.' '' \
		'/// The admin API v2 document served at `/v2/openapi.json`.' 'enum AdminOpenAPI {' '    static let document = #"""'; \
		cat docs/openapi.json; printf '%s\n' '"""#' '}'; } > Sources/ChimeServer/AdminOpenAPI.swift

release: deps
	$(SWIFT) build -c release --product chime

## Storage benchmark against the disk's own limits (fio); results land in bench/results/.
bench: deps
	bash bench/store.sh

## The broker engine in-process: publish → fire → deliver → ack (bench/README.md).
bench-broker: deps
	bash bench/broker.sh

## The broker over loopback TCP: `chime bench` against `chime serve` (bench/README.md).
bench-net: deps
	bash bench/net.sh

## The consumer loop: plain loop, batch API and `chime consume`, one consumer, acks on.
bench-consume: deps
	bash bench/consume.sh

## Chime beside beanstalkd and Redis, same machine, same run (bench/README.md).
bench-suite: deps
	bash bench/suite.sh

## Many partitions on one broker: 2,500 topics × 4 with a trickle on each (bench/README.md).
bench-partitions: deps
	bash bench/partitions.sh

bench-quick: deps
	bash bench/store.sh --quick

clean:
	rm -rf .build .build-bench .build-fuzz
