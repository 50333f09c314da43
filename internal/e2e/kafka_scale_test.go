package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestKafkaTwentyThousandRecordsInlineAndStagedSurviveKillNine is the Kafka
// connector's acceptance run: 20,000 records over 8 partitions (2,400 of
// them produced by kcat) consumed by an inline and a staged connector at
// once, while the worker *process* is killed with SIGKILL at 5 random
// points and the topic grows from 8 to 12 partitions. Ledgers from the task
// outputs prove every record processed by exactly one successful task, in
// order per partition, and no batch identity with two successful jobs;
// the mirrored groups show lag 0.
func TestKafkaTwentyThousandRecordsInlineAndStagedSurviveKillNine(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const topic, queue = "big-events", "e2e-kafka-big"
	const partitions, records, kcatPer = 8, 20000, 300
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: partitions}})
	require.NoError(t, err)
	defer k.Stop()
	const bucket = "e2e-kafka-stage"
	createBucket(t, bucket)

	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MetadataMinAge(100*time.Millisecond))
	require.NoError(t, err)
	defer c.Close()
	var recs []*kgo.Record
	for i := 0; i < records-partitions*kcatPer; i++ {
		recs = append(recs, &kgo.Record{Partition: int32(i % partitions), Value: []byte(nginxLine(i))})
	}
	require.NoError(t, c.ProduceSync(ctx, recs...).FirstErr())
	for p := 0; p < partitions; p++ {
		var b strings.Builder
		for i := 0; i < kcatPer; i++ {
			b.WriteString(nginxLine(100000+p*1000+i) + "\n")
		}
		cmd := exec.Command("kcat", "-b", k.Brokers()[0], "-t", topic, "-p", strconv.Itoa(p), "-P")
		cmd.Stdin = strings.NewReader(b.String())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}

	// The worker runs as a process of its own; its successors reuse its
	// gateway address and secret, so staged URLs it minted stay valid.
	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	wopts := testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw, GatewaySecret: hex.EncodeToString(secret),
		Log: filepath.Join(env.Dir, "worker-process.log")}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()

	inline, staged := "e2e-big-inline", "e2e-big-staged"
	defer applyConnectors(t, queue, map[string]string{
		inline: kafkaSpecFile(t, inline, k.Brokers()[0], topic, "batch: {max_records: 500, max_wait: 1s}\n"),
		staged: kafkaSpecFile(t, staged, k.Brokers()[0], topic, fmt.Sprintf(`mode: staged
staging:
  s3: {bucket: %s, prefix: batches/, endpoint: "%s", region: %s}
batch: {max_records: 2000, max_wait: 1s}
`, bucket, env.S3.Endpoint(), env.S3.Region())),
	})()

	// kill -9 at 5 random points; after the third, 8 -> 12 partitions.
	rnd := rand.New(rand.NewPCG(2026, 11))
	grown := int32(partitions + 4)
	for i := 0; i < 5; i++ {
		time.Sleep(time.Duration(1000+rnd.IntN(3000)) * time.Millisecond)
		w.Kill()
		t.Logf("worker killed (%d of 5)", i+1)
		if i == 2 {
			_, err := kadm.NewClient(c).CreatePartitions(ctx, 4, topic)
			require.NoError(t, err)
			for p := int32(partitions); p < grown; p++ {
				for j := 0; j < 100; j++ {
					rec := &kgo.Record{Partition: p, Value: []byte(nginxLine(200000 + int(p)*1000 + j))}
					require.NoError(t, testenv.Eventually(10*time.Second, func() error {
						c.ForceMetadataRefresh()
						return c.ProduceSync(ctx, rec).FirstErr()
					}))
				}
			}
		}
		w, err = env.StartWorkerProcess(ctx, wopts)
		require.NoError(t, err)
	}

	adm := kadm.NewClient(c)
	ends, err := adm.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	want := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset; total += o.Offset })
	require.Len(t, want, int(grown))
	require.Equal(t, int64(records+400), total)
	for _, name := range []string{inline, staged} {
		waitCheckpoints(t, name, topic, want, 6*time.Minute)
	}

	for _, name := range []string{inline, staged} {
		seen, jobs := kafkaLedger(t, name)
		assert.Len(t, seen, int(total), "%s: no record lost", name)
		for key, n := range seen {
			if n != 1 {
				assert.Equal(t, 1, n, "%s: record %s in exactly one successful task", name, key)
			}
		}
		assertBatchesInOrder(t, name)
		t.Logf("%s: %d records in %d successful jobs", name, len(seen), jobs)

		// The mirrored group shows lag 0 on every partition.
		lags, err := adm.Lag(ctx, "bacalhau-connect-"+name)
		require.NoError(t, err)
		l := lags["bacalhau-connect-"+name]
		require.NoError(t, l.Error())
		assert.Zero(t, l.Lag.Total(), "%s: group lag", name)
		assert.Len(t, l.Lag[topic], int(grown), "%s: every partition committed", name)
	}
	// The staged connector's batches went through S3.
	objs := listKeys(t, bucket, "batches/"+staged+"/")
	assert.NotEmpty(t, objs)
	recordHistory(t, workflows.PartitionWorkflowID(staged, topic, 0), "kafka-partition-staged")
}

// assertBatchesInOrder checks, per partition, that the connector's
// successful jobs were submitted in offset order but for the batches in
// flight together (spec.DefaultMaxInFlight: they may submit in either
// order, docs/kafka.md "Several batches in flight"), and that no batch identity
// has two successful jobs.
func assertBatchesInOrder(t *testing.T, connector string) {
	t.Helper()
	type run struct {
		created int64
		first   int64
	}
	perPartition := map[string][]run{}
	perBatch := map[string]int{}
	for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+connector) {
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		res, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).Results(context.Background(), j.ID)
		require.NoError(t, err)
		if res.ExitCode != 0 {
			continue
		}
		perBatch[j.Meta[tasktemplate.MetaBatch]]++
		id := j.Meta[tasktemplate.MetaBatch] // topic/partition@from
		part := id[:strings.LastIndex(id, "@")]
		first, err := strconv.ParseInt(j.Meta[activities.MetaFirst], 10, 64)
		require.NoError(t, err)
		perPartition[part] = append(perPartition[part], run{created: j.CreateTime, first: first})
	}
	for batch, n := range perBatch {
		assert.Equal(t, 1, n, "%s: batch %s has one successful job", connector, batch)
	}
	for part, runs := range perPartition {
		sort.Slice(runs, func(i, j int) bool { return runs[i].first < runs[j].first })
		for k := range runs {
			// Batches in flight together (and the rest of a range whose read
			// stopped short, run after them) may submit out of order; no
			// batch overtakes more than max_in_flight earlier ones.
			overtaken := 0
			for j := range k {
				if runs[j].created > runs[k].created {
					overtaken++
				}
			}
			assert.LessOrEqual(t, overtaken, spec.DefaultMaxInFlight, "%s %s: batch from %d submitted before %d earlier ones",
				connector, part, runs[k].first, overtaken)
		}
	}
}

// listKeys lists the keys under prefix in the S3 stand-in.
func listKeys(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(env.S3.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(t, err)
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}
