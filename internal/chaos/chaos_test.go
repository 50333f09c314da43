// Package chaos is the fault-injection suite: every connector kind (cron
// over S3, Kafka, SQS, SNS via SQS, Kinesis, NATS JetStream, Pub/Sub) runs a workload whose records
// each carry a unique mark, two worker processes share the task queue, and
// faults are injected at seeded random points: kill -9 of a worker, a
// restart of the Temporal dev server with its state file, the Bacalhau API
// cut, each source down, tasks that exceed their timeout and poison
// records. A ledger built from the successful tasks' outputs and the dead
// letters then proves, per kind, that nothing was lost and nothing was
// processed twice. `make chaos-short` runs a short seeded version
// (CHAOS_SHORT=1); `make chaos` the long one (CHAOS_LONG=1), writing
// CHAOS.md.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
)

// config is one run's size; CHAOS_LONG=1 selects the long one.
type config struct {
	seed             uint64
	long             bool
	wave             time.Duration // between the producer's waves
	perWave          int           // records per kind and wave
	poison, slow     int           // poison and slow records per kind
	deadCap          time.Duration // longest wait for a poison or slow record's dead letter
	kills            int
	temporalRestarts int
	bacalhauDown     [2]time.Duration // at least, at most
	sourceDown       time.Duration
	recoverCap       time.Duration // longest wait for progress after a fault
	drain            time.Duration
	report           string
}

func loadConfig(t *testing.T) config {
	// The short run (make test) produces a wave every 3 s: with six kinds
	// a task each per wave, the node's CPU (a WASM compile per task) is
	// shared with the end-to-end tests that run beside it.
	c := config{seed: 1, wave: 3 * time.Second, perWave: 1, poison: 1, deadCap: 3 * time.Minute, kills: 3, temporalRestarts: 1,
		bacalhauDown: [2]time.Duration{3 * time.Second, 5 * time.Second}, sourceDown: 3 * time.Second,
		recoverCap: 45 * time.Second, drain: 4 * time.Minute}
	if os.Getenv("CHAOS_LONG") == "1" {
		c = config{seed: 1, long: true, wave: 2 * time.Second, perWave: 1, poison: 2, slow: 1, deadCap: 6 * time.Minute, kills: 20, temporalRestarts: 2,
			bacalhauDown: [2]time.Duration{30 * time.Second, 60 * time.Second}, sourceDown: 30 * time.Second,
			recoverCap: 3 * time.Minute, drain: 15 * time.Minute}
	}
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "CHAOS_SEED")
		c.seed = v
	}
	c.report = os.Getenv("CHAOS_REPORT")
	return c
}

// fault is one injected fault and what it did to each kind.
type fault struct {
	what     string
	at, dur  time.Duration // since the start; how long the part was down
	recovery map[string]time.Duration
	stalled  map[string]bool // no progress within recoverCap
	idle     map[string]bool // nothing was waiting
}

