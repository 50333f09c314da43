package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// BatchFailure is a job's verdict when its task failed: the error type
// (ErrTypeTaskFailed, ErrTypeNoCapacity, ErrTypeInputUnavailable, ErrTypeJobStopped,
// ErrTypePendingTimeout) and a message that names the job, its exit code
// and the size of its stderr, never the task's output.
type BatchFailure struct {
	Type    string
	Message string
}

// Error rebuilds the failure as the non-retryable application error the
// job's await would have returned, for the workflow's retry decision.
func (f *BatchFailure) Error() error {
	if f == nil {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(f.Message, f.Type, nil)
}

// awaitVerdict awaits a submitted batch's job and splits the outcome as
// batchVerdict does.
func (b *Bacalhau) awaitVerdict(ctx context.Context, jobID string) (*BatchFailure, error) {
	_, err := b.Await(ctx, AwaitInput{JobID: jobID})
	return batchVerdict(err)
}

// mirror commits a checkpoint to the consumer group when in.Group is set;
// a failure is only logged: the group mirrors the checkpoint, the next
// batch or wait mirrors it again.
func (k *Kafka) mirror(ctx context.Context, in CommitInput) {
	if in.Group == "" {
		return
	}
	if err := k.CommitOffset(ctx, in); err != nil {
		activity.GetLogger(ctx).Warn("Mirroring the checkpoint to the group failed", "Error", err)
	}
}

// batchVerdict splits an await's error into a job verdict (returned in
// the result: the batch's records decide what follows) and an error the
// activity is retried on (Bacalhau unreachable, worker stopping).
func batchVerdict(err error) (*BatchFailure, error) {
	if err == nil {
		return nil, nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case ErrTypeTaskFailed, ErrTypeNoCapacity, ErrTypeJobStopped, ErrTypePendingTimeout, ErrTypeInputUnavailable:
			return &BatchFailure{Type: appErr.Type(), Message: appErr.Error()}, nil
		}
	}
	return nil, err
}

// KafkaBatchInput runs the next batch of a partition in one activity.
type KafkaBatchInput struct {
	StreamSubmitInput
	// Group, when set, first mirrors Read.From (the checkpoint the batch
	// starts from, so the previous batch's end) into the consumer group:
	// the commit costs no activity of its own.
	Group string `json:",omitempty"`
	// Mirror, when set, is the offset Group gets instead of Read.From: the
	// consumer's checkpoint while this batch reads ahead of it (several
	// batches in flight).
	Mirror *int64 `json:",omitempty"`
	// ReturnWhenDue (several batches in flight allowed; an open read, or a
	// range that covered itself): when records past the batch have waited
	// Read.MaxWait since its read closed (or an open read left a backlog)
	// while its job still runs, return at once with Awaiting set and End
	// the partition's end, so the next batch runs beside this one.
	ReturnWhenDue bool `json:",omitempty"`
}

// KafkaBatchRun is a run batch: offsets, counts and the job; Failure is
// set when the job failed. Never records.
type KafkaBatchRun struct {
	SubmittedKafkaBatch
	Failure *BatchFailure `json:",omitempty"`
}

// RunBatch reads a partition from its checkpoint, submits the batch as one
// job (idempotently, by batch identity and attempt, as ReadAndSubmit does)
// and awaits it, all in one activity: a batch costs one activity start and,
// with quiet heartbeats, no heartbeat when it ends within half the heartbeat
// timeout. A retried attempt finds the job it submitted before and awaits
// that job. The task's verdict comes back in Failure; errors are for what
// a retry may mend (brokers or Bacalhau unreachable).
func (k *Kafka) RunBatch(ctx context.Context, in KafkaBatchInput) (*KafkaBatchRun, error) {
	mirror := in.Read.From
	if in.Mirror != nil {
		mirror = *in.Mirror
	}
	k.mirror(ctx, CommitInput{TopicRef: TopicRef{KafkaCluster: in.Read.KafkaCluster, Topic: in.Read.Topic},
		Group: in.Group, Partition: in.Read.Partition, Offset: mirror})
	batch, err := k.ReadAndSubmit(ctx, in.StreamSubmitInput)
	if err != nil {
		return nil, err
	}
	out := &KafkaBatchRun{SubmittedKafkaBatch: *batch}
	if batch.Count == 0 || batch.JobID == "" {
		return out, nil
	}
	if in.ReturnWhenDue && !batch.ReadClosed.IsZero() && (in.Read.Until < 0 || batch.RangeDone) {
		end, left, err := k.awaitUnlessDue(ctx, in.Read, batch)
		if left {
			out.Awaiting, out.End = true, max(out.End, end)
			return out, nil
		}
		if out.Failure, err = batchVerdict(err); err != nil {
			return nil, err
		}
		return out, nil
	}
	if out.Failure, err = k.bacalhau.awaitVerdict(ctx, batch.JobID); err != nil {
		return nil, err
	}
	return out, nil
}

