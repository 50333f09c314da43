package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// kafkaSpecFile writes a Kafka connector spec whose task is the sample
// task with extra parameters (already rendered for this stack).
func kafkaSpecFile(t *testing.T, name, broker, topic, extra string, taskParams ...string) string {
	t.Helper()
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "task.yaml")
	require.NoError(t, os.WriteFile(tmpl, []byte(sampleTemplate(t, taskParams...)), 0o644))
	text := fmt.Sprintf(`name: %s
kind: kafka
source:
  kafka: {brokers: [%s], topic: %s}
task:
  template: task.yaml
  execution_timeout: 1m
%s`, name, broker, topic, extra)
	path := filepath.Join(dir, name+".yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

// applyConnectors applies each spec (by connector name) and returns the
// function that deletes them: defer applyConnectors(...)().
func applyConnectors(t *testing.T, queue string, specs map[string]string) func() {
	t.Helper()
	for _, spec := range specs {
		out, err := starter(t, queue, "apply", "-f", spec)
		require.NoError(t, err, out)
	}
	return func() {
		for name := range specs {
			_, _ = starter(t, queue, "delete", name)
		}
	}
}

// deadLetterRecords reads a dead-letter topic from its start until at
// least one record is there (30 s at most) and returns what it read.
func deadLetterRecords(t *testing.T, k *devstack.Kafka, topic string) []*kgo.Record {
	t.Helper()
	dc, err := k.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer dc.Close()
	var dead []*kgo.Record
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		dead = append(dead, dc.PollFetches(pctx).Records()...)
		if len(dead) == 0 {
			return fmt.Errorf("nothing in %s yet", topic)
		}
		return nil
	}))
	return dead
}

// recordHeaders maps a record's header keys to their values.
func recordHeaders(r *kgo.Record) map[string]string {
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h.Key] = string(h.Value)
	}
	return headers
}

func connectorStatus(t *testing.T, queue, name string) workflows.KafkaConnectorStatus {
	t.Helper()
	out, err := starter(t, queue, "describe", name, "-o", "json")
	require.NoError(t, err)
	var st workflows.KafkaConnectorStatus
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st
}

func produce(t *testing.T, c *kgo.Client, topic string, partition int32, values ...string) {
	t.Helper()
	for _, v := range values {
		require.NoError(t, c.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: partition, Value: []byte(v)}).FirstErr())
	}
}

