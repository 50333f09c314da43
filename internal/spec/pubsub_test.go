package spec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/pubsubsource"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

const examplePubSubSpec = "../../examples/connectors/web-pubsub.yaml"

func TestTheExamplePubSubSpecIsValid(t *testing.T) {
	r, err := LoadFile(examplePubSubSpec)
	require.NoError(t, err)
	cfg := r.SourceQueue
	require.NotNil(t, cfg)
	assert.Equal(t, workflows.SourceKind{Kind: "pubsub", ConnectorType: "PubSubConnector", IDPrefix: "pubsub-"}, cfg.SourceKind)
	var src pubsubsource.Config
	require.NoError(t, json.Unmarshal(cfg.Source, &src))
	assert.Equal(t, "connect-dev", src.Project)
	assert.Equal(t, "web-sub", src.Subscription)
	assert.Equal(t, "127.0.0.1:8085", src.Endpoint)
	assert.Equal(t, "subscription projects/connect-dev/subscriptions/web-sub", cfg.Describe)
	assert.Equal(t, 60*time.Second, cfg.Lease)
	assert.Equal(t, 100, cfg.MaxMessages)
	assert.Equal(t, 2*time.Second, cfg.MaxWait)
	assert.Equal(t, 2, cfg.Concurrency)
	require.NoError(t, cfg.Validate())
}

func pubsubMinimal() string {
	return `name: events
kind: pubsub
source:
  pubsub: {project: shop-prod, subscription: orders}
task:
  template: ../jobs/logsummary.yaml
  vars: {MODULES_URL: "http://m"}
`
}

func TestPubSubDefaults(t *testing.T) {
	r, err := Load(examplePubSubSpec, []byte(pubsubMinimal()))
	require.NoError(t, err)
	cfg := r.SourceQueue
	assert.Equal(t, pubsubsource.DefaultAckDeadline, cfg.Lease)
	assert.Equal(t, DefaultMaxMessages, cfg.MaxMessages)
	assert.Equal(t, DefaultQueueMaxWait, cfg.MaxWait)
	assert.Equal(t, DefaultQueueConcurrency, cfg.Concurrency)
	assert.JSONEq(t, `{"Project":"shop-prod","Subscription":"orders"}`, string(cfg.Source))

	r, err = Load(examplePubSubSpec, []byte(strings.Replace(pubsubMinimal(), "subscription: orders}",
		"subscription: projects/shop-prod/subscriptions/orders, ack_deadline: 5m}", 1)))
	require.NoError(t, err)
	assert.Equal(t, 5*time.Minute, r.SourceQueue.Lease)
	assert.Equal(t, "subscription projects/shop-prod/subscriptions/orders", r.SourceQueue.Describe)
}

// malformedPubSubCases are the malformed specs
// TestMalformedPubSubSpecsAreRejectedNamingTheField refuses (the JSON
// Schema test checks them too).
func malformedPubSubCases(t *testing.T) []malformedCase {
	edit := func(old, new string) string {
		s := pubsubMinimal()
		require.Contains(t, s, old)
		return strings.Replace(s, old, new, 1)
	}
	const src = `{project: shop-prod, subscription: orders}`
	return []malformedCase{
		{"no pubsub source", edit("source:\n  pubsub: "+src+"\n", ""), "source.pubsub", "required"},
		{"no project", edit(src, "{subscription: orders}"), "source.pubsub.project", "use the project ID"},
		{"bad project", edit(src, "{project: Shop_Prod, subscription: orders}"), "source.pubsub.project", "use the project ID"},
		{"no subscription", edit(src, "{project: shop-prod}"), "source.pubsub.subscription", "use the subscription's ID"},
		{"bad subscription", edit(src, `{project: shop-prod, subscription: "1 orders"}`), "source.pubsub.subscription", "use the subscription's ID"},
		{"subscription of another project", edit(src, "{project: shop-prod, subscription: projects/other-prj/subscriptions/orders}"), "source.pubsub.subscription", "names project other-prj"},
		{"bad emulator endpoint", edit(src, `{project: shop-prod, subscription: orders, endpoint: "http://localhost"}`), "source.pubsub.endpoint", "host:port"},
		{"ack deadline too short", edit(src, "{project: shop-prod, subscription: orders, ack_deadline: 5s}"), "source.pubsub.ack_deadline", "use 10s to 10m0s"},
		{"ack deadline not a duration", edit(src, "{project: shop-prod, subscription: orders, ack_deadline: soon}"), "source.pubsub.ack_deadline", "is not a duration"},
		{"credentials in spec", edit(src, "{project: shop-prod, subscription: orders, credentials: key.json}"), "source.pubsub.credentials", "unknown field"},
		{"retry on pubsub", edit("task:\n", "retry: {max_attempts: 3}\ntask:\n"), "retry", "dead-letter policy"},
		{"max_records on pubsub", edit("task:\n", "batch: {max_records: 10}\ntask:\n"), "batch.max_records", "only for kind kafka"},
		{"mode on pubsub", edit("task:\n", "mode: staged\ntask:\n"), "mode", "only for kind kafka"},
		{"too many messages", edit("task:\n", "batch: {max_messages: 5000}\ntask:\n"), "batch.max_messages", "use 1 to 2000"},
		{"sqs source on pubsub", edit("source:\n", "source:\n  sqs: {queue: q}\n"), "source.sqs", "only for kind sqs"},
	}
}

func TestMalformedPubSubSpecsAreRejectedNamingTheField(t *testing.T) {
	for _, tc := range malformedPubSubCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(examplePubSubSpec, []byte(tc.spec))
			require.Error(t, err)
			var serr *Error
			require.ErrorAs(t, err, &serr)
			assert.True(t, serr.Has(tc.path), "want a problem at %s, got: %v", tc.path, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}
