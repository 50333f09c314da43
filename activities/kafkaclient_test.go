package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bacalhau-project/bacalhau/pkg/models"
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

// TestDeadLetterRecordsToS3AndTopic writes a range of records to both
// dead-letter kinds: a JSON document with records, error and jobs in S3,
// and the records with connect-* headers in a topic.
func TestDeadLetterRecordsToS3AndTopic(t *testing.T) {
	ctx := context.Background()
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{"src": 1, "dlq": 1}})
	require.NoError(t, err)
	defer k.Stop()
	store, err := devstack.StartS3(ctx, devstack.S3Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer store.Stop()
	s3c := store.Client()
	_, err = s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("dead")})
	require.NoError(t, err)
	c, err := k.Client(kgo.DefaultProduceTopic("src"))
	require.NoError(t, err)
	defer c.Close()
	for i := 0; i < 5; i++ {
		require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("record %d", i))}).FirstErr())
	}
	// The failed job's stderr is read from Bacalhau into the dead letter's
	// error; the workflow only passed the job's ID and a message.
	bac := &Bacalhau{jobs: &fakeJobs{execs: []*models.Execution{{ID: "e1",
		RunOutput: &models.RunCommandResult{ExitCode: 3, STDERR: "reading\ncannot process record: record 3\n"}}}}}
	kafka := NewKafka(nil, bac, func(context.Context, string, string) (*s3.Client, error) { return s3c, nil })
	read := KafkaRead{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "src", Partition: 0, From: 2, Until: 3, MaxWait: 2 * time.Second}

	res, err := kafka.DeadLetterRecords(ctx, DeadLetterRecordsInput{Read: read, Connector: "c1", Error: "exit 3", JobIDs: []string{"j-1"},
		S3: &S3Prefix{Bucket: "dead", Prefix: "kafka/"}})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Count)
	key := strings.TrimPrefix(res.Where, "s3://dead/")
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("dead"), Key: aws.String(key)})
	require.NoError(t, err)
	var doc struct {
		Error   string   `json:"error"`
		Jobs    []string `json:"jobs"`
		Records []struct {
			Offset int64  `json:"offset"`
			Value  string `json:"value"`
		} `json:"records"`
	}
	require.NoError(t, json.NewDecoder(obj.Body).Decode(&doc))
	assert.Equal(t, "exit 3; stderr of job j-1: reading\ncannot process record: record 3", doc.Error)
	assert.Equal(t, []string{"j-1"}, doc.Jobs)
	require.Len(t, doc.Records, 2)
	assert.Equal(t, int64(2), doc.Records[0].Offset)
	assert.Equal(t, "record 3", doc.Records[1].Value)

	res, err = kafka.DeadLetterRecords(ctx, DeadLetterRecordsInput{Read: read, Connector: "c1", Error: "exit 3", JobIDs: []string{"j-0", "j-1"}, Topic: "dlq"})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Count)
	b, err := ReadPartition(ctx, KafkaRead{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "dlq", MaxRecords: 10, MaxBytes: 1 << 20, MaxWait: 2 * time.Second, Until: -1})
	require.NoError(t, err)
	require.Equal(t, 2, b.Count)
	headers := map[string]string{}
	for _, h := range b.Records[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	assert.Equal(t, "src/0@2", headers[HeaderSource])
	assert.Equal(t, "exit 3; stderr of job j-1: reading\ncannot process record: record 3", headers[HeaderError])
	assert.Equal(t, "j-0,j-1", headers[HeaderJobs])
	assert.Equal(t, "k", string(b.Records[0].Key))

	// A range it cannot read to its end is never passed over.
	_, err = kafka.DeadLetterRecords(ctx, DeadLetterRecordsInput{Read: KafkaRead{KafkaCluster: KafkaCluster{Brokers: k.Brokers()}, Topic: "src",
		From: 3, Until: 9, MaxWait: time.Second}, Connector: "c1", Error: "x", Topic: "dlq"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "retrying")
}
