package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/bacalhau-project/bacalhau/pkg/bacerrors"
	"go.temporal.io/sdk/temporal"
)

// Error types of the non-retryable application errors these activities return.
// Workflows match on them with temporal.ApplicationError.Type().
const (
	// ErrTypeInvalidTask: the job template or batch is wrong (unknown engine,
	// missing entry module, job over the size limit). Fix the template.
	ErrTypeInvalidTask = "InvalidTask"
	// ErrTypeRejected: Bacalhau answered 4xx to a request; resending it is futile.
	ErrTypeRejected = "BacalhauRejected"
	// ErrTypeTaskFailed: the task ran and failed (non-zero exit, engine error).
	// The error's details hold a TaskFailure. Retrying the task is the
	// workflow's decision (its retry policy), not the activity's.
	ErrTypeTaskFailed = "TaskFailed"
	// ErrTypeNoCapacity: the job failed because no node could take it before its
	// queue timeout ("not enough nodes"). The task never ran; resubmitting later
	// can succeed.
	ErrTypeNoCapacity = "NoCapacity"
	// ErrTypeJobStopped: someone stopped the job outside this workflow.
	ErrTypeJobStopped = "JobStopped"
	// ErrTypePendingTimeout: the job stayed Pending past its deadline: Bacalhau
	// accepted it but never scheduled it. Await stops such a job.
	ErrTypePendingTimeout = "PendingTimeout"
	// ErrTypeInputUnavailable: the job failed before its task ran because
	// the node could not fetch an input (the store down or unreachable, a
	// URL that expired), not because the input is gone. The records are
	// not at fault: the batch runs again, it is never dead-lettered. The
	// details hold a TaskFailure.
	ErrTypeInputUnavailable = "InputUnavailable"

	// ErrTypeKafkaTopicNotFound: the connector's Kafka topic does not exist
	// on its brokers.
	ErrTypeKafkaTopicNotFound = "TopicNotFound"
	// ErrTypeKafkaConfig: the spec's Kafka TLS or SASL settings cannot be
	// used (a CA file without a certificate, an unknown mechanism).
	ErrTypeKafkaConfig = "KafkaConfig"
	// ErrTypeOffsetOutOfRange: a Kafka checkpoint's offset is gone
	// (retention deleted it) and the spec says on_offset_out_of_range: fail.
	ErrTypeOffsetOutOfRange = "OffsetOutOfRange"
	// ErrTypeKinesisStreamNotFound: the connector's Kinesis stream does not
	// exist.
	ErrTypeKinesisStreamNotFound = "StreamNotFound"
	// ErrTypeSQSQueueNotFound: the connector's SQS queue does not exist.
	ErrTypeSQSQueueNotFound = "QueueNotFound"
	// ErrTypeSNSTopicNotFound: the connector's SNS topic does not exist.
	// (Before 2026-12-06 it was "TopicNotFound", as a Kafka topic; no
	// workflow matches on it, so histories replay either way.)
	ErrTypeSNSTopicNotFound = "SNSTopicNotFound"
	// ErrTypeUnknownSource: the worker was built without the connector's
	// source kind (a kind from another module needs a worker built with it).
	ErrTypeUnknownSource = "UnknownSource"
)

// TaskFailure is the detail of an ErrTypeTaskFailed or ErrTypeNoCapacity
// error. It names the job and the size of its stderr, never the stderr
// itself: errors enter workflow history, and a task's stderr may quote the
// record it failed on. Read it with `bacalhau job logs JOB`; dead letters
// carry its tail.
type TaskFailure struct {
	JobID       string `json:"job_id"`
	ExitCode    int    `json:"exit_code"`
	Message     string `json:"message"`
	StderrBytes int    `json:"stderr_bytes,omitempty"`
}

func nonRetryable(errType string, cause error, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), errType, cause)
}

// classify wraps an error from the Bacalhau API: 4xx answers (but timeouts
// and throttling) are non-retryable; unreachable, 5xx and everything unknown
// stay retryable, so Temporal retries them with backoff.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var bacErr bacerrors.Error
	if errors.As(err, &bacErr) {
		status := bacErr.HTTPStatusCode()
		if status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
			return nonRetryable(ErrTypeRejected, err, "bacalhau: %s: %v", op, err)
		}
	}
	return fmt.Errorf("bacalhau: %s: %w", op, err)
}

// isCancel reports whether ctx ended because the activity was cancelled, as
// opposed to its deadline passing.
func isCancel(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}
