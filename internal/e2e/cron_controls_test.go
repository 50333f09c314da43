package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"gopkg.in/yaml.v3"

	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// starter runs the starter CLI in-process against the test stack.
func starter(t *testing.T, queue string, args ...string) (string, error) {
	t.Helper()
	out, _, err := starterStreams(t, queue, args...)
	return out, err
}

// starterStreams runs the starter and returns its stdout and its stderr
// (where progress goes).
func starterStreams(t *testing.T, queue string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := cli.NewRootCommand(&out, &errOut)
	cmd.SetArgs(append(args, "--temporal-address", env.Temporal.HostPort(), "--task-queue", queue))
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// specFile writes a cron spec for this stack and returns its path.
func specFile(t *testing.T, name, bucket, prefix, schedule, extra string) string {
	t.Helper()
	text := fmt.Sprintf(`name: %s
kind: cron
schedule: "%s"
source:
  s3: {bucket: %s, prefix: %s, endpoint: "%s", region: %s}
batch: {max_objects: 10}
task:
  template: %s
  vars: {MODULES_URL: "%s"}
  execution_timeout: 1m
retry: {max_attempts: 2, initial_interval: 1s}
%s`, name, schedule, bucket, prefix, env.S3.Endpoint(), env.S3.Region(),
		filepath.Join(env.Root, "examples/jobs/logsummary.yaml"), env.Modules.URL(), extra)
	p := filepath.Join(t.TempDir(), name+".yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

func putLogs(t *testing.T, bucket string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		putLog(t, bucket, k)
	}
}

func keys(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%03d.log", prefix, i))
	}
	return out
}

func TestStarterApplyRejectsMalformedSpecsAndStartsNothing(t *testing.T) {
	queue := startWorker(t)
	good, err := os.ReadFile(specFile(t, "e2e-malformed", "nowhere", "p/", "@every 1m", ""))
	require.NoError(t, err)
	cases := []struct{ old, new, field string }{
		{`schedule: "@every 1m"`, `schedule: "* * *"`, "schedule"},
		{`schedule: "@every 1m"`, `schedule: "@every never"`, "schedule"},
		{`schedule: "@every 1m"`, `schedule: ""`, "schedule"},
		{`bucket: nowhere, `, ``, "source.s3.bucket"},
		{`batch: {max_objects: 10}`, `batch: {max_objects: -10}`, "batch.max_objects"},
		{`batch: {max_objects: 10}`, `batch: {max_bytes: 12 parsecs}`, `batch.max_bytes: "12 parsecs" is not a size`},
		{`batch: {max_objects: 10}`, `batch: {max_objekts: 10}`, "batch.max_objekts: unknown field: did you mean max_objects?"},
		{`kind: cron`, `kind: crontab`, "kind"},
		{`kind: cron`, `kind: cron` + "\ntimezone: Atlantis/Capital", "timezone"},
		{"logsummary.yaml", "missing.yaml", "task.template"},
		{`vars: {MODULES_URL:`, `vars: {OTHER:`, "task.vars"},
		{`execution_timeout: 1m`, `execution_timeout: forever`, `task.execution_timeout: "forever" is not a duration`},
		{`execution_timeout: 1m`, `execution_timeout: -1m`, "task.execution_timeout"},
		{`retry: {max_attempts: 2, initial_interval: 1s}`, `retry: {max_attempts: -2}`, "retry.max_attempts"},
		{`retry: {max_attempts: 2, initial_interval: 1s}`, `retry: {initial_interval: 1m, max_interval: 1s}`, "retry.max_interval"},
		{`name: e2e-malformed`, `name: E2E Malformed`, "name"},
		{`endpoint: "http`, `endpoint: "ftp`, "source.s3.endpoint"},
		{`kind: cron`, `kind: cron` + "\noverlap: stack", "overlap"},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%02d-%s", i, tc.field), func(t *testing.T) {
			require.Contains(t, string(good), tc.old)
			p := filepath.Join(t.TempDir(), "spec.yaml")
			require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(good), tc.old, tc.new, 1)), 0o644))
			_, err := starter(t, queue, "apply", "-f", p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.field)
			assert.Contains(t, err.Error(), "spec "+p)
		})
	}
	// Nothing started.
	_, err = env.Client.DescribeWorkflow(context.Background(), workflows.CronWorkflowID("e2e-malformed"), "")
	var nf *serviceerror.NotFound
	assert.True(t, errors.As(err, &nf), "no connector may start from a malformed spec, got %v", err)
}

// temporalCLI runs the temporal CLI (bin/temporal) against the test stack.
func temporalCLI(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(env.Root, "bin/temporal"), append(args, "--address", env.Temporal.HostPort())...)
	raw, err := cmd.CombinedOutput()
	if err != nil {
		return string(raw), fmt.Errorf("temporal %s: %w: %s", strings.Join(args, " "), err, raw)
	}
	return string(raw), nil
}

