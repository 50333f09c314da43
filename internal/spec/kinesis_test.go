package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

const exampleKinesisSpec = "../../examples/connectors/web-clicks.yaml"

func TestTheExampleKinesisSpecIsValid(t *testing.T) {
	r, err := LoadFile(exampleKinesisSpec)
	require.NoError(t, err)
	cfg := r.Kinesis
	require.NotNil(t, cfg)
	assert.Equal(t, "web-clicks", cfg.Stream)
	assert.Equal(t, workflows.KinesisTrimHorizon, cfg.Start)
	assert.Equal(t, 500, cfg.MaxRecords)
	assert.Equal(t, int64(256<<10), cfg.MaxBytes)
	assert.Equal(t, 2*time.Second, cfg.MaxWait)
	assert.Equal(t, workflows.ModeInline, cfg.Mode)
	assert.True(t, cfg.Bisect)
	assert.Equal(t, 3, cfg.Retry.MaxAttempts)
	require.NoError(t, cfg.Validate())
}

func kinesisMinimal() string {
	return `name: clicks
kind: kinesis
source:
  kinesis: {stream: clicks}
task:
  template: ../jobs/logsummary.yaml
  vars: {MODULES_URL: "http://m"}
`
}

func TestKinesisDefaultsAndARN(t *testing.T) {
	r, err := Load(exampleKinesisSpec, []byte(kinesisMinimal()))
	require.NoError(t, err)
	cfg := r.Kinesis
	assert.Equal(t, workflows.KinesisTrimHorizon, cfg.Start)
	assert.Equal(t, DefaultMaxRecords, cfg.MaxRecords)
	assert.Equal(t, workflows.ModeInline, cfg.Mode)
	assert.True(t, cfg.Bisect)

	arn := "arn:aws:kinesis:eu-west-1:123456789012:stream/clicks"
	r, err = Load(exampleKinesisSpec, []byte(strings.Replace(kinesisMinimal(), "{stream: clicks}", `{stream: "`+arn+`", start: at_timestamp, start_time: 2026-11-27T10:00:00Z}`, 1)))
	require.NoError(t, err)
	assert.Equal(t, arn, r.Kinesis.StreamARN)
	assert.Equal(t, "clicks", r.Kinesis.Stream)
	assert.Equal(t, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), r.Kinesis.StartTime)
}

// malformedKinesisCases are the malformed specs TestMalformedKinesisSpecsAreRejectedNamingTheField refuses (the JSON
// Schema test checks them too).
func malformedKinesisCases(t *testing.T) []malformedCase {
	edit := func(old, new string) string {
		s := kinesisMinimal()
		require.Contains(t, s, old)
		return strings.Replace(s, old, new, 1)
	}
	cases := []malformedCase{
		{"no source", edit("source:\n  kinesis: {stream: clicks}\n", ""), "source.kinesis", "required"},
		{"no stream", edit("{stream: clicks}", "{region: us-east-1}"), "source.kinesis.stream", "required"},
		{"bad stream name", edit("{stream: clicks}", `{stream: "clicks stream!"}`), "source.kinesis.stream", "not a stream name"},
		{"bad stream arn", edit("{stream: clicks}", `{stream: "arn:aws:kinesis:clicks"}`), "source.kinesis.stream", "not a stream ARN"},
		{"bad endpoint", edit("{stream: clicks}", `{stream: clicks, endpoint: "localhost:4567"}`), "source.kinesis.endpoint", "use a URL"},
		{"unknown start", edit("{stream: clicks}", "{stream: clicks, start: earliest}"), "source.kinesis.start", "trim_horizon"},
		{"at_timestamp without a time", edit("{stream: clicks}", "{stream: clicks, start: at_timestamp}"), "source.kinesis.start_time", "required"},
		{"start_time with latest", edit("{stream: clicks}", "{stream: clicks, start: latest, start_time: 2026-11-27T10:00:00Z}"), "source.kinesis.start_time", "only with start: at_timestamp"},
		{"kafka dead letter", edit("task:\n", "on_failure: {dead_letter: {kafka: {topic: dlq}}}\ntask:\n"), "on_failure.dead_letter.kafka", "use s3"},
		{"empty dead letter", edit("task:\n", "on_failure: {dead_letter: {}}\ntask:\n"), "on_failure.dead_letter", "set s3"},
		{"inline too big", edit("task:\n", "batch: {max_bytes: 2MiB}\ntask:\n"), "batch.max_bytes", "mode: staged"},
		{"staged without staging", edit("task:\n", "mode: staged\ntask:\n"), "staging.s3", "required"},
		{"max_messages on kinesis", edit("task:\n", "batch: {max_messages: 5}\ntask:\n"), "batch.max_messages", "only for kind sqs or sns"},
		{"max_in_flight on kinesis", edit("task:\n", "batch: {max_in_flight: 2}\ntask:\n"), "batch.max_in_flight", "only for kind kafka"},
		{"kafka source on kinesis", edit("kinesis: {stream: clicks}", "kinesis: {stream: clicks}\n  kafka: {topic: t}"), "source.kafka", "only for kind kafka"},
		{"password in spec", edit("{stream: clicks}", "{stream: clicks, secret_key: x}"), "source.kinesis.secret_key", "unknown field"},
	}
	return cases
}

func TestMalformedKinesisSpecsAreRejectedNamingTheField(t *testing.T) {
	for _, tc := range malformedKinesisCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(exampleKinesisSpec, []byte(tc.spec))
			require.Error(t, err)
			var serr *Error
			require.ErrorAs(t, err, &serr)
			assert.True(t, serr.Has(tc.path), "want a problem at %s, got: %v", tc.path, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}
