package activities

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"go.temporal.io/sdk/activity"

	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// SourceQueues holds the activities of the queue kinds written against
// the public source.Queue interface (Google Cloud Pub/Sub, and kinds from
// outside this repository): one batch per activity, singles after a
// failed batch, settling. Create it with NewSourceQueues.
type SourceQueues struct {
	bacalhau *Bacalhau
	queues   *openSources[source.Queue]
}

// NewSourceQueues returns the activities for the queue kinds openers names
// (kind → opener).
func NewSourceQueues(b *Bacalhau, openers map[string]source.QueueOpener) *SourceQueues {
	open := map[string]func(context.Context, json.RawMessage) (source.Queue, error){}
	for kind, o := range openers {
		open[kind] = o
	}
	return &SourceQueues{bacalhau: b, queues: newOpenSources(open)}
}

// SourceQueueBatchInput runs one batch of a queue kind's connector.
type SourceQueueBatchInput struct {
	Source    SourceRef
	Connector string
	// MaxMessages, MaxBytes and MaxWait bound the batch: MaxWait counts
	// from its first message.
	MaxMessages int
	MaxBytes    int64
	MaxWait     time.Duration
	// IdleWait bounds the wait for a first message (0: look once).
	IdleWait time.Duration `json:",omitempty"`
	// Lease is how long a message stays leased between extensions.
	Lease    time.Duration
	Template string
	// QueueTimeout and ExecutionTimeout bound the job.
	QueueTimeout, ExecutionTimeout time.Duration
}

// sourceReceiveStep bounds one receive, so the activity heartbeats while
// it waits for messages.
const sourceReceiveStep = 10 * time.Second

// SourceQueueBatch runs one batch in one activity, as RunMessages does for
// SQS: it receives (waiting up to IdleWait for a first message, then up to
// MaxWait for more), drops redeliveries a successful task already
// processed and adopts those whose task still runs (found by the jobs'
// message labels: kept leased until that task ends, then settled as it
// says), submits one task with the rest as JSON lines at
// /inputs/messages.jsonl, awaits it while extending the leases, and acks
// a batch whose task succeeded, except the messages its failure report
// lists (released). A failed task's verdict comes back in Failure with
// the messages still leased: the workflow decides what follows. An
// attempt retried after a worker crash resumes the submitted batch from
// the heartbeat details. An empty batch (no JobID) means nothing arrived,
// or the activity was cancelled while it waited (a pause): a cancellation
// stops the receiving only, and a batch in hand runs to its end.
func (s *SourceQueues) SourceQueueBatch(ctx context.Context, in SourceQueueBatchInput) (run *MessagesRun, _ error) {
	q, err := s.queues.get(ctx, in.Source)
	if err != nil {
		return nil, err
	}
	var resumed struct{ Carry *QueueBatch }
	var batch QueueBatch
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &resumed) == nil && resumed.Carry != nil && resumed.Carry.JobID != "" {
		batch = *resumed.Carry
	} else {
		b, adopted, err := s.receiveAndSubmit(ctx, q, in)
		if err != nil {
			return nil, err
		}
		if len(adopted) > 0 {
			// Redeliveries whose task still runs (its poller died): this
			// activity keeps them leased until their task ends and settles
			// them then, so they are not delivered again meanwhile (each
			// delivery counts against the dead-letter policy).
			work := context.WithoutCancel(ctx)
			stop := keepLeased(work, "adopted", in.Lease, func(ctx context.Context) error {
				return q.Extend(ctx, adoptedHandles(adopted), in.Lease)
			})
			defer func() {
				acked := s.settleAdopted(work, q, adopted)
				stop()
				if run != nil {
					run.Duplicates += acked
				}
			}()
		}
		if b.JobID == "" {
			return &MessagesRun{QueueBatch: *b}, nil
		}
		batch = *b
		activity.RecordHeartbeat(ctx, AwaitProgress{JobID: batch.JobID, Carry: &batch})
	}
	// A submitted batch runs to its end, cancelled or not: its messages
	// are acked or handed back as its task says.
	work := context.WithoutCancel(ctx)
	out := &MessagesRun{QueueBatch: batch}
	stop := keepLeased(work, batch.JobID, in.Lease, func(ctx context.Context) error {
		return q.Extend(ctx, handles(batch.Messages), in.Lease)
	})
	_, err = s.bacalhau.Await(work, AwaitInput{JobID: batch.JobID, Carry: &batch})
	stop()
	if out.Failure, err = batchVerdict(err); err != nil {
		return nil, err
	}
	if out.Failure == nil {
		settled, err := s.settle(work, q, SourceSettleInput{Source: in.Source, JobID: batch.JobID, Messages: batch.Messages, Succeeded: true})
		if err != nil {
			out.SettleError = err.Error()
		} else {
			out.Settled = settled
		}
	}
	return out, nil
}

