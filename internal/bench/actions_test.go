package bench

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// actionMeter reads the dev server's billable action counter and keeps
// count of the actions the benchmark itself spends (its queries and
// signals), so they can be taken out of a window.
type actionMeter struct {
	b   *testing.B
	env *testenv.Env
	// own counts this benchmark's own actions by type since the last mark.
	own devstack.Actions
}

func (m *actionMeter) read() devstack.Actions {
	a, err := m.env.Temporal.Actions(context.Background())
	if err != nil {
		m.b.Fatal(err)
	}
	return a
}

// mark starts a window: it returns the counter now and forgets own actions.
func (m *actionMeter) mark() devstack.Actions {
	m.own = devstack.Actions{}
	return m.read()
}

// spent is what the connectors spent since mark: the counter's movement
// less the benchmark's own queries and signals. It waits a second first:
// the server counts an action when it processes it.
func (m *actionMeter) spent(since devstack.Actions) devstack.Actions {
	time.Sleep(time.Second)
	d := m.read().Since(since)
	for t, n := range m.own {
		d[t] -= n
		if d[t] == 0 {
			delete(d, t)
		}
	}
	return d
}

// query queries a workflow (a billable action, counted as the benchmark's own).
func (m *actionMeter) query(id, name string, out any) error {
	m.own["grpc_QueryWorkflow"]++
	v, err := m.env.Client.QueryWorkflow(context.Background(), id, "", name)
	if err != nil {
		return err
	}
	return v.Get(out)
}

// await queries every second until done holds (or 15 minutes pass).
func (m *actionMeter) await(what string, done func() (bool, error)) {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		ok, err := done()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			m.b.Fatalf("%s: not done after 15 minutes (%v)", what, err)
		}
		time.Sleep(time.Second)
	}
}

// idle measures a connector left idle: it waits settle, then counts what
// the connectors spend over window (the benchmark sends nothing meanwhile)
// and returns it with the actions per minute.
func (m *actionMeter) idle(settle, window time.Duration) (devstack.Actions, float64) {
	time.Sleep(settle)
	before := m.mark()
	time.Sleep(window)
	d := m.spent(before)
	return d, float64(d.Total()) / window.Minutes()
}

// batchCost is one kind's actions per batch under a backlog and its cost
// per idle minute.
type batchCost struct {
	kind          string
	batches       int64
	elapsed       time.Duration
	spent         devstack.Actions
	idle          devstack.Actions
	idlePerMinute float64
}

func (c batchCost) perBatch() float64 { return float64(c.spent.Total()) / float64(max(c.batches, 1)) }

