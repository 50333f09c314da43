package devstack

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// countedWorkflow spends a known set of billable actions: one activity,
// one timer, then it waits for a signal; it answers a query.
func countedWorkflow(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, "state", func() (string, error) { return "waiting", nil }); err != nil {
		return err
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	if err := workflow.ExecuteActivity(actx, countedActivity).Get(ctx, nil); err != nil {
		return err
	}
	if err := workflow.Sleep(ctx, time.Millisecond); err != nil {
		return err
	}
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, nil)
	return nil
}

func countedActivity(context.Context) error { return nil }

// TestTemporalCountsActions shows the dev server's action counter is what
// the actions benchmark reads: a workflow start, an activity, a timer, a
// signal and a query each count once, by type, in the namespace.
func TestTemporalCountsActions(t *testing.T) {
	ctx := context.Background()
	bin, err := filepath.Abs("../../bin/temporal")
	require.NoError(t, err)
	tmp, err := StartTemporal(ctx, TemporalOptions{BinPath: bin, Headless: true, Metrics: true})
	require.NoError(t, err)
	defer func() { assert.NoError(t, tmp.Stop()) }()
	require.NotEmpty(t, tmp.MetricsURL())

	c := tmp.Client()
	w := worker.New(c, "counted", worker.Options{})
	w.RegisterWorkflow(countedWorkflow)
	w.RegisterActivity(countedActivity)
	require.NoError(t, w.Start())
	defer w.Stop()

	before, err := tmp.Actions(ctx)
	require.NoError(t, err)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "counted", TaskQueue: "counted"}, countedWorkflow)
	require.NoError(t, err)
	queries := int64(0) // the queries this test sends
	// Waiting for the signal: the activity and the timer are done.
	require.Eventually(t, func() bool {
		queries++
		v, err := c.QueryWorkflow(ctx, "counted", "", "state")
		var s string
		return err == nil && v.Get(&s) == nil && s == "waiting" && historyHasTimerFired(ctx, c)
	}, 20*time.Second, 200*time.Millisecond)
	require.NoError(t, c.SignalWorkflow(ctx, "counted", "", "go", nil))
	require.NoError(t, run.Get(ctx, nil))

	want := Actions{"grpc_StartWorkflowExecution": 1, "command_ScheduleActivityTask": 1, "command_StartTimer": 1,
		"grpc_SignalWorkflowExecution": 1, "grpc_QueryWorkflow": queries}
	var got Actions
	assert.Eventually(t, func() bool {
		after, err := tmp.Actions(ctx)
		require.NoError(t, err)
		got = after.Since(before)
		return got.Total() >= want.Total()
	}, 10*time.Second, 100*time.Millisecond)
	t.Logf("actions: %s", got)
	assert.Equal(t, want, got, "one workflow start, activity, timer and signal, and every query; reading history is free")
}

// historyHasTimerFired reports whether the counted workflow's timer fired.
func historyHasTimerFired(ctx context.Context, c client.Client) bool {
	it := c.GetWorkflowHistory(ctx, "counted", "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return false
		}
		if ev.GetTimerFiredEventAttributes() != nil {
			return true
		}
	}
	return false
}
