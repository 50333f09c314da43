package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

const exampleKafkaSpec = "../../examples/connectors/web-events.yaml"

func TestTheExampleKafkaSpecIsValid(t *testing.T) {
	r, err := LoadFile(exampleKafkaSpec)
	require.NoError(t, err)
	require.Nil(t, r.Cron)
	cfg := r.Kafka
	require.NotNil(t, cfg)
	assert.Equal(t, []string{"127.0.0.1:9092"}, cfg.Brokers)
	assert.Equal(t, "web-logs", cfg.Topic)
	assert.Equal(t, "bacalhau-connect-web-events", cfg.Group)
	assert.Equal(t, workflows.StartEarliest, cfg.Start)
	assert.Equal(t, 1000, cfg.MaxRecords)
	assert.Equal(t, int64(256<<10), cfg.MaxBytes)
	assert.Equal(t, 5*time.Second, cfg.MaxWait)
	assert.Equal(t, workflows.ModeInline, cfg.Mode)
	assert.True(t, cfg.Bisect)
	require.NoError(t, cfg.Validate())
}

func kafkaMinimal() string {
	return `name: web-events
kind: kafka
source:
  kafka:
    brokers: [127.0.0.1:9092]
    topic: web-logs
task:
  template: ../jobs/logsummary.yaml
  vars: {MODULES_URL: "http://m"}
`
}

func TestKafkaDefaults(t *testing.T) {
	r, err := Load(exampleKafkaSpec, []byte(kafkaMinimal()))
	require.NoError(t, err)
	cfg := r.Kafka
	assert.Equal(t, "bacalhau-connect-web-events", cfg.Group)
	assert.Equal(t, workflows.ModeInline, cfg.Mode)
	assert.Equal(t, int64(DefaultInlineMaxBytes), cfg.MaxBytes)
	assert.Equal(t, DefaultMaxRecords, cfg.MaxRecords)
	assert.Equal(t, DefaultMaxWait, cfg.MaxWait)
	assert.Equal(t, DefaultMaxInFlight, cfg.MaxInFlight)
	assert.Equal(t, workflows.StartEarliest, cfg.OnOffsetOutOfRange)
	assert.True(t, cfg.Bisect)
}

// malformedKafkaCases are the malformed specs TestMalformedKafkaSpecsAreRejectedNamingTheField refuses (the JSON
// Schema test checks them too).
func malformedKafkaCases(t *testing.T) []malformedCase {
	edit := func(old, new string) string {
		s := kafkaMinimal()
		require.Contains(t, s, old)
		return strings.Replace(s, old, new, 1)
	}
	cases := []malformedCase{
		{"no source", edit("source:\n  kafka:\n    brokers: [127.0.0.1:9092]\n    topic: web-logs\n", ""), "source.kafka", "required"},
		{"no brokers", edit("    brokers: [127.0.0.1:9092]\n", ""), "source.kafka.brokers", "required"},
		{"broker without port", edit("[127.0.0.1:9092]", "[kafka-1]"), "source.kafka.brokers", "not host:port"},
		{"no topic", edit("    topic: web-logs\n", ""), "source.kafka.topic", "required"},
		{"bad topic", edit("topic: web-logs", "topic: web logs!"), "source.kafka.topic", "not a valid topic"},
		{"unknown start", edit("    topic: web-logs\n", "    topic: web-logs\n    start: beginning\n"), "source.kafka.start", `unknown "beginning"`},
		{"timestamp without time", edit("    topic: web-logs\n", "    topic: web-logs\n    start: timestamp\n"), "source.kafka.start_time", "required"},
		{"offsets without offsets", edit("    topic: web-logs\n", "    topic: web-logs\n    start: offsets\n"), "source.kafka.start_offsets", "required"},
		{"negative offset", edit("    topic: web-logs\n", "    topic: web-logs\n    start: offsets\n    start_offsets: {0: -5}\n"), "source.kafka.start_offsets", ">= 0"},
		{"bad out of range policy", edit("    topic: web-logs\n", "    topic: web-logs\n    on_offset_out_of_range: latest\n"), "source.kafka.on_offset_out_of_range", "earliest"},
		{"password in spec", edit("    topic: web-logs\n", "    topic: web-logs\n    sasl: {mechanism: plain, username: u, password: p}\n"), "source.kafka.sasl.username", "secrets never go in a spec; set username_env"},
		{"sasl env not a name", edit("    topic: web-logs\n", "    topic: web-logs\n    sasl: {mechanism: plain, username_env: USER, password_env: \"hunter2!\"}\n"),
			"source.kafka.sasl.password_env", "environment variable"},
		{"unknown sasl mechanism", edit("    topic: web-logs\n", "    topic: web-logs\n    sasl: {mechanism: gssapi, username_env: U, password_env: P}\n"),
			"source.kafka.sasl.mechanism", `unknown "gssapi"`},
		{"inline too big", edit("task:\n", "batch: {max_bytes: 2MiB}\ntask:\n"), "batch.max_bytes", "use mode: staged"},
		{"staged without staging", edit("task:\n", "mode: staged\ntask:\n"), "staging.s3", "required with mode: staged"},
		{"unknown mode", edit("task:\n", "mode: streaming\ntask:\n"), "mode", `unknown "streaming"`},
		{"too many records", edit("task:\n", "batch: {max_records: 1000000}\ntask:\n"), "batch.max_records", "use 1 to 100000"},
		{"explicit zero records", edit("task:\n", "batch: {max_records: 0}\ntask:\n"), "batch.max_records", "0: use 1 to 100000 (leave it out for the default"},
		{"zero wait", edit("task:\n", "batch: {max_wait: 0s}\ntask:\n"), "batch.max_wait", "positive"},
		{"zero in flight", edit("task:\n", "batch: {max_in_flight: 0}\ntask:\n"), "batch.max_in_flight", "use 1 to 16"},
		{"too many in flight", edit("task:\n", "batch: {max_in_flight: 17}\ntask:\n"), "batch.max_in_flight", "use 1 to 16"},
		{"dead letter to itself", edit("task:\n", "on_failure: {dead_letter: {kafka: {topic: web-logs}}}\ntask:\n"), "on_failure.dead_letter.kafka.topic", "must differ"},
		{"empty dead letter", edit("task:\n", "on_failure: {dead_letter: {}}\ntask:\n"), "on_failure.dead_letter", "set kafka"},
		{"cron field on kafka", edit("task:\n", "schedule: \"@every 1m\"\ntask:\n"), "schedule", "only for kind cron"},
		{"s3 source on kafka", edit("task:\n", "overlap: skip\ntask:\n"), "overlap", "only for kind cron"},
		{"missing template", edit("  template: ../jobs/logsummary.yaml\n", ""), "task.template", "required"},
		{"negative record age", edit("task:\n", "retry: {max_record_age: -1h}\ntask:\n"), "retry.max_record_age", "positive"},
		{"tls cert without key", edit("    topic: web-logs\n", "    topic: web-logs\n    tls: {cert_file: c.pem}\n"), "source.kafka.tls", "go together"},
	}
	return cases
}

func TestMalformedKafkaSpecsAreRejectedNamingTheField(t *testing.T) {
	for _, tc := range malformedKafkaCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(exampleKafkaSpec, []byte(tc.spec))
			require.Error(t, err)
			var serr *Error
			require.ErrorAs(t, err, &serr)
			assert.True(t, serr.Has(tc.path), "want a problem at %s, got: %v", tc.path, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}
