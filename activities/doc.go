// Package activities holds every side effect of bacalhau-connect: each
// activity is a method on a struct that holds its clients, so workflows call
// them through a nil receiver and never by string name.
//
// # Bacalhau
//
// Bacalhau submits, awaits and reads the results of one Bacalhau job per batch:
//
//   - Submit is idempotent. Bacalhau v1.7.0 ignores idempotency tokens, so each
//     job is labelled with its batch identity (tasktemplate.LabelBatch) and
//     Submit lists jobs by that label before it submits: a retried Submit
//     returns the job the first attempt created. Jobs whose encoded size could
//     break Bacalhau's 1 MiB NATS limit are refused before submission.
//   - Await polls with backoff and heartbeats the job's state. When the
//     activity is cancelled (not when its worker stops) it stops the job.
//   - Results reads the exit code, output tails and the published outputs.
//
// Errors follow errors.go: transient failures are plain (retryable) errors,
// everything a retry cannot fix is a non-retryable ApplicationError whose
// type is one of the ErrType constants.
package activities