// waitListed waits until `temporal workflow list --query` finds the
// workflow, as the UI's filter would.
func waitListed(t *testing.T, query, workflowID string) {
	t.Helper()
	require.NoError(t, testenv.Eventually(20*time.Second, func() error {
		raw, err := temporalCLI("workflow", "list", "--query", query, "-o", "json")
		if err != nil {
			return err
		}
		if !strings.Contains(raw, `"`+workflowID+`"`) {
			return fmt.Errorf("temporal workflow list --query %q: %s", query, raw)
		}
		return nil
	}))
}

// listedRow is a row of `starter list -o json|yaml`.
type listedRow struct {
	Name, Kind, State, Position string
	Processed, Lag              int64
	BehindMillis                int64 `json:"behind_ms" yaml:"behind_ms"`
}

// listRow runs `starter list -o format` (json or yaml) and returns the
// row of connector name, failing the test when there is none.
func listRow(t *testing.T, queue, format, name string) listedRow {
	t.Helper()
	out, err := starter(t, queue, "list", "-o", format)
	require.NoError(t, err)
	var rows []listedRow
	if format == "yaml" {
		require.NoError(t, yaml.Unmarshal([]byte(out), &rows), out)
	} else {
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	}
	for _, r := range rows {
		if r.Name == name {
			return r
		}
	}
	require.Failf(t, "connector not listed", "list shows no %s: %s", name, out)
	return listedRow{}
}

