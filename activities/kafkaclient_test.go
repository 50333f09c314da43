package activities

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// TestKafkaSASLByReference runs against kfake requiring SCRAM: the spec
// names environment variables; the worker's values authenticate.
func TestKafkaSASLByReference(t *testing.T) {
	ctx := context.Background()
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{"logs": 2},
		SASL: &devstack.KafkaUser{Mechanism: "SCRAM-SHA-256", User: "connect", Password: "s3cret-pass"}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic("logs"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: 1, Value: []byte("hello")}).FirstErr())

	t.Setenv("TEST_KAFKA_USER", "connect")
	t.Setenv("TEST_KAFKA_PASS", "s3cret-pass")
	t.Setenv("TEST_KAFKA_BAD_PASS", "wrong")
	cluster := KafkaCluster{Brokers: k.Brokers(), SASL: &KafkaSASL{Mechanism: "scram-sha-256", UsernameEnv: "TEST_KAFKA_USER", PasswordEnv: "TEST_KAFKA_PASS"}}
	clients := NewKafkaClients()
	defer clients.Close()
	kafka := NewKafka(clients, nil, nil)

	parts, err := kafka.Partitions(ctx, TopicRef{KafkaCluster: cluster, Topic: "logs"})
	require.NoError(t, err)
	assert.Equal(t, []int32{0, 1}, parts)
	b, err := ReadPartition(ctx, KafkaRead{KafkaCluster: cluster, Topic: "logs", Partition: 1, MaxRecords: 10, MaxBytes: 1 << 20, MaxWait: 2 * time.Second, Until: -1})
	require.NoError(t, err)
	assert.Equal(t, 1, b.Count)

	// A wrong password fails; it is not silently anonymous.
	bad := cluster
	bad.SASL = &KafkaSASL{Mechanism: "scram-sha-256", UsernameEnv: "TEST_KAFKA_USER", PasswordEnv: "TEST_KAFKA_BAD_PASS"}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = kafka.Partitions(tctx, TopicRef{KafkaCluster: bad, Topic: "logs"})
	require.Error(t, err)

	// An unset variable is named, and not retried.
	missing := cluster
	missing.SASL = &KafkaSASL{Mechanism: "scram-sha-256", UsernameEnv: "TEST_KAFKA_USER", PasswordEnv: "TEST_KAFKA_UNSET"}
	_, err = kafka.Partitions(ctx, TopicRef{KafkaCluster: missing, Topic: "logs"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "TEST_KAFKA_UNSET")
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.True(t, appErr.NonRetryable())
}

// TestIdleConsumersShareOnePoller: many partitions waiting for records on
// one topic cost one end-offset poller, and all wake when records come.
func TestIdleConsumersShareOnePoller(t *testing.T) {
	ctx := context.Background()
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{"idle": 8}})
	require.NoError(t, err)
	defer k.Stop()
	clients := NewKafkaClients()
	defer clients.Close()
	cluster := KafkaCluster{Brokers: k.Brokers()}

	const waiters = 64
	var wg sync.WaitGroup
	results := make([]bool, waiters)
	errs := make([]error, waiters)
	for i := 0; i < waiters; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i], errs[i] = clients.waitForEnd(ctx, cluster, "idle", int32(i%8), 0, 20*time.Second, func() {})
		}(i)
	}
	require.Eventually(t, func() bool {
		clients.mu.Lock()
		defer clients.mu.Unlock()
		return len(clients.watchers) == 1 && clients.watchers[cluster.key()+"|idle"].users == waiters
	}, 5*time.Second, 10*time.Millisecond, "one watcher for every waiter")
	assert.Len(t, clients.clients, 1, "one client for the cluster")

	c, err := k.Client(kgo.DefaultProduceTopic("idle"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for p := int32(0); p < 8; p++ {
		require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("x")}).FirstErr())
	}
	wg.Wait()
	for i := range results {
		require.NoError(t, errs[i])
		assert.True(t, results[i], "waiter %d woke", i)
	}
	// With nobody waiting, the poller stops.
	require.Eventually(t, func() bool {
		clients.mu.Lock()
		defer clients.mu.Unlock()
		return len(clients.watchers) == 0
	}, 5*time.Second, 10*time.Millisecond)
}

// TestPartitionsOfADeletedTopic: a deleted topic is a non-retryable,
// named error.
func TestPartitionsOfADeletedTopic(t *testing.T) {
	ctx := context.Background()
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{"gone": 1}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client()
	require.NoError(t, err)
	defer c.Close()
	_, err = kadm.NewClient(c).DeleteTopics(ctx, "gone")
	require.NoError(t, err)
	kafka := NewKafka(nil, nil, nil)
	_, err = kafka.Partitions(ctx, TopicRef{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "gone"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "topic gone not found")
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, "TopicNotFound", appErr.Type())
}