func TestChaos(t *testing.T) {
	if os.Getenv("CHAOS_SHORT") != "1" && os.Getenv("CHAOS_LONG") != "1" {
		// make test sets CHAOS_SHORT; a plain go test ./... skips it.
		t.Skip("chaos: set CHAOS_SHORT=1 (make test, make chaos-short) or CHAOS_LONG=1 (make chaos)")
	}
	cfg := loadConfig(t)
	ctx := context.Background()
	dir := t.TempDir()
	env, err := testenv.StartWith(ctx, dir, testenv.Options{TemporalDBFile: filepath.Join(dir, "temporal.db")})
	require.NoError(t, err)
	defer env.Stop()
	standins := filepath.Join(env.Root, "internal/devstack/standins")

	// Sources.
	kport, err := devstack.FreePort()
	require.NoError(t, err)
	kopts := devstack.KafkaOptions{Port: kport, DataDir: filepath.Join(dir, "kafka"), Topics: map[string]int32{"chaos": 2, "chaos-dlq": 1}}
	kafka, err := devstack.StartKafka(ctx, kopts)
	require.NoError(t, err)
	var kafkaMu sync.Mutex
	defer func() { kafkaMu.Lock(); kafka.Stop(); kafkaMu.Unlock() }()
	qlog, err := os.Create(filepath.Join(dir, "sqs.log"))
	require.NoError(t, err)
	queues, err := devstack.StartSQS(ctx, devstack.SQSOptions{StandinsDir: standins, Log: qlog})
	require.NoError(t, err)
	defer queues.Stop()
	klog, err := os.Create(filepath.Join(dir, "kinesis.log"))
	require.NoError(t, err)
	kin, err := devstack.StartKinesis(ctx, devstack.KinesisOptions{StandinsDir: standins, Log: klog})
	require.NoError(t, err)
	defer kin.Stop()
	require.NoError(t, kin.CreateStream(ctx, "chaos", 2))
	require.NoError(t, kin.WaitActive(ctx, "chaos"))
	nport, err := devstack.FreePort()
	require.NoError(t, err)
	nopts := devstack.NATSOptions{Port: nport, DataDir: filepath.Join(dir, "nats")}
	natsSrv, err := devstack.StartNATS(nopts)
	require.NoError(t, err)
	var natsMu sync.Mutex
	defer func() { natsMu.Lock(); natsSrv.Stop(); natsMu.Unlock() }()
	natsURL := natsSrv.URL()
	require.NoError(t, createNATSStream(ctx, natsURL, "CHAOS", "chaos.>"))
	// Pub/Sub: pstest in this process, reached by the workers through a
	// proxy that the source fault takes down.
	pubsubSrv, err := devstack.StartPubSub(devstack.PubSubOptions{})
	require.NoError(t, err)
	defer pubsubSrv.Stop()
	psproxy, err := testenv.StartFaultProxy(pubsubSrv.Endpoint())
	require.NoError(t, err)
	defer func() { _ = psproxy.Close() }()
	ps, err := pubsubSrv.Client(ctx, "connect-chaos")
	require.NoError(t, err)
	defer func() { _ = ps.Close() }()
	require.NoError(t, createPubSub(ctx, ps, "chaos"))
	var s3Mu sync.Mutex
	s3c := func() *s3.Client { s3Mu.Lock(); defer s3Mu.Unlock(); return env.S3.Client() }
	for _, b := range []string{"chaos", "chaos-dlq"} {
		_, err := s3c().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
		require.NoError(t, err)
	}
	sq := queues.Client()
	sqsURL, sqsDLQ := createQueue(t, sq, "chaos")
	_, snsDLQ := createQueue(t, sq, "chaos-sns")
	topic, err := queues.SNSClient().CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("chaos")})
	require.NoError(t, err)

	// The Bacalhau API behind a proxy that can be cut; two workers.
	bu, err := url.Parse(env.Bacalhau.Address())
	require.NoError(t, err)
	bproxy, err := testenv.StartFaultProxy(bu.Host)
	require.NoError(t, err)
	defer func() { _ = bproxy.Close() }()
	_, bport, _ := net.SplitHostPort(bproxy.Addr())
	const queue = "chaos"
	workers := make([]*testenv.WorkerProcess, 2)
	startWorker := func(i int) {
		metrics, err := testenv.FreeAddr()
		require.NoError(t, err)
		w, err := env.StartWorkerProcess(ctx, testenv.WorkerProcessOptions{
			TaskQueue: queue, GatewayListen: "off", MetricsListen: metrics,
			Log:  filepath.Join(dir, fmt.Sprintf("worker-%d.log", i)),
			Args: []string{"-bacalhau-host", "127.0.0.1", "-bacalhau-port", bport},
		})
		require.NoError(t, err)
		workers[i] = w
	}
	startWorker(0)
	startWorker(1)
	defer func() {
		for _, w := range workers {
			if w != nil {
				w.Kill()
			}
		}
	}()

	// The connectors.
	template := filepath.Join(dir, "task.yaml")
	writeTemplate(t, env, template)
	s3ep := env.S3.Endpoint()
	taskBlock := fmt.Sprintf("task:\n  template: %s\n  vars: {MODULES_URL: %q}\n  execution_timeout: 8s\n", template, env.Modules.URL())
	newKafka := func(opts ...kgo.Opt) (*kgo.Client, error) {
		kafkaMu.Lock()
		defer kafkaMu.Unlock()
		return kafka.Client(opts...)
	}
	var sqsDead, snsDead, pubsubDead = map[string]bool{}, map[string]bool{}, map[string]bool{}
	kinds := []*kind{
		{name: "cron", spec: `kind: cron
schedule: "@every 2s"
source:
  s3: {bucket: chaos, prefix: in/, endpoint: "` + s3ep + `", region: us-east-1}
batch: {max_objects: 4}
` + strings.Replace(taskBlock, "  execution_timeout", "  input: {delivery: s3}\n  execution_timeout", 1) + `retry: {max_attempts: 4, initial_interval: 5s}
dead_letter:
  s3: {bucket: chaos-dlq, prefix: cron/, endpoint: "` + s3ep + `", region: us-east-1}
`,
			produce: func(ctx context.Context, lines []string, first int) (int, error) {
				return putObjects(ctx, s3c(), "chaos", "in/", lines, first)
			},
			// Cron's dead letter is a manifest of the batch's keys.
			deadLetters: func(ctx context.Context) (map[string]bool, error) { return cronDeadLetters(ctx, s3c()) },
			deadErrors:  func(ctx context.Context) ([]string, error) { return cronDeadLetterErrors(ctx, s3c()) },
			mates:       3, // max_objects 4, no bisection
		},
		{name: "kafka", spec: `kind: kafka
source:
  kafka: {brokers: [` + kafka.Brokers()[0] + `], topic: chaos}
batch: {max_records: 10, max_wait: 1s}
` + taskBlock + `retry: {max_attempts: 2, initial_interval: 1s}
on_failure: {bisect: true, dead_letter: {kafka: {topic: chaos-dlq}}}
`,
			produce: func(ctx context.Context, lines []string, first int) (int, error) {
				c, err := newKafka(kgo.RecordPartitioner(kgo.ManualPartitioner()))
				if err != nil {
					return 0, err
				}
				defer c.Close()
				return each(lines, func(i int, l string) error {
					return c.ProduceSync(ctx, &kgo.Record{Topic: "chaos", Partition: int32((first + i) % 2), Value: []byte(l)}).FirstErr()
				})
			},
			deadLetters: func(ctx context.Context) (map[string]bool, error) { return kafkaMarks(ctx, newKafka, "chaos-dlq") },
		},
		{name: "sqs", spec: `kind: sqs
source:
  sqs: {queue: chaos, endpoint: "` + queues.Endpoint() + `", region: us-east-1, visibility_timeout: 8s}
batch: {max_messages: 10, max_wait: 1s}
` + taskBlock,
			produce: func(ctx context.Context, lines []string, _ int) (int, error) {
				return each(lines, func(_ int, l string) error {
					_, err := sq.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(sqsURL), MessageBody: aws.String(l)})
					return err
				})
			},
			deadLetters: func(ctx context.Context) (map[string]bool, error) {
				err := queueMarks(ctx, sq, sqsDLQ, sqsDead)
				return sqsDead, err
			},
			// A failed batch's mates run again one by one and are
			// deleted once they succeed; with maxReceiveCount 5 (what
			// starter apply asks for) no healthy message may reach
			// the DLQ: mates 0.
		},
		{name: "sns", spec: `kind: sns
source:
  sns: {topic_arn: "` + aws.ToString(topic.TopicArn) + `", queue: chaos-sns, endpoint: "` + queues.Endpoint() + `", region: us-east-1, visibility_timeout: 8s}
batch: {max_messages: 10, max_wait: 1s}
` + taskBlock,
			produce: func(ctx context.Context, lines []string, _ int) (int, error) {
				return each(lines, func(_ int, l string) error {
					_, err := queues.SNSClient().Publish(ctx, &sns.PublishInput{TopicArn: topic.TopicArn, Message: aws.String(l)})
					return err
				})
			},
			deadLetters: func(ctx context.Context) (map[string]bool, error) {
				err := queueMarks(ctx, sq, snsDLQ, snsDead)
				return snsDead, err
			},
			// A failed batch's mates run again one by one and are
			// deleted once they succeed; with maxReceiveCount 5 (what
			// starter apply asks for) no healthy message may reach
			// the DLQ: mates 0.
		},
		{name: "kinesis", spec: `kind: kinesis
source:
  kinesis: {stream: chaos, region: us-east-1, endpoint: "` + kin.Endpoint() + `", start: trim_horizon}
batch: {max_records: 10, max_wait: 1s}
` + taskBlock + `retry: {max_attempts: 2, initial_interval: 1s}
on_failure: {bisect: true, dead_letter: {s3: {bucket: chaos-dlq, prefix: kinesis/, endpoint: "` + s3ep + `", region: us-east-1}}}
`,
			produce: func(ctx context.Context, lines []string, first int) (int, error) {
				return putKinesis(ctx, kin.Client(), "chaos", lines, first)
			},
			deadLetters: func(ctx context.Context) (map[string]bool, error) {
				return s3Marks(ctx, s3c(), "chaos-dlq", "kinesis/")
			},
		},
		// NATS batches two waves a task (max_wait 4s): the node's CPU
		// (a WASM compile per task) is what bounds this suite and the
		// end-to-end tests beside it in make test.
		{name: "nats", spec: `kind: nats
source:
  nats: {url: "` + natsURL + `", stream: CHAOS}
batch: {max_records: 10, max_wait: 4s}
` + taskBlock + `retry: {max_attempts: 2, initial_interval: 1s}
on_failure: {bisect: true, dead_letter: {s3: {bucket: chaos-dlq, prefix: nats/, endpoint: "` + s3ep + `", region: us-east-1}}}
`,
			produce: func(ctx context.Context, lines []string, first int) (int, error) {
				return publishNATS(ctx, natsURL, lines, first)
			},
			deadLetters: func(ctx context.Context) (map[string]bool, error) {
				return s3Marks(ctx, s3c(), "chaos-dlq", "nats/")
			},
		},
		// Pub/Sub batches two waves a task too; a failed batch is
		// bisected and its healthy messages acked, so with 5 delivery
		// attempts no healthy message may reach the dead-letter topic:
		// mates 0.
		{name: "pubsub", spec: `kind: pubsub
source:
  pubsub: {project: connect-chaos, subscription: chaos-sub, endpoint: "` + psproxy.Addr() + `", ack_deadline: 10s}
batch: {max_messages: 10, max_wait: 4s}
` + taskBlock,
			produce: func(ctx context.Context, lines []string, _ int) (int, error) {
				return publishPubSub(ctx, ps, "chaos", lines)
			},
			deadLetters: func(ctx context.Context) (map[string]bool, error) {
				err := pubsubMarks(ctx, ps, "chaos-dlq-sub", pubsubDead)
				return pubsubDead, err
			},
		},
	}
	for _, k := range kinds {
		k.connector = "chaos-" + k.name
		path := filepath.Join(dir, k.connector+".yaml")
		require.NoError(t, os.WriteFile(path, []byte("name: "+k.connector+"\n"+k.spec), 0o644))
		out, err := starter(ctx, env, queue, "apply", "-f", path)
		require.NoError(t, err, out)
	}
	// SNS delivers only to subscriptions that exist: wait for the
	// connector's before publishing.
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		subs, err := queues.SNSClient().ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: topic.TopicArn})
		if err != nil {
			return err
		}
		for _, s := range subs.Subscriptions {
			if strings.HasSuffix(aws.ToString(s.Endpoint), ":chaos-sns") {
				return nil
			}
		}
		return errors.New("the SNS connector has not subscribed its queue yet")
	}))

	// Produce in waves until the faults are over. A poison or slow fault
	// tags the next record of every kind.
	rnd := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	start := time.Now()
	var prodMu sync.Mutex
	produced := map[string]int{}
	tags := map[string]map[int]string{} // kind → record → POISON or SLOW
	tagNext := map[string]string{}
	for _, k := range kinds {
		tags[k.name] = map[int]string{}
	}
	tagged := func(name string, i int) string {
		prodMu.Lock()
		defer prodMu.Unlock()
		return tags[name][i]
	}
	prodCtx, stopProducing := context.WithCancel(ctx)
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		for {
			for _, k := range kinds {
				if !k.mu.TryRLock() { // its source is down: later
					continue
				}
				prodMu.Lock()
				next := produced[k.name]
				var lines []string
				for i := next; i < next+cfg.perWave; i++ {
					if tag := tagNext[k.name]; tag != "" && tags[k.name][i] == "" {
						tags[k.name][i] = tag
						delete(tagNext, k.name)
					}
					lines = append(lines, line(k.name, i, tags[k.name][i]))
				}
				prodMu.Unlock()
				pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				done, err := k.produce(pctx, lines, next)
				cancel()
				k.mu.RUnlock()
				if err != nil {
					t.Logf("producing %s: %d of %d went in: %v", k.name, done, len(lines), err)
				}
				prodMu.Lock()
				produced[k.name] += done
				prodMu.Unlock()
			}
			select {
			case <-prodCtx.Done():
				return
			case <-time.After(cfg.wave):
			}
		}
	}()

	// The ledgers, read straight from the node (not through the proxy).
	ledgers := map[string]*ledger{}
	for _, k := range kinds {
		ledgers[k.name] = newLedger(env.Bacalhau.Address(), k.connector)
	}
	dead := map[string]map[string]bool{}
	var deadRead time.Time
	progress := func(deadEvery time.Duration) map[string]int {
		p := map[string]int{}
		fresh := time.Since(deadRead) > deadEvery
		for _, k := range kinds {
			if err := ledgers[k.name].update(ctx); err != nil {
				t.Logf("ledger %s: %v", k.name, err)
			}
			p[k.name] = ledgers[k.name].jobs
			if fresh {
				if d, err := k.deadLetters(ctx); err == nil {
					dead[k.name] = d
				}
			}
		}
		if fresh {
			deadRead = time.Now()
		}
		return p
	}
	// pending: a record of the kind is in its source, neither processed
	// nor dead-lettered, nor poison or slow (those wait for their retries).
	// waiting lists up to n marks pending counts.
	waiting := func(name string, n int) []string {
		prodMu.Lock()
		p := produced[name]
		prodMu.Unlock()
		var w []string
		for i := 0; i < p && len(w) < n; i++ {
			m := mark(name, i)
			if ledgers[name].count[m] == 0 && !dead[name][m] && tagged(name, i) == "" {
				w = append(w, m)
			}
		}
		return w
	}
	pending := func(name string) bool { return len(waiting(name, 1)) > 0 }
	// awaitKinds polls every interval (poll first) until check reports each
	// kind recovered, or idle with nothing to do, or limit has passed since
	// from; it fills the fault's recovery, idle and stalled maps and
	// returns the kinds that stalled.
	awaitKinds := func(f *fault, from time.Time, limit, every time.Duration, poll func(), check func(name string) (recovered, idle bool)) []string {
		f.recovery, f.stalled, f.idle = map[string]time.Duration{}, map[string]bool{}, map[string]bool{}
		left := map[string]bool{}
		for _, k := range kinds {
			left[k.name] = true
		}
		for len(left) > 0 && time.Since(from) < limit {
			time.Sleep(every)
			poll()
			for _, k := range kinds {
				if !left[k.name] {
					continue
				}
				switch recovered, idle := check(k.name); {
				case recovered:
					f.recovery[k.name] = time.Since(from)
					delete(left, k.name)
				case idle:
					f.idle[k.name] = true
					delete(left, k.name)
				}
			}
		}
		var stalled []string
		for _, k := range kinds {
			if left[k.name] {
				f.stalled[k.name] = true
				stalled = append(stalled, k.name)
			}
		}
		return stalled
	}
	// recoverFrom waits until each kind with work pending completed a task
	// after the fault.
	recoverFrom := func(f *fault, since map[string]int, from time.Time) {
		var now map[string]int
		for _, name := range awaitKinds(f, from, cfg.recoverCap, 500*time.Millisecond,
			func() { now = progress(10 * time.Second) },
			func(name string) (bool, bool) { return now[name] > since[name], !pending(name) }) {
			t.Logf("%s: no task completed within %s of %q; waiting: %v", name, cfg.recoverCap, f.what, waiting(name, 5))
		}
	}
	// deadlettered waits until each kind's record tagged by this fault is
	// in its dead letter: the fault's recovery.
	deadlettered := func(f *fault, tag string, from time.Time) {
		for _, name := range awaitKinds(f, from, cfg.deadCap, time.Second,
			func() { progress(2 * time.Second) },
			func(name string) (bool, bool) {
				prodMu.Lock()
				defer prodMu.Unlock()
				var marks []string
				for i, tg := range tags[name] {
					if tg == tag {
						marks = append(marks, mark(name, i))
					}
				}
				return len(marks) > 0 && !slices.ContainsFunc(marks, func(m string) bool { return !dead[name][m] }), false
			}) {
			t.Logf("%s: the %s record is not dead-lettered within %s", name, tag, cfg.deadCap)
		}
	}

	// The faults, in a seeded order.
	var plan []string
	for i := 0; i < cfg.kills; i++ {
		plan = append(plan, "kill")
	}
	for i := 0; i < cfg.temporalRestarts; i++ {
		plan = append(plan, "temporal")
	}
	plan = append(plan, "bacalhau")
	if cfg.long {
		plan = append(plan, "bacalhau")
	}
	for _, k := range kinds {
		if k.name != "sns" { // SNS and SQS share the stand-in
			plan = append(plan, "source:"+k.name)
		}
	}
	for i := 0; i < cfg.poison; i++ {
		plan = append(plan, "POISON")
	}
	for i := 0; i < cfg.slow; i++ {
		plan = append(plan, "SLOW")
	}
	rnd.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	var faults []*fault
	time.Sleep(10 * time.Second) // every connector busy first
	for n, what := range plan {
		time.Sleep(time.Duration(1000+rnd.IntN(3000)) * time.Millisecond)
		f := &fault{what: what, at: time.Since(start)}
		before := progress(10 * time.Second)
		t0 := time.Now()
		switch {
		case what == "POISON" || what == "SLOW":
			f.what = "poison record (the task exits 3)"
			if what == "SLOW" {
				f.what = "slow record (the task outlives its timeout)"
			}
			prodMu.Lock()
			for _, k := range kinds {
				tagNext[k.name] = what
			}
			prodMu.Unlock()
			deadlettered(f, what, t0)
		case what == "kill":
			i := n % 2
			workers[i].Kill()
			workers[i] = nil
			f.what = fmt.Sprintf("kill -9 worker %d (the other carries on)", i)
			recoverFrom(f, before, t0)
			startWorker(i)
		case what == "temporal":
			require.NoError(t, env.RestartTemporal(ctx, 2*time.Second))
			f.dur = time.Since(t0)
			f.what = "Temporal dev server restarted (state file kept)"
			recoverFrom(f, progress(10*time.Second), time.Now())
		case what == "bacalhau":
			d := cfg.bacalhauDown[0] + time.Duration(rnd.Int64N(int64(cfg.bacalhauDown[1]-cfg.bacalhauDown[0])+1))
			bproxy.Down()
			time.Sleep(d)
			bproxy.Up()
			f.dur = d
			f.what = "Bacalhau API unreachable"
			recoverFrom(f, progress(10*time.Second), time.Now())
		default:
			name := strings.TrimPrefix(what, "source:")
			f.what = name + " source down"
			k := kinds[slices.IndexFunc(kinds, func(k *kind) bool { return k.name == name })]
			k.mu.Lock()
			if name == "sqs" {
				kinds[slices.IndexFunc(kinds, func(k *kind) bool { return k.name == "sns" })].mu.Lock()
			}
			switch name {
			case "cron":
				s3Mu.Lock()
				env.S3.Stop()
				time.Sleep(cfg.sourceDown)
				env.S3, err = devstack.StartS3(ctx, devstack.S3Options{Dir: filepath.Join(env.Dir, "s3"), Port: portOf(t, s3ep)})
				s3Mu.Unlock()
				require.NoError(t, err)
				f.what = "S3 stopped and restarted (cron)"
			case "kafka":
				kafkaMu.Lock()
				kafka.Stop()
				time.Sleep(cfg.sourceDown)
				kafka, err = devstack.StartKafka(ctx, kopts)
				kafkaMu.Unlock()
				require.NoError(t, err)
				f.what = "Kafka broker stopped and restarted"
			case "sqs":
				require.NoError(t, queues.Freeze())
				time.Sleep(cfg.sourceDown)
				require.NoError(t, queues.Thaw())
				f.what = "SQS/SNS frozen (SIGSTOP)"
			case "kinesis":
				require.NoError(t, kin.Freeze())
				time.Sleep(cfg.sourceDown)
				require.NoError(t, kin.Thaw())
				f.what = "Kinesis frozen (SIGSTOP)"
			case "nats":
				natsMu.Lock()
				natsSrv.Stop()
				time.Sleep(cfg.sourceDown)
				natsSrv, err = devstack.StartNATS(nopts)
				natsMu.Unlock()
				require.NoError(t, err)
				f.what = "NATS server stopped and restarted (JetStream store kept)"
			case "pubsub":
				psproxy.Down()
				time.Sleep(cfg.sourceDown)
				psproxy.Up()
				f.what = "Pub/Sub unreachable (connections cut)"
			}
			if name == "sqs" {
				kinds[slices.IndexFunc(kinds, func(k *kind) bool { return k.name == "sns" })].mu.Unlock()
			}
			k.mu.Unlock()
			f.dur = time.Since(t0)
			recoverFrom(f, progress(10*time.Second), time.Now())
		}
		t.Logf("fault %d/%d at %s: %s (down %s): recovery %v stalled %v", n+1, len(plan), f.at.Round(time.Second), f.what,
			f.dur.Round(100*time.Millisecond), f.recovery, f.stalled)
		faults = append(faults, f)
	}

	// Let the producer finish, then drain: every record processed or dead-lettered.
	stopProducing()
	<-prodDone
	results := map[string]*kindResult{}
	deadline := time.Now().Add(cfg.drain)
	for {
		progress(0)
		complete := true
		for _, k := range kinds {
			d, err := k.deadLetters(ctx)
			if err != nil {
				t.Logf("dead letters of %s: %v", k.name, err)
				complete = false
				continue
			}
			prodMu.Lock()
			r := tally(k.name, produced[k.name], tags[k.name], ledgers[k.name].count, d)
			prodMu.Unlock()
			results[k.name] = r
			if r.lost > 0 {
				complete = false
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(3 * time.Second)
	}
	elapsed := time.Since(start)

	report := renderReport(cfg, kinds, results, faults, elapsed)
	t.Log("\n" + report)
	if cfg.report != "" {
		require.NoError(t, os.WriteFile(cfg.report, []byte(report), 0o644))
	}
	for _, k := range kinds {
		r := results[k.name]
		require.NotNil(t, r, k.name)
		assert.Len(t, tags[k.name], cfg.poison+cfg.slow, "%s: poison and slow records put in", k.name)
		assert.Zero(t, r.lost, "%s: lost %v", k.name, r.lostMarks)
		assert.Zero(t, r.twice, "%s: processed twice %v", k.name, r.twiceMarks)
		assert.Zero(t, r.both, "%s: processed and dead-lettered %v", k.name, r.bothMarks)
		assert.Equal(t, len(tags[k.name]), r.taggedDead, "%s: every poison and slow record dead-lettered", k.name)
		if healthy := r.dead - r.taggedDead; !assert.LessOrEqual(t, healthy, k.mates*len(tags[k.name]),
			"%s: healthy records dead-lettered (beyond the batch mates of poison and slow ones)", k.name) && k.deadErrors != nil {
			if errs, err := k.deadErrors(ctx); err == nil {
				for _, e := range errs[:min(3, len(errs))] {
					t.Logf("%s: a dead letter's error: %s", k.name, e)
				}
			}
		}
	}
	// Two workers: every kill left the other carrying every connector.
	for _, f := range faults {
		if strings.HasPrefix(f.what, "kill") {
			assert.Empty(t, f.stalled, "%s at %s: kinds with work made no progress on the remaining worker", f.what, f.at)
		}
	}
}

// kindResult is one kind's ledger.
type kindResult struct {
	in, once, twice, lost, dead, taggedDead, both int
	lostMarks, twiceMarks, bothMarks              []string
}

func tally(name string, records int, tags map[int]string, count map[string]int, dead map[string]bool) *kindResult {
	r := &kindResult{in: records}
	for i := 0; i < records; i++ {
		m := mark(name, i)
		n := count[m]
		switch {
		case n == 1:
			r.once++
		case n > 1:
			r.twice++
			r.twiceMarks = append(r.twiceMarks, m)
		}
		if dead[m] {
			r.dead++
			if tags[i] != "" {
				r.taggedDead++
			}
			if n > 0 {
				r.both++
				r.bothMarks = append(r.bothMarks, m)
			}
		}
		if n == 0 && !dead[m] {
			r.lost++
			if len(r.lostMarks) < 10 {
				r.lostMarks = append(r.lostMarks, m)
			}
		}
	}
	return r
}

// ledger counts, per mark, the successful tasks of a connector that read
// it; finished jobs are read once.
type ledger struct {
	bac       *activities.Bacalhau
	connector string
	read      map[string]bool
	count     map[string]int
	jobs      int
}

func newLedger(address, connector string) *ledger {
	return &ledger{bac: activities.NewBacalhau(address, nil), connector: connector, read: map[string]bool{}, count: map[string]int{}}
}

func (l *ledger) update(ctx context.Context) error {
	jobs, err := l.bac.ListJobs(ctx, tasktemplate.LabelConnector+"="+l.connector)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if l.read[j.ID] || !j.State.StateType.IsTerminal() {
			continue
		}
		l.read[j.ID] = true
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		res, err := l.bac.Results(ctx, j.ID)
		if err != nil {
			delete(l.read, j.ID)
			return err
		}
		if res.ExitCode != 0 {
			continue
		}
		files, err := activities.FetchPublished(ctx, nil, res.ResultURL, 8<<20)
		if err != nil {
			delete(l.read, j.ID)
			return err
		}
		paths, err := summaryPaths(files["outputs/summary.json"])
		if err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		l.jobs++
		for _, p := range paths {
			l.count[p]++
		}
	}
	return nil
}