// receiveAndSubmit receives a batch and submits its task; adopted are the
// redelivered messages whose task still runs.
func (s *SourceQueues) receiveAndSubmit(ctx context.Context, q source.Queue, in SourceQueueBatchInput) (_ *QueueBatch, adopted []adoptedMessage, _ error) {
	// Only receiving stops when the activity is cancelled (a pause, the
	// connector stopping or deleted): messages in hand are submitted and
	// run (work), so none is handed back for nothing, which would count a
	// delivery against the queue's dead-letter policy.
	work := context.WithoutCancel(ctx)
	out := &QueueBatch{}
	var lines []byte
	var ids []string
	var held []source.Message // received, waiting for the batch to be cut
	labels := map[string]string{"connect-kind": in.Source.Kind}
	redelivered := false
	idleUntil := time.Now().Add(in.IdleWait)
	var deadline time.Time // MaxWait after the first message
	extended := time.Now()
	for len(out.Messages) < in.MaxMessages && out.Bytes < in.MaxBytes {
		wait := time.Duration(0)
		switch {
		case deadline.IsZero():
			wait = min(sourceReceiveStep, max(time.Until(idleUntil), 0))
		default:
			wait = min(sourceReceiveStep, max(time.Until(deadline), 0))
		}
		msgs, err := q.Receive(ctx, in.MaxMessages-len(out.Messages), in.Lease, wait)
		held = append(held, msgs...)
		if err != nil {
			if len(out.Messages) > 0 || ctx.Err() != nil && len(held) == 0 {
				// Submit what is in hand (or nothing, when cancelled while
				// waiting); what this receive returned goes back.
				s.release(work, q, msgs)
				break
			}
			s.release(work, q, held)
			return nil, adopted, err
		}
		activity.RecordHeartbeat(work, len(out.Messages))
		states, err := s.messageStates(work, in.Connector, msgs)
		if err != nil {
			s.release(work, q, held)
			return nil, adopted, err
		}
		for i, m := range msgs {
			if st := states[i]; st != nil { // received before, or the queue does not count: a job may carry it
				redelivered = true
				switch st.state {
				case messageDone:
					if err := q.Ack(work, []string{m.Handle}); err != nil {
						s.release(work, q, held)
						return nil, adopted, err
					}
					out.Duplicates++
					continue
				case messageRunning:
					// Left to its task, which this activity awaits.
					adopted = append(adopted, adoptedMessage{id: m.ID, handle: m.Handle, job: st.run.id})
					out.Held++
					continue
				case messageFailedAlone:
					out.Suspects = append(out.Suspects, m.ID)
				}
			}
			raw, err := json.Marshal(sourceQueueLine(m))
			if err != nil {
				return nil, adopted, err
			}
			lines = append(append(lines, raw...), '\n')
			out.Bytes += int64(len(raw) + 1)
			out.Messages = append(out.Messages, QueueMessage{ID: m.ID, Handle: m.Handle})
			ids = append(ids, m.ID)
			labels[MessageLabel(m.ID)] = "1"
		}
		now := time.Now()
		if deadline.IsZero() && len(out.Messages) > 0 {
			deadline = now.Add(in.MaxWait)
		}
		if deadline.IsZero() && !now.Before(idleUntil) || !deadline.IsZero() && !now.Before(deadline) || ctx.Err() != nil {
			break
		}
		if len(out.Messages) > 0 && now.Sub(extended) > in.Lease/3 {
			// A long max_wait: the first messages' leases must not lapse.
			if err := q.Extend(work, handles(out.Messages), in.Lease); err != nil {
				activity.GetLogger(ctx).Warn("Extending the messages' lease failed", "Error", err)
			}
			extended = now
		}
	}
	if len(out.Messages) == 0 {
		return out, adopted, nil
	}
	sort.Strings(ids)
	h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	out.BatchID = "msgs-" + hex.EncodeToString(h[:8])
	res, err := s.bacalhau.Submit(work, SubmitInput{Template: in.Template, Batch: tasktemplate.Batch{
		Connector: in.Connector, ID: out.BatchID, Attempt: 1,
		Inputs:       []tasktemplate.Input{{Target: QueueBatchInputTarget, Inline: lines}},
		Labels:       labels,
		Meta:         map[string]string{MetaCount: strconv.Itoa(len(out.Messages))},
		QueueTimeout: in.QueueTimeout, ExecutionTimeout: in.ExecutionTimeout,
	}, Looked: !redelivered}) // every message delivered for the first time: no job carries them
	if err != nil {
		// Nothing runs them: give them back now rather than after the lease.
		_ = q.Release(work, handles(out.Messages))
		return nil, adopted, err
	}
	out.JobID, out.QueueTimeout, out.ExecutionTimeout = res.JobID, res.QueueTimeout, res.ExecutionTimeout
	return out, adopted, nil
}

