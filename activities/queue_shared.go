package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// What the queue kinds share (SQS and SNS on their own activities, the
// kinds on source.Queue on SourceQueues): message state by job label,
// failure reports, leases kept up while a task runs, and failed batches
// isolated by bisection.

// keepLeased calls extend every third of lease (at least every 500 ms)
// until the returned stop is called: the messages of jobID stay leased
// while the activity that called it lives. A worker that dies stops it,
// and the messages go back to the queue when their lease ends.
func keepLeased(ctx context.Context, jobID string, lease time.Duration, extend func(context.Context) error) (stop func()) {
	extendCtx, cancel := context.WithCancel(ctx)
	go func() {
		every := max(lease/3, 500*time.Millisecond)
		for {
			select {
			case <-extendCtx.Done():
				return
			case <-time.After(every):
			}
			if err := extend(extendCtx); err != nil && extendCtx.Err() == nil {
				activity.GetLogger(ctx).Warn("Extending the messages' lease failed; retrying", "JobID", jobID, "Error", err)
			}
		}
	}()
	return cancel
}

// runSingles is RunSingles for any queue: kind labels the jobs, extend
// renews the leases of the messages still waiting for their task. With
// bisect, the failed batch is split in halves instead, and a half that
// fails is split again, down to single messages: a batch of n messages
// with one poison message costs about 2·log2(n) tasks, not n. Halves run
// in message order, the first before the second.
func (b *Bacalhau) runSingles(ctx context.Context, in RunSinglesInput, kind string, bisect bool, extend func(context.Context, []QueueMessage) error) (*RunSinglesResult, error) {
	lines, err := b.inlineInput(ctx, in.JobID, QueueBatchInputTarget)
	if err != nil {
		return nil, err
	}
	byID := map[string][]byte{}
	receives := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		var m queueLine
		if json.Unmarshal([]byte(l), &m) == nil {
			byID[m.ID], receives[m.ID] = []byte(l+"\n"), m.ReceiveCount
		}
	}
	for _, m := range in.Messages {
		if _, ok := byID[m.ID]; !ok {
			return nil, nonRetryable(ErrTypeInvalidTask, nil, "job %s carries no message %s", in.JobID, m.ID)
		}
	}
	var mu sync.Mutex
	waiting := append([]QueueMessage(nil), in.Messages...)
	stop := keepLeased(ctx, in.JobID, in.Visibility, func(ctx context.Context) error {
		mu.Lock()
		msgs := append([]QueueMessage(nil), waiting...)
		mu.Unlock()
		return extend(ctx, msgs)
	})
	defer stop()
	var todo [][]QueueMessage
	if bisect && len(in.Messages) > 1 {
		// Messages whose own task failed before run alone first, the rest
		// together; without such suspects, halves.
		var rest []QueueMessage
		for _, m := range in.Messages {
			if slices.Contains(in.Suspects, m.ID) {
				todo = append(todo, []QueueMessage{m})
			} else {
				rest = append(rest, m)
			}
		}
		switch {
		case len(todo) == 0:
			todo = halves(in.Messages)
		case len(rest) > 0:
			todo = append(todo, rest)
		}
	} else {
		for _, m := range in.Messages {
			todo = append(todo, []QueueMessage{m})
		}
	}
	out := &RunSinglesResult{}
	for len(todo) > 0 {
		group := todo[0]
		todo = todo[1:]
		var input []byte
		labels := map[string]string{"connect-kind": kind}
		ids := make([]string, len(group))
		attempt := 1
		for i, m := range group {
			input = append(input, byID[m.ID]...)
			labels[MessageLabel(m.ID)] = "1"
			ids[i] = m.ID
			attempt = max(attempt, receives[m.ID])
		}
		id := singleBatchID(group[0].ID)
		if len(group) > 1 {
			sort.Strings(ids)
			h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
			id = "part-" + hex.EncodeToString(h[:8])
		}
		res, err := b.Submit(ctx, SubmitInput{Template: in.Template, Batch: tasktemplate.Batch{
			Connector: in.Connector, ID: id, Attempt: attempt,
			Inputs:       []tasktemplate.Input{{Target: QueueBatchInputTarget, Inline: input}},
			Labels:       labels,
			Meta:         map[string]string{MetaCount: strconv.Itoa(len(group))},
			QueueTimeout: in.QueueTimeout, ExecutionTimeout: in.ExecutionTimeout,
		}})
		if err != nil {
			return nil, err
		}
		out.JobIDs = append(out.JobIDs, res.JobID)
		if _, err := b.Await(ctx, AwaitInput{JobID: res.JobID}); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if len(group) > 1 {
				todo = append(halves(group), todo...)
				continue
			}
			out.Failed = append(out.Failed, group[0].ID)
		} else if reported, err := b.failureReport(ctx, res.JobID); err != nil {
			return nil, err
		} else {
			for _, m := range group {
				if slices.Contains(reported, m.ID) || len(group) == 1 && len(reported) > 0 {
					out.Failed = append(out.Failed, m.ID) // its task reported it failed
				}
			}
		}
		mu.Lock()
		waiting = slices.DeleteFunc(waiting, func(w QueueMessage) bool {
			return slices.ContainsFunc(group, func(m QueueMessage) bool { return m.ID == w.ID })
		})
		mu.Unlock()
	}
	return out, nil
}

// halves splits msgs in two, in order.
func halves(msgs []QueueMessage) [][]QueueMessage {
	mid := len(msgs) / 2
	return [][]QueueMessage{msgs[:mid], msgs[mid:]}
}
