package activities

import (
	"context"

	"go.temporal.io/sdk/activity"
)

// MessagesRun is a run queue batch: its messages (IDs and receipt
// handles, never bodies) and job, the job's verdict when its task failed
// (Failure), and what settling a successful batch did (Settled, or
// SettleError when the caller must settle it).
type MessagesRun struct {
	QueueBatch
	Failure     *BatchFailure `json:",omitempty"`
	Settled     *Settled      `json:",omitempty"`
	SettleError string        `json:",omitempty"`
}

// RunMessages runs one queue batch in one activity: it receives and
// submits (as ReceiveAndSubmit), awaits the job while keeping the messages
// invisible, and settles a batch whose task succeeded (as AwaitMessages
// with Settle). A batch costs one activity start. Once submitted, the
// batch rides in the heartbeat details, so an attempt retried after a
// worker crash awaits the same job with the same receipt handles instead
// of receiving again. A failed task's verdict comes back in Failure with
// its messages still invisible: the workflow decides what follows
// (isolate the messages it fails on, or let them reappear). An empty
// batch (no JobID) means nothing arrived within MaxWait.
func (q *Queue) RunMessages(ctx context.Context, in QueueSubmitInput) (*MessagesRun, error) {
	var resumed struct{ Carry *QueueBatch }
	var batch QueueBatch
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &resumed) == nil && resumed.Carry != nil && resumed.Carry.JobID != "" {
		batch = *resumed.Carry
	} else {
		b, err := q.ReceiveAndSubmit(ctx, in)
		if err != nil {
			return nil, err
		}
		if b.JobID == "" {
			return &MessagesRun{QueueBatch: *b}, nil
		}
		batch = *b
		activity.RecordHeartbeat(ctx, AwaitProgress{JobID: batch.JobID, Carry: &batch})
	}
	out := &MessagesRun{QueueBatch: batch}
	awaited, err := q.awaitMessages(ctx, AwaitMessagesInput{QueueRef: in.QueueRef, URL: in.URL, JobID: batch.JobID,
		Messages: batch.Messages, Visibility: in.Visibility, Settle: true}, &batch)
	if out.Failure, err = batchVerdict(err); err != nil {
		return nil, err
	}
	if awaited != nil {
		out.Settled, out.SettleError = awaited.Settled, awaited.SettleError
	}
	return out, nil
}
