package activities

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// TestReadPartition runs against kfake, a real Kafka-protocol broker.
func TestReadPartition(t *testing.T) {
	ctx := context.Background()
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{"logs": 2}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic("logs"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for i := 0; i < 50; i++ {
		require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: 0, Key: []byte("k"), Value: []byte(fmt.Sprintf("line %02d", i))}).FirstErr())
	}
	require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: 1, Value: []byte{0xff, 0xfe}}).FirstErr())

	read := func(from int64, maxRecords int, maxBytes int64, wait time.Duration, policy string) (*KafkaBatch, error) {
		return ReadPartition(ctx, KafkaRead{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "logs", Partition: 0, From: from,
			MaxRecords: maxRecords, MaxBytes: maxBytes, MaxWait: wait, OnOutOfRange: policy, Until: -1})
	}

	b, err := read(0, 20, 1<<20, 2*time.Second, "earliest")
	require.NoError(t, err)
	assert.Equal(t, int64(0), b.First)
	assert.Equal(t, int64(19), b.Last)
	assert.Equal(t, 20, b.Count)
	lines := decodeLines(t, b.Lines)
	require.Len(t, lines, 20)
	for i, l := range lines {
		assert.Equal(t, int64(i), l.Offset, "offset order")
		assert.Equal(t, fmt.Sprintf("line %02d", i), *l.Value)
	}
	assert.Equal(t, int64(len(b.Lines)), b.Bytes)

	// The byte limit cuts the batch; the next read starts right after it.
	one := int64(len(b.Lines) / 20)
	b, err = read(20, 1000, 3*one+one/2, 2*time.Second, "earliest")
	require.NoError(t, err)
	assert.Equal(t, 3, b.Count)
	assert.Equal(t, int64(22), b.Last)

	// A retried batch re-reads exactly its first offsets.
	b, err = read(20, 1000, 1<<20, 2*time.Second, "earliest")
	require.NoError(t, err)
	assert.Equal(t, int64(49), b.Last)
	b, err = ReadPartition(ctx, KafkaRead{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "logs", Partition: 0, From: 20,
		MaxRecords: 1000, MaxBytes: 1 << 20, MaxWait: 2 * time.Second, Until: 24})
	require.NoError(t, err)
	assert.Equal(t, int64(24), b.Last)
	assert.Equal(t, 5, b.Count)

	// Nothing new: an empty batch after MaxWait.
	start := time.Now()
	b, err = read(50, 10, 1<<20, 300*time.Millisecond, "earliest")
	require.NoError(t, err)
	assert.Zero(t, b.Count)
	assert.Less(t, time.Since(start), 3*time.Second)

	// A record bigger than MaxBytes travels alone.
	b, err = read(0, 10, 5, time.Second, "earliest")
	require.NoError(t, err)
	assert.Equal(t, 1, b.Count)
	assert.True(t, b.Oversize)

	// Retention deleted offsets 0-29.
	_, err = kadm.NewClient(c).DeleteRecords(ctx, kadm.Offsets{"logs": {0: kadm.Offset{Topic: "logs", Partition: 0, At: 30}}})
	require.NoError(t, err)
	b, err = read(10, 5, 1<<20, 2*time.Second, "earliest")
	require.NoError(t, err)
	assert.Equal(t, int64(30), b.First, "earliest resumes at the oldest retained record")
	assert.Equal(t, int64(20), b.Skipped)
	_, err = read(10, 5, 1<<20, 2*time.Second, "fail")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "on_offset_out_of_range is fail")

	// Binary values travel as base64.
	b, err = ReadPartition(ctx, KafkaRead{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "logs", Partition: 1, MaxRecords: 1, MaxBytes: 1 << 20, MaxWait: 2 * time.Second, Until: -1})
	require.NoError(t, err)
	assert.Contains(t, string(b.Lines), `"value_base64":"//4="`)
}

func decodeLines(t *testing.T, raw []byte) []kafkaLine {
	t.Helper()
	var out []kafkaLine
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var l kafkaLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		out = append(out, l)
	}
	return out
}
