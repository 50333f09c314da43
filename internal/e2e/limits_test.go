package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// TestKafkaTenMiBRecordIsStagedOrDeadLettered puts a 10 MiB record between
// two small ones. A staged connector processes all three (the record goes
// to Bacalhau through an S3 object); an inline connector cannot put it in a
// job (Bacalhau's NATS limit), so it processes the small ones and sends the
// big one, whole, to its dead-letter topic with an error saying why. Neither
// hangs, and the record never reaches a workflow history.
func TestKafkaTenMiBRecordIsStagedOrDeadLettered(t *testing.T) {
	ctx := context.Background()
	const topic, dlq, bucket = "huge-events", "huge-dlq", "e2e-huge-stage"
	const bigBytes = 10 << 20
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{})
	require.NoError(t, err)
	defer k.Stop()
	createBucket(t, bucket)

	// Kafka's default max.message.bytes is 1 MB: topics that carry such
	// records say so, and so does the producer.
	c, err := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(16<<20))
	require.NoError(t, err)
	defer c.Close()
	big := strconv.Itoa(16 << 20)
	for _, name := range []string{topic, dlq} {
		resp, err := kadm.NewClient(c).CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": &big}, name)
		require.NoError(t, err)
		require.NoError(t, resp.Err)
	}
	agent := strings.Repeat("huge-agent-", bigBytes/11+1)[:bigBytes]
	hugeLine := `10.0.0.9 - - [27/Nov/2026:10:00:00 +0000] "GET /huge HTTP/1.1" 200 10485760 "-" "` + agent + `"`
	produce(t, c, topic, 0, nginxLine(1), hugeLine, nginxLine(2))
	noteRecord("the 10 MiB record", agent[:64]) // never in any history

	queue := startWorker(t)
	inline, staged := "e2e-huge-inline", "e2e-huge-staged"
	defer applyConnectors(t, queue, map[string]string{
		inline: kafkaSpecFile(t, inline, k.Brokers()[0], topic, `batch: {max_records: 10, max_wait: 1s}
retry: {max_attempts: 2, initial_interval: 1s}
on_failure:
  dead_letter: {kafka: {topic: `+dlq+`}}
`),
		staged: kafkaSpecFile(t, staged, k.Brokers()[0], topic, fmt.Sprintf(`mode: staged
staging:
  s3: {bucket: %s, prefix: batches/, endpoint: "%s", region: %s}
batch: {max_records: 10, max_wait: 1s}
`, bucket, env.S3.Endpoint(), env.S3.Region())),
	})()

	// Staged: all three records processed once.
	waitCheckpoints(t, staged, topic, map[int32]int64{0: 3}, 3*time.Minute)
	seen, _ := kafkaLedger(t, staged)
	assert.Equal(t, map[string]int{"0:0": 1, "0:1": 1, "0:2": 1}, seen, "the staged connector processed the 10 MiB record")

	// Inline: the small ones processed, the big one dead-lettered whole.
	waitCheckpoints(t, inline, topic, map[int32]int64{0: 3}, 3*time.Minute)
	seen, _ = kafkaLedger(t, inline)
	assert.Equal(t, map[string]int{"0:0": 1, "0:2": 1}, seen, "the inline connector processed the small records")
	dead := deadLetterRecords(t, k, dlq)
	require.Len(t, dead, 1)
	assert.Equal(t, hugeLine, string(dead[0].Value), "the dead letter holds the whole record")
	headers := recordHeaders(dead[0])
	assert.Equal(t, topic+"/0@1", headers[activities.HeaderSource])
	assert.Contains(t, headers[activities.HeaderError], "do not fit in one inline job")
	assert.Contains(t, headers[activities.HeaderError], "use mode: staged")
	st := connectorStatus(t, queue, inline)
	assert.Equal(t, int64(1), st.DeadLettered)
}
