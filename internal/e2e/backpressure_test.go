package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func TestBackpressureKeepsJobsInFlightWithinTheBudget(t *testing.T) {
	const tasks = 20
	queue := startWorker(t)
	budgetID := "budget-" + queue
	capacity, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).Capacity(context.Background(), 0)
	require.NoError(t, err)
	t.Logf("node capacity: %d at once, suggested budget %d", capacity.RunAtOnce, capacity.SuggestedBudget)
	require.Less(t, capacity.RunAtOnce, tasks, "the test needs more tasks than the node runs at once")

	// Watch Bacalhau itself: how many of this test's jobs are not finished.
	var maxInFlight atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			jobs, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).ListJobs(context.Background(), tasktemplate.LabelConnector+"=e2e-bp")
			if err != nil {
				continue
			}
			n := int64(0)
			for _, j := range jobs {
				if !j.IsTerminal() {
					n++
				}
			}
			if n > maxInFlight.Load() {
				maxInFlight.Store(n)
			}
		}
	}()

	files, _ := logFiles(3, 1, 50)
	inputs := inputsFor(t, files)
	template := sampleTemplate(t, "-delay=1s")
	var runs []client.WorkflowRun
	for i := 0; i < tasks; i++ {
		runs = append(runs, startRunTask(t, queue, workflows.RunTaskInput{
			Connector: "e2e-bp", BatchID: fmt.Sprintf("b%02d", i), Template: template, Inputs: inputs,
			QueueTimeout: 5 * time.Minute, ExecutionTimeout: time.Minute,
			Budget: workflows.BudgetRef{WorkflowID: budgetID},
		}))
	}
	for _, run := range runs {
		var res workflows.RunTaskResult
		require.NoError(t, run.Get(context.Background(), &res), run.GetID())
		assert.Equal(t, 1, res.Attempts, "%s needed a retry", run.GetID())
	}
	close(stop)
	wg.Wait()

	v, err := env.Client.QueryWorkflow(context.Background(), budgetID, "", workflows.QueryBudgetStatus)
	require.NoError(t, err)
	var st workflows.BudgetStatus
	require.NoError(t, v.Get(&st))
	t.Logf("budget: %+v; most jobs in flight seen on Bacalhau: %d", st, maxInFlight.Load())
	assert.Equal(t, capacity.SuggestedBudget, st.Size, "default size comes from the node's capacity")
	assert.Equal(t, int64(tasks), st.Granted)
	assert.Equal(t, 0, st.InFlight)
	assert.Equal(t, st.Size, st.HighWater, "20 tasks saturate the budget")
	assert.LessOrEqual(t, maxInFlight.Load(), int64(st.Size), "jobs in flight on Bacalhau never exceed the budget")
	assert.Positive(t, maxInFlight.Load())

	// Every job ran once and completed: none failed with "not enough nodes".
	jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"=e2e-bp")
	assert.Len(t, jobs, tasks)
	for _, j := range jobs {
		assert.Equal(t, models.JobStateTypeCompleted, j.State.StateType, "job %s: %s", j.ID, j.State.Message)
	}
	recordHistory(t, budgetID, "budget-20-leases")
}
