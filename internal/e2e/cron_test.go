package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	apimodels "github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// cronConfig resolves a cron spec for this stack through internal/spec, as
// `starter apply` does. extra is appended to the spec's top level.
func cronConfig(t *testing.T, name, bucket, prefix, schedule, extra string) workflows.CronConfig {
	t.Helper()
	return loadCronSpec(t, name, cronSpec(name, bucket, prefix, schedule, extra))
}

// cronSpec is the cron spec cronConfig loads.
func cronSpec(name, bucket, prefix, schedule, extra string) string {
	return fmt.Sprintf(`name: %s
kind: cron
schedule: "%s"
source:
  s3:
    bucket: %s
    prefix: %s
    endpoint: %s
    region: %s
batch:
  max_objects: 15
task:
  template: %s
  vars: {MODULES_URL: "%s"}
  queue_timeout: 5m
  execution_timeout: 1m
retry:
  max_attempts: 2
  initial_interval: 1s
%s`, name, schedule, bucket, prefix, env.S3.Endpoint(), env.S3.Region(),
		filepath.Join(env.Root, "examples/jobs/logsummary.yaml"), env.Modules.URL(), extra)
}

// loadCronSpec resolves a cron spec's text as `starter apply` does.
func loadCronSpec(t *testing.T, name, text string) workflows.CronConfig {
	t.Helper()
	r, err := spec.Load(filepath.Join(t.TempDir(), name+".yaml"), []byte(text))
	require.NoError(t, err)
	require.NotNil(t, r.Cron)
	return *r.Cron
}

func startCron(t *testing.T, queue string, cfg workflows.CronConfig) client.WorkflowRun {
	t.Helper()
	run, err := env.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: workflows.CronWorkflowID(cfg.Name), TaskQueue: queue,
	}, workflows.CronWorkflowType, workflows.CronInput{Config: cfg})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = env.Client.TerminateWorkflow(context.Background(), run.GetID(), "", "test over")
	})
	return run
}

func cronStatus(t *testing.T, name string) workflows.CronStatus {
	t.Helper()
	v, err := env.Client.QueryWorkflow(context.Background(), workflows.CronWorkflowID(name), "", workflows.QueryCronStatus)
	require.NoError(t, err)
	var st workflows.CronStatus
	require.NoError(t, v.Get(&st))
	return st
}

func waitObjects(t *testing.T, name string, want int64, timeout time.Duration) workflows.CronStatus {
	t.Helper()
	var st workflows.CronStatus
	require.NoError(t, testenv.Eventually(timeout, func() error {
		st = cronStatus(t, name)
		if st.Counters.Objects < want {
			return fmt.Errorf("%d of %d objects processed (ticks %d, last error %q)", st.Counters.Objects, want, st.Counters.Ticks, st.LastError)
		}
		return nil
	}))
	return st
}

// putLog uploads a small log object and returns its key.
func putLog(t *testing.T, bucket, key string) {
	t.Helper()
	body := fmt.Sprintf(`{"status":200,"bytes":10,"path":"/%s"}`+"\n", key)
	_, err := env.S3.Client().PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader([]byte(body))})
	require.NoError(t, err)
}

func createBucket(t *testing.T, bucket string) {
	t.Helper()
	_, err := env.S3.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
}

// ledger reads the outputs of every completed job of a connector and counts,
// per input file, how many successful tasks read it.
func ledger(t *testing.T, connector string) (map[string]int, int) {
	t.Helper()
	seen := map[string]int{}
	jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"="+connector)
	completed := 0
	for _, j := range jobs {
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		completed++
		res, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).Results(context.Background(), j.ID)
		require.NoError(t, err)
		files, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 1<<20)
		require.NoError(t, err)
		s, err := decodeSummary(files["outputs/summary.json"])
		require.NoError(t, err)
		for _, in := range s.Inputs {
			seen[in]++
		}
	}
	return seen, completed
}

