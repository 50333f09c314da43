package pubsubsource

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/source"
)

const (
	project  = "connect-dev"
	topic    = "projects/connect-dev/topics/jobs"
	dlqTopic = "projects/connect-dev/topics/jobs-dlq"
)

// setUp starts the stand-in with topic jobs, its dead-letter topic, and
// subscriptions jobs (ordering, ack deadline 10 s, dead letter after 5
// deliveries) and jobs-dlq; it returns a publisher with ordering on.
func setUp(ctx context.Context, t *testing.T) (*devstack.PubSub, *pubsub.Publisher) {
	t.Helper()
	ps, err := devstack.StartPubSub(devstack.PubSubOptions{})
	require.NoError(t, err)
	t.Cleanup(ps.Stop)
	c, err := ps.Client(ctx, project)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	for _, name := range []string{topic, dlqTopic} {
		_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name})
		require.NoError(t, err)
	}
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/connect-dev/subscriptions/jobs", Topic: topic, AckDeadlineSeconds: 10, EnableMessageOrdering: true,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlqTopic, MaxDeliveryAttempts: 5}})
	require.NoError(t, err)
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/connect-dev/subscriptions/jobs-dlq", Topic: dlqTopic, AckDeadlineSeconds: 10})
	require.NoError(t, err)
	pub := c.Publisher(topic)
	pub.EnableMessageOrdering = true
	t.Cleanup(pub.Stop)
	return ps, pub
}

func open(ctx context.Context, t *testing.T, ps *devstack.PubSub, sub string) *Source {
	t.Helper()
	s, err := Open(ctx, Config{Project: project, Subscription: sub, Endpoint: ps.Endpoint()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func handles(ms []source.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Handle)
	}
	return out
}

// TestOrderingKeysAckAndLeases publishes 20 messages on two ordering keys
// and receives them all, acking each batch: every message once, each key
// in order. A leased message is not delivered again until it is released;
// then it comes back with one more delivery.
func TestOrderingKeysAckAndLeases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ps, pub := setUp(ctx, t)
	for i := range 10 {
		for _, key := range []string{"k1", "k2"} {
			_, err := pub.Publish(ctx, &pubsub.Message{Data: fmt.Appendf(nil, "%s %d", key, i), OrderingKey: key}).Get(ctx)
			require.NoError(t, err)
		}
	}
	q := open(ctx, t, ps, "jobs")
	got := map[string][]string{}
	ids := map[string]bool{}
	for n := 0; n < 20; {
		ms, err := q.Receive(ctx, 10, time.Minute, 2*time.Second)
		require.NoError(t, err)
		require.NotEmpty(t, ms, "after %d of 20", n)
		for _, m := range ms {
			assert.False(t, ids[m.ID], "%s delivered once", m.ID)
			ids[m.ID] = true
			got[m.OrderingKey] = append(got[m.OrderingKey], string(m.Body))
			assert.Equal(t, 1, m.Deliveries)
			assert.False(t, m.Published.IsZero())
		}
		require.NoError(t, q.Ack(ctx, handles(ms)))
		n += len(ms)
	}
	for _, key := range []string{"k1", "k2"} {
		var want []string
		for i := range 10 {
			want = append(want, fmt.Sprintf("%s %d", key, i))
		}
		assert.Equal(t, want, got[key], "key %s in order", key)
	}
	none, err := q.Receive(ctx, 10, time.Minute, time.Second)
	require.NoError(t, err)
	assert.Empty(t, none, "every message acked")

	// A lease holds a message; a release gives it back at once.
	_, err = pub.Publish(ctx, &pubsub.Message{Data: []byte("slow"), OrderingKey: "k3"}).Get(ctx)
	require.NoError(t, err)
	first, err := q.Receive(ctx, 10, time.Minute, 2*time.Second)
	require.NoError(t, err)
	require.Len(t, first, 1)
	require.NoError(t, q.Extend(ctx, handles(first), 2*time.Minute))
	held, err := q.Receive(ctx, 10, time.Minute, time.Second)
	require.NoError(t, err)
	assert.Empty(t, held, "leased")
	require.NoError(t, q.Release(ctx, handles(first)))
	again, err := q.Receive(ctx, 10, time.Minute, 2*time.Second)
	require.NoError(t, err)
	require.Len(t, again, 1)
	assert.Equal(t, first[0].ID, again[0].ID)
	assert.Equal(t, 2, again[0].Deliveries)
	require.NoError(t, q.Ack(ctx, handles(again)))
}