func portOf(t *testing.T, endpoint string) int {
	u, err := url.Parse(endpoint)
	require.NoError(t, err)
	p, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	return p
}

// starter runs the starter CLI in this process.
func starter(ctx context.Context, env *testenv.Env, queue string, args ...string) (string, error) {
	var out, errOut strings.Builder
	cmd := cli.NewRootCommand(&out, &errOut)
	cmd.SetArgs(append(args, "--temporal-address", env.Temporal.HostPort(), "--task-queue", queue))
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		err = fmt.Errorf("%w: %s", err, errOut.String())
	}
	return out.String(), err
}

// createQueue makes a queue whose messages move to NAME-dlq after five
// receives (activities.SafeMaxReceiveCount, what starter apply asks for).
func createQueue(t *testing.T, c *sqs.Client, name string) (url, dlqURL string) {
	ctx := context.Background()
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	require.NoError(t, err)
	a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	require.NoError(t, err)
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":"%s","maxReceiveCount":"%d"}`, a.Attributes["QueueArn"], activities.SafeMaxReceiveCount),
	}})
	require.NoError(t, err)
	return aws.ToString(out.QueueUrl), aws.ToString(dlq.QueueUrl)
}

// writeTemplate writes the sample task's job template with the chaos
// flags: exit 3 on POISON, sleep past the timeout on SLOW, list paths.
func writeTemplate(t *testing.T, env *testenv.Env, path string) {
	raw, err := os.ReadFile(filepath.Join(env.Root, "examples/jobs/logsummary.yaml"))
	require.NoError(t, err)
	const anchor = "          - -outputs=/outputs\n"
	text := string(raw)
	require.Contains(t, text, anchor)
	text = strings.Replace(text, anchor, anchor+"          - -reject=POISON\n          - -slow-on=SLOW\n          - -slow-for=10s\n          - -list-paths\n", 1)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
}
