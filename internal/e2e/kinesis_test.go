package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func startKinesis(t *testing.T) *devstack.Kinesis {
	t.Helper()
	k, err := devstack.StartKinesis(context.Background(), devstack.KinesisOptions{StandinsDir: filepath.Join(env.Root, "internal/devstack/standins")})
	require.NoError(t, err)
	t.Cleanup(k.Stop)
	return k
}

// kinesisRecord is a record the test put: its partition key and its
// number within that key.
type kinesisRecord struct {
	key string
	n   int
}

// putKinesis puts records from..from+n-1 over keys partition keys, 500
// per call; record i has key user-(i % keys) and is that key's
// (i / keys)-th. It returns them by "SHARD/SEQUENCE".
func putKinesis(t *testing.T, k *devstack.Kinesis, stream string, from, n, keys int) map[string]kinesisRecord {
	t.Helper()
	out := map[string]kinesisRecord{}
	c := k.Client()
	for start := from; start < from+n; start += 500 {
		var entries []ktypes.PutRecordsRequestEntry
		var recs []kinesisRecord
		for i := start; i < min(start+500, from+n); i++ {
			r := kinesisRecord{key: fmt.Sprintf("user-%d", i%keys), n: i / keys}
			entries = append(entries, ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(r.key), Data: []byte(nginxLine(i))})
			recs = append(recs, r)
		}
		resp, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		require.NoError(t, err)
		require.Zero(t, aws.ToInt32(resp.FailedRecordCount))
		for i, e := range resp.Records {
			out[aws.ToString(e.ShardId)+"/"+aws.ToString(e.SequenceNumber)] = recs[i]
		}
	}
	return out
}

// openShards lists the stream's open shards with their hash key ranges.
func openShards(t *testing.T, k *devstack.Kinesis, stream string) []ktypes.Shard {
	t.Helper()
	resp, err := k.Client().ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	require.NoError(t, err)
	var open []ktypes.Shard
	for _, s := range resp.Shards {
		if s.SequenceNumberRange.EndingSequenceNumber == nil {
			open = append(open, s)
		}
	}
	sort.Slice(open, func(i, j int) bool {
		return hashKey(t, open[i].HashKeyRange.StartingHashKey).Cmp(hashKey(t, open[j].HashKeyRange.StartingHashKey)) < 0
	})
	return open
}

func hashKey(t *testing.T, s *string) *big.Int {
	t.Helper()
	v, ok := new(big.Int).SetString(aws.ToString(s), 10)
	require.True(t, ok)
	return v
}

// kinesisStatus queries a Kinesis connector's status.
func kinesisStatus(t *testing.T, name string) workflows.KinesisConnectorStatus {
	t.Helper()
	v, err := env.Client.QueryWorkflow(context.Background(), workflows.KinesisWorkflowID(name), "", workflows.QueryShardStatus)
	require.NoError(t, err)
	var st workflows.KinesisConnectorStatus
	require.NoError(t, v.Get(&st))
	return st
}

// shardStatus queries one shard consumer's own status.
func shardStatus(t *testing.T, name, shard string) workflows.ShardStatus {
	t.Helper()
	v, err := env.Client.QueryWorkflow(context.Background(), workflows.ShardWorkflowID(name, shard), "", workflows.QueryShardStatus)
	require.NoError(t, err)
	var st workflows.ShardStatus
	require.NoError(t, v.Get(&st))
	return st
}

// recordRun is one successful job of a stream connector: the records it
// read, in order, as its summary lists them.
type recordRun struct {
	job     string
	batch   string
	created int64
	records []string
}

// recordLedger reads every successful job's summary, by job creation
// time: the records it read, from the summary's field (kinesis_records:
// SHARD/SEQUENCE; source_records: UNIT/POSITION).
func recordLedger(t *testing.T, connector, field string) []recordRun {
	t.Helper()
	var runs []recordRun
	for _, j := range jobsWithLabel(t, tasktemplate.LabelConnector+"="+connector) {
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		res, err := activities.NewBacalhau(env.Bacalhau.Address(), nil).Results(context.Background(), j.ID)
		require.NoError(t, err)
		if res.ExitCode != 0 {
			continue
		}
		files, err := activities.FetchPublished(context.Background(), nil, res.ResultURL, 8<<20)
		require.NoError(t, err)
		var s map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(files["outputs/summary.json"], &s))
		var records []string
		var malformed int
		if raw, ok := s[field]; ok {
			require.NoError(t, json.Unmarshal(raw, &records))
		}
		require.NoError(t, json.Unmarshal(s["malformed"], &malformed))
		assert.Zero(t, malformed, "job %s: every record is a log line", j.ID)
		runs = append(runs, recordRun{job: j.ID, batch: j.Meta[tasktemplate.MetaBatch], created: j.CreateTime, records: records})
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].created < runs[j].created })
	return runs
}

