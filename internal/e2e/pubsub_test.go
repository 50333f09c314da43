package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/pubsubsource"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// pubsubKind names the Pub/Sub kind's workflow.
var pubsubKind = spec.QueueKindOf(pubsubsource.Kind())

// pubsubStack is the Pub/Sub stand-in (pstest, reached over gRPC) with a
// topic, its dead-letter topic and their subscriptions.
type pubsubStack struct {
	endpoint, project, topic, sub, dlqSub string
	client                                *pubsub.Client
}

// startPubSub creates topic t and subscription t-sub (message ordering on,
// ack deadline 10 s, dead letter to t-dlq after maxDeliveries), and t-dlq
// with subscription t-dlq-sub to read the dead letters.
func startPubSub(t *testing.T, name string, maxDeliveries int32) pubsubStack {
	t.Helper()
	ctx := context.Background()
	ps, err := devstack.StartPubSub(devstack.PubSubOptions{})
	require.NoError(t, err)
	t.Cleanup(ps.Stop)
	const project = "connect-e2e"
	c, err := ps.Client(ctx, project)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s := pubsubStack{endpoint: ps.Endpoint(), project: project, client: c,
		topic: "projects/" + project + "/topics/" + name, sub: name + "-sub", dlqSub: name + "-dlq-sub"}
	dlq := s.topic + "-dlq"
	for _, topic := range []string{s.topic, dlq} {
		_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic})
		require.NoError(t, err)
	}
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: s.subName(s.sub), Topic: s.topic, AckDeadlineSeconds: 10, EnableMessageOrdering: true,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlq, MaxDeliveryAttempts: maxDeliveries}})
	require.NoError(t, err)
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: s.subName(s.dlqSub), Topic: dlq, AckDeadlineSeconds: 60})
	require.NoError(t, err)
	return s
}

func (s pubsubStack) subName(id string) string {
	return "projects/" + s.project + "/subscriptions/" + id
}

// publish publishes the bodies with their ordering keys (unary Publish,
// a thousand a call) and returns the message IDs Pub/Sub gave them.
func (s pubsubStack) publish(t *testing.T, bodies, keys []string) []string {
	t.Helper()
	var ids []string
	for from := 0; from < len(bodies); from += 1000 {
		var msgs []*pubsubpb.PubsubMessage
		for i := from; i < min(from+1000, len(bodies)); i++ {
			msgs = append(msgs, &pubsubpb.PubsubMessage{Data: []byte(bodies[i]), OrderingKey: keys[i]})
		}
		res, err := s.client.TopicAdminClient.Publish(context.Background(), &pubsubpb.PublishRequest{Topic: s.topic, Messages: msgs})
		require.NoError(t, err)
		ids = append(ids, res.MessageIds...)
	}
	return ids
}

// pull pulls what subscription id holds now, acking it.
func (s pubsubStack) pull(t *testing.T, id string) []*pubsubpb.ReceivedMessage {
	t.Helper()
	ctx := context.Background()
	var all []*pubsubpb.ReceivedMessage
	for {
		res, err := s.client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: s.subName(id), MaxMessages: 1000})
		require.NoError(t, err)
		if len(res.ReceivedMessages) == 0 {
			return all
		}
		var acks []string
		for _, m := range res.ReceivedMessages {
			acks = append(acks, m.AckId)
		}
		require.NoError(t, s.client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: s.subName(id), AckIds: acks}))
		all = append(all, res.ReceivedMessages...)
	}
}

func queueStatusOf(t *testing.T, workflowID string) workflows.QueueStatus {
	t.Helper()
	v, err := env.Client.QueryWorkflow(context.Background(), workflowID, "", workflows.QueryQueueStatus)
	require.NoError(t, err)
	var st workflows.QueueStatus
	require.NoError(t, v.Get(&st))
	return st
}

