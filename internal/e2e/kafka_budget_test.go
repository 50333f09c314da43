package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestFiftyPartitionConsumersOnABudgetOfFiveAllProgress: 50 partitions
// with a backlog of 2 batches each share a budget of 5 leases. Consumers
// keep their lease across the batches of a backlog, so without recalls the
// first five would drain their partitions before any other started. The
// budget recalls the oldest leases while others wait: by the time 60 % of
// the records are processed, every partition has had a turn; all finish;
// every record is processed once; never more than 5 leases at once.
func TestFiftyPartitionConsumersOnABudgetOfFiveAllProgress(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const topic, name, partitions, per, batch, size = "budget-events", "e2e-kafka-budget", 50, 20, 10, 5
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: partitions}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	var recs []*kgo.Record
	for i := 0; i < partitions*per; i++ {
		recs = append(recs, &kgo.Record{Partition: int32(i % partitions), Value: []byte(nginxLine(i))})
	}
	require.NoError(t, c.ProduceSync(ctx, recs...).FirstErr())

	queue := startWorker(t)
	budgetID := workflows.BudgetWorkflowIDFor(queue)
	_, err = env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: budgetID, TaskQueue: queue},
		workflows.BudgetWorkflowType, workflows.BudgetInput{Size: size})
	require.NoError(t, err)
	defer func() { _ = env.Client.CancelWorkflow(ctx, budgetID, "") }()
	deleteConnector := applyConnectors(t, queue, map[string]string{
		name: kafkaSpecFile(t, name, k.Brokers()[0], topic, fmt.Sprintf("batch: {max_records: %d, max_wait: 1s}\n", batch)),
	})
	defer func() {
		// Cancelling 50 consumers takes a moment: the worker stays until
		// the connector closed, or it would stay open, unanswering, for
		// the tests after this one (starter list queries every connector).
		deleteConnector()
		waitClosed(t, workflows.KafkaWorkflowID(name))
	}()

	checkpoints := func() ([]int64, int64, error) {
		var at []int64
		var total int64
		for p := int32(0); p < partitions; p++ {
			st, err := partitionStatus(name, topic, p)
			if err != nil {
				return nil, 0, err
			}
			at = append(at, max(st.Checkpoint, 0))
			total += max(st.Checkpoint, 0)
		}
		return at, total, nil
	}
	var midway []int64
	require.NoError(t, testenv.Eventually(3*time.Minute, func() error {
		at, total, err := checkpoints()
		if err != nil {
			return err
		}
		if total < partitions*per*6/10 {
			return fmt.Errorf("%d of %d records processed", total, partitions*per)
		}
		midway = at
		return nil
	}))
	for p, at := range midway {
		assert.GreaterOrEqual(t, at, int64(batch), "partition %d had no turn by the time 60%% of the records were processed: %v", p, midway)
	}
	want := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		want[p] = per
	}
	waitCheckpoints(t, name, topic, want, 3*time.Minute)
	seen, _ := kafkaLedger(t, name)
	assert.Len(t, seen, partitions*per, "no record lost")
	for key, n := range seen {
		assert.Equal(t, 1, n, "record %s in exactly one successful task", key)
	}
	v, err := env.Client.QueryWorkflow(ctx, budgetID, "", workflows.QueryBudgetStatus)
	require.NoError(t, err)
	var st workflows.BudgetStatus
	require.NoError(t, v.Get(&st))
	t.Logf("budget: %+v", st)
	assert.LessOrEqual(t, st.HighWater, size, "never more leases than the budget's size")
	assert.Positive(t, st.Recalled, "leases were recalled while others waited")
}

// waitClosed waits (a minute at most) until a workflow is no longer running.
func waitClosed(t *testing.T, id string) {
	t.Helper()
	assert.NoError(t, testenv.Eventually(time.Minute, func() error {
		d, err := env.Client.DescribeWorkflow(context.Background(), id, "")
		if err == nil && d.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return fmt.Errorf("%s still running", id)
		}
		return err
	}))
}