func TestKafkaPoisonRecordIsBisectedAndDeadLetteredAndControlsFanOut(t *testing.T) {
	ctx := context.Background()
	const topic, dlq, name = "poison-events", "poison-dlq", "e2e-kafka-poison"
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: 2, dlq: 1}})
	require.NoError(t, err)
	defer k.Stop()
	queue := startWorker(t)
	c, err := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()

	// 150 records per partition; partition 1's offset 68 is poison: the
	// task exits 3 on it, quoting it on stderr. Neither it nor any other
	// record may reach a history (the scan after the suite looks).
	for i := 0; i < 150; i++ {
		produce(t, c, topic, 0, nginxLine(i))
		line := nginxLine(1000 + i)
		if i == 68 {
			line = "POISON " + line
			noteRecord("the Kafka poison record", line)
		}
		produce(t, c, topic, 1, line)
	}
	noteRecord("a Kafka record", nginxLine(1149))
	spec := kafkaSpecFile(t, name, k.Brokers()[0], topic, `batch: {max_records: 40, max_wait: 1s}
retry: {max_attempts: 2, initial_interval: 1s}
on_failure:
  dead_letter: {kafka: {topic: `+dlq+`}}
`, "-reject=POISON")
	out, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, out)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	waitCheckpoints(t, name, topic, map[int32]int64{0: 150, 1: 150}, 4*time.Minute)
	seen, _ := kafkaLedger(t, name)
	assert.Len(t, seen, 299, "every record but the poison one processed")
	for key, n := range seen {
		assert.Equal(t, 1, n, key)
	}
	assert.Zero(t, seen["1:68"], "the poison record never succeeded")

	// The poison record is in the dead-letter topic, with its error: the
	// job and exit code the workflow knew, and the task's stderr, which
	// the dead-letter activity read from Bacalhau (history holds neither
	// the record nor that stderr).
	dead := deadLetterRecords(t, k, dlq)
	require.Len(t, dead, 1)
	headers := recordHeaders(dead[0])
	assert.Contains(t, string(dead[0].Value), "POISON")
	assert.Equal(t, topic+"/1@68", headers[activities.HeaderSource])
	assert.Contains(t, headers[activities.HeaderError], "cannot process record: ")
	assert.Contains(t, headers[activities.HeaderError], "POISON "+nginxLine(1068)[:20], "the task's stderr quotes the record")
	assert.Contains(t, headers[activities.HeaderError], "exited 3 (stderr ")
	assert.NotEmpty(t, headers[activities.HeaderJobs])
	assert.Equal(t, name, headers[activities.HeaderConnector])

	// The connector's status aggregates the partitions' reports.
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		st := connectorStatus(t, queue, name)
		if st.Records != 299 || st.DeadLettered != 1 || st.Lag != 0 || len(st.Partitions) != 2 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}))
	row := listRow(t, queue, "yaml", name)
	assert.Equal(t, "kafka", row.Kind)
	assert.Equal(t, int64(299), row.Processed)
	assert.Zero(t, row.Lag)
	assert.Equal(t, topic+": 2 partitions", row.Position)

	// Reset is refused while running: nothing moves.
	_, err = starter(t, queue, "reset", name, "--to", "earliest")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "needs a paused connector")

	// Pause fans out: records produced now wait.
	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	waitPhase(t, name, topic, []int32{0, 1}, "paused")
	waitListed(t, fmt.Sprintf("ConnectorKind='kafka' AND ConnectorName='%s' AND ConnectorState='paused'", name), workflows.KafkaWorkflowID(name))
	for p := int32(0); p < 2; p++ {
		for i := 0; i < 10; i++ {
			produce(t, c, topic, p, nginxLine(5000+i))
		}
	}
	time.Sleep(3 * time.Second)
	waitCheckpoints(t, name, topic, map[int32]int64{0: 150, 1: 150}, time.Second)

	// Lag stays true while paused: the connector's watcher follows the
	// paused partitions' ends (within its 15-s gathering); describe and
	// list agree, and with the group's own lag.
	adm := kadm.NewClient(c)
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		st := connectorStatus(t, queue, name)
		for _, p := range st.Partitions {
			if p.End != 160 || p.Lag != 10 {
				return fmt.Errorf("partition %d while paused: end %d, lag %d (want 160, 10)", p.Partition, p.End, p.Lag)
			}
		}
		if st.Lag != 20 || len(st.Partitions) != 2 {
			return fmt.Errorf("connector lag %d while paused (want 20)", st.Lag)
		}
		return nil
	}))
	assert.Equal(t, int64(20), listRow(t, queue, "yaml", name).Lag, "list agrees with describe")
	groupLag, err := adm.Lag(ctx, "bacalhau-connect-"+name)
	require.NoError(t, err)
	assert.Equal(t, int64(20), groupLag["bacalhau-connect-"+name].Lag.Total(), "the consumer group's own lag")

	// Reset to latest skips what arrived while paused. The starter waits
	// until both consumers applied it, showing progress, and prints the
	// new positions.
	out, progress, err := starterStreams(t, queue, "reset", name, "--to", "latest")
	require.NoError(t, err)
	assert.Contains(t, progress, "[2/2] consumers of "+name+" applied the reset")
	assert.Contains(t, out, "2 partitions reset to latest (0=160, 1=160)")
	waitCheckpoints(t, name, topic, map[int32]int64{0: 160, 1: 160}, 30*time.Second)
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		for _, p := range connectorStatus(t, queue, name).Partitions {
			if p.Checkpoint != 160 || p.End < p.Checkpoint || p.Lag != 0 {
				return fmt.Errorf("partition %d after the reset: checkpoint %d, end %d, lag %d", p.Partition, p.Checkpoint, p.End, p.Lag)
			}
		}
		return nil
	}), "after reset --to latest the end is never below the checkpoint")
	committed, err := adm.FetchOffsets(ctx, "bacalhau-connect-"+name)
	require.NoError(t, err)
	for p := int32(0); p < 2; p++ {
		o, ok := committed.Lookup(topic, p)
		require.True(t, ok)
		assert.Equal(t, int64(160), o.At, "the group mirrors the reset at once")
	}

	// Resume: new records flow again; the skipped ones never ran.
	for p := int32(0); p < 2; p++ {
		produce(t, c, topic, p, nginxLine(6000), nginxLine(6001))
	}
	_, err = starter(t, queue, "resume", name)
	require.NoError(t, err)
	waitCheckpoints(t, name, topic, map[int32]int64{0: 162, 1: 162}, time.Minute)
	seen, _ = kafkaLedger(t, name)
	assert.Len(t, seen, 299+4)
	for _, skipped := range []string{"0:150", "0:159", "1:150", "1:159"} {
		assert.Zero(t, seen[skipped], skipped)
	}

	// Reset back to the start of partition 0 runs its records again, in
	// new jobs: the batch that starts at offset 0 has run before, and must
	// not be found under its old identity (the reset gives the batches an
	// epoch of their own). Partition 1 is not named and stays.
	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	waitPhase(t, name, topic, []int32{0, 1}, "paused")
	_, err = starter(t, queue, "reset", name, "--to", "0=0")
	require.NoError(t, err)
	_, err = starter(t, queue, "resume", name)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(2*time.Minute, func() error {
		seen, _ = kafkaLedger(t, name)
		if seen["0:0"] != 2 || seen["0:161"] != 2 {
			return fmt.Errorf("partition 0 after the reset to 0: offset 0 ran %d times, 161 %d times", seen["0:0"], seen["0:161"])
		}
		return nil
	}))
	waitCheckpoints(t, name, topic, map[int32]int64{0: 162, 1: 162}, time.Minute)
	for o := 0; o < 162; o++ {
		want := 2 // once before the reset, once after it
		if o >= 150 && o < 160 {
			want = 1 // skipped by the reset to latest, run now
		}
		assert.Equal(t, want, seen["0:"+strconv.Itoa(o)], "partition 0 offset %d", o)
	}
	assert.Equal(t, 1, seen["1:0"], "partition 1 was not reset")
	_, err = starter(t, queue, "resume", name+"-missing")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not found")

	// trigger and backfill are cron verbs: the error names the kind.
	_, err = starter(t, queue, "trigger", name)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a kafka connector")
	_, err = starter(t, queue, "backfill", name, "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a kafka connector")

	// apply --diff shows a changed batch size and changes nothing; apply
	// updates the running connector; the next diff finds nothing.
	smaller := kafkaSpecFile(t, name, k.Brokers()[0], topic, `batch: {max_records: 20, max_wait: 1s}
retry: {max_attempts: 2, initial_interval: 1s}
on_failure:
  dead_letter: {kafka: {topic: `+dlq+`}}
`, "-reject=POISON")
	out, err = starter(t, queue, "apply", "--diff", "-f", smaller)
	require.NoError(t, err)
	assert.Contains(t, out, "MaxRecords: 40 → 20")
	out, err = starter(t, queue, "apply", "-f", smaller)
	require.NoError(t, err)
	assert.Contains(t, out, "updated")
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		out, err := starter(t, queue, "apply", "--diff", "-f", smaller, "-o", "json")
		if err != nil {
			return err
		}
		if !strings.Contains(out, `"result": "unchanged"`) {
			return fmt.Errorf("diff after the update: %s", out)
		}
		return nil
	}))

	// delete stops the connector and its consumers; the topic keeps its records.
	_, err = starter(t, queue, "delete", name)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		for _, id := range []string{workflows.KafkaWorkflowID(name), workflows.PartitionWorkflowID(name, topic, 0), workflows.PartitionWorkflowID(name, topic, 1)} {
			d, err := env.Client.DescribeWorkflow(ctx, id, "")
			if err != nil {
				return err
			}
			if s := d.RawResponse.WorkflowExecutionInfo.Status.String(); s == "Running" {
				return fmt.Errorf("%s still running", id)
			}
		}
		return nil
	}))
	ends, err := adm.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	ends.Each(func(o kadm.ListedOffset) {
		assert.Equal(t, int64(162), o.Offset, "partition %d keeps its records", o.Partition)
	})

	recordHistory(t, workflows.PartitionWorkflowID(name, topic, 1), "kafka-partition-poison")
	recordHistory(t, workflows.PartitionWorkflowID(name, topic, 0), "kafka-partition-reset")
	recordHistory(t, workflows.KafkaWorkflowID(name), "kafka-connector-controls")
}

