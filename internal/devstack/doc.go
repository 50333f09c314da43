// Package devstack is the embedded local stack: every service the connectors
// need, started on 127.0.0.1 with free or configured ports, each with a
// readiness check and a clean shutdown.
//
// # Parts
//
//   - Temporal: the `temporal` CLI (v1.5.1, built into ./bin by the Makefile)
//     run as `temporal server start-dev`, with the dynamic-config values that
//     lift the dev server's dispatch rate limits (DESIGN.md §4).
//   - Bacalhau: a real v1.7.0 hybrid node (orchestrator + compute) in this
//     process, WASM engine and local publisher, Docker and IPFS disabled, the
//     orchestrator's queue backoff lowered to a few seconds.
//   - Modules: an HTTP file server that hands WASM task modules to the node
//     (Bacalhau urlDownload inputs); modules are never inlined in jobs.
//
// Later connectors add Kafka, S3, SQS/SNS and Kinesis stand-ins here.
//
// # Global state
//
// Bacalhau logs through zerolog's global logger and keeps some process-wide
// metrics; the node started here therefore shares them with the process.
// Start at most one Bacalhau node per process unless you know what you do.
package devstack