func TestCronProcessesEveryObjectExactlyOnce(t *testing.T) {
	queue := startWorker(t)
	const bucket, name = "cron-exactly-once", "e2e-cron"
	createBucket(t, bucket)
	cfg := cronConfig(t, name, bucket, "app/", "@every 2s", "")
	startCron(t, queue, cfg)

	// 300 objects in 6 waves. From wave 2 on, a tenth of each wave has keys
	// that sort before the cursor (hour 09 < hour 10) but arrive late.
	var want []string
	lastTicks := int64(-1)
	for wave := 0; wave < 6; wave++ {
		// Each wave goes in after a new tick began: the waves span at least
		// six ticks, and most land while that tick's batches run.
		require.NoError(t, testenv.Eventually(time.Minute, func() error {
			if st := cronStatus(t, name); st.Counters.Ticks > lastTicks {
				lastTicks = st.Counters.Ticks
				return nil
			}
			return fmt.Errorf("waiting for tick %d", lastTicks+1)
		}))
		for i := 0; i < 50; i++ {
			key := fmt.Sprintf("app/2026/11/27/10/w%d-%03d.log", wave, i)
			if wave > 0 && i%10 == 0 {
				key = fmt.Sprintf("app/2026/11/27/09/late-w%d-%03d.log", wave, i)
			}
			putLog(t, bucket, key)
			want = append(want, key)
		}
	}
	st := waitObjects(t, name, 300, 3*time.Minute)
	t.Logf("status: ticks %d, batches %d, objects %d, done in window %d", st.Counters.Ticks, st.Counters.Batches, st.Counters.Objects, st.DoneInWindow)
	assert.GreaterOrEqual(t, st.Counters.Ticks, int64(6))
	assert.Equal(t, int64(300), st.Counters.Objects)
	assert.Zero(t, st.Counters.DeadLettered)
	assert.Equal(t, "app/2026/11/27/10/w5-049.log", st.Cursor.Key)

	seen, completed := ledger(t, name)
	assert.Equal(t, int(st.Counters.Batches), completed, "one successful job per batch")
	for _, k := range want {
		assert.Equal(t, 1, seen[k], "object %s must be in exactly one successful task's output", k)
	}
	assert.Len(t, seen, len(want), "no object outside the ones written")
	// A further tick finds nothing new.
	time.Sleep(4 * time.Second)
	assert.Equal(t, int64(300), cronStatus(t, name).Counters.Objects)
	recordHistory(t, workflows.CronWorkflowID(name), "cron-exactly-once")
}

func TestCronDeadLettersABatchThatKeepsFailing(t *testing.T) {
	queue := startWorker(t)
	const bucket, name = "cron-dlq", "e2e-dlq"
	createBucket(t, bucket)
	cfg := cronConfig(t, name, bucket, "in/", "@every 1s", fmt.Sprintf(
		"dead_letter:\n  s3: {bucket: %s, prefix: dead/, endpoint: \"%s\", region: %s}\n", bucket, env.S3.Endpoint(), env.S3.Region()))
	// The task reads a folder that does not exist: it exits 2 every time.
	cfg.Template = strings.Replace(cfg.Template, "-inputs=/inputs", "-inputs=/nowhere", 1)
	cfg.Retry.MaxAttempts = 2
	startCron(t, queue, cfg)
	putLogs(t, bucket, keys("in/x-", 3)...)

	st := waitObjects(t, name, 3, time.Minute)
	assert.Equal(t, int64(1), st.Counters.DeadLettered)
	require.NotNil(t, st.LastBatch)
	assert.Equal(t, "dead-lettered", st.LastBatch.Outcome)
	assert.Equal(t, "in/x-002.log", st.Cursor.Key, "the cursor moves past a dead-lettered batch")

	obj, err := env.S3.Client().GetObject(context.Background(), &s3.GetObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("dead/" + st.LastBatch.ID + ".json")})
	require.NoError(t, err)
	defer func() { _ = obj.Body.Close() }()
	var manifest struct {
		Connector string
		Batch     string
		Error     string
		Objects   []activities.Object
	}
	require.NoError(t, json.NewDecoder(obj.Body).Decode(&manifest))
	assert.Equal(t, name, manifest.Connector)
	assert.Contains(t, manifest.Error, "no input files under /nowhere")
	assert.Contains(t, manifest.Error, "after 2 attempt(s)")
	require.Len(t, manifest.Objects, 3)
	assert.Equal(t, "in/x-000.log", manifest.Objects[0].Key)
	// Exactly the policy's attempts ran.
	assert.Len(t, jobsWithLabel(t, tasktemplate.LabelConnector+"="+name), 2)
}

