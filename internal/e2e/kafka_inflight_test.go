package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestTwoBatchesInFlightCheckpointInOrderAndSurviveAKillBetweenThem: a
// partition with max_in_flight 2 runs two batches at once; the first is
// slow (a record makes its task sleep), so the second finishes first. The
// consumer has counted the second batch's records while its checkpoint
// still waits at the first; the worker is killed -9 between them (second
// done, first still running) and a new one takes over: every record is in
// exactly one successful task, and the first batch's job is awaited again,
// not submitted twice.
func TestTwoBatchesInFlightCheckpointInOrderAndSurviveAKillBetweenThem(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const topic, name, queue, records = "inflight-events", "e2e-kafka-inflight", "e2e-kafka-inflight", 30
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: 1}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic(topic))
	require.NoError(t, err)
	defer c.Close()
	var recs []*kgo.Record
	for i := 0; i < records; i++ {
		line := nginxLine(i)
		if i == 14 { // in the first batch in flight (offsets 10..19)
			line = strings.Replace(line, "GET /p", "GET /SLOWREC", 1)
		}
		recs = append(recs, &kgo.Record{Value: []byte(line)})
	}
	require.NoError(t, c.ProduceSync(ctx, recs...).FirstErr())

	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	wopts := testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw, GatewaySecret: hex.EncodeToString(secret),
		Log: filepath.Join(env.Dir, "worker-inflight.log")}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()
	deleteConnector := applyConnectors(t, queue, map[string]string{
		name: kafkaSpecFile(t, name, k.Brokers()[0], topic, "batch: {max_records: 10, max_wait: 1s, max_in_flight: 2}\n",
			// 30 s: under CI load (the chaos suite beside) the node took
			// 6.7 s to place a job and 6.5 s to run a 10-record task, and
			// 12 s let the slow batch land before the one beside it.
			"-slow-on=SLOWREC", "-slow-for=30s"),
	})
	defer func() { deleteConnector(); waitClosed(t, workflows.KafkaWorkflowID(name)) }()

	// The first batch (0..9) runs alone: the backlog is not known before it.
	// Then 10..19 (slow) and 20..29 run together; 20..29 lands first.
	first := activities.StreamRangeID(topic, 0, 10, 19)
	second := activities.StreamRangeID(topic, 0, 20, 29)
	var st workflows.PartitionStatus
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if st, err = partitionStatus(name, topic, 0); err != nil {
			return err
		}
		if st.Records < 20 {
			return fmt.Errorf("%d records counted, checkpoint %d (%s)", st.Records, st.Checkpoint, st.Phase)
		}
		return nil
	}))
	jobs := batchJobs(t, name)
	require.Len(t, jobs[second], 1, "the second batch in flight ran: %v", jobs)
	require.Len(t, jobs[first], 1, "the first batch in flight was submitted: %v", jobs)
	assert.Equal(t, models.JobStateTypeCompleted, jobs[second][0].State.StateType)
	assert.NotEqual(t, models.JobStateTypeCompleted, jobs[first][0].State.StateType, "the first is still running (slow)")
	assert.Equal(t, int64(10), st.Checkpoint, "the checkpoint waits for the first batch: %+v", st)
	assert.Equal(t, int64(20), st.Records, "the second batch's records are counted")

	// Kill between them: the second passed, the first still runs.
	w.Kill()
	t.Log("worker killed with the first batch in flight and the second done")
	w, err = env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	waitCheckpoints(t, name, topic, map[int32]int64{0: records}, 3*time.Minute)

	seen, completed := kafkaLedger(t, name)
	assert.Len(t, seen, records, "no record lost")
	for key, n := range seen {
		assert.Equal(t, 1, n, "record %s in exactly one successful task", key)
	}
	assert.Equal(t, 3, completed, "three batches, three successful jobs")
	jobs = batchJobs(t, name)
	assert.Len(t, jobs[first], 1, "the first batch's job was awaited again, not submitted again")
	assert.Len(t, jobs[second], 1, "the second batch ran once")
	assertIndexed(t, jobs)
	st, err = partitionStatus(name, topic, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(records), st.Records)
	assert.Equal(t, int64(3), st.Batches)
	recordHistory(t, workflows.PartitionWorkflowID(name, topic, 0), "kafka-stream-in-flight")
}

// assertIndexed checks that every job runs in its identity's own
// namespace (a connector started since jobs are indexed): the killed
// worker's successor found the first batch's job there, not by reading
// every job.
func assertIndexed(t *testing.T, jobs map[string][]*models.Job) {
	t.Helper()
	for id, js := range jobs {
		for _, j := range js {
			assert.Equal(t, tasktemplate.Namespace(j.Labels[tasktemplate.LabelBatch]), j.Namespace, "batch %s", id)
		}
	}
}

