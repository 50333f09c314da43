package devstack

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPubSubStandIn drives the stand-in through the real Go client over
// gRPC: a subscription with message ordering, a 10 s ack deadline and a
// dead-letter policy; 30 messages on three ordering keys received by a
// streaming pull in key order and gone once acked; a message pulled and
// nacked on every delivery moved to the dead-letter topic after 5 attempts.
func TestPubSubStandIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps, err := StartPubSub(PubSubOptions{})
	require.NoError(t, err)
	t.Cleanup(ps.Stop)
	c, err := ps.Client(ctx, "connect-dev")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	const (
		topic    = "projects/connect-dev/topics/jobs"
		dlqTopic = "projects/connect-dev/topics/jobs-dlq"
		sub      = "projects/connect-dev/subscriptions/jobs"
		dlqSub   = "projects/connect-dev/subscriptions/jobs-dlq"
	)
	for _, name := range []string{topic, dlqTopic} {
		_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name})
		require.NoError(t, err)
	}
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: sub, Topic: topic, AckDeadlineSeconds: 10, EnableMessageOrdering: true,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlqTopic, MaxDeliveryAttempts: 5},
	})
	require.NoError(t, err)
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: dlqSub, Topic: dlqTopic, AckDeadlineSeconds: 10})
	require.NoError(t, err)
	got, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: sub})
	require.NoError(t, err)
	assert.Equal(t, int32(10), got.AckDeadlineSeconds)
	assert.True(t, got.EnableMessageOrdering)
	assert.Equal(t, dlqTopic, got.GetDeadLetterPolicy().GetDeadLetterTopic())
	assert.Equal(t, int32(5), got.GetDeadLetterPolicy().GetMaxDeliveryAttempts())

	// 30 messages, 10 on each of three ordering keys, interleaved.
	pub := c.Publisher(topic)
	pub.EnableMessageOrdering = true
	defer pub.Stop()
	keys := []string{"key-0", "key-1", "key-2"}
	want := map[string][]string{}
	var results []*pubsub.PublishResult
	for n := 1; n <= 10; n++ {
		for _, k := range keys {
			body := fmt.Sprintf("%s %d", k, n)
			want[k] = append(want[k], body)
			results = append(results, pub.Publish(ctx, &pubsub.Message{Data: []byte(body), OrderingKey: k}))
		}
	}
	var ids []string
	for _, r := range results {
		id, err := r.Get(ctx)
		require.NoError(t, err)
		ids = append(ids, id)
	}

	// A streaming pull gets each key's messages in publish order; each is acked.
	var mu sync.Mutex
	received := map[string][]string{}
	rctx, rcancel := context.WithCancel(ctx)
	err = c.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		mu.Lock()
		defer mu.Unlock()
		received[m.OrderingKey] = append(received[m.OrderingKey], string(m.Data))
		m.Ack()
		if len(received["key-0"])+len(received["key-1"])+len(received["key-2"]) == 30 {
			rcancel()
		}
	})
	rcancel()
	require.NoError(t, err)
	assert.Equal(t, want, received, "per-key order")
	// The server counts one ack for each, and a second receive gets nothing.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, id := range ids {
			assert.Equal(c, 1, ps.srv.Message(id).Acks, "acks of %s", id)
		}
	}, 5*time.Second, 50*time.Millisecond)
	assert.Empty(t, receiveFor(ctx, t, c.Subscriber(sub), 2*time.Second, nil), "nothing left after the acks")

	// A poison message, pulled and nacked (ack deadline 0) on every
	// delivery: delivery attempts 1..5, then it moves to the dead-letter
	// topic. Unary Pull and ModifyAckDeadline make each step explicit.
	id, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("poison")}).Get(ctx)
	require.NoError(t, err)
	admin := c.SubscriptionAdminClient
	var attempts []int32
	for len(attempts) < 5 {
		for _, m := range pull(ctx, t, admin, sub) {
			require.Equal(t, "poison", string(m.Message.Data))
			attempts = append(attempts, m.DeliveryAttempt)
			if len(attempts) == 1 {
				// An extended deadline keeps the message leased: nothing to pull.
				require.NoError(t, admin.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: []string{m.AckId}, AckDeadlineSeconds: 60}))
				assert.Empty(t, pull(ctx, t, admin, sub), "leased for 60 s")
			}
			require.NoError(t, admin.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: []string{m.AckId}, AckDeadlineSeconds: 0}))
		}
	}
	assert.Equal(t, []int32{1, 2, 3, 4, 5}, attempts, "delivery attempts")
	var dead []*pubsubpb.ReceivedMessage
	for len(dead) == 0 {
		dead = pull(ctx, t, admin, dlqSub)
	}
	require.Len(t, dead, 1)
	assert.Equal(t, "poison", string(dead[0].Message.Data))
	require.NoError(t, admin.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: dlqSub, AckIds: []string{dead[0].AckId}}))
	assert.Empty(t, pull(ctx, t, admin, sub), "gone from the subscription")
	assert.Empty(t, pull(ctx, t, admin, dlqSub), "acked on the dead-letter subscription")
	// The server saw 5 deliveries and the nacks as modacks to 0 s.
	pm := ps.srv.Message(id)
	assert.Equal(t, 5, pm.Deliveries)
	var nacks int
	for _, m := range pm.Modacks {
		if m.AckDeadline == 0 {
			nacks++
		}
	}
	assert.Equal(t, 5, nacks)
	t.Logf("dead letter: id %s (source %s), attributes %v, delivery attempt %d", dead[0].Message.MessageId, id, dead[0].Message.Attributes, dead[0].DeliveryAttempt)
}

// pull is one unary Pull of up to 10 messages; pstest answers an empty
// subscription after 0.5 s.
func pull(ctx context.Context, t *testing.T, admin *pubsubapi.SubscriptionAdminClient, sub string) []*pubsubpb.ReceivedMessage {
	t.Helper()
	res, err := admin.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 10})
	require.NoError(t, err)
	return res.ReceivedMessages
}

// receiveFor receives from s for d and returns what came; each message is
// passed to handle (acked when handle is nil).
func receiveFor(ctx context.Context, t *testing.T, s *pubsub.Subscriber, d time.Duration, handle func(*pubsub.Message)) []*pubsub.Message {
	t.Helper()
	var mu sync.Mutex
	var got []*pubsub.Message
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := s.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		if handle == nil {
			m.Ack()
		} else {
			handle(m)
		}
	})
	require.NoError(t, err)
	return got
}
