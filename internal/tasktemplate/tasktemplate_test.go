package tasktemplate

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../examples/jobs/logsummary.yaml")
	require.NoError(t, err)
	text, err := Render(string(raw), map[string]string{"MODULES_URL": "http://modules.test"})
	require.NoError(t, err)
	return text
}

func TestRenderNeedsEveryVariable(t *testing.T) {
	raw, err := os.ReadFile("../../examples/jobs/logsummary.yaml")
	require.NoError(t, err)
	_, err = Render(string(raw), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MODULES_URL")
}

func TestBuildInjectsTheBatch(t *testing.T) {
	job, err := Build(sample(t), Batch{
		Connector: "web logs", ID: "s3://bucket/2026/11/27/a.log", Attempt: 2,
		Inputs: []Input{
			{Target: "/inputs/a.log", URL: "http://gw.test/a"},
			{Target: "/inputs/small.jsonl", Inline: []byte(`{"status":200}`)},
		},
		Env:          map[string]string{"MODE": "strict"},
		QueueTimeout: 90 * time.Second, ExecutionTimeout: 30 * time.Second,
	})
	require.NoError(t, err)
	task := job.Task()
	require.Len(t, task.InputSources, 3, "the module plus two batch inputs")
	assert.Equal(t, models.StorageSourceURL, task.InputSources[1].Source.Type)
	assert.Equal(t, "http://gw.test/a", task.InputSources[1].Source.Params["URL"])
	assert.Equal(t, models.StorageSourceInline, task.InputSources[2].Source.Type)
	assert.Equal(t, models.EnvVarValue("strict"), task.Env["MODE"])
	assert.Equal(t, Key("web logs", "s3://bucket/2026/11/27/a.log", 2), job.Labels[LabelBatch])
	assert.Equal(t, "web-logs", job.Labels[LabelConnector])
	assert.Equal(t, "2", job.Meta[MetaAttempt])
	assert.Equal(t, "s3://bucket/2026/11/27/a.log", job.Meta[MetaBatch])
	assert.Equal(t, int64(90), task.Timeouts.QueueTimeout)
	assert.Equal(t, int64(30), task.Timeouts.ExecutionTimeout)
	assert.Equal(t, "_start", task.Engine.Params["Entrypoint"])
}

func TestBuildAlwaysSetsAQueueTimeout(t *testing.T) {
	job, err := Build(sample(t), Batch{Connector: "c", ID: "b"})
	require.NoError(t, err)
	q, e := Timeouts(job)
	assert.Equal(t, DefaultQueueTimeout, q)
	assert.Equal(t, time.Minute, e, "the template's execution timeout is kept")
}

func TestKeyDependsOnEveryPartOfTheIdentity(t *testing.T) {
	k := Key("c", "b", 1)
	assert.Equal(t, k, Key("c", "b", 1))
	assert.NotEqual(t, k, Key("c", "b", 2))
	assert.NotEqual(t, k, Key("c2", "b", 1))
	assert.NotEqual(t, Key("a", "bc", 1), Key("ab", "c", 1))
}

func TestBuildRefusesBadTemplatesNamingTheField(t *testing.T) {
	good := sample(t)
	cases := map[string]struct {
		template string
		batch    Batch
		field    string
		reason   string
	}{
		"unknown engine":       {strings.Replace(good, "Type: wasm", "Type: lambda", 1), Batch{}, "Tasks[0].Engine.Type", `unknown engine "lambda"`},
		"missing entry module": {strings.Replace(good, "        EntryModule: /app/logsummary.wasm\n", "", 1), Batch{}, "Tasks[0].Engine.Params.EntryModule", "missing"},
		"entry module not an input": {strings.Replace(good, "EntryModule: /app/logsummary.wasm", "EntryModule: /app/other.wasm", 1), Batch{},
			"Tasks[0].Engine.Params.EntryModule", "not the Target of any input source"},
		"daemon job":     {strings.Replace(good, "Type: batch", "Type: daemon", 1), Batch{}, "Type", "never finish"},
		"unknown field":  {good + "Bogus: 1\n", Batch{}, "template", "not a valid Bacalhau job"},
		"relative input": {good, Batch{Inputs: []Input{{Target: "inputs/a", URL: "http://x"}}}, "inputs[0].target", "absolute path"},
		"empty input":    {good, Batch{Inputs: []Input{{Target: "/inputs/a"}}}, "inputs[0]", "needs url, inline or s3"},
		"oversize job": {good, Batch{Inputs: []Input{{Target: "/inputs/big", Inline: make([]byte, 600<<10)}}},
			"job size", "over the 786432-byte limit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.batch.Connector, tc.batch.ID = "c", "b"
			_, err := Build(tc.template, tc.batch)
			require.Error(t, err)
			var terr *Error
			require.True(t, errors.As(err, &terr), "want *Error, got %T: %v", err, err)
			assert.Equal(t, tc.field, terr.Field)
			assert.Contains(t, terr.Reason, tc.reason)
		})
	}
}

func TestLabelValue(t *testing.T) {
	assert.Equal(t, "a-b_c.d", LabelValue("a b_c.d"))
	assert.Equal(t, "none", LabelValue("///"))
	assert.Len(t, LabelValue(strings.Repeat("x", 100)), 63)
}