func TestCronControls(t *testing.T) {
	queue := startWorker(t)
	const bucket, name = "cron-controls", "e2e-ctl"
	createBucket(t, bucket)
	t.Cleanup(func() {
		_ = env.Client.TerminateWorkflow(context.Background(), workflows.CronWorkflowID(name), "", "test over")
	})

	out, err := starter(t, queue, "apply", "-f", specFile(t, name, bucket, "in/", "@every 2s", ""))
	require.NoError(t, err)
	assert.Contains(t, out, "connector e2e-ctl started")

	// The connector carries its search attributes and memo: the Temporal
	// CLI finds it by kind and name, as the UI does.
	waitListed(t, fmt.Sprintf("ConnectorKind='cron' AND ConnectorName='%s' AND ConnectorSource='s3://%s/in/' AND ConnectorState='active'", name, bucket),
		workflows.CronWorkflowID(name))
	desc, err := env.Client.DescribeWorkflow(context.Background(), workflows.CronWorkflowID(name), "")
	require.NoError(t, err)
	var kind string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(desc.RawResponse.WorkflowExecutionInfo.Memo.Fields["kind"], &kind))
	assert.Equal(t, "cron", kind, "memo")

	// A is processed by the schedule.
	tA0 := time.Now().Add(-time.Second).Truncate(time.Second)
	setA := keys("in/a-", 10)
	putLogs(t, bucket, setA...)
	waitObjects(t, name, 10, time.Minute)
	time.Sleep(1100 * time.Millisecond)
	tA1 := time.Now().Truncate(time.Second) // A's LastModified are before this
	time.Sleep(1100 * time.Millisecond)

	// Pause: B waits through several scheduled ticks.
	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		if st := cronStatus(t, name); !st.Paused || st.Running {
			return fmt.Errorf("not paused yet")
		}
		return nil
	}))
	waitListed(t, fmt.Sprintf("ConnectorName='%s' AND ConnectorState='paused'", name), workflows.CronWorkflowID(name))
	before := cronStatus(t, name)
	setB := keys("in/b-", 10)
	putLogs(t, bucket, setB...)
	time.Sleep(5 * time.Second)
	paused := cronStatus(t, name)
	assert.Equal(t, before.Counters.Ticks, paused.Counters.Ticks, "no tick while paused")
	assert.Equal(t, int64(10), paused.Counters.Objects)

	// Resume continues from the cursor.
	_, err = starter(t, queue, "resume", name)
	require.NoError(t, err)
	waitListed(t, fmt.Sprintf("ConnectorName='%s' AND ConnectorState='active'", name), workflows.CronWorkflowID(name))
	waitObjects(t, name, 20, time.Minute)

	// An invalid update is rejected and changes nothing.
	_, err = starter(t, queue, "apply", "-f", specFile(t, name, bucket, "other/", "@every 1h", ""))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bucket and prefix cannot change")
	assert.Equal(t, "@every 2s", cronStatus(t, name).Schedule)
	h, err := env.Client.UpdateWorkflow(context.Background(), client.UpdateWorkflowOptions{
		WorkflowID: workflows.CronWorkflowID(name), UpdateName: workflows.UpdateSpec,
		Args:         []interface{}{workflows.CronConfig{Name: name, Schedule: "not a schedule", Source: workflows.S3Source{Bucket: bucket, Prefix: "in/"}}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(context.Background(), nil)
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "schedule")
	assert.Equal(t, "@every 2s", cronStatus(t, name).Schedule)

	// A valid update: hourly. --diff shows it against the running
	// connector's config and changes nothing; apply updates; the next diff
	// finds nothing to change. Trigger runs a tick now.
	hourly := specFile(t, name, bucket, "in/", "@every 1h", "")
	out, err = starter(t, queue, "apply", "--diff", "-f", hourly)
	require.NoError(t, err)
	assert.Contains(t, out, "apply would update 1 field(s)")
	assert.Contains(t, out, `Schedule: "@every 2s" → "@every 1h"`)
	assert.Equal(t, "@every 2s", cronStatus(t, name).Schedule)
	out, err = starter(t, queue, "apply", "-f", hourly)
	require.NoError(t, err)
	assert.Contains(t, out, "updated")
	out, err = starter(t, queue, "apply", "--diff", "-f", hourly, "-o", "yaml")
	require.NoError(t, err)
	assert.Contains(t, out, "result: unchanged")
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		if s := cronStatus(t, name).Schedule; s != "@every 1h" {
			return fmt.Errorf("schedule still %s", s)
		}
		return nil
	}))
	setC := keys("in/c-", 5)
	putLogs(t, bucket, setC...)
	_, err = starter(t, queue, "trigger", name)
	require.NoError(t, err)
	afterTrigger := waitObjects(t, name, 25, 30*time.Second)

	// Backfill A's time range: only A runs again; the cursor does not move.
	out, err = starter(t, queue, "backfill", name, "--from", tA0.UTC().Format(time.RFC3339), "--to", tA1.UTC().Format(time.RFC3339), "--wait")
	require.NoError(t, err, out)
	assert.Contains(t, out, "10 objects")
	after := cronStatus(t, name)
	assert.Equal(t, afterTrigger.Cursor.Key, after.Cursor.Key)
	assert.Equal(t, afterTrigger.Counters.Objects, after.Counters.Objects)

	seen, _ := ledger(t, name)
	for _, k := range setA {
		assert.Equal(t, 2, seen[k], "%s: once by the schedule, once by the backfill", k)
	}
	for _, k := range append(setB, setC...) {
		assert.Equal(t, 1, seen[k], k)
	}

	// Reset moves the S3 cursor, only while paused: to the key after B,
	// so C runs once more and nothing before it does.
	_, err = starter(t, queue, "reset", name, "--to", "key="+setB[len(setB)-1])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not paused")
	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	_, err = starter(t, queue, "reset", name, "--to", "0=5")
	require.Error(t, err, "Kafka offsets are no S3 cursor position")
	assert.Contains(t, err.Error(), "not a position of an S3 cursor")
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		out, err = starter(t, queue, "reset", name, "--to", "key="+setB[len(setB)-1], "-o", "json")
		return err
	}))
	assert.Contains(t, out, `"cursor": "keys after `+setB[len(setB)-1]+`"`)
	assert.Equal(t, setB[len(setB)-1], cronStatus(t, name).Cursor.Key)
	_, err = starter(t, queue, "resume", name)
	require.NoError(t, err)
	_, err = starter(t, queue, "trigger", name)
	require.NoError(t, err)
	waitObjects(t, name, 30, 30*time.Second)
	seen, _ = ledger(t, name)
	for _, k := range setC {
		assert.Equal(t, 2, seen[k], "%s: once before the reset, once after", k)
	}
	for _, k := range setB {
		assert.Equal(t, 1, seen[k], "%s: at or before the reset key", k)
	}

	// Every control is also a plain Temporal CLI call (as docs/configuration.md
	// shows): pause and resume by signal, reset by update, status and
	// config by query.
	tcli := func(args ...string) string {
		out, err := temporalCLI(args...)
		require.NoError(t, err)
		return out
	}
	id := workflows.CronWorkflowID(name)
	tcli("workflow", "signal", "--workflow-id", id, "--name", workflows.SignalPause)
	waitListed(t, fmt.Sprintf("ConnectorName='%s' AND ConnectorState='paused'", name), id)
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		_, err := temporalCLI("workflow", "update", "execute", "--workflow-id", id, "--name", workflows.UpdateReset,
			"--input", `{"To":"key","Key":"`+setC[len(setC)-1]+`"}`)
		return err
	}))
	assert.Equal(t, setC[len(setC)-1], cronStatus(t, name).Cursor.Key)
	assert.Contains(t, tcli("workflow", "query", "--workflow-id", id, "--type", workflows.QueryCronStatus), setC[len(setC)-1])
	assert.Contains(t, tcli("workflow", "query", "--workflow-id", id, "--type", workflows.QueryConfig), "@every 1h")
	tcli("workflow", "signal", "--workflow-id", id, "--name", workflows.SignalResume)
	waitListed(t, fmt.Sprintf("ConnectorName='%s' AND ConnectorState='active'", name), id)

	out, err = starter(t, queue, "describe", name)
	require.NoError(t, err)
	assert.Contains(t, out, "30 objects")
	row := listRow(t, queue, "json", name)
	assert.Equal(t, "cron", row.Kind)
	assert.Equal(t, "waiting", row.State)
	assert.Equal(t, int64(30), row.Processed)
	assert.Contains(t, row.Position, "in/c-004.log")

	_, err = starter(t, queue, "delete", name)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		d, err := env.Client.DescribeWorkflow(context.Background(), workflows.CronWorkflowID(name), "")
		if err != nil {
			return err
		}
		if s := d.RawResponse.WorkflowExecutionInfo.Status.String(); s != "Canceled" {
			return fmt.Errorf("status %s", s)
		}
		return nil
	}))
	assert.Len(t, listKeys(t, bucket, "in/"), 25, "delete stops the connector and leaves the data")
	recordHistory(t, workflows.CronWorkflowID(name), "cron-controls")
	recordHistory(t, workflows.CronWorkflowID(name)+"-backfill-1", "cron-backfill")
}