// TestPubSubFiveThousandOrderedMessagesThroughThreeKillNines is the
// Pub/Sub kind's acceptance run: 5,000 messages on 500 ordering keys and
// one poison message, published through the real client's gRPC API while
// the worker process is killed with SIGKILL at three random points. Every
// message is processed by exactly one successful task, each ordering key
// in publish order, with one successful job per batch identity; the
// poison message alone reaches the dead-letter topic, after the
// subscription's five delivery attempts; the subscription ends empty.
func TestPubSubFiveThousandOrderedMessagesThroughThreeKillNines(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const name, queue = "e2e-pubsub", "e2e-pubsub-big"
	ps := startPubSub(t, "e2e-web", 5)
	const keys, perRound = 500, 1250
	published := map[string]publishedMessage{}
	round := func(r int) {
		bodies, ks := make([]string, perRound), make([]string, perRound)
		for i := range perRound {
			// Log lines the task parses; the ordering key is the client.
			bodies[i], ks[i] = nginxLine(r*perRound+i), fmt.Sprintf("client-%03d", i%keys)
		}
		ids := ps.publish(t, bodies, ks)
		for i, id := range ids {
			published[id] = publishedMessage{key: ks[i], seq: r*perRound + i}
		}
	}
	round(0)

	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	wopts := testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw, GatewaySecret: hex.EncodeToString(secret),
		Log: filepath.Join(env.Dir, "worker-pubsub.log")}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()

	specFile := connectorSpecFile(t, name, "pubsub",
		fmt.Sprintf("  pubsub: {project: %s, subscription: %s, endpoint: %q, ack_deadline: 10s}", ps.project, ps.sub, ps.endpoint),
		"batch: {max_messages: 500, max_wait: 1s, concurrency: 2}\n", "-reject=POISON")
	o, err := starter(t, queue, "apply", "-f", specFile)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	poison := `POISON 10.9.9.9 - - [27/Nov/2026:10:00:00 +0000] "GET /poison HTTP/1.1" 500 1 "-" "curl/8"`
	noteRecord("the Pub/Sub poison message", poison)
	var poisonID string
	rnd := rand.New(rand.NewPCG(2026, 12))
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(1500+rnd.IntN(3000)) * time.Millisecond)
		w.Kill()
		t.Logf("worker killed (%d of 3)", i+1)
		round(i + 1)
		if i == 0 {
			poisonID = ps.publish(t, []string{poison}, []string{"poison"})[0]
		}
		w, err = env.StartWorkerProcess(ctx, wopts)
		require.NoError(t, err)
	}
	require.Len(t, published, 5000)

	var dead []*pubsubpb.ReceivedMessage
	require.NoError(t, testenv.Eventually(4*time.Minute, func() error {
		seen := map[string]int{}
		for _, r := range recordLedger(t, name, "message_ids") {
			for _, id := range r.records {
				seen[id]++
			}
		}
		dead = append(dead, ps.pull(t, ps.dlqSub)...)
		st := queueStatusOf(t, pubsubKind.WorkflowID(name))
		if len(seen) < 5000 || len(dead) < 1 {
			return fmt.Errorf("%d of 5000 messages processed, %d dead-lettered; status %+v, last error %q", len(seen), len(dead), st.Counters, st.LastError)
		}
		return nil
	}))
	st := queueStatusOf(t, pubsubKind.WorkflowID(name))
	t.Logf("status: %+v", st.Counters)

	// Exactly once, ordering keys in order, one successful job per batch identity.
	runs := recordLedger(t, name, "message_ids")
	seen := map[string]int{}
	perBatch := map[string]int{}
	lastSeq := map[string]int{}
	for _, r := range runs {
		perBatch[r.batch]++
		for _, id := range r.records {
			seen[id]++
			m, ok := published[id]
			require.True(t, ok, "message %s was published (the poison never passes)", id)
			if last, ok := lastSeq[m.key]; ok && m.seq <= last {
				t.Errorf("ordering key %s: message %d processed after %d (job %s)", m.key, m.seq, last, r.job)
			}
			lastSeq[m.key] = m.seq
		}
	}
	assert.Len(t, seen, 5000, "every message processed")
	for id, c := range seen {
		if c != 1 {
			assert.Equal(t, 1, c, "message %s in exactly one successful task", id)
		}
	}
	for batch, c := range perBatch {
		assert.Equal(t, 1, c, "batch %s has one successful job", batch)
	}
	assert.Len(t, lastSeq, keys, "every ordering key")
	t.Logf("%d messages in %d successful jobs", len(seen), len(runs))

	// The dead-letter topic holds the poison message, after the
	// subscription's delivery attempts, and nothing else.
	time.Sleep(2 * time.Second)
	dead = append(dead, ps.pull(t, ps.dlqSub)...)
	require.Len(t, dead, 1, "only the poison message is dead-lettered")
	assert.Equal(t, poison, string(dead[0].GetMessage().GetData()))
	assert.Equal(t, poisonID, dead[0].GetMessage().GetMessageId())
	assert.Equal(t, "poison", dead[0].GetMessage().GetOrderingKey())

	// Nothing is left on the subscription: every message was acked.
	_, err = starter(t, queue, "delete", name)
	require.NoError(t, err)
	time.Sleep(11 * time.Second) // past the ack deadline of anything still leased
	left := ps.pull(t, ps.sub)
	assert.Empty(t, left, "the subscription ends empty")
	recordHistory(t, pubsubKind.WorkflowID(name), "pubsub-connector")
}

