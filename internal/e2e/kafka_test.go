package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
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

func TestKafkaInlineConnectorProcessesEveryRecordOnceInOrderAndFollowsNewPartitions(t *testing.T) {
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
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	waitCheckpoints(t, name, topic, want, 3*time.Minute)

	// Ledger from the task outputs: each record in exactly one successful
	// task, and in offset order within it.
	seen, completed := kafkaLedger(t, name)
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

	// Partitions raised from 4 to 6 while running: the new ones are consumed
	// without a restart.
	_, err = adm.CreatePartitions(ctx, 2, topic)
	require.NoError(t, err)
	c2, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MetadataMinAge(100*time.Millisecond))
	require.NoError(t, err)
	defer c2.Close()
	for p := int32(partitions); p < partitions+2; p++ {
		for i := 0; i < 20; i++ {
			rec := &kgo.Record{Partition: p, Value: []byte(nginxLine(20000 + i))}
			require.NoError(t, testenv.Eventually(10*time.Second, func() error {
				c2.ForceMetadataRefresh()
				return c2.ProduceSync(ctx, rec).FirstErr()
			}))
		}
	}
	waitCheckpoints(t, name, topic, map[int32]int64{partitions: 20, partitions + 1: 20}, time.Minute)
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

// kafkaLedger reads the outputs of every completed job of a connector and
// counts, per "partition:offset", how many successful tasks read the
// record; it checks offsets are in order within each task.
func kafkaLedger(t *testing.T, connector string) (map[string]int, int) {
	t.Helper()
	return kafkaLedgerAt(t, env.Bacalhau.Address(), connector)
}

// kafkaLedgerAt is kafkaLedger from the Bacalhau API at address.
func kafkaLedgerAt(t *testing.T, address, connector string) (map[string]int, int) {
	t.Helper()
	ctx := context.Background()
	seen := map[string]int{}
	completed := 0
	for _, j := range jobsWithLabelAt(t, address, tasktemplate.LabelConnector+"="+connector) {
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		res, err := activities.NewBacalhau(address, nil).Results(ctx, j.ID)
		require.NoError(t, err)
		if res.ExitCode != 0 {
			continue // the task failed: its records count elsewhere
		}
		completed++
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
	return seen, completed
}

func kafkaSpec(t *testing.T, name, broker, topic string, maxRecords int) workflows.KafkaConfig {
	t.Helper()
	text := fmt.Sprintf(`name: %s
kind: kafka
source:
  kafka: {brokers: [%s], topic: %s}
batch: {max_records: %d, max_wait: 1s}
task:
  template: %s
  vars: {MODULES_URL: "%s"}
  execution_timeout: 1m
retry: {max_attempts: 2, initial_interval: 1s}
`, name, broker, topic, maxRecords, filepath.Join(env.Root, "examples/jobs/logsummary.yaml"), env.Modules.URL())
	r, err := spec.Load(filepath.Join(t.TempDir(), "k.yaml"), []byte(text))
	require.NoError(t, err)
	return *r.Kafka
}

func TestKafkaWorkerKilledAtRandomPointsLosesNothing(t *testing.T) {
	ctx := context.Background()
	const topic, name, partitions, records = "kill-events", "e2e-kafka-kill", 3, 900
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: partitions}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for i := 0; i < records; i++ {
		require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Partition: int32(i % partitions), Value: []byte(nginxLine(i))}).FirstErr())
	}

	queue := "e2e-kafka-kill"
	w, err := env.StartWorker(queue)
	require.NoError(t, err)
	run, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.KafkaWorkflowID(name), TaskQueue: queue},
		workflows.KafkaConnectorWorkflowType, workflows.KafkaConnectorInput{Config: kafkaSpec(t, name, k.Brokers()[0], topic, 60)})
	require.NoError(t, err)
	// Terminated, not cancelled: its last worker is stopped by then, and a
	// connector left running would answer no status query.
	defer func() { _ = env.Client.TerminateWorkflow(ctx, run.GetID(), "", "test over") }()

	// Stop the worker at 5 random points while batches are read, submitted
	// and awaited, and start a new one each time.
	rnd := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 5; i++ {
		time.Sleep(time.Duration(500+rnd.IntN(2000)) * time.Millisecond)
		w.Stop()
		w, err = env.StartWorker(queue)
		require.NoError(t, err)
	}
	defer func() { w.Stop() }()

	waitCheckpoints(t, name, topic, map[int32]int64{0: records / partitions, 1: records / partitions, 2: records / partitions}, 3*time.Minute)
	seen, _ := kafkaLedger(t, name)
	assert.Len(t, seen, records, "no record lost")
	for key, n := range seen {
		assert.Equal(t, 1, n, "record %s in exactly one successful task", key)
	}
	// No second successful job for any batch identity.
	perBatch := map[string]int{}
	for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+name) {
		if j.State.StateType == models.JobStateTypeCompleted {
			perBatch[j.Meta[tasktemplate.MetaBatch]]++
		}
	}
	for batch, n := range perBatch {
		assert.Equal(t, 1, n, batch)
	}
}

// waitCheckpoints waits until each partition's consumer has its checkpoint
// at the wanted offset.
func waitCheckpoints(t *testing.T, name, topic string, want map[int32]int64, timeout time.Duration) {
	t.Helper()
	require.NoError(t, testenv.Eventually(timeout, func() error {
		for p, w := range want {
			st, err := partitionStatus(name, topic, p)
			if err != nil {
				return err
			}
			if st.Checkpoint != w {
				return fmt.Errorf("partition %d at %d of %d (%s %s)", p, st.Checkpoint, w, st.Phase, st.LastError)
			}
		}
		return nil
	}))
}
