# Chime — the commands README.md gives. `make run` sets up a fresh machine and starts the
# broker; `make test` runs the whole test suite (what CI runs).
SWIFT ?= swift
DATA ?= ./data
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: run test deps build release bench bench-quick bench-broker bench-net clean

## Install what is missing (liblz4-dev), build in release mode, start `chime serve` on ./data.
run: deps release
	./.build/release/chime serve --data $(DATA)

## Build and run every test (unit, recovery, fault injection, SIGKILL crash, CLI).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --disable-xctest

## Debian packages the build needs: liblz4-dev (and pkg-config to find it).
deps:
	@if ! pkg-config --exists liblz4 2>/dev/null; then \
		echo "installing liblz4-dev and pkg-config (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq liblz4-dev pkg-config; \
	fi

build: deps
	$(SWIFT) build

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

bench-quick: deps
	bash bench/store.sh --quick

clean:
	rm -rf .build .build-bench