// kinesisLedger is a Kinesis connector's recordLedger.
func kinesisLedger(t *testing.T, connector string) []recordRun {
	return recordLedger(t, connector, "kinesis_records")
}

// TestKinesisTenThousandRecordsAcrossSplitMergeAndKillNine is the Kinesis
// connector's acceptance run: 10,000 records over 2 shards, one shard
// split and two shards merged while the connector runs, and the worker
// process killed with SIGKILL at random points. The ledger from the task
// outputs shows every record processed by exactly one successful task,
// per-partition-key order kept across the reshards, and one successful
// job per batch identity; the closed shards are reported finished.
func TestKinesisTenThousandRecordsAcrossSplitMergeAndKillNine(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const stream, name, queue, keys = "e2e-clicks", "e2e-kinesis", "e2e-kinesis-big", 40
	k := startKinesis(t)
	require.NoError(t, k.CreateStream(ctx, stream, 2))
	sent := putKinesis(t, k, stream, 0, 4000, keys)

	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	wopts := testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw, GatewaySecret: hex.EncodeToString(secret),
		Log: filepath.Join(env.Dir, "worker-kinesis.log")}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()

	spec := connectorSpecFile(t, name, "kinesis", fmt.Sprintf("  kinesis: {stream: %s, endpoint: %q, region: us-east-1}", stream, k.Endpoint()),
		"batch: {max_records: 250, max_wait: 1s}\n")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	rnd := rand.New(rand.NewPCG(2026, 6))
	c := k.Client()
	for i := 0; i < 4; i++ {
		time.Sleep(time.Duration(1500+rnd.IntN(3000)) * time.Millisecond)
		w.Kill()
		t.Logf("worker killed (%d of 4)", i+1)
		switch i {
		case 0:
			// Split the lower open shard in the middle of its hash range.
			open := openShards(t, k, stream)
			lo, hi := hashKey(t, open[0].HashKeyRange.StartingHashKey), hashKey(t, open[0].HashKeyRange.EndingHashKey)
			mid := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
			_, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(stream), ShardToSplit: open[0].ShardId, NewStartingHashKey: aws.String(mid.String())})
			require.NoError(t, err)
			require.NoError(t, k.WaitActive(ctx, stream))
			t.Logf("split %s", aws.ToString(open[0].ShardId))
			for id, r := range putKinesis(t, k, stream, 4000, 3000, keys) {
				sent[id] = r
			}
		case 1:
			// Merge the upper child of the split with its neighbour.
			open := openShards(t, k, stream)
			require.Len(t, open, 3)
			_, err := c.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String(stream), ShardToMerge: open[1].ShardId, AdjacentShardToMerge: open[2].ShardId})
			require.NoError(t, err)
			require.NoError(t, k.WaitActive(ctx, stream))
			t.Logf("merged %s and %s", aws.ToString(open[1].ShardId), aws.ToString(open[2].ShardId))
			for id, r := range putKinesis(t, k, stream, 7000, 3000, keys) {
				sent[id] = r
			}
		}
		w, err = env.StartWorkerProcess(ctx, wopts)
		require.NoError(t, err)
	}
	require.Len(t, sent, 10000)

	require.NoError(t, testenv.Eventually(4*time.Minute, func() error {
		st := kinesisStatus(t, name)
		if st.Records < int64(len(sent)) {
			return fmt.Errorf("%d of %d records (%s); shards: %s", st.Records, len(sent), st.LastError, shardSummary(st))
		}
		return nil
	}), describeWorkflows(t, name, kinesisStatus(t, name)))
	st := kinesisStatus(t, name)
	assert.EqualValues(t, len(sent), st.Records, "no record counted twice")
	require.Len(t, st.Shards, 5, "2 shards, 2 from the split, 1 from the merge")
	finished := map[string]bool{}
	for _, s := range st.Shards {
		finished[s.Shard] = s.Finished
		t.Logf("shard %s parents %v: %s, %d records in %d batches", s.Shard, s.Parents, s.Phase, s.Records, s.Batches)
	}
	assert.Equal(t, 3, countTrue(finished), "the split parent and both merge parents are finished")

	// Exactly once, per-key order, one successful job per batch identity.
	runs := kinesisLedger(t, name)
	seen := map[string]int{}
	perBatch := map[string]int{}
	lastN := map[string]int{}
	for _, r := range runs {
		perBatch[r.batch]++
		for _, id := range r.records {
			seen[id]++
			rec, ok := sent[id]
			require.True(t, ok, "record %s was put by the test", id)
			if n, ok := lastN[rec.key]; ok && rec.n <= n {
				t.Errorf("key %s: record %d processed after %d (job %s)", rec.key, rec.n, n, r.job)
			}
			lastN[rec.key] = rec.n
		}
	}
	assert.Len(t, seen, len(sent), "every record processed")
	for id, n := range seen {
		if n != 1 {
			assert.Equal(t, 1, n, "record %s in exactly one successful task", id)
		}
	}
	for batch, n := range perBatch {
		assert.Equal(t, 1, n, "batch %s has one successful job", batch)
	}
	t.Logf("%d records in %d successful jobs", len(seen), len(runs))
	recordHistory(t, workflows.KinesisWorkflowID(name), "kinesis-connector")
}

