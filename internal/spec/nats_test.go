package spec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/natssource"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

const exampleNATSSpec = "../../examples/connectors/web-nats.yaml"

func TestTheExampleNATSSpecIsValid(t *testing.T) {
	r, err := LoadFile(exampleNATSSpec)
	require.NoError(t, err)
	cfg := r.SourceStream
	require.NotNil(t, cfg)
	assert.Equal(t, workflows.SourceKind{Kind: "nats", ConnectorType: "NATSConnector", ConsumerType: "NATSStreamConsumer", IDPrefix: "nats-"}, cfg.SourceKind)
	var src natssource.Config
	require.NoError(t, json.Unmarshal(cfg.Source, &src))
	assert.Equal(t, natssource.Config{URL: "nats://127.0.0.1:4222", Stream: "WEB", Subjects: []string{"web.eu", "web.us"}, Start: "earliest"}, src)
	assert.Equal(t, "stream WEB at nats://127.0.0.1:4222 (subjects web.eu, web.us)", cfg.Describe)
	assert.Equal(t, workflows.StartEarliest, cfg.Start)
	assert.Equal(t, 500, cfg.MaxRecords)
	assert.Equal(t, 2*time.Second, cfg.MaxWait)
	assert.Equal(t, workflows.ModeInline, cfg.Mode)
	assert.True(t, cfg.Bisect)
	require.NoError(t, cfg.Validate())
}

func natsMinimal() string {
	return `name: events
kind: nats
source:
  nats: {url: "nats://n:4222", stream: WEB}
task:
  template: ../jobs/logsummary.yaml
  vars: {MODULES_URL: "http://m"}
`
}

func TestNATSDefaultsAndTimestamp(t *testing.T) {
	r, err := Load(exampleNATSSpec, []byte(natsMinimal()))
	require.NoError(t, err)
	cfg := r.SourceStream
	assert.Equal(t, workflows.StartEarliest, cfg.Start)
	assert.Equal(t, DefaultMaxRecords, cfg.MaxRecords)
	assert.JSONEq(t, `{"URL":"nats://n:4222","Stream":"WEB","Subjects":null}`, string(cfg.Source))

	r, err = Load(exampleNATSSpec, []byte(strings.Replace(natsMinimal(), "stream: WEB}", "stream: WEB, start: timestamp, start_time: 2026-12-06T10:00:00Z}", 1)))
	require.NoError(t, err)
	assert.Equal(t, workflows.StartTimestamp, r.SourceStream.Start)
	assert.Equal(t, time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), r.SourceStream.StartTime)
}

// malformedNATSCases are the malformed specs
// TestMalformedNATSSpecsAreRejectedNamingTheField refuses (the JSON Schema
// test checks them too).
func malformedNATSCases(t *testing.T) []malformedCase {
	edit := func(old, new string) string {
		s := natsMinimal()
		require.Contains(t, s, old)
		return strings.Replace(s, old, new, 1)
	}
	const src = `{url: "nats://n:4222", stream: WEB}`
	return []malformedCase{
		{"no nats source", edit("source:\n  nats: "+src+"\n", ""), "source.nats", "required"},
		{"no url", edit(src, "{stream: WEB}"), "source.nats.url", "required"},
		{"http url", edit(src, `{url: "http://n:4222", stream: WEB}`), "source.nats.url", "not a NATS URL"},
		{"credentials in url", edit(src, `{url: "nats://u:p@n:4222", stream: WEB}`), "source.nats.url", "credentials do not belong"},
		{"no stream", edit(src, `{url: "nats://n:4222"}`), "source.nats.stream", "required"},
		{"bad stream", edit(src, `{url: "nats://n:4222", stream: "web.logs"}`), "source.nats.stream", "not a stream name"},
		{"bad subject", edit(src, `{url: "nats://n:4222", stream: WEB, subjects: ["web eu"]}`), "source.nats.subjects", "not a subject"},
		{"subject twice", edit(src, `{url: "nats://n:4222", stream: WEB, subjects: [web.eu, web.eu]}`), "source.nats.subjects", "listed twice"},
		{"unknown start", edit(src, `{url: "nats://n:4222", stream: WEB, start: trim_horizon}`), "source.nats.start", "use earliest"},
		{"timestamp without a time", edit(src, `{url: "nats://n:4222", stream: WEB, start: timestamp}`), "source.nats.start_time", "required"},
		{"start_time with latest", edit(src, `{url: "nats://n:4222", stream: WEB, start: latest, start_time: 2026-12-06T10:00:00Z}`), "source.nats.start_time", "only with start: timestamp"},
		{"kafka dead letter", edit("task:\n", "on_failure: {dead_letter: {kafka: {topic: dlq}}}\ntask:\n"), "on_failure.dead_letter.kafka", "use s3"},
		{"max_in_flight on nats", edit("task:\n", "batch: {max_in_flight: 2}\ntask:\n"), "batch.max_in_flight", "only for kind kafka"},
		{"kinesis source on nats", edit("source:\n", "source:\n  kinesis: {stream: s}\n"), "source.kinesis", "only for kind kinesis"},
		{"password in spec", edit(src, `{url: "nats://n:4222", stream: WEB, password: x}`), "source.nats.password", "unknown field"},
	}
}

func TestMalformedNATSSpecsAreRejectedNamingTheField(t *testing.T) {
	for _, tc := range malformedNATSCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(exampleNATSSpec, []byte(tc.spec))
			require.Error(t, err)
			var serr *Error
			require.ErrorAs(t, err, &serr)
			assert.True(t, serr.Has(tc.path), "want a problem at %s, got: %v", tc.path, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}