// BenchmarkActions counts billable Temporal actions (the dev server's own
// `action` counter, what Temporal Cloud bills and rate-limits) per batch
// for every connector kind, and per idle minute: each kind's connector
// runs BENCH_ACTIONS_BATCHES (default 20) batches of a backlog put at once
// (Kafka inline and staged and Kinesis: 100 records per batch, one
// partition or shard; SQS: 10 messages per batch, concurrency 1; cron: 10
// objects per batch, one triggered tick), then sits idle for
// BENCH_IDLE_SECONDS (default 60); and a Kafka connector of 1, 100 and
// 1,000 idle partitions (BENCH_IDLE_PARTITIONS) is counted over the same window. The benchmark's
// own queries and signals are taken out. BENCH_OUT_ACTIONS writes the
// table.
func BenchmarkActions(b *testing.B) {
	batches := envInt("BENCH_ACTIONS_BATCHES", 20)
	window := time.Duration(envInt("BENCH_IDLE_SECONDS", 60)) * time.Second
	const settle = 35 * time.Second // past a 30-s long poll: every consumer in its idle loop
	ctx := context.Background()
	env, template, stop := startStackWith(b, testenv.Options{TemporalMetrics: true})
	defer stop()
	m := &actionMeter{b: b, env: env}
	code := commit(env.Root) // the code measured, named before any later edit
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Stop()
	q, err := devstack.StartSQS(ctx, devstack.SQSOptions{StandinsDir: filepath.Join(env.Root, "internal/devstack/standins")})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Stop()
	kin, err := devstack.StartKinesis(ctx, devstack.KinesisOptions{StandinsDir: filepath.Join(env.Root, "internal/devstack/standins")})
	if err != nil {
		b.Fatal(err)
	}
	defer kin.Stop()
	for _, bucket := range []string{"bench-stage", "bench"} {
		if _, err := env.S3.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	// The stack alone (worker polling, no workflow yet).
	stackIdle, stackPerMinute := m.idle(0, window)
	b.Logf("stack idle: %.1f actions/min (%s)", stackPerMinute, stackIdle)

	var costs []batchCost
	for _, mode := range []string{workflows.ModeInline, workflows.ModeStaged} {
		costs = append(costs, kafkaBatchCost(b, m, env, k, template, mode, batches, settle, window))
	}
	costs = append(costs, kinesisBatchCost(b, m, env, kin, template, batches, settle, window))
	costs = append(costs, sqsBatchCost(b, m, q, template, batches, settle, window))
	costs = append(costs, cronBatchCost(b, m, env, template, batches, settle, window))
	for _, c := range costs {
		b.Logf("%s: %d batches in %s: %.1f actions/batch (%s); idle %.1f/min (%s)", c.kind, c.batches, c.elapsed.Round(time.Millisecond),
			c.perBatch(), c.spent, c.idlePerMinute, c.idle)
	}

	type idleRow struct {
		partitions int
		spent      devstack.Actions
		perMinute  float64
	}
	var idles []idleRow
	for _, parts := range idlePartitions(b) {
		spent, perMinute := kafkaIdleCost(b, m, env, k, parts, settle, window)
		b.Logf("kafka idle, %d partitions: %.1f actions/min (%s)", parts, perMinute, spent)
		idles = append(idles, idleRow{parts, spent, perMinute})
	}
	var shardIdles []idleRow
	for _, shards := range envCounts(b, "BENCH_IDLE_SHARDS", "1,16") {
		spent, perMinute := kinesisIdleCost(b, m, env, kin, template, shards, settle, window)
		b.Logf("kinesis idle, %d shards: %.1f actions/min (%s)", shards, perMinute, spent)
		shardIdles = append(shardIdles, idleRow{shards, spent, perMinute})
	}
	b.StopTimer()

	var t strings.Builder
	fmt.Fprintf(&t, `## Temporal actions per batch and per idle minute

Generated by `+"`make bench`"+` (BenchmarkActions) on %s, code of commit %s. Machine: %s, %d CPUs.
Billable actions as the Temporal dev server counts them (its `+"`action`"+`
counter on `+"`--metrics-port`"+`, namespace default; what Temporal Cloud bills and
rate-limits). Each kind's connector works off a backlog of %d batches put at
once (Kafka and Kinesis: 100 records per batch, one partition or shard, max_wait
1 s; SQS: 10 messages per batch, concurrency 1; cron: 10 objects per batch, one
triggered tick), then sits idle %s; the benchmark's own queries and
signals are taken out. The stack alone (a worker polling, no connector) spent
%.1f actions per minute.

| Kind | Batches | Actions per batch | Where they go (per batch) | Idle actions per minute | Idle: where they go (per minute) |
|---|---|---|---|---|---|
`, time.Now().UTC().Format("2006-01-02"), code, cpuModel(), runtimeCPUs(), batches, window, stackPerMinute)
	for _, c := range costs {
		fmt.Fprintf(&t, "| %s | %d | **%.1f** | %s | **%.1f** | %s |\n", c.kind, c.batches, c.perBatch(),
			perUnit(c.spent, float64(c.batches)), c.idlePerMinute, perUnit(c.idle, window.Minutes()))
	}
	fmt.Fprintf(&t, `
Idle Kafka connectors (every partition consumer caught up and waiting), over %s:

| Partitions | Actions per minute | Per partition-hour | Where they go (per minute) |
|---|---|---|---|
`, window)
	for _, r := range idles {
		fmt.Fprintf(&t, "| %d | **%.0f** | %.0f | %s |\n", r.partitions, r.perMinute, r.perMinute*60/float64(r.partitions), perUnit(r.spent, window.Minutes()))
	}
	fmt.Fprintf(&t, `
Idle Kinesis connectors (every shard consumer caught up and waiting), over %s:

| Shards | Actions per minute | Per shard-hour | Where they go (per minute) |
|---|---|---|---|
`, window)
	for _, r := range shardIdles {
		fmt.Fprintf(&t, "| %d | **%.0f** | %.0f | %s |\n", r.partitions, r.perMinute, r.perMinute*60/float64(r.partitions), perUnit(r.spent, window.Minutes()))
	}
	fmt.Fprintf(&t, `
Targets (issue #15): at most 4 actions per batch for every kind, at most 2 per
idle minute for a connector whatever its partition count. Action types:
command_* are workflow commands (activity, timer, child workflow, signal to
another workflow, continue-as-new); grpc_* are API calls (heartbeats that
reach the server, signals, queries, starts).
`)
	fmt.Println(t.String())
	if out := os.Getenv("BENCH_OUT_ACTIONS"); out != "" {
		if err := os.WriteFile(out, []byte(t.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// commit names the code measured: the short commit hash of the repository
// at root, "+" when the work tree has changes. (The S3 stand-in moves the
// process's working directory into its bucket folder: name the folder.)
func commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "+"
	}
	return c
}

// idlePartitions are the idle Kafka connector sizes: BENCH_IDLE_PARTITIONS
// (comma-separated), default 1,100,1000.
func idlePartitions(b *testing.B) []int {
	return envCounts(b, "BENCH_IDLE_PARTITIONS", "1,100,1000")
}

// envCounts reads a comma-separated list of counts from the environment
// variable name (def when unset).
func envCounts(b *testing.B, name, def string) []int {
	spec := cmp.Or(os.Getenv(name), def)
	var out []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want counts like %s", name, spec, def)
		}
		out = append(out, n)
	}
	return out
}

// perUnit lists the action types of a over n units, largest first.
func perUnit(a devstack.Actions, n float64) string {
	types := slices.Collect(maps.Keys(a))
	// Largest first, then by name: the table reads the same run to run.
	slices.SortFunc(types, func(x, y string) int { return cmp.Or(cmp.Compare(a[y], a[x]), cmp.Compare(x, y)) })
	var parts []string
	for _, t := range types {
		parts = append(parts, fmt.Sprintf("%s %.1f", strings.TrimPrefix(strings.TrimPrefix(t, "command_"), "grpc_"), float64(a[t])/n))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// cancelConnector cancels a connector (it cancels its consumers) and gives
// them time to end before the next window.
func cancelConnector(b *testing.B, env *testenv.Env, id string, wait time.Duration) {
	if err := env.Client.CancelWorkflow(context.Background(), id, ""); err != nil {
		b.Fatal(err)
	}
	time.Sleep(wait)
}

func kafkaBatchCost(b *testing.B, m *actionMeter, env *testenv.Env, k *devstack.Kafka, template, mode string, batches int, settle, window time.Duration) batchCost {
	ctx := context.Background()
	name := "act-kafka-" + mode
	if err := k.CreateTopic(ctx, name, 1); err != nil {
		b.Fatal(err)
	}
	cfg := kafkaConfig(env, k, template, name, name, mode, 100)
	id := workflows.KafkaWorkflowID(name)
	if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.KafkaConnectorWorkflowType, workflows.KafkaConnectorInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	pid := workflows.PartitionWorkflowID(name, name, 0)
	var st workflows.PartitionStatus
	m.await(name+" idle", func() (bool, error) {
		err := m.query(pid, workflows.QueryPartitionStatus, &st)
		return st.Phase == "idle", err
	})
	time.Sleep(settle)

	before := m.mark()
	start := time.Now()
	c, err := k.Client(kgo.DefaultProduceTopic(name))
	if err != nil {
		b.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < batches*100; i++ {
		recs = append(recs, &kgo.Record{Value: []byte(logLine(i))})
	}
	if err := c.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	c.Close()
	m.await(name+" drained", func() (bool, error) {
		err := m.query(pid, workflows.QueryPartitionStatus, &st)
		return st.Checkpoint >= int64(batches*100), err
	})
	cost := batchCost{kind: "Kafka " + mode, batches: st.Batches, elapsed: time.Since(start), spent: m.spent(before)}
	cost.idle, cost.idlePerMinute = m.idle(settle, window)
	cancelConnector(b, env, id, 5*time.Second)
	return cost
}

func kinesisBatchCost(b *testing.B, m *actionMeter, env *testenv.Env, kin *devstack.Kinesis, template string, batches int, settle, window time.Duration) batchCost {
	ctx := context.Background()
	name := "act-kinesis"
	if err := kin.CreateStream(ctx, name, 1); err != nil {
		b.Fatal(err)
	}
	cfg := kinesisConfig(env, kin, template, name, name, workflows.ModeInline)
	cfg.MaxRecords = 100
	id := workflows.KinesisWorkflowID(name)
	if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.KinesisConnectorWorkflowType, workflows.KinesisConnectorInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	var st workflows.KinesisConnectorStatus
	m.await(name+" idle", func() (bool, error) {
		err := m.query(id, workflows.QueryShardStatus, &st)
		return len(st.Shards) == 1 && st.Shards[0].Phase == "idle", err
	})
	time.Sleep(settle)

	before := m.mark()
	start := time.Now()
	putBench(b, kin, name, 0, batches*100, nil)
	m.await(name+" drained", func() (bool, error) {
		err := m.query(id, workflows.QueryShardStatus, &st)
		return st.Records >= int64(batches*100), err
	})
	cost := batchCost{kind: "Kinesis inline", batches: st.Batches, elapsed: time.Since(start), spent: m.spent(before)}
	cost.idle, cost.idlePerMinute = m.idle(settle, window)
	cancelConnector(b, env, id, 5*time.Second)
	return cost
}

func sqsBatchCost(b *testing.B, m *actionMeter, q *devstack.SQS, template string, batches int, settle, window time.Duration) batchCost {
	ctx := context.Background()
	name := "act-sqs"
	c := q.Client()
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		b.Fatal(err)
	}
	cfg := workflows.QueueConfig{Name: name, Kind: workflows.KindSQS, Queue: name, Region: q.Region(), Endpoint: q.Endpoint(),
		VisibilityTimeout: time.Minute, MaxMessages: 10, MaxWait: time.Second, Concurrency: 1,
		TaskConfig: workflows.TaskConfig{Template: template, ExecutionTimeout: 5 * time.Minute}}
	id := workflows.QueueWorkflowID(name)
	if _, err := m.env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.QueueWorkflowType, workflows.QueueInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(settle)

	before := m.mark()
	start := time.Now()
	for i := 0; i < batches*10; i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j := i; j < i+10; j++ {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(logLine(j))})
		}
		if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: out.QueueUrl, Entries: entries}); err != nil {
			b.Fatal(err)
		}
	}
	var st workflows.QueueStatus
	m.await(name+" drained", func() (bool, error) {
		err := m.query(id, workflows.QueryQueueStatus, &st)
		return st.Counters.Deleted >= int64(batches*10), err
	})
	cost := batchCost{kind: "SQS", batches: st.Counters.Batches, elapsed: time.Since(start), spent: m.spent(before)}
	cost.idle, cost.idlePerMinute = m.idle(settle, window)
	cancelConnector(b, m.env, id, 5*time.Second)
	return cost
}

