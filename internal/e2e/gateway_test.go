package e2e

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// putObjects creates bucket and uploads files under prefix; it returns them
// as task objects under /inputs.
func putObjects(t *testing.T, bucket, prefix string, files map[string][]byte) []activities.ObjectInput {
	t.Helper()
	ctx := context.Background()
	c := env.S3.Client()
	_, _ = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var objs []activities.ObjectInput
	for _, name := range sortedKeys(files) {
		key := prefix + name
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(files[name])})
		require.NoError(t, err)
		objs = append(objs, activities.ObjectInput{Target: "/inputs/" + name,
			Object: inputgateway.ObjectRef{Bucket: bucket, Key: key, Endpoint: env.S3.Endpoint(), Region: env.S3.Region()}})
	}
	return objs
}

func TestTasksReadS3ObjectsThroughTheGateway(t *testing.T) {
	queue := startWorker(t)
	files, want := logFiles(11, 3, 200)
	objs := putObjects(t, "gw-logs", "nginx/2026/11/27/", files)
	run := startRunTask(t, queue, workflows.RunTaskInput{
		Connector: "e2e-gw", BatchID: "b1", Template: sampleTemplate(t), Objects: objs,
		QueueTimeout: time.Minute, ExecutionTimeout: time.Minute,
	})
	var res workflows.RunTaskResult
	require.NoError(t, run.Get(context.Background(), &res))
	published, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 1<<20)
	require.NoError(t, err)
	got, err := decodeSummary(published["outputs/summary.json"])
	require.NoError(t, err)
	want.TopPaths = want.TopPaths[:min(10, len(want.TopPaths))]
	assert.Equal(t, want, got)

	// The job reads capability URLs of the worker's gateway: no S3 endpoint,
	// no key, no presigned signature in the job.
	jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"=e2e-gw")
	require.Len(t, jobs, 1)
	for _, in := range jobs[0].Task().InputSources[1:] {
		u := in.Source.Params["URL"].(string)
		assert.Contains(t, u, env.GatewayServer.URL()+inputgateway.PathPrefix)
		assert.NotContains(t, u, "X-Amz-Signature")
	}
}

// tamperFirst spoils the URLs of the first submission, as an expired or
// forged token would be.
type tamperFirst struct {
	mu    sync.Mutex
	calls int
	next  activities.URLMinter
	first int // URLs to spoil
}

func (m *tamperFirst) URL(ref inputgateway.ObjectRef, connector string, ttl time.Duration) (string, error) {
	u, err := m.next.URL(ref, connector, ttl)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.calls <= m.first {
		u = u[:len(u)-4] + "AAAA"
	}
	return u, err
}

func TestARetriedBatchGetsFreshURLs(t *testing.T) {
	queue := "e2e-gw-retry"
	files, want := logFiles(12, 2, 50)
	objs := putObjects(t, "gw-logs", "retry/", files)
	w, err := env.StartWorkerWith(workerapp.Options{TaskQueue: queue, Gateway: &tamperFirst{next: env.Gateway, first: len(objs)}})
	require.NoError(t, err)
	defer w.Stop()
	run := startRunTask(t, queue, workflows.RunTaskInput{
		Connector: "e2e-gw-retry", BatchID: "b1", Template: sampleTemplate(t), Objects: objs,
		QueueTimeout: time.Minute, ExecutionTimeout: time.Minute,
		Retry: workflows.TaskRetryPolicy{MaxAttempts: 3, InitialInterval: 500 * time.Millisecond},
	})
	var res workflows.RunTaskResult
	require.NoError(t, run.Get(context.Background(), &res))
	assert.Equal(t, 2, res.Attempts, "the first attempt's URLs were refused; the retry minted fresh ones")
	published, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 1<<20)
	require.NoError(t, err)
	got, err := decodeSummary(published["outputs/summary.json"])
	require.NoError(t, err)
	assert.Equal(t, want.Requests, got.Requests)

	first := jobsWithLabel(t, tasktemplate.LabelBatch+"="+tasktemplate.Key("e2e-gw-retry", "b1", 1))
	second := jobsWithLabel(t, tasktemplate.LabelBatch+"="+tasktemplate.Key("e2e-gw-retry", "b1", 2))
	require.Len(t, first, 1)
	require.Len(t, second, 1)
	// Its executions failed (HEAD got 403); Await stopped it instead of
	// waiting out the queue timeout.
	assert.Equal(t, models.JobStateTypeStopped, first[0].State.StateType)
	assert.Contains(t, first[0].State.Message, "executions failed", "a retried Await recognises the jobs it stopped by their reason")
	assert.NotEqual(t, first[0].Task().InputSources[1].Source.Params["URL"], second[0].Task().InputSources[1].Source.Params["URL"])
}

func TestNodesWithTheirOwnCredentialsReadS3InputsDirectly(t *testing.T) {
	queue := startWorker(t)
	files, want := logFiles(13, 2, 100)
	objs := putObjects(t, "s3-delivery", "logs/", files)
	run := startRunTask(t, queue, workflows.RunTaskInput{
		Connector: "e2e-s3", BatchID: "b1", Template: sampleTemplate(t), Objects: objs, Delivery: activities.DeliveryS3,
		QueueTimeout: time.Minute, ExecutionTimeout: time.Minute,
	})
	var res workflows.RunTaskResult
	require.NoError(t, run.Get(context.Background(), &res))
	published, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 1<<20)
	require.NoError(t, err)
	got, err := decodeSummary(published["outputs/summary.json"])
	require.NoError(t, err)
	assert.Equal(t, want.Requests, got.Requests)
	jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"=e2e-s3")
	require.Len(t, jobs, 1)
	src := jobs[0].Task().InputSources[1].Source
	assert.Equal(t, models.StorageSourceS3, src.Type)
	assert.Equal(t, env.S3.Endpoint(), src.Params["Endpoint"])
}
