package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"go.temporal.io/sdk/activity"

	"github.com/bacalhau-connect/bacalhau-connect/internal/awshttp"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// QueueClients makes SQS and SNS clients for an endpoint and region.
type QueueClients func(ctx context.Context, endpoint, region string) (*sqs.Client, *sns.Client, error)

// DefaultQueueClients uses the standard AWS configuration chain
// (environment, shared config, instance roles).
func DefaultQueueClients(ctx context.Context, endpoint, region string) (*sqs.Client, *sns.Client, error) {
	opts := []func(*config.LoadOptions) error{}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("aws config: %w", err)
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	cfg.HTTPClient = awshttp.BufferedClient()
	return sqs.NewFromConfig(cfg), sns.NewFromConfig(cfg), nil
}

// Queue holds the SQS and SNS activities of queue connectors. Create it
// with NewQueue.
type Queue struct {
	bacalhau *Bacalhau
	clients  QueueClients
	mu       sync.Mutex
	cache    map[string]*sqs.Client
}

// NewQueue returns the queue activities; clients nil means the standard
// AWS chain.
func NewQueue(b *Bacalhau, clients QueueClients) *Queue {
	if clients == nil {
		clients = DefaultQueueClients
	}
	return &Queue{bacalhau: b, clients: clients, cache: map[string]*sqs.Client{}}
}

// QueueRef names a queue (name or URL) on an endpoint.
type QueueRef struct {
	Queue, Region, Endpoint string
}

func (q *Queue) sqs(ctx context.Context, ref QueueRef) (*sqs.Client, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := ref.Endpoint + "|" + ref.Region
	if c, ok := q.cache[key]; ok {
		return c, nil
	}
	c, _, err := q.clients(ctx, ref.Endpoint, ref.Region)
	if err != nil {
		return nil, err
	}
	q.cache[key] = c
	return c, nil
}