func cronBatchCost(b *testing.B, m *actionMeter, env *testenv.Env, template string, batches int, settle, window time.Duration) batchCost {
	ctx := context.Background()
	name := "act-cron"
	putAll(b, env.S3.Client(), name+"/", batches*10)
	cfg := workflows.CronConfig{
		Name: name, Schedule: "@every 1h",
		Source:     workflows.S3Source{Bucket: "bench", Prefix: name + "/", Endpoint: env.S3.Endpoint(), Region: env.S3.Region(), Lookback: time.Hour},
		MaxObjects: 10, MaxBytes: 1 << 30, Concurrency: 1,
		TaskConfig: workflows.TaskConfig{Template: template, Delivery: activities.DeliveryGateway, Retry: workflows.TaskRetryPolicy{MaxAttempts: 3}},
		Overlap:    workflows.OverlapSkip, CatchupWindow: time.Hour,
	}
	id := workflows.CronWorkflowID(name)
	if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.CronWorkflowType, workflows.CronInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(settle)

	before := m.mark()
	start := time.Now()
	m.own["grpc_SignalWorkflowExecution"]++
	if err := env.Client.SignalWorkflow(ctx, id, "", workflows.SignalTrigger, nil); err != nil {
		b.Fatal(err)
	}
	var st workflows.CronStatus
	m.await(name+" done", func() (bool, error) {
		err := m.query(id, workflows.QueryCronStatus, &st)
		return st.Counters.Objects >= int64(batches*10) && !st.Running, err
	})
	cost := batchCost{kind: "cron (S3)", batches: st.Counters.Batches, elapsed: time.Since(start), spent: m.spent(before)}
	cost.idle, cost.idlePerMinute = m.idle(settle, window)
	cancelConnector(b, env, id, 5*time.Second)
	return cost
}