func TestCronWorkerKilledMidBatch(t *testing.T) {
	queue := "e2e-cron-kill"
	const bucket, name = "cron-kill", "e2e-kill"
	createBucket(t, bucket)
	w1, err := env.StartWorker(queue)
	require.NoError(t, err)
	cfg := cronConfig(t, name, bucket, "k/", "@every 1s", "")
	cfg.MaxObjects = 10
	cfg.Template = strings.Replace(cfg.Template, "          - -outputs=/outputs\n", "          - -outputs=/outputs\n          - -delay=3s\n", 1)
	require.Contains(t, cfg.Template, "-delay=3s")
	startCron(t, queue, cfg)
	want := keys("k/x-", 30)
	putLogs(t, bucket, want...)

	// Kill the worker while a batch's job runs.
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+name) {
			if j.State.StateType == models.JobStateTypeRunning {
				return nil
			}
		}
		return fmt.Errorf("no running job yet; status %+v", cronStatus(t, name))
	}))
	w1.Stop()
	time.Sleep(time.Second)
	w2, err := env.StartWorker(queue)
	require.NoError(t, err)
	defer w2.Stop()

	st := waitObjects(t, name, 30, 2*time.Minute)
	assert.Equal(t, int64(3), st.Counters.Batches)
	seen, completed := ledger(t, name)
	assert.Equal(t, 3, completed)
	for _, k := range want {
		assert.Equal(t, 1, seen[k], k)
	}
	// Exactly one Bacalhau job per batch label.
	jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"="+name)
	assert.Len(t, jobs, 3)
	perBatch := map[string]int{}
	for _, j := range jobs {
		perBatch[j.Labels[tasktemplate.LabelBatch]]++
	}
	for label, n := range perBatch {
		assert.Equal(t, 1, n, label)
	}
}

// TestListShowsAConnectorNoWorkerServesAsUnreachable: a running connector
// whose task queue no worker polls answers no status query; `starter list`
// still lists every connector, that one as unreachable with the reason,
// within its per-connector query timeout.
func TestListShowsAConnectorNoWorkerServesAsUnreachable(t *testing.T) {
	queue := startWorker(t)
	const name = "e2e-orphan"
	cfg := cronConfig(t, name, "orphan", "in/", "@every 1h", "")
	run, err := env.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: workflows.CronWorkflowID(name), TaskQueue: "nobody-polls-this-queue",
	}, workflows.CronWorkflowType, workflows.CronInput{Config: cfg})
	require.NoError(t, err)
	defer func() { _ = env.Client.TerminateWorkflow(context.Background(), run.GetID(), "", "test over") }()
	// list reads visibility, which shows a workflow just started a moment
	// later (CI once listed nothing here).
	waitListed(t, fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'Running'", run.GetID()), run.GetID())

	began := time.Now()
	row := listRow(t, queue, "json", name)
	took := time.Since(began)
	assert.Equal(t, "cron", row.Kind)
	assert.Equal(t, "unreachable", row.State)
	out, err := starter(t, queue, "list")
	require.NoError(t, err)
	assert.Contains(t, out, "is a worker polling the connector's task queue?")
	t.Logf("list with an unanswered query took %s", took.Round(time.Millisecond))
	assert.Less(t, took, 30*time.Second, "bounded by the per-connector query timeout")
}