// batchJobs lists a connector's jobs by batch identity.
func batchJobs(t *testing.T, connector string) map[string][]*models.Job {
	t.Helper()
	out := map[string][]*models.Job{}
	for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+connector) {
		out[j.Meta[tasktemplate.MetaBatch]] = append(out[j.Meta[tasktemplate.MetaBatch]], j)
	}
	return out
}

// TestRecordsBehindASlowJobRunBesideItAndSurviveAKill: on a live partition
// (max_in_flight 2, max_wait 1 s) a batch's job runs long (a record makes
// its task sleep); records produced meanwhile do not wait for it: once they
// have waited max_wait they run as the next batch beside it, whose job is
// submitted and finishes while the slow one still runs, and the checkpoint
// waits for the slow batch. The worker is killed -9 between them; its
// successor awaits the slow job again (not submitted twice) and every
// record is in exactly one successful task.
func TestRecordsBehindASlowJobRunBesideItAndSurviveAKill(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const topic, name, queue = "beside-events", "e2e-kafka-beside", "e2e-kafka-beside"
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: 1}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic(topic))
	require.NoError(t, err)
	defer c.Close()

	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	wopts := testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw, GatewaySecret: hex.EncodeToString(secret),
		Log: filepath.Join(env.Dir, "worker-beside.log")}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()
	deleteConnector := applyConnectors(t, queue, map[string]string{
		name: kafkaSpecFile(t, name, k.Brokers()[0], topic, "batch: {max_records: 100, max_wait: 1s, max_in_flight: 2}\n",
			"-slow-on=SLOWREC", "-slow-for=20s"),
	})
	defer func() { deleteConnector(); waitClosed(t, workflows.KafkaWorkflowID(name)) }()

	// The slow record alone: its batch's job runs 20 s.
	slow := strings.Replace(nginxLine(0), "GET /p", "GET /SLOWREC", 1)
	require.NoError(t, c.ProduceSync(ctx, &kgo.Record{Value: []byte(slow)}).FirstErr())
	first := activities.StreamBatchID(topic, 0, 0)
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if len(batchJobs(t, name)[first]) == 0 {
			return fmt.Errorf("the slow batch's job is not submitted yet")
		}
		return nil
	}))
	var recs []*kgo.Record
	for i := 1; i <= 5; i++ {
		recs = append(recs, &kgo.Record{Value: []byte(nginxLine(i))})
	}
	require.NoError(t, c.ProduceSync(ctx, recs...).FirstErr())

	// The records behind it run beside it.
	second := activities.StreamRangeID(topic, 0, 1, 5)
	var st workflows.PartitionStatus
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if st, err = partitionStatus(name, topic, 0); err != nil {
			return err
		}
		if st.Records < 5 {
			return fmt.Errorf("%d records counted, checkpoint %d (%s)", st.Records, st.Checkpoint, st.Phase)
		}
		return nil
	}))
	jobs := batchJobs(t, name)
	require.Len(t, jobs[first], 1, "the slow batch was submitted once: %v", jobs)
	require.Len(t, jobs[second], 1, "the records behind it ran as a batch of their own: %v", jobs)
	assert.Equal(t, models.JobStateTypeCompleted, jobs[second][0].State.StateType)
	assert.NotEqual(t, models.JobStateTypeCompleted, jobs[first][0].State.StateType, "the slow job still runs")
	assert.Equal(t, int64(0), st.Checkpoint, "the checkpoint waits for the slow batch: %+v", st)

	w.Kill()
	t.Log("worker killed with the slow batch in flight and the one beside it done")
	w, err = env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	waitCheckpoints(t, name, topic, map[int32]int64{0: 6}, 3*time.Minute)

	seen, completed := kafkaLedger(t, name)
	assert.Len(t, seen, 6, "no record lost")
	for key, n := range seen {
		assert.Equal(t, 1, n, "record %s in exactly one successful task", key)
	}
	assert.Equal(t, 2, completed, "two batches, two successful jobs")
	jobs = batchJobs(t, name)
	assert.Len(t, jobs[first], 1, "the slow batch's job was awaited again, not submitted again")
	assert.Len(t, jobs[second], 1, "the batch beside it ran once")
	assertIndexed(t, jobs)
	recordHistory(t, workflows.PartitionWorkflowID(name, topic, 0), "kafka-stream-beside")
}
