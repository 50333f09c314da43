package activities

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// TestWatchPartitions runs the idle watcher against kfake: it mirrors the
// idle checkpoints into the group, returns the idle partitions that got
// records past their checkpoint (and only those), and says when the topic
// has more partitions than the connector knows.
func TestWatchPartitions(t *testing.T) {
	ctx := context.Background()
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{"watched": 3}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic("watched"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for p := int32(0); p < 3; p++ {
		require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("old")}).FirstErr())
	}
	clients := NewKafkaClients()
	defer clients.Close()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	kafka := NewKafka(clients, nil, nil)
	env.RegisterActivity(kafka)
	ref := TopicRef{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "watched"}

	// Partitions 0 and 1 are idle at offset 1 (their record processed);
	// a record arrives at partition 1 while the watch runs.
	go func() {
		time.Sleep(500 * time.Millisecond)
		_ = c.ProduceSync(ctx, &kgo.Record{Partition: 1, Value: []byte("new")}).FirstErr()
	}()
	started := time.Now()
	v, err := env.ExecuteActivity(kafka.WatchPartitions, WatchInput{TopicRef: ref, Group: "watchers",
		Idle: []PartitionAt{{Partition: 0, From: 1}, {Partition: 1, From: 1}}, Known: 3, Timeout: 20 * time.Second})
	require.NoError(t, err)
	var got Watched
	require.NoError(t, v.Get(&got))
	assert.Equal(t, Watched{Ready: []int32{1}}, got, "only the partition with a new record")
	assert.Less(t, time.Since(started), 5*time.Second, "woken by the record, not the timeout")

	offs, err := kadm.NewClient(c).FetchOffsets(ctx, "watchers")
	require.NoError(t, err)
	for _, p := range []int32{0, 1} {
		o, ok := offs.Lookup("watched", p)
		require.True(t, ok, "partition %d committed", p)
		assert.Equal(t, int64(1), o.At, "the idle checkpoint of partition %d is mirrored", p)
	}

	// A connector that knows 2 partitions hears of the third at once.
	v, err = env.ExecuteActivity(kafka.WatchPartitions, WatchInput{TopicRef: ref, Known: 2, Timeout: 20 * time.Second})
	require.NoError(t, err)
	got = Watched{}
	require.NoError(t, v.Get(&got))
	assert.Equal(t, Watched{Partitions: 3}, got)

	// Nothing new: the watch times out empty.
	v, err = env.ExecuteActivity(kafka.WatchPartitions, WatchInput{TopicRef: ref, Idle: []PartitionAt{{Partition: 2, From: 1}}, Known: 3, Timeout: time.Second})
	require.NoError(t, err)
	got = Watched{}
	require.NoError(t, v.Get(&got))
	assert.Equal(t, Watched{}, got)
}