// kafkaIdleCost counts an idle Kafka connector of parts partitions over
// window, once every consumer reported itself idle and settle passed.
func kafkaIdleCost(b *testing.B, m *actionMeter, env *testenv.Env, k *devstack.Kafka, parts int, settle, window time.Duration) (devstack.Actions, float64) {
	ctx := context.Background()
	name := fmt.Sprintf("act-idle-%d", parts)
	if err := k.CreateTopic(ctx, name, int32(parts)); err != nil {
		b.Fatal(err)
	}
	cfg := workflows.KafkaConfig{Name: name, Brokers: k.Brokers(), Topic: name, Group: "bacalhau-connect-" + name,
		Start: workflows.StartEarliest, OnOffsetOutOfRange: workflows.StartEarliest,
		StreamBatching: workflows.StreamBatching{MaxRecords: 1000, MaxBytes: 256 << 10, MaxWait: time.Second, Mode: workflows.ModeInline, Bisect: true},
		TaskConfig:     workflows.TaskConfig{Template: "Type: batch"}}
	id := workflows.KafkaWorkflowID(name)
	if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.KafkaConnectorWorkflowType, workflows.KafkaConnectorInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	var st workflows.KafkaConnectorStatus
	m.await(name+" idle", func() (bool, error) {
		err := m.query(id, workflows.QueryPartitionStatus, &st)
		n := 0
		for _, p := range st.Partitions {
			if p.Phase == "idle" {
				n++
			}
		}
		return n == parts, err
	})
	spent, perMinute := m.idle(settle, window)
	cancelConnector(b, env, id, 5*time.Second+time.Duration(parts)*10*time.Millisecond)
	return spent, perMinute
}

// kinesisIdleCost measures an idle Kinesis connector of the given shard
// count: every shard consumer caught up and waiting for its watcher.
func kinesisIdleCost(b *testing.B, m *actionMeter, env *testenv.Env, kin *devstack.Kinesis, template string, shards int, settle, window time.Duration) (devstack.Actions, float64) {
	ctx := context.Background()
	name := fmt.Sprintf("act-idle-shards-%d", shards)
	if err := kin.CreateStream(ctx, name, int32(shards)); err != nil {
		b.Fatal(err)
	}
	cfg := kinesisConfig(env, kin, template, name, name, workflows.ModeInline)
	id := workflows.KinesisWorkflowID(name)
	if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.KinesisConnectorWorkflowType, workflows.KinesisConnectorInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	var st workflows.KinesisConnectorStatus
	m.await(name+" idle", func() (bool, error) {
		err := m.query(id, workflows.QueryShardStatus, &st)
		n := 0
		for _, s := range st.Shards {
			if s.Phase == "idle" {
				n++
			}
		}
		return n == shards, err
	})
	spent, perMinute := m.idle(settle, window)
	cancelConnector(b, env, id, 5*time.Second+time.Duration(shards)*10*time.Millisecond)
	return spent, perMinute
}
