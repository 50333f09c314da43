// Package workflows holds bacalhau-connect's deterministic orchestration:
// connector workflows and the pieces they share. Every side effect lives in
// package activities; code here uses only workflow.Now, Sleep, timers,
// selectors and workflow.Go, and never ranges over a map to drive commands.
//
// # RunTask
//
// RunTask runs one batch as one Bacalhau task: lease → submit → await →
// results, retried as the task's RetryPolicy says. Submission is idempotent
// per (connector, batch, attempt), so a crash at any point re-derives the
// same job instead of creating a second one. Cancelling RunTask stops the
// job: stopping is the only way to release a Bacalhau job early, though a WASM
// task already running still ends only at its execution timeout.
//
// # Budget
//
// Budget is a singleton per task queue (ID BudgetWorkflowIDFor) that caps the number
// of Bacalhau jobs in flight across every connector and every worker
// replica. RunTask asks it for a lease by signal and waits durably for the
// grant; leases are released by signal and reclaimed after their TTL if their
// holder vanished. When Bacalhau is saturated, leases queue up: lag grows and
// nothing fails. Unless a size is set, the size follows the connected
// compute nodes' capacity (activities.Bacalhau.WatchCapacity).
package workflows