// adoptedMessage is a redelivered message whose task (job) still runs.
type adoptedMessage struct {
	id, handle, job string
}

func adoptedHandles(msgs []adoptedMessage) []string {
	hs := make([]string, len(msgs))
	for i, m := range msgs {
		hs[i] = m.handle
	}
	return hs
}

// settleAdopted awaits the tasks of adopted messages and settles them as
// their task says: acked when it succeeded and did not report them
// failed, released otherwise. It returns how many it acked.
func (s *SourceQueues) settleAdopted(ctx context.Context, q source.Queue, adopted []adoptedMessage) int {
	byJob := map[string][]adoptedMessage{}
	var jobs []string
	for _, m := range adopted {
		if _, ok := byJob[m.job]; !ok {
			jobs = append(jobs, m.job)
		}
		byJob[m.job] = append(byJob[m.job], m)
	}
	acked := 0
	for _, job := range jobs {
		var ack, rel []string
		_, err := s.bacalhau.Await(ctx, AwaitInput{JobID: job})
		var reported []string
		if err == nil {
			reported, err = s.bacalhau.failureReport(ctx, job)
		}
		for _, m := range byJob[job] {
			if err == nil && !slices.Contains(reported, m.id) {
				ack = append(ack, m.handle)
			} else {
				rel = append(rel, m.handle)
			}
		}
		if err := q.Ack(ctx, ack); err != nil {
			activity.GetLogger(ctx).Warn("Acking redelivered messages failed; a later delivery finds their job", "JobID", job, "Error", err)
		} else {
			acked += len(ack)
		}
		if err := q.Release(ctx, rel); err != nil {
			activity.GetLogger(ctx).Warn("Releasing redelivered messages failed", "JobID", job, "Error", err)
		}
	}
	return acked
}

// lookedUp is what the jobs' labels say about one message.
type lookedUp struct {
	state messageState
	run   runningJob
}

// messageStates looks up, by their jobs' labels, the messages that may
// have been delivered before (a delivery count other than 1: counted
// again, or not counted at all); a message delivered for the first time
// gets nil. One listing of the connector's jobs serves them all (a query
// per message is slow on a node that keeps many jobs).
func (s *SourceQueues) messageStates(ctx context.Context, connector string, msgs []source.Message) ([]*lookedUp, error) {
	out := make([]*lookedUp, len(msgs))
	if !slices.ContainsFunc(msgs, func(m source.Message) bool { return m.Deliveries != 1 }) {
		return out, nil
	}
	jobs, err := s.bacalhau.ListJobs(ctx, tasktemplate.LabelConnector+"="+tasktemplate.LabelValue(connector))
	if err != nil {
		return nil, err
	}
	// The jobs by the message labels they carry, read once.
	carrying := map[string][]*models.Job{}
	for _, j := range jobs {
		for label := range j.Labels {
			if strings.HasPrefix(label, LabelMessagePrefix) {
				carrying[label] = append(carrying[label], j)
			}
		}
	}
	facts := newJobFacts()
	for i, m := range msgs {
		if m.Deliveries == 1 {
			continue
		}
		state, run, err := s.bacalhau.stateOf(ctx, m.ID, carrying[MessageLabel(m.ID)], facts)
		if err != nil {
			return nil, err
		}
		out[i] = &lookedUp{state: state, run: run}
		activity.RecordHeartbeat(ctx)
	}
	return out, nil
}