// waitPhase waits until the partitions' consumers report phase.
func waitPhase(t *testing.T, name, topic string, parts []int32, phase string) {
	t.Helper()
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		for _, p := range parts {
			st, err := partitionStatus(name, topic, p)
			if err != nil {
				return err
			}
			if st.Phase != phase {
				return fmt.Errorf("partition %d is %s", p, st.Phase)
			}
		}
		return nil
	}))
}

// TestKafkaBrokerDownLosesNoCheckpoint stops the broker under a running
// connector and starts it again (same port, same data): the consumers wait,
// the connector says what is wrong, and consumption resumes from the
// checkpoints with every record processed once.
func TestKafkaBrokerDownLosesNoCheckpoint(t *testing.T) {
	ctx := context.Background()
	const topic, name = "outage-events", "e2e-kafka-outage"
	port, err := testenv.FreeAddr()
	require.NoError(t, err)
	_, portStr, _ := strings.Cut(port, ":")
	portNum, err := strconv.Atoi(portStr)
	require.NoError(t, err)
	kopts := devstack.KafkaOptions{Port: portNum, DataDir: t.TempDir(), Topics: map[string]int32{topic: 2}}
	k, err := devstack.StartKafka(ctx, kopts)
	require.NoError(t, err)
	defer func() { k.Stop() }()
	queue := startWorker(t)
	c, err := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		produce(t, c, topic, int32(i%2), nginxLine(i))
	}
	c.Close()
	out, err := starter(t, queue, "apply", "-f", kafkaSpecFile(t, name, k.Brokers()[0], topic, "batch: {max_records: 20, max_wait: 1s}\n"))
	require.NoError(t, err, out)
	defer func() { _, _ = starter(t, queue, "delete", name) }()
	waitCheckpoints(t, name, topic, map[int32]int64{0: 50, 1: 50}, 2*time.Minute)

	k.Stop()
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if st := connectorStatus(t, queue, name); st.LastError == "" {
			return errors.New("the connector does not report the outage yet")
		}
		return nil
	}))
	waitCheckpoints(t, name, topic, map[int32]int64{0: 50, 1: 50}, time.Second)

	k, err = devstack.StartKafka(ctx, kopts)
	require.NoError(t, err)
	c, err = k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for i := 100; i < 160; i++ {
		produce(t, c, topic, int32(i%2), nginxLine(i))
	}
	waitCheckpoints(t, name, topic, map[int32]int64{0: 80, 1: 80}, 2*time.Minute)
	seen, _ := kafkaLedger(t, name)
	assert.Len(t, seen, 160)
	for key, n := range seen {
		assert.Equal(t, 1, n, key)
	}
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if st := connectorStatus(t, queue, name); st.LastError != "" {
			return fmt.Errorf("still reports %q", st.LastError)
		}
		return nil
	}))
}

// partitionStatus queries one partition consumer.
func partitionStatus(name, topic string, p int32) (workflows.PartitionStatus, error) {
	var st workflows.PartitionStatus
	v, err := env.Client.QueryWorkflow(context.Background(), workflows.PartitionWorkflowID(name, topic, p), "", workflows.QueryPartitionStatus)
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}
