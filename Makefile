# bacalhau-connect — run `make dev` for the local stack, `make test` for the suite.
SHELL := /bin/bash
export GONOSUMDB := github.com/bacalhau-project
GO ?= go
TEMPORAL_CLI_VERSION := v1.5.1
STATICCHECK_VERSION := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0

.PHONY: all build dev dev-smoke test unit e2e bench lint compose-check clean

all: build

build:
	$(GO) build ./...

# The Temporal CLI (dev server + UI), built from source: its own download
# cannot reach the web here. Reused when present.
bin/temporal:
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

# One command: build what is missing, start the embedded local stack and a
# worker, run the sample task once, stay up until Ctrl-C.
dev: bin/temporal
	$(GO) run ./internal/cmd/connect-dev $(DEV_ARGS)

# The whole suite: gofmt, vet, staticcheck, compose validation, unit and end-to-end tests
# on the real local stack (Temporal dev server, in-process Bacalhau node).
test: bin/temporal compose-check lint dev-smoke
	$(GO) test -count=1 -timeout 20m ./...

# `make dev` end to end on free ports in a scratch folder, exiting after the
# sample task and the example cron connector's first tick: keeps the
# README's first command working.
dev-smoke: bin/temporal
	@d=$$(mktemp -d); \
	if $(GO) run ./internal/cmd/connect-dev --once --run-dir $$d --temporal-port 0 --ui-port 0 --bacalhau-port 0 \
	     --modules-port 0 --s3-port 0 --gateway-port 0 > $$d/out.txt 2>&1 \
	   && grep -q '"requests":200' $$d/out.txt && grep -q 'cron connector web-logs: processed 12 objects' $$d/out.txt; \
	then echo "dev-smoke: ok"; rm -rf $$d; \
	else cat $$d/out.txt; echo "dev-smoke: failed (logs in $$d)"; exit 1; fi

unit:
	$(GO) test -count=1 ./workflows/... ./activities/... ./internal/tasktemplate/...

e2e: bin/temporal
	$(GO) test -count=1 -timeout 20m -v ./internal/e2e/

# Benchmarks (not tests): RunTask latency against a direct Bacalhau
# submit+wait, medians and ratio written to BENCHMARKS.md.
bench: bin/temporal
	BENCH_OUT=$(CURDIR)/BENCHMARKS.md $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/bench/

lint:
	@out=$$(gofmt -l . | grep -v '^bin/' || true); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) run go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION) ./workflows/...

# docker-compose.yml is for users (no Docker engine here): validate it parses.
# Installs Debian's docker-compose when missing (as root) to do so.
compose-check:
	@command -v docker-compose >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then echo "installing docker-compose (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	  else echo "docker-compose not found: sudo apt-get install docker-compose"; exit 1; fi; }
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf run/
