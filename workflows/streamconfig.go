package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// StreamBatching is what the stream connectors (Kafka, Kinesis) share: how
// a batch is cut and delivered, and what happens to records that fail
// every attempt. Configs embed it, so its fields sit at the top level of
// their JSON.
type StreamBatching struct {
	// MaxRecords, MaxBytes and MaxWait bound one batch.
	MaxRecords int
	MaxBytes   int64
	MaxWait    time.Duration
	// Mode is inline (records travel in the job) or staged (written to
	// Staging first; the task reads the object through the gateway).
	Mode    string
	Staging *S3Location `json:",omitempty"`
	// MaxRecordAge, when set, stops retrying a failing batch whose oldest
	// record is older: it goes to bisection and the dead letter at once.
	MaxRecordAge time.Duration `json:",omitempty"`
	// Bisect splits a failing batch to isolate the records that fail.
	Bisect bool
	// DeadLetterS3 receives records that fail every attempt (Kafka may use
	// a topic instead).
	DeadLetterS3 *S3Location `json:",omitempty"`
}

// Stream connector modes.
const (
	ModeInline = "inline"
	ModeStaged = "staged"
)

// MaxInlineBatchBytes bounds an inline batch: its records travel inside the
// job, which must stay well under Bacalhau's 1 MiB NATS limit once
// base64-encoded (tasktemplate.MaxJobBytes is 768 KiB).
const MaxInlineBatchBytes = 512 << 10

func (b StreamBatching) validate() error {
	var errs []error
	if b.MaxRecords < 1 || b.MaxBytes < 1 || b.MaxWait <= 0 {
		errs = append(errs, errors.New("batch: max_records, max_bytes and max_wait must be positive"))
	}
	switch b.Mode {
	case ModeInline:
		if b.MaxBytes > MaxInlineBatchBytes {
			errs = append(errs, fmt.Errorf("batch.max_bytes: %d is over the inline limit %d; use mode: staged", b.MaxBytes, MaxInlineBatchBytes))
		}
	case ModeStaged:
		if b.Staging == nil || b.Staging.Bucket == "" {
			errs = append(errs, errors.New("staging.s3.bucket: required for mode staged"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode: unknown %q", b.Mode))
	}
	return errors.Join(errs...)
}

func s3Prefix(l *S3Location) *activities.S3Prefix {
	if l == nil {
		return nil
	}
	return &activities.S3Prefix{Bucket: l.Bucket, Prefix: l.Prefix, Region: l.Region, Endpoint: l.Endpoint}
}

// streamJob is how a batch's attempt runs.
func (b StreamBatching) streamJob(name string, task TaskConfig, attempt int) activities.StreamJob {
	j := activities.StreamJob{Connector: name, Attempt: attempt, Template: task.Template,
		QueueTimeout: task.QueueTimeout, ExecutionTimeout: task.ExecutionTimeout}
	if b.Mode == ModeStaged {
		j.Staging, j.URLTTL = s3Prefix(b.Staging), task.URLTTL
	}
	return j
}

// streamStep is what follows a stream batch (Kafka or Kinesis) that failed.
type streamStep int

const (
	// stepRetry runs the same records again after a backoff.
	stepRetry streamStep = iota
	// stepBisect splits the batch into two ranges that run in turn.
	stepBisect
	// stepDeadLetter sends the batch's records to the dead letter.
	stepDeadLetter
	// stepBlocked: the records fail every attempt and have nowhere to go;
	// they run again until they pass (never skipped).
	stepBlocked
)

// streamFailure describes a failed batch.
type streamFailure struct {
	err error
	// attempts of these records so far, this one included.
	attempts int
	// single: the batch holds one record; splitRange: it is a part of a
	// bisected batch holding more than one.
	single, splitRange bool
	// rejected: too large for an inline job; expired: its oldest record
	// is older than max_record_age.
	rejected, expired bool
}

// nextStreamStep decides what follows a failed batch. Only a failure the
// records can cause (the task failed on its input, or the input cannot be
// sent), or records past their max age, are isolated: after the policy's
// attempts (at once for a split range, a rejected batch or expired
// records), a batch of several records is bisected when bisect is on,
// else its records go to the dead letter, else the partition is blocked.
// Anything else (a node down, a timeout) runs again.
func nextStreamStep(policy TaskRetryPolicy, bisect, hasDeadLetter bool, f streamFailure) streamStep {
	isolatable := f.expired
	var appErr *temporal.ApplicationError
	if errors.As(f.err, &appErr) {
		switch appErr.Type() {
		case activities.ErrTypeTaskFailed, activities.ErrTypeInvalidTask:
			isolatable = true
		}
	}
	if !isolatable || !(f.attempts >= policy.MaxAttempts || f.splitRange || f.rejected || f.expired) {
		return stepRetry
	}
	switch {
	case bisect && !f.single:
		return stepBisect
	case hasDeadLetter:
		return stepDeadLetter
	default:
		return stepBlocked
	}
}

// retryBackoff is the wait before attempt attempts+1 (policy with defaults).
func retryBackoff(policy TaskRetryPolicy, attempts int) time.Duration {
	n := min(attempts, 30)
	r := 1.0
	for i := 1; i < n; i++ {
		r *= policy.BackoffCoefficient
	}
	return min(time.Duration(float64(policy.InitialInterval)*r), policy.MaxInterval)
}
