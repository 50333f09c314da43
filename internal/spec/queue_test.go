package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

const exampleQueueSpec = "../../examples/connectors/web-queue.yaml"

func TestTheExampleQueueSpecIsValid(t *testing.T) {
	r, err := LoadFile(exampleQueueSpec)
	require.NoError(t, err)
	cfg := r.Queue
	require.NotNil(t, cfg)
	assert.Equal(t, workflows.KindSQS, cfg.Kind)
	assert.Equal(t, "web-queue", cfg.Queue)
	assert.Equal(t, 100, cfg.MaxMessages)
	assert.Equal(t, 2*time.Second, cfg.MaxWait)
	assert.Equal(t, 30*time.Second, cfg.VisibilityTimeout)
	assert.Equal(t, 2, cfg.Concurrency)
	require.NoError(t, cfg.Validate())
}

func queueMinimal() string {
	return `name: web-queue
kind: sqs
source:
  sqs: {queue: web-queue}
task:
  template: ../jobs/logsummary.yaml
  vars: {MODULES_URL: "http://m"}
`
}

func TestSNSDefaults(t *testing.T) {
	r, err := Load(exampleQueueSpec, []byte(`name: events
kind: sns
source:
  sns: {topic_arn: "arn:aws:sns:us-east-1:000000000000:events"}
task:
  template: ../jobs/logsummary.yaml
  vars: {MODULES_URL: "http://m"}
`))
	require.NoError(t, err)
	cfg := r.Queue
	assert.Equal(t, "connect-events", cfg.Queue, "managed queue named after the connector")
	require.NotNil(t, cfg.SNS)
	assert.True(t, cfg.SNS.RawDelivery)
	assert.Equal(t, DefaultMaxMessages, cfg.MaxMessages)
	assert.Equal(t, DefaultQueueConcurrency, cfg.Concurrency)
}

// malformedQueueCases are the malformed specs TestMalformedQueueSpecsAreRejectedNamingTheField refuses (the JSON
// Schema test checks them too).
func malformedQueueCases(t *testing.T) []malformedCase {
	edit := func(old, new string) string {
		s := queueMinimal()
		require.Contains(t, s, old)
		return strings.Replace(s, old, new, 1)
	}
	sns := func(src string) string {
		return edit("kind: sqs\nsource:\n  sqs: {queue: web-queue}\n", "kind: sns\nsource:\n  sns: "+src+"\n")
	}
	cases := []malformedCase{
		{"no source", edit("source:\n  sqs: {queue: web-queue}\n", ""), "source.sqs", "required"},
		{"no queue", edit("{queue: web-queue}", "{region: us-east-1}"), "source.sqs.queue", "required"},
		{"bad queue name", edit("{queue: web-queue}", "{queue: \"web queue!\"}"), "source.sqs.queue", "not a queue name"},
		{"bad endpoint", edit("{queue: web-queue}", "{queue: web-queue, endpoint: \"localhost:4566\"}"), "source.sqs.endpoint", "use a URL"},
		{"visibility too long", edit("{queue: web-queue}", "{queue: web-queue, visibility_timeout: 13h}"), "source.sqs.visibility_timeout", "1s to 12h"},
		{"too many messages", edit("task:\n", "batch: {max_messages: 20000}\ntask:\n"), "batch.max_messages", "use 1 to"},
		{"explicit zero messages", edit("task:\n", "batch: {max_messages: 0}\ntask:\n"), "batch.max_messages", "0: use 1 to 2000 (leave it out for the default, 10)"},
		{"explicit zero concurrency", edit("task:\n", "batch: {concurrency: 0}\ntask:\n"), "batch.concurrency", "0: use 1 to"},
		{"too much concurrency", edit("task:\n", "batch: {concurrency: 500}\ntask:\n"), "batch.concurrency", "use 1 to"},
		{"retry on a queue", edit("task:\n", "retry: {max_attempts: 5}\ntask:\n"), "retry", "redrive policy"},
		{"kafka field on sqs", edit("task:\n", "mode: staged\ntask:\n"), "mode", "only for kind kafka"},
		{"sqs source on sns", edit("kind: sqs", "kind: sns"), "source.sqs", "only for kind sqs"},
		{"bad topic arn", sns("{topic_arn: events}"), "source.sns.topic_arn", "topic ARN"},
		{"bad filter policy", sns(`{topic_arn: "arn:aws:sns:us-east-1:000000000000:events", filter_policy: "{type: [order]"}`), "source.sns.filter_policy", "not valid JSON"},
		{"envelope with raw delivery", sns(`{topic_arn: "arn:aws:sns:us-east-1:000000000000:events", envelope: true}`), "source.sns.envelope", "raw_delivery: false"},
		{"max_messages on kafka", strings.Replace(kafkaMinimal(), "task:\n", "batch: {max_messages: 5}\ntask:\n", 1), "batch.max_messages", "only for kind sqs or sns"},
	}
	return cases
}

func TestMalformedQueueSpecsAreRejectedNamingTheField(t *testing.T) {
	for _, tc := range malformedQueueCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(exampleQueueSpec, []byte(tc.spec))
			require.Error(t, err)
			var serr *Error
			require.ErrorAs(t, err, &serr)
			assert.True(t, serr.Has(tc.path), "want a problem at %s, got: %v", tc.path, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestTheExampleSNSSpecIsValid(t *testing.T) {
	r, err := LoadFile("../../examples/connectors/web-topic.yaml")
	require.NoError(t, err)
	cfg := r.Queue
	require.NotNil(t, cfg)
	require.NotNil(t, cfg.SNS)
	assert.Equal(t, "arn:aws:sns:us-east-1:000000000000:web-events", cfg.SNS.TopicARN)
	assert.Equal(t, "connect-web-topic", cfg.Queue)
	require.NoError(t, cfg.Validate())
}
