package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// applicationError unwraps the ApplicationError of a failed workflow (the
// outermost one: RunTask's own or, when it failed fast, the activity's).
func applicationErrors(err error) []*temporal.ApplicationError {
	var out []*temporal.ApplicationError
	for err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			break
		}
		out = append(out, appErr)
		err = appErr.Unwrap()
	}
	return out
}

func errorTypes(err error) []string {
	var types []string
	for _, a := range applicationErrors(err) {
		types = append(types, a.Type())
	}
	return types
}

func TestInvalidTemplatesAreRefusedBeforeSubmission(t *testing.T) {
	queue := startWorker(t)
	good := sampleTemplate(t)
	cases := []struct {
		name     string
		template string
		inputs   []tasktemplate.Input
		want     []string // substrings of the error
	}{
		{
			name:     "unknown engine",
			template: strings.Replace(good, "Type: wasm", "Type: wasmtime", 1),
			want:     []string{"Tasks[0].Engine.Type", `unknown engine "wasmtime"`},
		},
		{
			name:     "missing entry module",
			template: strings.Replace(good, "EntryModule: /app/logsummary.wasm", "EntryModule: /app/missing.wasm", 1),
			want:     []string{"Tasks[0].Engine.Params.EntryModule", `"/app/missing.wasm" is not the Target of any input source`},
		},
		{
			name:     "oversize inline input",
			template: good,
			inputs:   []tasktemplate.Input{{Target: "/inputs/big.log", Inline: []byte(strings.Repeat("x", 900<<10))}},
			want:     []string{"job size", "over the 786432-byte limit"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			connector := "e2e-invalid-" + string(rune('a'+i))
			run := startRunTask(t, queue, workflows.RunTaskInput{
				Connector: connector, BatchID: "b1", Template: tc.template, Inputs: tc.inputs,
			})
			err := run.Get(context.Background(), nil)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Contains(t, errorTypes(err), activities.ErrTypeInvalidTask)
			assert.Empty(t, jobsWithLabel(t, tasktemplate.LabelConnector+"="+connector), "nothing may reach Bacalhau")
			// Refused on the first attempt: the task policy does not retry invalid tasks.
			var st workflows.RunTaskStatus
			v, qerr := env.Client.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), workflows.QueryRunTaskStatus)
			require.NoError(t, qerr)
			require.NoError(t, v.Get(&st))
			assert.Equal(t, 1, st.Attempt)
		})
	}
}

func TestNonZeroExitFailsWithStderrAndRetriesAsThePolicySays(t *testing.T) {
	queue := startWorker(t)
	// No inputs: the sample task exits 2 with "no input files under /inputs".
	// A one-off run asks for its output (as starter run-task does): the
	// failure quotes the last stderr line.
	run := startRunTask(t, queue, workflows.RunTaskInput{
		Connector: "e2e-exit", BatchID: "b1", Template: sampleTemplate(t),
		QueueTimeout: time.Minute, ExecutionTimeout: time.Minute,
		Retry:  workflows.TaskRetryPolicy{MaxAttempts: 2, InitialInterval: 500 * time.Millisecond},
		Output: true,
	})
	err := run.Get(context.Background(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "failed after 2 attempt(s)")
	assert.Contains(t, err.Error(), "no input files under /inputs")
	types := errorTypes(err)
	assert.Contains(t, types, workflows.ErrTypeTaskRunFailed)
	assert.Contains(t, types, activities.ErrTypeTaskFailed)

	var failure activities.TaskFailure
	for _, a := range applicationErrors(err) {
		if a.Type() == activities.ErrTypeTaskFailed {
			require.NoError(t, a.Details(&failure))
		}
	}
	assert.Equal(t, 2, failure.ExitCode)
	assert.Positive(t, failure.StderrBytes, "the activity's failure gives stderr's size, not its text")
	assert.Contains(t, err.Error(), "bacalhau job logs "+failure.JobID)

	// One job per attempt, no more.
	assert.Len(t, jobsWithLabel(t, tasktemplate.LabelConnector+"=e2e-exit"), 2)
	for attempt := 1; attempt <= 2; attempt++ {
		assert.Len(t, jobsWithLabel(t, tasktemplate.LabelBatch+"="+tasktemplate.Key("e2e-exit", "b1", attempt)), 1)
	}
	recordHistory(t, run.GetID(), "runtask-failed-after-retries")
}
