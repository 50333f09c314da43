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
//   - Results reads the exit code, output sizes and the published outputs.
//   - Await and Results never return the task's stdout or stderr, nor quote
//     them in errors: a task's output may quote the records it read, and
//     activity results and errors are workflow history. They name the job
//     and the output's size; dead-letter activities read the stderr tail
//     themselves and write it with the records; Output returns the tails
//     for one-off runs only (RunTaskInput.Output).
//
// Errors follow errors.go: transient failures are plain (retryable) errors,
// everything a retry cannot fix is a non-retryable ApplicationError whose
// type is one of the ErrType constants.
package activities
