#!/usr/bin/env bash
# Takes the Temporal UI screenshots under docs/ (make screenshots): starts the
# dev stack (make dev's connect-dev, on free ports), waits for its example
# connectors, and has Debian's headless Chromium capture the UI's workflow
# list filtered by the connectors' search attributes (Playwright, from npm,
# drives Chromium). The stack runs with
# the payload codec on (--codec), so the history page shows what the UI
# decodes through the codec server.
set -euo pipefail
cd "$(dirname "$0")/.."
export GONOSUMDB=github.com/bacalhau-project
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "screenshots: $CHROMIUM missing (sudo apt-get install -y chromium)" >&2; exit 1; }
export CHROMIUM
npm ci --prefix docs/shoot --no-audit --no-fund >/dev/null

run=$(mktemp -d)
trap 'kill "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$run"' EXIT
go run ./internal/cmd/connect-dev --run-dir "$run" --temporal-port 0 --ui-port 0 --bacalhau-port 0 \
  --modules-port 0 --s3-port 0 --gateway-port 0 --kafka-port 0 --sqs-port 0 --kinesis-port 0 --nats-port 0 --pubsub-port 0 \
  --codec --codec-port 0 > "$run/out.txt" 2>&1 &
dev=$!
for _ in $(seq 1 600); do
  grep -q 'up; press Ctrl-C' "$run/out.txt" && break
  kill -0 "$dev" 2>/dev/null || { cat "$run/out.txt" >&2; exit 1; }
  sleep 1
done
ui=$(awk '/^Temporal UI/ {print $3}' "$run/out.txt")
[ -n "$ui" ] || { echo "screenshots: no UI URL in the dev stack's output" >&2; cat "$run/out.txt" >&2; exit 1; }
echo "UI at $ui"

shot() { # shot FILE URL [TEXT]: Playwright drives Debian's Chromium; TEXT is what to wait for
  timeout 120 node docs/shoot/shoot.mjs "$@" || echo "screenshots: $1 failed" >&2
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
list() { echo "$ui/namespaces/default/workflows?query=$(enc "$1")"; }

# Every connector, then one kind; then pause one and find it by its state.
shot docs/ui-connectors.png "$(list "ConnectorName STARTS_WITH 'web-' AND ExecutionStatus='Running'")" kinesis-web-clicks
shot docs/ui-kafka-connectors.png "$(list "ConnectorKind='kafka'")" kafka-web-events
addr=$(awk '/^Temporal  / {print $2}' "$run/out.txt")
go run ./starter pause web-clicks --temporal-address "$addr"
sleep 3
shot docs/ui-paused-connectors.png "$(list "ConnectorState='paused'")" kinesis-web-clicks

# The Kafka connector's input (its spec) as the UI shows it: decoded by the
# codec server although history holds only binary/encrypted payloads.
runid=$(bin/temporal workflow describe --workflow-id kafka-web-events --address "$addr" -o json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["workflowExecutionInfo"]["execution"]["runId"])')
sealed=$(bin/temporal workflow show --workflow-id kafka-web-events --address "$addr" -o json | grep -c "$(printf binary/encrypted | base64)" || true)
echo "kafka-web-events: $sealed binary/encrypted payloads in its history as stored; the UI decodes them through the codec server"
shot docs/ui-codec-decoded-input.png "$ui/namespaces/default/workflows/kafka-web-events/$runid/history" '"Topic"' 
