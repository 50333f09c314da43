package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestIdleShardWakesWithinMaxWaitPlusASecond: the shard consumers of an
// idle Kinesis connector wait for its watcher's wake (no poll of their
// own, no 10-s shard listing); a record put to an idle shard is in a
// submitted job within max_wait (1 s) + 1 s of being put, and is
// processed.
func TestIdleShardWakesWithinMaxWaitPlusASecond(t *testing.T) {
	ctx := context.Background()
	const stream, name, maxWait = "e2e-idle-clicks", "e2e-kinesis-idle", time.Second
	k := startKinesis(t)
	require.NoError(t, k.CreateStream(ctx, stream, 2))
	queue := startWorker(t)
	spec := connectorSpecFile(t, name, "kinesis", fmt.Sprintf("  kinesis: {stream: %s, endpoint: %q}", stream, k.Endpoint()),
		"batch: {max_records: 100, max_wait: 1s}\n")
	out, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, out)
	defer func() { _, _ = starter(t, queue, "delete", name); waitClosed(t, workflows.KinesisWorkflowID(name)) }()
	shards := []string{"shardId-000000000000", "shardId-000000000001"}
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		for _, s := range shards {
			var st workflows.ShardStatus
			v, err := env.Client.QueryWorkflow(ctx, workflows.ShardWorkflowID(name, s), "", workflows.QueryShardStatus)
			if err == nil {
				err = v.Get(&st)
			}
			if err != nil {
				return err
			}
			if st.Phase != "idle" || !st.Watched || st.WaitsAt == nil {
				return fmt.Errorf("shard %s: %s (watched %v)", s, st.Phase, st.Watched)
			}
		}
		return nil
	}))
	time.Sleep(3 * time.Second) // the watcher runs over every idle shard

	c := k.Client()
	for round := 0; round < 2; round++ {
		before := len(jobsWithLabel(t, tasktemplate.LabelConnector+"="+name))
		produced := time.Now()
		put, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String(fmt.Sprintf("key-%d", round)),
			Data: []byte(nginxLine(round))})
		require.NoError(t, err)
		shard := aws.ToString(put.ShardId)
		var submitted time.Time
		require.NoError(t, testenv.Eventually(30*time.Second, func() error {
			jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"="+name)
			if len(jobs) <= before {
				return fmt.Errorf("no job yet for shard %s", shard)
			}
			for _, j := range jobs {
				if created := time.Unix(0, j.CreateTime); created.After(produced) && (submitted.IsZero() || created.Before(submitted)) {
					submitted = created
				}
			}
			return nil
		}))
		took := submitted.Sub(produced)
		t.Logf("record at idle shard %s: submitted %s after it was put", shard, took.Round(time.Millisecond))
		assert.LessOrEqual(t, took, maxWait+time.Second, "within max_wait + 1 s")
		require.NoError(t, testenv.Eventually(30*time.Second, func() error {
			if st := shardStatus(t, name, shard); st.Checkpoint != aws.ToString(put.SequenceNumber) || st.Phase != "idle" {
				return fmt.Errorf("shard %s at %q (%s), want %s", shard, st.Checkpoint, st.Phase, aws.ToString(put.SequenceNumber))
			}
			return nil
		}))
		time.Sleep(3 * time.Second) // idle again, watched again
	}
	st := kinesisStatus(t, name)
	assert.EqualValues(t, 2, st.Records)
	recordHistory(t, workflows.KinesisWorkflowID(name), "kinesis-connector-watcher")
	recordHistory(t, workflows.ShardWorkflowID(name, shards[0]), "kinesis-stream-consumer-watched")
}
