package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func nginxLine(i int) string {
	return fmt.Sprintf(`10.0.0.%d - - [27/Nov/2026:10:00:00 +0000] "GET /p%d HTTP/1.1" 200 %d "-" "curl/8"`, i%250, i%7, i)
}

func TestKafkaInlineConnectorProcessesEveryRecordOnceInOrder(t *testing.T) {
	ctx := context.Background()
	const topic, name, partitions, records = "web-events", "e2e-kafka", 4, 1600
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: partitions}})
	require.NoError(t, err)
	defer k.Stop()
	queue := startWorker(t)

	// 1,400 records from Go, 200 from kcat, spread over the partitions.
	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for i := 0; i < 1400; i++ {
		require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: int32(i % partitions), Value: []byte(nginxLine(i))}).FirstErr())
	}
	for p := 0; p < partitions; p++ {
		var b strings.Builder
		for i := 0; i < 50; i++ {
			b.WriteString(nginxLine(10000+p*100+i) + "\n")
		}
		cmd := exec.Command("kcat", "-b", k.Brokers()[0], "-t", topic, "-p", strconv.Itoa(p), "-P")
		cmd.Stdin = strings.NewReader(b.String())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}

	text := fmt.Sprintf(`name: %s
kind: kafka
source:
  kafka: {brokers: [%s], topic: %s}
batch: {max_records: 150, max_wait: 1s}
task:
  template: %s
  vars: {MODULES_URL: "%s"}
  execution_timeout: 1m
retry: {max_attempts: 2, initial_interval: 1s}
`, name, k.Brokers()[0], topic, filepath.Join(env.Root, "examples/jobs/logsummary.yaml"), env.Modules.URL())
	r, err := spec.Load(filepath.Join(t.TempDir(), "k.yaml"), []byte(text))
	require.NoError(t, err)
	run, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.KafkaWorkflowID(name), TaskQueue: queue},
		workflows.KafkaConnectorWorkflowType, workflows.KafkaConnectorInput{Config: *r.Kafka})
	require.NoError(t, err)
	defer func() { _ = env.Client.CancelWorkflow(ctx, run.GetID(), "") }()

	// Every partition's checkpoint reaches its end offset.
	adm := kadm.NewClient(c)
	ends, err := adm.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	require.Equal(t, int64(records), total)
	require.NoError(t, testenv.Eventually(3*time.Minute, func() error {
		for p := int32(0); p < partitions; p++ {
			v, err := env.Client.QueryWorkflow(ctx, workflows.PartitionWorkflowID(name, topic, p), "", workflows.QueryPartitionStatus)
			if err != nil {
				return err
			}
			var st workflows.PartitionStatus
			if err := v.Get(&st); err != nil {
				return err
			}
			end, _ := ends.Lookup(topic, p)
			if st.Checkpoint != end.Offset {
				return fmt.Errorf("partition %d at %d of %d (%s %s)", p, st.Checkpoint, end.Offset, st.Phase, st.LastError)
			}
		}
		return nil
	}))

	// Ledger from the task outputs: each record in exactly one successful
	// task, and in offset order within it.
	seen := map[string]int{}
	jobs := jobsWithLabel(t, tasktemplate.LabelConnector+"="+name)
	completed := 0
	for _, j := range jobs {
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		completed++
		res, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).Results(ctx, j.ID)
		require.NoError(t, err)
		files, err := activities.FetchPublished(ctx, nil, res.ResultURL, 8<<20)
		require.NoError(t, err)
		s, err := decodeKafkaSummary(files["outputs/summary.json"])
		require.NoError(t, err)
		for p, offs := range s.KafkaOffsets {
			for i, o := range offs {
				if i > 0 {
					assert.Equal(t, offs[i-1]+1, o, "job %s partition %s: offsets in order", j.ID, p)
				}
				seen[p+":"+strconv.FormatInt(o, 10)]++
			}
		}
		assert.Zero(t, s.Malformed, "every record's value is a log line")
	}
	assert.Len(t, seen, records)
	for key, n := range seen {
		assert.Equal(t, 1, n, key)
	}
	t.Logf("%d records in %d successful jobs", len(seen), completed)

	// The mirrored group offsets equal the checkpoints: lag 0.
	committed, err := adm.FetchOffsets(ctx, r.Kafka.Group)
	require.NoError(t, err)
	for p := int32(0); p < partitions; p++ {
		end, _ := ends.Lookup(topic, p)
		got, ok := committed.Lookup(topic, p)
		require.True(t, ok, "partition %d committed", p)
		assert.Equal(t, end.Offset, got.At, "partition %d", p)
	}
	recordHistory(t, workflows.PartitionWorkflowID(name, topic, 0), "kafka-partition-consumer")
	recordHistory(t, workflows.KafkaWorkflowID(name), "kafka-connector")
}

type kafkaSummary struct {
	Malformed    int                `json:"malformed"`
	KafkaOffsets map[string][]int64 `json:"kafka_offsets"`
}

func decodeKafkaSummary(raw []byte) (kafkaSummary, error) {
	var s kafkaSummary
	err := json.Unmarshal(raw, &s)
	return s, err
}