// TestCronDoesNotDeadLetterObjectsItsNodeCouldNotFetch: with delivery s3
// the compute node fetches a batch's objects itself. Their store goes down
// (a proxy in front of it resets every connection) while the first batch's
// task runs: the next batch cannot fetch its object (the task never runs),
// which is not the object's fault. It is never dead-lettered: the tick
// stops at it, and once the store is back a later tick runs it; every
// object runs once.
func TestCronDoesNotDeadLetterObjectsItsNodeCouldNotFetch(t *testing.T) {
	runsAlongside(t)
	queue := startWorker(t)
	const bucket, name = "cron-store-down", "e2e-cron-store-down"
	store, err := devstack.StartProxy("127.0.0.1:0", strings.TrimPrefix(env.S3.Endpoint(), "http://"))
	require.NoError(t, err)
	defer func() { _ = store.Close() }()
	createBucket(t, bucket)
	putLogs(t, bucket, keys("in/x-", 3)...)
	cfg := cronConfig(t, name, bucket, "in/", "@every 20s", fmt.Sprintf(
		"dead_letter:\n  s3: {bucket: %s, prefix: dead/, endpoint: \"%s\", region: %s}\n", bucket, env.S3.Endpoint(), env.S3.Region()))
	cfg.Source.Endpoint, cfg.Delivery = "http://"+store.Addr(), activities.DeliveryS3
	cfg.MaxObjects, cfg.Concurrency = 1, 1
	cfg.Template = sampleTemplate(t, "-delay=4s")
	startCron(t, queue, cfg)

	// The first batch's task runs (its object fetched): the store goes down.
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+name) {
			if j.State.StateType == models.JobStateTypeRunning {
				return nil
			}
		}
		return fmt.Errorf("no task running yet")
	}))
	store.Down()
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if st := cronStatus(t, name); st.Counters.FailedTicks == 0 {
			var jobs []string
			for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+name) {
				jobs = append(jobs, j.State.StateType.String()+": "+j.State.Message)
				ex, err := env.Bacalhau.Client().Jobs().Executions(context.Background(), &apimodels.ListJobExecutionsRequest{JobID: j.ID})
				if err == nil {
					for _, e := range ex.Items {
						msg := e.ComputeState.Message
						if e.RunOutput != nil {
							msg += " / run: " + e.RunOutput.ErrorMsg
						}
						jobs = append(jobs, "  exec "+e.ComputeState.StateType.String()+": "+msg)
					}
				}
			}
			return fmt.Errorf("no tick failed yet (status %+v; jobs %q)", st, jobs)
		}
		return nil
	}), "a batch that could not fetch its object stops the tick")
	st := cronStatus(t, name)
	assert.Zero(t, st.Counters.DeadLettered, "not dead-lettered: %s", st.LastError)
	assert.Contains(t, st.LastError, "the next tick runs it again")
	store.Up()

	st = waitObjects(t, name, 3, 2*time.Minute)
	assert.Zero(t, st.Counters.DeadLettered)
	seen, _ := ledger(t, name)
	for _, k := range keys("in/x-", 3) {
		// The s3 input source mounts an object as a folder holding it.
		assert.Equal(t, 1, seen[k+"/"+filepath.Base(k)], "object %s ran once: %v", k, seen)
	}
}

// TestCronRunsALargeBatchFromOneFolder: 500 objects in one folder with
// max_objects 500. As one WASM task, Bacalhau v1.7's executor lists that
// folder forever and the task runs out of memory (a Go guest lists 340
// entries of a folder of mounts correctly, 341 never); the spec's default
// folder bound for WASM templates (256) cuts two batches that run.
func TestCronRunsALargeBatchFromOneFolder(t *testing.T) {
	runsAlongside(t)
	queue := startWorker(t)
	const bucket, name, n = "cron-large", "e2e-cron-large", 500
	createBucket(t, bucket)
	var want []string
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("app/2026/12/06/obj-%04d.log", i)
		putLog(t, bucket, key)
		want = append(want, key)
	}
	text := strings.Replace(cronSpec(name, bucket, "app/", "@every 5s", ""), "  max_objects: 15\n", "  max_objects: 500\n", 1)
	cfg := loadCronSpec(t, name, text)
	require.Equal(t, spec.DefaultWASMFolderEntries, cfg.MaxFolderEntries, "a WASM template's default")
	startCron(t, queue, cfg)
	st := waitObjects(t, name, n, 5*time.Minute)
	assert.Equal(t, int64(2), st.Counters.Batches, "256 + 244 objects: %+v", st.Counters)
	assert.Zero(t, st.Counters.DeadLettered)
	seen, completed := ledger(t, name)
	assert.Equal(t, 2, completed, "one successful job per batch")
	for _, k := range want {
		assert.Equal(t, 1, seen[k], "object %s", k)
	}
	assert.Len(t, seen, n)
}