// TestReleasedTooOftenGoesToTheDeadLetterTopic releases a message on every
// delivery: after the subscription's 5 deliveries it arrives on the
// dead-letter subscription, and nothing else does.
func TestReleasedTooOftenGoesToTheDeadLetterTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ps, pub := setUp(ctx, t)
	_, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("poison")}).Get(ctx)
	require.NoError(t, err)
	_, err = pub.Publish(ctx, &pubsub.Message{Data: []byte("healthy")}).Get(ctx)
	require.NoError(t, err)
	q, dlq := open(ctx, t, ps, "jobs"), open(ctx, t, ps, "projects/connect-dev/subscriptions/jobs-dlq")
	var deliveries []int
	for len(deliveries) < 5 {
		ms, err := q.Receive(ctx, 10, time.Minute, 2*time.Second)
		require.NoError(t, err)
		for _, m := range ms {
			if string(m.Body) == "healthy" {
				require.NoError(t, q.Ack(ctx, []string{m.Handle}))
				continue
			}
			deliveries = append(deliveries, m.Deliveries)
			require.NoError(t, q.Release(ctx, []string{m.Handle}))
		}
	}
	assert.Equal(t, []int{1, 2, 3, 4, 5}, deliveries)
	var dead []source.Message
	require.Eventually(t, func() bool {
		_, _ = q.Receive(ctx, 10, time.Minute, 100*time.Millisecond) // the delivery that forwards it
		ms, err := dlq.Receive(ctx, 10, time.Minute, 100*time.Millisecond)
		dead = append(dead, ms...)
		return err == nil && len(dead) > 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Len(t, dead, 1)
	assert.Equal(t, "poison", string(dead[0].Body))
	require.NoError(t, dlq.Ack(ctx, handles(dead)))
	rest, err := dlq.Receive(ctx, 10, time.Minute, time.Second)
	require.NoError(t, err)
	assert.Empty(t, rest, "only the poison message")
}

// TestOpenQueueNamesAMissingSubscription: the kind's opener checks the
// subscription, and a missing one stops the connector (non-retryable,
// named) instead of retrying for ever.
func TestOpenQueueNamesAMissingSubscription(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ps, _ := setUp(ctx, t)
	raw := fmt.Appendf(nil, `{"Project":%q,"Subscription":"nope","Endpoint":%q}`, project, ps.Endpoint())
	_, err := OpenQueue(ctx, raw)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.True(t, appErr.NonRetryable())
	assert.Equal(t, ErrTypeSubscriptionNotFound, appErr.Type())
	assert.Contains(t, err.Error(), "subscription projects/connect-dev/subscriptions/nope does not exist")

	q, err := OpenQueue(ctx, fmt.Appendf(nil, `{"Project":%q,"Subscription":"jobs","Endpoint":%q}`, project, ps.Endpoint()))
	require.NoError(t, err)
	require.NoError(t, q.(*Source).Close())
}

// TestConfigChecksAndDescribes: what the spec's source section may hold.
func TestConfigChecksAndDescribes(t *testing.T) {
	good := Config{Project: "shop-prod", Subscription: "orders"}
	assert.Empty(t, good.Check())
	assert.Equal(t, DefaultAckDeadline, good.Lease())
	assert.Equal(t, "subscription projects/shop-prod/subscriptions/orders", good.Describe())
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{Project: "x", Subscription: "orders"}, "project"},
		{Config{Project: "shop-prod", Subscription: "projects/a-b-c-d/subscriptions/orders"}, "subscription"},
		{Config{Project: "shop-prod", Subscription: "orders", Endpoint: "localhost"}, "endpoint"},
		{Config{Project: "shop-prod", Subscription: "orders", AckDeadline: &Duration{11 * time.Minute}}, "ack_deadline"},
	} {
		ps := tc.cfg.Check()
		require.Len(t, ps, 1, "%+v", tc.cfg)
		assert.Equal(t, tc.field, ps[0].Field)
	}
}
