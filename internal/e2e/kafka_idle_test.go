package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestIdlePartitionWakesWithinMaxWaitPlusASecond: the consumers of an idle
// connector wait for its watcher's wake (no poll of their own); one record
// produced to one idle partition is in a submitted job within max_wait
// (1 s) + 1 s of being produced, and is processed.
func TestIdlePartitionWakesWithinMaxWaitPlusASecond(t *testing.T) {
	ctx := context.Background()
	const topic, name, partitions, maxWait = "idle-events", "e2e-kafka-idle", 4, time.Second
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: partitions}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()

	queue := startWorker(t)
	deleteConnector := applyConnectors(t, queue, map[string]string{
		name: kafkaSpecFile(t, name, k.Brokers()[0], topic, "batch: {max_records: 100, max_wait: 1s}\n"),
	})
	defer func() { deleteConnector(); waitClosed(t, workflows.KafkaWorkflowID(name)) }()
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		for p := int32(0); p < partitions; p++ {
			st, err := partitionStatus(name, topic, p)
			if err != nil {
				return err
			}
			if st.Phase != "idle" || !st.Watched {
				return fmt.Errorf("partition %d: %s (watched %v)", p, st.Phase, st.Watched)
			}
		}
		return nil
	}))
	time.Sleep(3 * time.Second) // the watcher runs over every idle partition

	for round := 0; round < 2; round++ {
		p := int32(round % partitions)
		produced := time.Now()
		require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte(nginxLine(round))}).FirstErr())
		var submitted time.Time
		require.NoError(t, testenv.Eventually(30*time.Second, func() error {
			for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+name) {
				if j.Meta[tasktemplate.MetaBatch] == activities.StreamBatchID(topic, p, int64(round/partitions)) {
					submitted = time.Unix(0, j.CreateTime)
					return nil
				}
			}
			return fmt.Errorf("no job yet for partition %d", p)
		}))
		took := submitted.Sub(produced)
		t.Logf("record at idle partition %d: submitted %s after it was produced", p, took.Round(time.Millisecond))
		assert.LessOrEqual(t, took, maxWait+time.Second, "within max_wait + 1 s")
		waitCheckpoints(t, name, topic, map[int32]int64{p: int64(round/partitions) + 1}, 30*time.Second)
		time.Sleep(3 * time.Second) // idle again, watched again
	}
}
