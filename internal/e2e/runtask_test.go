package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// sampleTemplate returns the example job template, rendered for this stack,
// with extra engine parameters appended (e.g. "-delay=30s").
func sampleTemplate(t *testing.T, extraParams ...string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(env.Root, "examples/jobs/logsummary.yaml"))
	require.NoError(t, err)
	text, err := tasktemplate.Render(string(raw), env.TemplateVars())
	require.NoError(t, err)
	anchor := "          - -outputs=/outputs\n"
	require.Contains(t, text, anchor)
	for _, p := range extraParams {
		text = strings.Replace(text, anchor, anchor+"          - "+p+"\n", 1)
	}
	return text
}

// startWorker starts a worker on a queue of the test's own and stops it at the end.
func startWorker(t *testing.T) string {
	t.Helper()
	queue := "e2e-" + strings.ReplaceAll(t.Name(), "/", "-")
	w, err := env.StartWorker(queue)
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	return queue
}

func startRunTask(t *testing.T, queue string, in workflows.RunTaskInput) client.WorkflowRun {
	t.Helper()
	if in.Budget.WorkflowID == "" {
		in.Budget.WorkflowID = "budget-" + queue
	}
	run, err := env.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                       "runtask-" + in.Connector + "-" + in.BatchID,
		TaskQueue:                queue,
		WorkflowExecutionTimeout: 5 * time.Minute,
	}, workflows.RunTaskWorkflowType, in)
	require.NoError(t, err)
	return run
}

func jobsWithLabel(t *testing.T, selector string) []*models.Job {
	t.Helper()
	return jobsWithLabelAt(t, env.Bacalhau.Address(), selector)
}

// jobsWithLabelAt lists the jobs matching selector at the Bacalhau API at address.
func jobsWithLabelAt(t *testing.T, address, selector string) []*models.Job {
	t.Helper()
	jobs, err := activities.NewBacalhau(address, nil).ListJobs(context.Background(), selector)
	require.NoError(t, err)
	return jobs
}

func TestRunTaskSummarizesGeneratedLogs(t *testing.T) {
	queue := startWorker(t)
	files, want := logFiles(42, 5, 400)
	var inputs []tasktemplate.Input
	for _, name := range sortedKeys(files) {
		u, err := env.ServeFile("data/"+t.Name()+"/"+name, files[name])
		require.NoError(t, err)
		inputs = append(inputs, tasktemplate.Input{Target: "/inputs/" + name, URL: u})
	}
	run := startRunTask(t, queue, workflows.RunTaskInput{
		Connector: "e2e-summary", BatchID: "b1", Template: sampleTemplate(t), Inputs: inputs,
		QueueTimeout: time.Minute, ExecutionTimeout: time.Minute, Output: true,
		Budget: workflows.BudgetRef{AskBySignal: true}, // as `starter run-task` starts it
	})
	var res workflows.RunTaskResult
	require.NoError(t, run.Get(context.Background(), &res))
	assert.Equal(t, 1, res.Attempts)
	assert.Equal(t, 0, res.ExitCode)
	require.NotEmpty(t, res.ResultURL)
	assert.Contains(t, res.Outputs, activities.OutputFile{Path: "outputs/summary.json", Size: res.Outputs[0].Size})

	published, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 1<<20)
	require.NoError(t, err)
	got, err := decodeSummary(published["outputs/summary.json"])
	require.NoError(t, err)
	want.TopPaths = want.TopPaths[:min(10, len(want.TopPaths))]
	assert.Equal(t, want, got)
	// The same summary is on stdout.
	fromStdout, err := decodeSummary([]byte(strings.TrimSpace(res.StdoutTail)))
	require.NoError(t, err)
	assert.Equal(t, want, fromStdout)

	// Exactly one job carries this batch's identity.
	assert.Len(t, jobsWithLabel(t, tasktemplate.LabelBatch+"="+tasktemplate.Key("e2e-summary", "b1", 1)), 1)
	recordHistory(t, run.GetID(), "runtask-completed")
}

func sortedKeys(m map[string][]byte) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// inputsFor serves generated files and returns them as task inputs.
func inputsFor(t *testing.T, files map[string][]byte) []tasktemplate.Input {
	t.Helper()
	var inputs []tasktemplate.Input
	for _, name := range sortedKeys(files) {
		u, err := env.ServeFile("data/"+t.Name()+"/"+name, files[name])
		require.NoError(t, err)
		inputs = append(inputs, tasktemplate.Input{Target: "/inputs/" + name, URL: u})
	}
	return inputs
}

// waitForJob waits until the RunTask reports a job in phase "running".
func waitForJob(t *testing.T, run client.WorkflowRun) string {
	t.Helper()
	var st workflows.RunTaskStatus
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		v, err := env.Client.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), workflows.QueryRunTaskStatus)
		if err != nil {
			return err
		}
		if err := v.Get(&st); err != nil {
			return err
		}
		if st.JobID == "" || st.Phase != "running" {
			return fmt.Errorf("phase %q, job %q", st.Phase, st.JobID)
		}
		return nil
	}))
	return st.JobID
}

func jobState(t *testing.T, jobID string) models.JobStateType {
	t.Helper()
	resp, err := env.Bacalhau.Client().Jobs().Get(context.Background(), &apimodels.GetJobRequest{JobID: jobID})
	require.NoError(t, err)
	return resp.Job.State.StateType
}