// sourceQueueLine is a message as the task reads it: the SQS line's
// shape, the ordering key as group, a body that is not UTF-8 in base64.
func sourceQueueLine(m source.Message) queueLine {
	l := queueLine{ID: m.ID, Group: m.OrderingKey, ReceiveCount: m.Deliveries, Attributes: m.Attributes}
	if utf8.Valid(m.Body) {
		l.Body = string(m.Body)
	} else {
		l.BodyBase64 = base64.StdEncoding.EncodeToString(m.Body)
	}
	if !m.Published.IsZero() {
		l.SentTimestampMsec = strconv.FormatInt(m.Published.UnixMilli(), 10)
	}
	return l
}

// release gives received messages back at once (an error before their
// batch was submitted).
func (s *SourceQueues) release(ctx context.Context, q source.Queue, msgs []source.Message) {
	hs := make([]string, len(msgs))
	for i, m := range msgs {
		hs[i] = m.Handle
	}
	_ = q.Release(ctx, hs)
}

func handles(msgs []QueueMessage) []string {
	hs := make([]string, len(msgs))
	for i, m := range msgs {
		hs[i] = m.Handle
	}
	return hs
}

// SourceSinglesInput reruns a failed batch of a queue kind one message
// per task.
type SourceSinglesInput struct {
	Source SourceRef
	RunSinglesInput
}

// SourceQueueSingles isolates the messages a failed batch (JobID) failed
// on, by bisection: halves of the batch run as tasks of their own, a half
// that fails is split again, down to single messages; the waiting ones
// are kept leased. It returns the messages whose own task failed (or
// reported them failed); every other message's task succeeded.
func (s *SourceQueues) SourceQueueSingles(ctx context.Context, in SourceSinglesInput) (*RunSinglesResult, error) {
	q, err := s.queues.get(ctx, in.Source)
	if err != nil {
		return nil, err
	}
	return s.bacalhau.runSingles(ctx, in.RunSinglesInput, in.Source.Kind, true, func(ctx context.Context, msgs []QueueMessage) error {
		return q.Extend(ctx, handles(msgs), in.Visibility)
	})
}

// SourceSettleInput finishes a batch of a queue kind.
type SourceSettleInput struct {
	Source   SourceRef
	JobID    string
	Messages []QueueMessage
	// Succeeded says the task exited 0; else every message is released.
	Succeeded bool
	// Release lists messages to release although Succeeded (their own
	// task failed). With it, JobID's failure report is not read.
	Release []string `json:",omitempty"`
}

// SourceQueueSettle acks a successful batch's messages, except those the
// task's failure report (or Release) lists, and releases those and every
// message of a failed batch, for the queue's dead-letter policy to count.
func (s *SourceQueues) SourceQueueSettle(ctx context.Context, in SourceSettleInput) (*Settled, error) {
	q, err := s.queues.get(ctx, in.Source)
	if err != nil {
		return nil, err
	}
	return s.settle(ctx, q, in)
}

func (s *SourceQueues) settle(ctx context.Context, q source.Queue, in SourceSettleInput) (*Settled, error) {
	keep := map[string]bool{}
	for _, id := range in.Release {
		keep[id] = true
	}
	if in.Succeeded && in.JobID != "" && len(in.Release) == 0 {
		failed, err := s.bacalhau.failureReport(ctx, in.JobID)
		if err != nil {
			return nil, err
		}
		for _, id := range failed {
			keep[id] = true
		}
	}
	var ack, rel []string
	for _, m := range in.Messages {
		if in.Succeeded && !keep[m.ID] {
			ack = append(ack, m.Handle)
		} else {
			rel = append(rel, m.Handle)
		}
	}
	// A stale handle (the message was delivered again meanwhile) may fail
	// or be ignored: the redelivery finds this job and acks it then.
	if err := q.Ack(ctx, ack); err != nil {
		return nil, err
	}
	if err := q.Release(ctx, rel); err != nil {
		activity.GetLogger(ctx).Warn("Releasing messages failed; they go back after their lease", "Error", err)
	}
	return &Settled{Deleted: len(ack), Released: len(rel)}, nil
}