// QueueURL resolves a queue name to its URL (a URL is returned as is,
// after checking the queue exists). A missing queue is a non-retryable
// QueueNotFound error naming it.
func (q *Queue) QueueURL(ctx context.Context, ref QueueRef) (string, error) {
	c, err := q.sqs(ctx, ref)
	if err != nil {
		return "", err
	}
	name := ref.Queue
	if i := strings.LastIndex(name, "/"); strings.HasPrefix(name, "http") && i >= 0 {
		name = name[i+1:]
	}
	out, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	var missing *sqstypes.QueueDoesNotExist
	if errors.As(err, &missing) {
		return "", nonRetryable(ErrTypeSQSQueueNotFound, err, "sqs: queue %s does not exist at %s: create it (with its redrive policy) or fix source.sqs.queue", name, endpointOr(ref.Endpoint))
	}
	if err != nil {
		return "", fmt.Errorf("sqs: resolving queue %s at %s: %w", name, endpointOr(ref.Endpoint), err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// SafeMaxReceiveCount is the least redrive maxReceiveCount that leaves a
// healthy message room for two worker crashes during a task that ends
// within twice the visibility timeout: the first receive, then per crash
// one receive while its task still runs (the message is then held as long
// as the task has run so far, heldVisibility) and one after it (which
// deletes it). A longer task costs about one receive more per doubling of
// its run time beyond the visibility timeout.
const SafeMaxReceiveCount = 5

// MaxReceiveCount reads a queue's redrive policy with clients (nil: the
// standard AWS chain): its maxReceiveCount, and false when the queue has
// no redrive policy (no DLQ). It is not an activity: `starter apply` asks.
func MaxReceiveCount(ctx context.Context, clients QueueClients, ref QueueRef) (int, bool, error) {
	q := NewQueue(nil, clients)
	url, err := q.QueueURL(ctx, ref)
	if err != nil {
		return 0, false, err
	}
	c, err := q.sqs(ctx, ref)
	if err != nil {
		return 0, false, err
	}
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		return 0, false, fmt.Errorf("sqs: reading the redrive policy of %s: %w", url, err)
	}
	raw, ok := out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]
	if !ok || raw == "" {
		return 0, false, nil
	}
	var policy struct {
		MaxReceiveCount json.Number `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(raw), &policy); err != nil {
		return 0, false, fmt.Errorf("sqs: the redrive policy of %s: %w", url, err)
	}
	n, err := strconv.Atoi(policy.MaxReceiveCount.String())
	if err != nil {
		return 0, false, fmt.Errorf("sqs: the redrive policy of %s: maxReceiveCount %q: %w", url, policy.MaxReceiveCount, err)
	}
	return n, true, nil
}

func endpointOr(e string) string {
	if e == "" {
		return "AWS"
	}
	return e
}

// inFlightRecheck is how long WaitForMessages waits on a queue with
// messages in flight before it lets a receive look at them.
const inFlightRecheck = 20 * time.Second

// WaitMessagesInput asks whether a queue has visible messages.
type WaitMessagesInput struct {
	QueueRef
	URL string
	// Timeout bounds the wait. Default 20 s.
	Timeout time.Duration
}

// WaitForMessages polls the queue's ApproximateNumberOfMessages,
// heartbeating, until it is above zero (true) or Timeout passes (false).
// Idle pollers wait here, holding no lease from the budget. While messages
// are in flight it also returns true after inFlightRecheck, so a receive
// looks whether their visibility ran out (a stopped worker's batch).
func (q *Queue) WaitForMessages(ctx context.Context, in WaitMessagesInput) (bool, error) {
	c, err := q.sqs(ctx, in.QueueRef)
	if err != nil {
		return false, err
	}
	if in.Timeout <= 0 {
		in.Timeout = 20 * time.Second
	}
	start := time.Now()
	deadline := start.Add(in.Timeout)
	for {
		out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(in.URL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		inFlight := 0
		if err == nil {
			if n, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)]); n > 0 {
				return true, nil
			}
			inFlight, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
		}
		activity.RecordHeartbeat(ctx)
		if time.Now().After(deadline) || inFlight > 0 && time.Since(start) > inFlightRecheck {
			// Messages in flight may have expired without the count showing
			// it yet (some implementations expire lazily, on receive): look.
			return inFlight > 0, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// QueueSubmitInput receives one batch of messages and submits its task.
type QueueSubmitInput struct {
	QueueRef
	URL       string
	Connector string
	// MaxMessages and MaxWait bound the batch; MaxBytes bounds the bodies
	// (the batch travels inline in the job).
	MaxMessages int
	MaxWait     time.Duration
	MaxBytes    int64
	Visibility  time.Duration
	Template    string
	// Unwrap takes the message out of an SNS envelope (non-raw delivery).
	Unwrap bool
	// QueueTimeout and ExecutionTimeout bound the job.
	QueueTimeout, ExecutionTimeout time.Duration
}

// QueueMessage is a received message: ID and receipt handle, never its body.
type QueueMessage struct {
	ID     string
	Handle string
}

// QueueBatch is a submitted batch of messages.
type QueueBatch struct {
	JobID    string
	BatchID  string
	Messages []QueueMessage
	// Duplicates were redeliveries of messages a successful task already
	// processed: deleted without running again. Held are redeliveries whose
	// task still runs: left to it, invisible for as long as it ran so far.
	Duplicates, Held int
	// Suspects are messages of the batch whose own task failed on an
	// earlier delivery (source queue kinds).
	Suspects                       []string `json:",omitempty"`
	Bytes                          int64
	QueueTimeout, ExecutionTimeout time.Duration
}

// LabelMessagePrefix + hash(message ID) labels every job with the messages
// it carries, so a redelivered message finds the task that processed it.
const LabelMessagePrefix = "connect-msg-"

// MessageLabel is the job label of one message.
func MessageLabel(id string) string {
	h := sha256.Sum256([]byte(id))
	return LabelMessagePrefix + hex.EncodeToString(h[:8])
}

// QueueBatchInputTarget is where the task finds its messages (JSON lines).
const QueueBatchInputTarget = "/inputs/messages.jsonl"

// queueLine is one message as the task sees it.
type queueLine struct {
	ID                string            `json:"id"`
	Body              string            `json:"body"`
	BodyBase64        string            `json:"body_base64,omitempty"`
	Group             string            `json:"group,omitempty"`
	ReceiveCount      int               `json:"receive_count"`
	Attributes        map[string]string `json:"message_attributes,omitempty"`
	SentTimestampMsec string            `json:"sent_timestamp,omitempty"`
}

// ReceiveAndSubmit receives up to MaxMessages (10 per receive, long
// polling) within MaxWait and submits one task with their bodies and
// attributes as JSON lines at /inputs/messages.jsonl; it returns message
// IDs and receipt handles, never bodies. The job is labelled with every
// message, and a redelivered message (ApproximateReceiveCount > 1) is
// checked first: if a successful task processed it, it is deleted; if its
// task still runs, it is left out and kept invisible for as long as that
// task has run (each receive counts against the queue's maxReceiveCount).
// So a redelivery after a worker crash never starts a second job for a
// message. An empty batch (no JobID) means nothing arrived.
func (q *Queue) ReceiveAndSubmit(ctx context.Context, in QueueSubmitInput) (*QueueBatch, error) {
	c, err := q.sqs(ctx, in.QueueRef)
	if err != nil {
		return nil, err
	}
	out := &QueueBatch{}
	var lines []byte
	var ids []string
	labels := map[string]string{"connect-kind": "sqs"}
	// redelivered: a message was received before, so a job may carry it
	// (the batch identity is its messages' IDs).
	redelivered := false
	deadline := time.Now().Add(in.MaxWait)
	for len(out.Messages) < in.MaxMessages && out.Bytes < in.MaxBytes {
		wait := int32(min(20, max(0, time.Until(deadline).Seconds())))
		if len(out.Messages) > 0 && time.Now().After(deadline) {
			break
		}
		recv, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(in.URL), MaxNumberOfMessages: int32(min(10, in.MaxMessages-len(out.Messages))),
			WaitTimeSeconds: wait, VisibilityTimeout: int32(in.Visibility.Seconds()),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			if len(out.Messages) > 0 {
				break // submit what is in hand; the rest stays on the queue
			}
			return nil, fmt.Errorf("sqs: receiving from %s: %w", in.URL, err)
		}
		activity.RecordHeartbeat(ctx, len(out.Messages))
		for _, m := range recv.Messages {
			id, handle := aws.ToString(m.MessageId), aws.ToString(m.ReceiptHandle)
			count, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
			if count > 1 {
				redelivered = true
				state, run, err := q.bacalhau.messageState(ctx, id)
				if err != nil {
					return nil, err
				}
				switch state {
				case messageDone:
					if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(in.URL), ReceiptHandle: aws.String(handle)}); err != nil {
						return nil, fmt.Errorf("sqs: deleting duplicate %s: %w", id, err)
					}
					out.Duplicates++
					continue
				case messageRunning:
					// Left to its task; kept out of sight until it ends.
					hold := QueueMessage{ID: id, Handle: handle}
					if err := changeVisibility(ctx, c, in.URL, []QueueMessage{hold}, heldVisibility(run, in.Visibility, time.Now())); err != nil {
						activity.GetLogger(ctx).Warn("Could not hold a message whose task still runs", "MessageID", id, "Error", err)
					}
					out.Held++
					continue
				case messageFailedAlone:
					out.Suspects = append(out.Suspects, id)
				}
			}
			body := aws.ToString(m.Body)
			if in.Unwrap {
				body = unwrapSNS(body)
			}
			l := queueLine{ID: id, Body: body, Group: m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)],
				ReceiveCount: count, SentTimestampMsec: m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)]}
			for k, v := range m.MessageAttributes {
				if l.Attributes == nil {
					l.Attributes = map[string]string{}
				}
				l.Attributes[k] = aws.ToString(v.StringValue)
			}
			raw, err := json.Marshal(l)
			if err != nil {
				return nil, err
			}
			lines = append(append(lines, raw...), '\n')
			out.Bytes += int64(len(raw) + 1)
			out.Messages = append(out.Messages, QueueMessage{ID: id, Handle: handle})
			ids = append(ids, id)
			labels[MessageLabel(id)] = "1"
		}
		if len(recv.Messages) == 0 && time.Now().After(deadline) {
			break
		}
	}
	if len(out.Messages) == 0 {
		return out, nil
	}
	sort.Strings(ids)
	h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	out.BatchID = "msgs-" + hex.EncodeToString(h[:8])
	res, err := q.bacalhau.Submit(ctx, SubmitInput{Template: in.Template, Batch: tasktemplate.Batch{
		Connector: in.Connector, ID: out.BatchID, Attempt: 1,
		Inputs:       []tasktemplate.Input{{Target: QueueBatchInputTarget, Inline: lines}},
		Labels:       labels,
		Meta:         map[string]string{MetaCount: strconv.Itoa(len(out.Messages))},
		QueueTimeout: in.QueueTimeout, ExecutionTimeout: in.ExecutionTimeout,
	}, Looked: !redelivered}) // messages received for the first time: no job carries them
	if err != nil {
		// Nothing runs them: let them reappear now rather than after the timeout.
		q.release(ctx, c, in.URL, out.Messages)
		return nil, err
	}
	out.JobID, out.QueueTimeout, out.ExecutionTimeout = res.JobID, res.QueueTimeout, res.ExecutionTimeout
	return out, nil
}

// unwrapSNS returns the Message of an SNS notification envelope, or body
// unchanged when it is not one.
func unwrapSNS(body string) string {
	var env struct {
		Type    string  `json:"Type"`
		Message *string `json:"Message"`
	}
	if json.Unmarshal([]byte(body), &env) == nil && env.Type == "Notification" && env.Message != nil {
		return *env.Message
	}
	return body
}

type messageState int

const (
	messageNew messageState = iota
	messageRunning
	messageDone
	// messageFailedAlone: no task processed it, and its own single task
	// failed before (a message that fails its batches).
	messageFailedAlone
)

// runningJob is when an unfinished job was created and until when it may
// run (its creation plus its queue and execution timeouts).
type runningJob struct {
	id             string
	created, until time.Time
}

// messageState finds the task that carried a message, if any: done when
// one completed with exit code 0, running when one has not finished.
func (b *Bacalhau) messageState(ctx context.Context, id string) (messageState, runningJob, error) {
	jobs, err := b.ListJobs(ctx, MessageLabel(id))
	if err != nil {
		return messageNew, runningJob{}, err
	}
	return b.stateOf(ctx, id, jobs, newJobFacts())
}

// jobFacts caches what stateOf reads about finished jobs, for the
// messages of one receive.
type jobFacts struct {
	exitedZero map[string]bool
	reported   map[string][]string
}

func newJobFacts() *jobFacts {
	return &jobFacts{exitedZero: map[string]bool{}, reported: map[string][]string{}}
}

// stateOf is messageState over jobs, the jobs that carry the message.
func (b *Bacalhau) stateOf(ctx context.Context, id string, jobs []*models.Job, facts *jobFacts) (messageState, runningJob, error) {
	state := messageNew
	var run runningJob
	for _, j := range jobs {
		switch {
		case j.State.StateType == models.JobStateTypeCompleted:
			ok, seen := facts.exitedZero[j.ID]
			if !seen {
				var err error
				if ok, err = b.exitedZero(ctx, j); err != nil {
					return messageNew, runningJob{}, err
				}
				facts.exitedZero[j.ID] = ok
			}
			if !ok {
				if state == messageNew && j.Meta[tasktemplate.MetaBatch] == singleBatchID(id) {
					state = messageFailedAlone
				}
				continue
			}
			// A successful task may still have reported this message failed.
			reported, seen := facts.reported[j.ID]
			if !seen {
				var err error
				if reported, err = b.failureReport(ctx, j.ID); err != nil {
					return messageNew, runningJob{}, err
				}
				facts.reported[j.ID] = reported
			}
			if !slices.Contains(reported, id) {
				return messageDone, runningJob{}, nil
			}
		case !j.IsTerminal():
			state = messageRunning
			queue, exec := tasktemplate.Timeouts(j)
			created := time.Unix(0, j.CreateTime)
			run = runningJob{id: j.ID, created: created, until: created.Add(queue + exec)}
		case state == messageNew && j.Meta[tasktemplate.MetaBatch] == singleBatchID(id):
			state = messageFailedAlone // failed or stopped
		}
	}
	return state, run, nil
}

// singleBatchID is the batch identity of a message's own task.
func singleBatchID(id string) string { return "single-" + MessageLabel(id) }

// heldVisibility is how long a redelivered message whose task still runs
// stays invisible: as long as the task has run so far (at least the
// connector's visibility), and no longer than the task may still run (a
// minute more), nor SQS's 12 hours. Every receive counts against the
// queue's maxReceiveCount: a message whose poller died mid-task is
// received again a few times while a long task runs (the holds double),
// not once per visibility timeout, and deleted at the receive after it.
func heldVisibility(run runningJob, visibility time.Duration, now time.Time) time.Duration {
	d := max(now.Sub(run.created), visibility)
	return max(min(d, run.until.Sub(now)+time.Minute, 12*time.Hour), time.Second)
}

// release makes messages visible again at once.
func (q *Queue) release(ctx context.Context, c *sqs.Client, url string, msgs []QueueMessage) {
	_ = changeVisibility(ctx, c, url, msgs, 0)
}

func changeVisibility(ctx context.Context, c *sqs.Client, url string, msgs []QueueMessage, d time.Duration) error {
	var errs []error
	for start := 0; start < len(msgs); start += 10 {
		var entries []sqstypes.ChangeMessageVisibilityBatchRequestEntry
		for i, m := range msgs[start:min(start+10, len(msgs))] {
			entries = append(entries, sqstypes.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.Handle), VisibilityTimeout: int32(d.Seconds())})
		}
		out, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range out.Failed {
			errs = append(errs, fmt.Errorf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	return errors.Join(errs...)
}

// AwaitMessagesInput awaits a queue batch's job.
type AwaitMessagesInput struct {
	QueueRef
	URL        string
	JobID      string
	Messages   []QueueMessage
	Visibility time.Duration
	// Settle settles the batch when its task succeeded, as SettleMessages
	// does, in this activity (one billable activity less per batch); the
	// result's Settled says what happened.
	Settle bool `json:",omitempty"`
}

// AwaitedMessages is AwaitMessages' result: the job's, and with Settle
// what happened to the messages.
type AwaitedMessages struct {
	AwaitResult
	// Settled is set when the batch was settled here; SettleError says why
	// it was not (the caller settles it itself then).
	Settled     *Settled `json:",omitempty"`
	SettleError string   `json:",omitempty"`
}

// AwaitMessages awaits the job (as Await does) and meanwhile keeps its
// messages invisible, extending their visibility every third of the
// timeout. The extension lives in this heartbeating activity: when the
// worker dies, it stops, and the messages reappear after the timeout.
// With Settle, a successful batch is settled before it returns; a failed
// one is left to the caller (it may isolate the messages it fails on).
func (q *Queue) AwaitMessages(ctx context.Context, in AwaitMessagesInput) (*AwaitedMessages, error) {
	return q.awaitMessages(ctx, in, nil)
}

// awaitMessages is AwaitMessages; carry rides in its heartbeat details.
func (q *Queue) awaitMessages(ctx context.Context, in AwaitMessagesInput, carry any) (*AwaitedMessages, error) {
	c, err := q.sqs(ctx, in.QueueRef)
	if err != nil {
		return nil, err
	}
	stop := keepLeased(ctx, in.JobID, in.Visibility, func(ctx context.Context) error {
		return changeVisibility(ctx, c, in.URL, in.Messages, in.Visibility)
	})
	defer stop()
	res, err := q.bacalhau.Await(ctx, AwaitInput{JobID: in.JobID, Carry: carry})
	if err != nil {
		return nil, err
	}
	out := &AwaitedMessages{AwaitResult: AwaitResult{JobID: in.JobID}}
	if res != nil {
		out.AwaitResult = *res
	}
	if !in.Settle {
		return out, nil
	}
	stop() // no visibility change after the messages are deleted
	settled, err := q.SettleMessages(ctx, SettleInput{QueueRef: in.QueueRef, URL: in.URL, JobID: in.JobID, Messages: in.Messages, Succeeded: true})
	if err != nil {
		out.SettleError = err.Error()
	} else {
		out.Settled = settled
	}
	return out, nil
}

// SettleInput finishes a queue batch.
type SettleInput struct {
	QueueRef
	URL      string
	JobID    string
	Messages []QueueMessage
	// Succeeded says the task exited 0; else every message reappears.
	Succeeded bool
	// Release lists messages to let reappear although Succeeded (their
	// own task failed). With it, JobID's failure report is not read.
	Release []string `json:",omitempty"`
}

// Settled counts what happened to a batch's messages.
type Settled struct {
	Deleted, Released int
}

// FailureReportPath is where a task may list the messages it failed on:
// {"batchItemFailures":[{"itemIdentifier":"<message id>"}]}, as AWS
// Lambda's ReportBatchItemFailures. Only those stay on the queue.
const FailureReportPath = "outputs/failures.json"

// SettleMessages deletes a successful batch's messages, except those the
// task's failure report lists, which (like every message of a failed batch)
// are made visible again at once for the queue's redrive policy to count.
func (q *Queue) SettleMessages(ctx context.Context, in SettleInput) (*Settled, error) {
	c, err := q.sqs(ctx, in.QueueRef)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, id := range in.Release {
		keep[id] = true
	}
	if in.Succeeded && in.JobID != "" && len(in.Release) == 0 {
		failed, err := q.bacalhau.failureReport(ctx, in.JobID)
		if err != nil {
			return nil, err
		}
		for _, id := range failed {
			keep[id] = true
		}
	}
	var del, rel []QueueMessage
	for _, m := range in.Messages {
		if in.Succeeded && !keep[m.ID] {
			del = append(del, m)
		} else {
			rel = append(rel, m)
		}
	}
	for start := 0; start < len(del); start += 10 {
		var entries []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range del[start:min(start+10, len(del))] {
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.Handle)})
		}
		out, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(in.URL), Entries: entries})
		if err != nil {
			return nil, fmt.Errorf("sqs: deleting messages of job %s: %w", in.JobID, err)
		}
		// A stale receipt handle (the message was received again meanwhile)
		// fails here; the redelivery finds this job and deletes it then.
		for _, f := range out.Failed {
			activity.GetLogger(ctx).Warn("Delete failed; a redelivery will find the successful job", "Code", aws.ToString(f.Code), "Message", aws.ToString(f.Message))
		}
	}
	if err := changeVisibility(ctx, c, in.URL, rel, 0); err != nil {
		activity.GetLogger(ctx).Warn("Releasing messages failed; they reappear after their visibility timeout", "Error", err)
	}
	return &Settled{Deleted: len(del), Released: len(rel)}, nil
}

// failureReport reads the task's failure report, if it wrote one.
func (b *Bacalhau) failureReport(ctx context.Context, jobID string) ([]string, error) {
	_, files, err := b.results(ctx, jobID)
	if err != nil {
		return nil, err
	}
	raw, ok := files[FailureReportPath]
	if !ok {
		return nil, nil
	}
	return ParseFailureReport(raw)
}

// ParseFailureReport reads {"batchItemFailures":[{"itemIdentifier":"id"}]}.
func ParseFailureReport(raw []byte) ([]string, error) {
	var r struct {
		BatchItemFailures []struct {
			ItemIdentifier string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, nonRetryable(ErrTypeInvalidTask, err, "task failure report %s: %v (want {\"batchItemFailures\":[{\"itemIdentifier\":\"<message id>\"}]})", FailureReportPath, err)
	}
	var ids []string
	for _, f := range r.BatchItemFailures {
		if f.ItemIdentifier != "" {
			ids = append(ids, f.ItemIdentifier)
		}
	}
	return ids, nil
}

// RunSinglesInput reruns a failed batch's messages one task each.
type RunSinglesInput struct {
	QueueRef
	URL       string
	Connector string
	// JobID is the failed batch's job: its inline input holds the bodies,
	// so they never pass through workflow history.
	JobID      string
	Messages   []QueueMessage
	Visibility time.Duration
	Template   string
	// QueueTimeout and ExecutionTimeout bound each job.
	QueueTimeout, ExecutionTimeout time.Duration
	// Suspects, when bisecting, are messages whose own task failed before:
	// they run alone first, the others together.
	Suspects []string `json:",omitempty"`
}

// RunSinglesResult lists the messages whose own task failed too.
type RunSinglesResult struct {
	Failed []string
	JobIDs []string
}

// RunSingles isolates the messages a batch whose task failed (JobID)
// failed on: it reads the bodies back from the failed job's inline input
// and bisects — halves of the batch run as tasks of their own, one after
// another (the batch's lease covers one job at a time), a half that fails
// is split again, down to single messages; a message whose own task
// failed on an earlier receive (Suspects) runs alone first, the others
// together. The waiting messages are kept invisible meanwhile.
// Submissions are idempotent (one batch identity per group of messages),
// so a retry after a crash resumes. The messages that fail alone (or that
// a task reports failed) are returned, to be released for the queue's
// redrive policy; the others' tasks succeeded.
func (q *Queue) RunSingles(ctx context.Context, in RunSinglesInput) (*RunSinglesResult, error) {
	c, err := q.sqs(ctx, in.QueueRef)
	if err != nil {
		return nil, err
	}
	return q.bacalhau.runSingles(ctx, in, "sqs", true, func(ctx context.Context, msgs []QueueMessage) error {
		return changeVisibility(ctx, c, in.URL, msgs, in.Visibility)
	})
}