func TestSubmitIsIdempotentWhenTheWorkerDies(t *testing.T) {
	queue := "e2e-idempotent"
	w1, err := env.StartWorker(queue)
	require.NoError(t, err)
	files, want := logFiles(7, 2, 100)
	run := startRunTask(t, queue, workflows.RunTaskInput{
		Connector: "e2e-idem", BatchID: "b1", Template: sampleTemplate(t, "-delay=4s"), Inputs: inputsFor(t, files),
		QueueTimeout: time.Minute, ExecutionTimeout: time.Minute,
	})
	jobID := waitForJob(t, run)
	// Submit succeeded and the job runs: kill the worker mid-await.
	w1.Stop()
	require.NotEqual(t, models.JobStateTypeFailed, jobState(t, jobID), "stopping the worker must not stop the job")

	w2, err := env.StartWorker(queue)
	require.NoError(t, err)
	defer w2.Stop()
	var res workflows.RunTaskResult
	require.NoError(t, run.Get(context.Background(), &res))
	assert.Equal(t, jobID, res.JobID, "the resumed workflow must await the job it submitted before the crash")
	assert.Equal(t, 1, res.Attempts)
	jobs := jobsWithLabel(t, tasktemplate.LabelBatch+"="+tasktemplate.Key("e2e-idem", "b1", 1))
	require.Len(t, jobs, 1, "exactly one Bacalhau job carries the batch label")
	assert.Equal(t, jobID, jobs[0].ID)
	assert.Len(t, jobsWithLabel(t, tasktemplate.LabelConnector+"=e2e-idem"), 1)
	recordHistory(t, run.GetID(), "runtask-worker-killed")

	published, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 1<<20)
	require.NoError(t, err)
	got, err := decodeSummary(published["outputs/summary.json"])
	require.NoError(t, err)
	assert.Equal(t, want.Requests, got.Requests)
}

func TestSubmitActivityReusesTheJobOfARetriedSubmit(t *testing.T) {
	b := activities.NewBacalhau(env.Bacalhau.Address(), nil)
	var suite testsuite.WorkflowTestSuite
	aenv := suite.NewTestActivityEnvironment()
	aenv.RegisterActivity(b)
	for _, c := range []struct {
		name      string
		indexed   bool
		namespace string // the template's
	}{{"unindexed", false, ""}, {"indexed", true, ""}, {"indexed-own-namespace", true, "e2e-team"}} {
		t.Run(c.name, func(t *testing.T) {
			connector := "e2e-resubmit-" + c.name
			template := sampleTemplate(t)
			if c.namespace != "" {
				template = "Namespace: " + c.namespace + "\n" + template
			}
			in := activities.SubmitInput{
				Template: template,
				Batch: tasktemplate.Batch{Connector: connector, ID: "b1", Attempt: 1, Indexed: c.indexed,
					Inputs: []tasktemplate.Input{{Target: "/inputs/a.log", Inline: []byte(`{"status":200,"bytes":1,"path":"/"}` + "\n")}}},
			}
			submit := func() activities.SubmitResult {
				v, err := aenv.ExecuteActivity(b.Submit, in)
				require.NoError(t, err)
				var res activities.SubmitResult
				require.NoError(t, v.Get(&res))
				return res
			}
			first := submit()
			assert.False(t, first.Reused)
			second := submit() // as a retried activity would
			assert.True(t, second.Reused)
			assert.Equal(t, first.JobID, second.JobID)
			jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"="+connector)
			require.Len(t, jobs, 1)
			key := jobs[0].Labels[tasktemplate.LabelBatch]
			find := func(ns string) *models.Job {
				found, err := b.FindJob(context.Background(), key, ns)
				require.NoError(t, err)
				return found
			}
			switch {
			case c.namespace != "":
				// A template's own namespace is kept (Bacalhau's namespace
				// auth policy may allow no other); lookups read only its jobs.
				assert.Equal(t, c.namespace, jobs[0].Namespace)
			case c.indexed:
				// The job sits in its identity's own namespace, where the
				// lookup reads one job.
				assert.Equal(t, tasktemplate.Namespace(key), jobs[0].Namespace)
			default:
				// Jobs submitted unindexed (before identities were) are in
				// the template's namespace: only a lookup across every
				// namespace finds them, which is why an identity's indexing
				// never changes (StreamState.Indexed).
				assert.Equal(t, models.DefaultNamespace, jobs[0].Namespace)
				assert.Nil(t, find(tasktemplate.Namespace(key)))
			}
			ns := tasktemplate.LookupNamespace(template, key, c.indexed)
			require.NotNil(t, find(ns), "looked up in %q", ns)
			require.NotNil(t, find(""), "a lookup across every namespace finds every job")
			assert.Equal(t, first.JobID, find("").ID)
			_, err := aenv.ExecuteActivity(b.Await, activities.AwaitInput{JobID: first.JobID})
			require.NoError(t, err)
		})
	}
}

func TestCancellingRunTaskStopsTheJob(t *testing.T) {
	queue := startWorker(t)
	files, _ := logFiles(9, 1, 10)
	run := startRunTask(t, queue, workflows.RunTaskInput{
		Connector: "e2e-cancel", BatchID: "b1", Template: sampleTemplate(t, "-delay=60s"), Inputs: inputsFor(t, files),
		QueueTimeout: time.Minute, ExecutionTimeout: 2 * time.Minute,
	})
	jobID := waitForJob(t, run)
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		if s := jobState(t, jobID); s != models.JobStateTypeRunning {
			return fmt.Errorf("job %s is %s", jobID, s)
		}
		return nil
	}))
	require.NoError(t, env.Client.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()))
	err := run.Get(context.Background(), nil)
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "want a cancelled workflow, got %v", err)
	assert.Equal(t, models.JobStateTypeStopped, jobState(t, jobID))
	recordHistory(t, run.GetID(), "runtask-cancelled")
}
