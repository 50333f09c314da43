// Package tasktemplate turns a Bacalhau job YAML (Bacalhau's own job format)
// into the job a connector submits for one batch.
//
// A connector names a template; for each batch it adds the batch's input
// sources, environment, identity labels and timeouts, and checks the result
// before anything reaches Bacalhau:
//
//   - the template must be a valid Bacalhau batch or ops job with one task
//     whose engine is known (wasm or docker); a wasm task's EntryModule must be
//     the target of one of its input sources;
//   - every job carries a queue timeout (without one a busy node fails the job
//     at once with "not enough nodes") and an execution timeout (stopping a job
//     does not stop a running WASM task; only this timeout bounds it);
//   - the encoded job must stay under MaxJobBytes: Bacalhau moves jobs over NATS
//     with a 1 MiB message cap, and an oversized job hangs the whole node
//     (DESIGN.md §3).
//
// Errors returned by Parse and Build are *Error values whose Field names the
// part of the template or batch at fault.
package tasktemplate
