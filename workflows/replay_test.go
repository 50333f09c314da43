package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/internal/natssource"
	"github.com/bacalhau-connect/bacalhau-connect/internal/pubsubsource"
)

// TestReplayRecordedHistories replays every history recorded from the
// end-to-end suite (testdata/histories, refreshed with RECORD_HISTORIES, see
// internal/e2e) against the current workflow code: a change that is not
// deterministic for histories already in flight fails here. Such changes
// need workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			id, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".id")
			require.NoError(t, err, "each history needs its workflow ID beside it")
			raw, err := os.Open(f)
			require.NoError(t, err)
			defer func() { _ = raw.Close() }()
			history, err := client.HistoryFromJSON(raw, client.HistoryJSONOptions{})
			require.NoError(t, err)

			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(RunTask, workflowOptions(RunTaskWorkflowType))
			r.RegisterWorkflowWithOptions(Budget, workflowOptions(BudgetWorkflowType))
			r.RegisterWorkflowWithOptions(Cron, workflowOptions(CronWorkflowType))
			r.RegisterWorkflowWithOptions(CronBackfill, workflowOptions(CronBackfillWorkflowType))
			r.RegisterWorkflowWithOptions(KafkaConnector, workflowOptions(KafkaConnectorWorkflowType))
			r.RegisterWorkflowWithOptions(PartitionConsumer, workflowOptions(PartitionConsumerWorkflowType))
			r.RegisterWorkflowWithOptions(QueueConnector, workflowOptions(QueueWorkflowType))
			r.RegisterWorkflowWithOptions(KinesisConnector, workflowOptions(KinesisConnectorWorkflowType))
			r.RegisterWorkflowWithOptions(ShardConsumer, workflowOptions(ShardConsumerWorkflowType))
			r.RegisterWorkflowWithOptions(KafkaStreamConsumer, workflowOptions(KafkaStreamConsumerWorkflowType))
			r.RegisterWorkflowWithOptions(KinesisStreamConsumer, workflowOptions(KinesisStreamConsumerWorkflowType))
			natsConnector, natsConsumer, _ := natssource.Kind().Types()
			r.RegisterWorkflowWithOptions(SourceStreamConnector, workflowOptions(natsConnector))
			r.RegisterWorkflowWithOptions(SourceStreamConsumer, workflowOptions(natsConsumer))
			pubsubConnector, _ := pubsubsource.Kind().Types()
			r.RegisterWorkflowWithOptions(SourceQueueConnector, workflowOptions(pubsubConnector))
			require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, history, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: strings.TrimSpace(string(id))},
			}))
		})
	}
}