// shardSummary says where each shard is, for failure messages.
func shardSummary(st workflows.KinesisConnectorStatus) string {
	var parts []string
	for _, s := range st.Shards {
		parts = append(parts, fmt.Sprintf("%s(parents %v) %s %d records, checkpoint %s, error %q", s.Shard, s.Parents, s.Phase, s.Records, s.Checkpoint, s.LastError))
	}
	return strings.Join(parts, "; ")
}

// describeWorkflows says how each shard consumer's workflow stands (status,
// pending activities and their last failures), for failure messages.
func describeWorkflows(t *testing.T, name string, st workflows.KinesisConnectorStatus) string {
	t.Helper()
	var b strings.Builder
	for _, s := range st.Shards {
		desc, err := env.Client.DescribeWorkflow(context.Background(), workflows.ShardWorkflowID(name, s.Shard), "")
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", s.Shard, err)
			continue
		}
		d := desc.RawResponse
		fmt.Fprintf(&b, "%s: %s", s.Shard, d.WorkflowExecutionInfo.GetStatus())
		for _, a := range d.PendingActivities {
			fmt.Fprintf(&b, "; pending %s attempt %d: %s", a.ActivityType.GetName(), a.Attempt, a.LastFailure.GetMessage())
		}
		if wt := d.PendingWorkflowTask; wt != nil {
			fmt.Fprintf(&b, "; workflow task attempt %d", wt.Attempt)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// TestKinesisPoisonRecordIsBisectedAndDeadLetteredAndTheShardMovesOn: a
// record the task always fails on is isolated by bisection and written to
// the S3 dead letter with its error; the other records are processed once
// and records put afterwards still flow.
func TestKinesisPoisonRecordIsBisectedAndDeadLetteredAndTheShardMovesOn(t *testing.T) {
	ctx := context.Background()
	const stream, name, bucket = "e2e-poison-clicks", "e2e-kinesis-poison", "e2e-kinesis-dlq"
	k := startKinesis(t)
	require.NoError(t, k.CreateStream(ctx, stream, 1))
	createBucket(t, bucket)
	c := k.Client()
	var poisonSeq string
	for i := 0; i < 60; i++ {
		body := nginxLine(i)
		if i == 37 {
			body = "POISON " + body
			noteRecord("the Kinesis poison record", body)
		}
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: []byte(body)})
		require.NoError(t, err)
		if i == 37 {
			poisonSeq = aws.ToString(out.SequenceNumber)
		}
	}
	queue := startWorker(t)
	spec := connectorSpecFile(t, name, "kinesis", fmt.Sprintf("  kinesis: {stream: %s, endpoint: %q}", stream, k.Endpoint()),
		fmt.Sprintf(`batch: {max_records: 20, max_wait: 1s}
retry: {max_attempts: 2, initial_interval: 1s}
on_failure:
  dead_letter: {s3: {bucket: %s, prefix: dlq/, endpoint: %q, region: %s}}
`, bucket, env.S3.Endpoint(), env.S3.Region()), "-reject=POISON")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	require.NoError(t, testenv.Eventually(3*time.Minute, func() error {
		st := kinesisStatus(t, name)
		if len(st.Shards) != 1 || st.Records < 59 || st.DeadLettered < 1 {
			return fmt.Errorf("%d records, %d dead-lettered; shards: %s", st.Records, st.DeadLettered, shardSummary(st))
		}
		return nil
	}))
	// The shard moves on: later records flow.
	for i := 60; i < 80; i++ {
		_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: []byte(nginxLine(i))})
		require.NoError(t, err)
	}
	require.NoError(t, testenv.Eventually(2*time.Minute, func() error {
		// The consumer's own status is authoritative for its phase: its
		// reports to the connector are signals, and two sent in a row may
		// arrive out of order.
		if st, own := kinesisStatus(t, name), shardStatus(t, name, "shardId-000000000000"); st.Records < 79 || own.Phase != "idle" {
			return fmt.Errorf("%d of 79 records, consumer %s; shards: %s", st.Records, own.Phase, shardSummary(st))
		}
		return nil
	}))
	st := kinesisStatus(t, name)
	assert.EqualValues(t, 1, st.DeadLettered)
	assert.EqualValues(t, 79, st.Records)
	sh := st.Shards[0]
	assert.Equal(t, "idle", shardStatus(t, name, sh.Shard).Phase)
	assert.Contains(t, sh.LastDeadLetter, "s3://"+bucket+"/dlq/")

	// The dead letter holds the poison record with its error, nothing else.
	keys := listKeys(t, bucket, "dlq/")
	require.Len(t, keys, 1)
	obj, err := env.S3.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(keys[0])})
	require.NoError(t, err)
	raw, err := io.ReadAll(obj.Body)
	require.NoError(t, err)
	var doc struct {
		Stream, Shard, Error string
		Records              []struct {
			Sequence string `json:"sequence_number"`
			Value    string `json:"value"`
		}
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.Len(t, doc.Records, 1)
	assert.Equal(t, poisonSeq, doc.Records[0].Sequence)
	assert.True(t, strings.HasPrefix(doc.Records[0].Value, "POISON "))
	assert.Contains(t, doc.Error, "exited 3 (stderr ")
	assert.Contains(t, doc.Error, "cannot process record: ", "the dead letter carries the task's stderr, read from Bacalhau")
	assert.Contains(t, doc.Error, "POISON "+nginxLine(37)[:20])

	seen := map[string]int{}
	for _, r := range kinesisLedger(t, name) {
		for _, id := range r.records {
			seen[id]++
		}
	}
	assert.Len(t, seen, 79, "every other record processed")
	for id, n := range seen {
		if n != 1 {
			assert.Equal(t, 1, n, "record %s in exactly one successful task", id)
		}
	}
	assert.NotContains(t, seen, "shardId-000000000000/"+poisonSeq)
	recordHistory(t, workflows.ShardWorkflowID(name, "shardId-000000000000"), "kinesis-shard-poison")
}

func TestKinesisMissingStreamFailsTheConnectorNamingIt(t *testing.T) {
	ctx := context.Background()
	k := startKinesis(t)
	queue := startWorker(t)
	spec := connectorSpecFile(t, "e2e-kinesis-missing", "kinesis", fmt.Sprintf("  kinesis: {stream: no-such-stream, endpoint: %q}", k.Endpoint()), "")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	err = env.Client.GetWorkflow(ctx, workflows.KinesisWorkflowID("e2e-kinesis-missing"), "").Get(ctx, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stream no-such-stream not found")
	assert.Contains(t, err.Error(), "source.kinesis.stream")

	// A malformed spec is refused before anything starts.
	bad := connectorSpecFile(t, "e2e-kinesis-bad", "kinesis", "  kinesis: {stream: \"bad name!\", start: earliest}", "")
	o, err = starter(t, queue, "apply", "-f", bad)
	require.Error(t, err, o)
	assert.Contains(t, err.Error(), "source.kinesis.stream")
	assert.Contains(t, err.Error(), "source.kinesis.start")
}