// publishedMessage is a published message's ordering key and its place
// in the publishing order.
type publishedMessage struct {
	key string
	seq int
}

// TestPubSubControlsStatusAndMistakes: the starter's verbs serve a Pub/Sub
// connector — list and describe show it, a pause ends the idle poller's
// wait and holds new messages on the subscription (no batch starts),
// resume drains them, each processed once; a subscription that does not
// exist fails the connector naming it, and a mistake in the source section
// is refused by apply with its field.
func TestPubSubControlsStatusAndMistakes(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const name = "e2e-pubsub-controls"
	ps := startPubSub(t, "e2e-controls", 5)
	queue := startWorker(t)
	send := func(from, n int) []string {
		bodies, keys := make([]string, n), make([]string, n)
		for i := range n {
			bodies[i] = nginxLine(from + i)
		}
		return ps.publish(t, bodies, keys)
	}
	source := fmt.Sprintf("  pubsub: {project: %s, subscription: %s, endpoint: %q, ack_deadline: 10s}", ps.project, ps.sub, ps.endpoint)
	specFile := connectorSpecFile(t, name, "pubsub", source, "batch: {max_messages: 50, max_wait: 1s}\n")
	o, err := starter(t, queue, "apply", "-f", specFile)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()
	id := pubsubKind.WorkflowID(name)
	acked := func(n int64) {
		t.Helper()
		require.NoError(t, testenv.Eventually(time.Minute, func() error {
			if st := queueStatusOf(t, id); st.Counters.Deleted < n {
				return fmt.Errorf("%d of %d acked (%s)", st.Counters.Deleted, n, st.LastError)
			}
			return nil
		}))
	}
	send(0, 10)
	acked(10)
	out, err := starter(t, queue, "list")
	require.NoError(t, err)
	assert.Regexp(t, name+`\s+pubsub\s+`, out)
	out, err = starter(t, queue, "describe", name)
	require.NoError(t, err)
	assert.Contains(t, out, "(workflow "+id+"), kind pubsub")
	assert.Contains(t, out, "subscription projects/connect-e2e/subscriptions/e2e-controls-sub")
	assert.Contains(t, out, "10 acked")

	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	// The pause cancels the idle poller's wait for messages; the
	// cancellation reaches the activity with its next heartbeat.
	require.NoError(t, testenv.Eventually(45*time.Second, func() error {
		if st := queueStatusOf(t, id); !st.Paused || st.InFlight > 0 {
			return fmt.Errorf("paused %v, %d batch(es) or waits in flight", st.Paused, st.InFlight)
		}
		return nil
	}))
	before := queueStatusOf(t, id).Counters
	send(10, 10)
	time.Sleep(5 * time.Second)
	assert.Equal(t, before, queueStatusOf(t, id).Counters, "paused: no batch starts")
	out, err = starter(t, queue, "describe", name)
	require.NoError(t, err)
	assert.Contains(t, out, "paused")
	_, err = starter(t, queue, "resume", name)
	require.NoError(t, err)
	acked(20)
	seen := map[string]int{}
	for _, r := range recordLedger(t, name, "message_ids") {
		for _, m := range r.records {
			seen[m]++
		}
	}
	assert.Len(t, seen, 20)
	for m, n := range seen {
		assert.Equal(t, 1, n, "message %s once", m)
	}

	// A subscription that does not exist: the connector fails, naming it.
	missing := connectorSpecFile(t, "e2e-pubsub-missing", "pubsub",
		fmt.Sprintf("  pubsub: {project: %s, subscription: nope, endpoint: %q}", ps.project, ps.endpoint), "")
	o, err = starter(t, queue, "apply", "-f", missing)
	require.NoError(t, err, o)
	err = env.Client.GetWorkflow(ctx, pubsubKind.WorkflowID("e2e-pubsub-missing"), "").Get(ctx, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "subscription projects/connect-e2e/subscriptions/nope does not exist")
	assert.Contains(t, err.Error(), "source.pubsub.subscription")

	// A mistake in the section: refused before any workflow starts.
	bad := connectorSpecFile(t, "e2e-pubsub-bad", "pubsub",
		fmt.Sprintf("  pubsub: {project: %s, subscripton: x, endpoint: %q}", ps.project, ps.endpoint), "")
	o, err = starter(t, queue, "apply", "-f", bad)
	require.Error(t, err)
	assert.Contains(t, o+err.Error(), "source.pubsub.subscripton")
}
