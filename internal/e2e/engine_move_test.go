package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/worker"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// preEngineCommit is the last commit whose stream connectors ran the older
// consumer types (KafkaPartitionConsumer, KinesisShardConsumer).
const preEngineCommit = "04cd7cda7747657bfbaa59dc51c655f9c8afdb05"

// olderWorker builds ./worker as it was at commit, from the repository's
// history (git archive), as a deployment's running release would be.
func olderWorker(t *testing.T, commit string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("bash", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", env.Root, commit, dir)).CombinedOutput()
	require.NoError(t, err, "the upgrade test needs the repository's history (a full clone) to build the release at %s: %s", commit, out)
	bin := filepath.Join(dir, "worker-old")
	build := exec.Command("go", "build", "-o", bin, "./worker")
	build.Dir = dir
	out, err = build.CombinedOutput()
	require.NoError(t, err, "building the worker at %s: %s", commit, out)
	return bin
}

// TestKafkaConnectorOnTheOlderConsumersMovesOntoTheEngine upgrades a
// running Kafka connector: the release before the stream engine runs it
// (one KafkaPartitionConsumer per partition) and is killed -9 mid-backlog;
// a worker of this code takes over, and `starter apply` of the same spec
// moves every partition onto KafkaStreamConsumer from its checkpoint. Every
// record is processed exactly once (before, across and after the move),
// with one successful job per batch identity.
func TestKafkaConnectorOnTheOlderConsumersMovesOntoTheEngine(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const topic, name, partitions, per = "move-events", "e2e-kafka-move", 3, 120
	old := olderWorker(t, preEngineCommit)
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: partitions}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: int32(i % partitions), Value: []byte(nginxLine(i))}).FirstErr())
		}
	}
	produce(0, partitions*per)

	queue := "e2e-kafka-move"
	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	w, err := env.StartWorkerProcess(ctx, testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw,
		Log: filepath.Join(env.Dir, "worker-old.log"), Binary: old})
	require.NoError(t, err)
	specFile := kafkaSpecFile(t, name, k.Brokers()[0], topic, "batch: {max_records: 20, max_wait: 1s}\n")
	deleteConnector := applyConnectors(t, queue, map[string]string{name: specFile})
	var newer worker.Worker
	defer func() {
		// A worker must run for the delete to close the connector, or it
		// would stay open and unanswering for the tests after this one.
		if newer == nil {
			w.Kill()
			if newer, err = env.StartWorker(queue); err != nil {
				t.Errorf("starting a worker to delete the connector: %v", err)
				return
			}
		}
		deleteConnector()
		waitClosed(t, workflows.KafkaWorkflowID(name))
		newer.Stop()
	}()

	// The older release runs the partitions on its consumer type; it is
	// killed -9 while the backlog is being worked off.
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		var done int64
		for p := int32(0); p < partitions; p++ {
			st, err := partitionStatus(name, topic, p)
			if err != nil {
				return err
			}
			done += st.Checkpoint
		}
		if done < 40 {
			return fmt.Errorf("%d records processed", done)
		}
		return nil
	}))
	for p := int32(0); p < partitions; p++ {
		assert.Equal(t, workflows.PartitionConsumerWorkflowType, consumerType(t, workflows.PartitionWorkflowID(name, topic, p)))
	}
	w.Kill()
	olderConsumer, olderConnector := runID(t, workflows.PartitionWorkflowID(name, topic, 0)), runID(t, workflows.KafkaWorkflowID(name))

	// This code takes over the running histories; apply moves them.
	newer, err = env.StartWorker(queue)
	require.NoError(t, err)
	out, err := starter(t, queue, "apply", "-f", specFile)
	require.NoError(t, err, out)
	assert.Contains(t, out, "moving its consumers onto the stream engine")
	require.NoError(t, testenv.Eventually(2*time.Minute, func() error {
		for p := int32(0); p < partitions; p++ {
			if got := consumerType(t, workflows.PartitionWorkflowID(name, topic, p)); got != workflows.KafkaStreamConsumerWorkflowType {
				return fmt.Errorf("partition %d runs %s", p, got)
			}
		}
		return nil
	}))

	// Records produced after the move are processed on the engine too.
	produce(partitions*per, partitions*(per+20))
	waitCheckpoints(t, name, topic, map[int32]int64{0: per + 20, 1: per + 20, 2: per + 20}, 3*time.Minute)
	seen, _ := kafkaLedger(t, name)
	assert.Len(t, seen, partitions*(per+20), "no record lost")
	for key, n := range seen {
		assert.Equal(t, 1, n, "record %s in exactly one successful task", key)
	}
	perBatch := map[string]int{}
	for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+name) {
		if j.State.StateType == models.JobStateTypeCompleted {
			perBatch[j.Meta[tasktemplate.MetaBatch]]++
		}
	}
	for batch, n := range perBatch {
		assert.Equal(t, 1, n, batch)
	}
	// The older consumer that handed off, the older connector run that
	// took the apply, and the engine's connector and consumer.
	recordRunHistory(t, workflows.PartitionWorkflowID(name, topic, 0), olderConsumer, "kafka-partition-handoff")
	recordRunHistory(t, workflows.KafkaWorkflowID(name), olderConnector, "kafka-connector-move-on-apply")
	recordHistory(t, workflows.KafkaWorkflowID(name), "kafka-connector-engine-moved")
	recordHistory(t, workflows.PartitionWorkflowID(name, topic, 0), "kafka-stream-consumer-moved")
}

// runID is the ID of the current (or last) run of a workflow.
func runID(t *testing.T, id string) string {
	t.Helper()
	d, err := env.Client.DescribeWorkflow(context.Background(), id, "")
	require.NoError(t, err)
	return d.WorkflowExecution.RunID
}

// consumerType is the workflow type of the running (or last) execution of id.
func consumerType(t *testing.T, id string) string {
	t.Helper()
	d, err := env.Client.DescribeWorkflow(context.Background(), id, "")
	require.NoError(t, err)
	return d.WorkflowType.Name
}