// awaitUnlessDue awaits the batch's job, unless records past it were
// there as it was read or have waited read.MaxWait since its read closed
// before the job ends: then it leaves the job running and returns the
// partition's end (left true).
func (k *Kafka) awaitUnlessDue(ctx context.Context, read KafkaRead, batch *SubmittedKafkaBatch) (end int64, left bool, err error) {
	if read.Until < 0 && batch.End > batch.Last+1 {
		// An open read left records behind it (it filled up: a backlog):
		// the next batch can run now.
		return batch.End, true, nil
	}
	leave := make(chan struct{})
	wctx, stop := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		due := time.NewTimer(time.Until(batch.ReadClosed.Add(read.MaxWait)))
		defer due.Stop()
		select {
		case <-due.C:
		case <-wctx.Done():
			return
		}
		e, ok, err := k.clients.waitForEndOffset(wctx, read.KafkaCluster, read.Topic, read.Partition, batch.Last+1, 24*time.Hour, func() {})
		if ok && err == nil {
			end = e
			close(leave)
		}
	}()
	_, err = k.bacalhau.await(ctx, AwaitInput{JobID: batch.JobID}, leave)
	stop()
	<-watched
	if errors.Is(err, errLeft) {
		return end, true, nil
	}
	return 0, false, err
}

// ShardBatchRun is a run shard batch: sequence numbers, counts and the
// job; Failure is set when the job failed. Never records.
type ShardBatchRun struct {
	ShardBatchResult
	Failure *BatchFailure `json:",omitempty"`
}

// RunShardBatch reads a shard after its checkpoint, submits the batch
// (idempotently, like ReadShardAndSubmit) and awaits the job in one
// activity, like Kafka.RunBatch.
func (k *Kinesis) RunShardBatch(ctx context.Context, in ShardSubmitInput) (*ShardBatchRun, error) {
	batch, err := k.ReadShardAndSubmit(ctx, in)
	if err != nil {
		return nil, err
	}
	out := &ShardBatchRun{ShardBatchResult: *batch}
	if batch.Count == 0 || batch.JobID == "" {
		return out, nil
	}
	if out.Failure, err = k.bacalhau.awaitVerdict(ctx, batch.JobID); err != nil {
		return nil, err
	}
	return out, nil
}

// JobRunInput submits a batch's job and awaits it in one activity.
type JobRunInput struct {
	SubmitInput
	// PendingTimeout fails the await when Bacalhau never schedules the job
	// (AwaitInput.PendingTimeout).
	PendingTimeout time.Duration `json:",omitempty"`
}

// JobRun is a submitted and awaited job; Failure is the job's verdict
// when its task failed.
type JobRun struct {
	JobID   string
	Failure *BatchFailure `json:",omitempty"`
}

// RunJob submits a batch's job (idempotently, as Submit: a retried attempt
// finds the job it submitted) and awaits it, in one activity: the batch
// costs one activity start instead of a workflow and three activities. An
// invalid template fails it (non-retryable); the task's verdict comes back
// in Failure.
func (b *Bacalhau) RunJob(ctx context.Context, in JobRunInput) (*JobRun, error) {
	sub, err := b.Submit(ctx, in.SubmitInput)
	if err != nil {
		return nil, err
	}
	_, err = b.Await(ctx, AwaitInput{JobID: sub.JobID, PendingTimeout: in.PendingTimeout})
	out := &JobRun{JobID: sub.JobID}
	if out.Failure, err = batchVerdict(err); err != nil {
		return nil, err
	}
	return out, nil
}
