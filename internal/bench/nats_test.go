package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/natssource"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// BenchmarkNATS measures the NATS JetStream connector on the real local
// stack (embedded nats-server, Temporal dev server, in-process Bacalhau
// node running the sample WASM task, versitygw for staged batches):
// messages/s end to end (connector start → every subject's consumer has
// processed its last message) for 2 and 8 subjects, inline and staged,
// batches of 1,000 messages, against a plain program that reads the same
// subjects (the same reader, internal/natssource) and submits the same
// jobs directly, one batch per subject at a time, every subject at once
// (the jobs in flight the connector has); and billable Temporal actions
// per batch (one subject, batches of 100) and per idle minute.
// BENCH_NATS_RECORDS (default 20,000) sets the messages per stream,
// BENCH_ACTIONS_BATCHES (20) and BENCH_IDLE_SECONDS (60) the actions run;
// BENCH_OUT_NATS writes the table.
func BenchmarkNATS(b *testing.B) {
	records := envInt("BENCH_NATS_RECORDS", 20000)
	batches := envInt("BENCH_ACTIONS_BATCHES", 20)
	window := time.Duration(envInt("BENCH_IDLE_SECONDS", 60)) * time.Second
	ctx := context.Background()
	env, template, stop := startStackWith(b, testenv.Options{TemporalMetrics: true})
	defer stop()
	code := commit(env.Root)
	srv, err := devstack.StartNATS(devstack.NATSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := env.S3.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bench-nats-stage")}); err != nil {
		b.Fatal(err)
	}

	type row struct {
		subjects       int
		mode           string
		elapsed, plain time.Duration
		jobs           int64
	}
	var rows []row
	b.ResetTimer()
	for _, subjects := range []int{2, 8} {
		stream := fmt.Sprintf("BENCH%d", subjects)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
		publishBench(b, js, stream, subjects, 0, records)
		start := time.Now()
		plainNATS(b, env, srv.URL(), template, stream)
		plain := time.Since(start)
		for _, mode := range []string{workflows.ModeInline, workflows.ModeStaged} {
			name := fmt.Sprintf("bench-nats-%d-%s", subjects, mode)
			r := row{subjects: subjects, mode: mode, plain: plain}
			r.elapsed, r.jobs = viaNATSConnector(b, env, srv.URL(), template, name, stream, mode, 1000, records)
			b.Logf("%s: %d messages in %s (%d jobs): %.0f messages/s; plain %s", name, records, r.elapsed.Round(time.Millisecond), r.jobs,
				float64(records)/r.elapsed.Seconds(), plain.Round(time.Millisecond))
			rows = append(rows, r)
		}
	}

	// Actions per batch and per idle minute: one subject, batches of 100.
	m := &actionMeter{b: b, env: env, own: devstack.Actions{}}
	const settle = 35 * time.Second
	name := "act-nats"
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ACT", Subjects: []string{"ACT.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	publishBench(b, js, "ACT", 1, 0, 1)
	cfg := natsBenchConfig(b, env, srv.URL(), template, name, "ACT", workflows.ModeInline, 100)
	id := cfg.WorkflowID(name)
	if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		cfg.ConnectorType, workflows.SourceConnectorInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	var st workflows.SourceConnectorStatus
	m.await(name+" idle", func() (bool, error) {
		err := m.query(id, workflows.QuerySourceStatus, &st)
		return len(st.Units) == 1 && st.Units[0].Phase == "idle", err
	})
	time.Sleep(settle)
	before := m.mark()
	publishBench(b, js, "ACT", 1, 1, batches*100)
	m.await(name+" drained", func() (bool, error) {
		err := m.query(id, workflows.QuerySourceStatus, &st)
		return st.Records >= int64(batches*100+1), err
	})
	cost := batchCost{kind: "NATS inline", batches: st.Batches - 1, spent: m.spent(before)}
	cost.idle, cost.idlePerMinute = m.idle(settle, window)
	cancelConnector(b, env, id, 5*time.Second)
	b.Logf("%s: %.1f actions/batch (%s); idle %.1f/min (%s)", cost.kind, cost.perBatch(), cost.spent, cost.idlePerMinute, cost.idle)
	budget := budgetSize(b, env)
	b.StopTimer()

	var t strings.Builder
	fmt.Fprintf(&t, `## NATS JetStream connector: %d messages per stream, 2 and 8 subjects

Generated by `+"`make bench`"+` (BenchmarkNATS) on %s, code of commit %s. Machine: %s, %d CPUs.
Same process, same stack (Temporal dev server, in-process Bacalhau node running
the sample WASM task, embedded nats-server with JetStream on a file store,
versitygw, input gateway). Throughput is end to end: from the connector's
start (messages already in the stream, spread evenly over the subjects) until
every subject's consumer has processed its last message, each batch (up to
1,000 messages, max_wait 1 s) summarized by a real task; the shared budget
allows %d jobs in flight. Baseline: a plain program that reads each subject
with the same reader (internal/natssource) and submits the same inline jobs
directly (submit, poll every 50 ms), one batch per subject at a time, every
subject at once (2 or 8 jobs in flight; the connector has one batch per
subject in flight, within the budget's 5).

| Subjects | Mode | Wall time | Jobs | Messages/s | Plain inline wall time | Connector / plain (wall time) |
|---|---|---|---|---|---|---|
`, records, time.Now().UTC().Format("2006-01-02"), code, cpuModel(), runtimeCPUs(), budget)
	for _, r := range rows {
		fmt.Fprintf(&t, "| %d | %s | %s | %d | %.0f | %s | **%.2f×** |\n", r.subjects, r.mode, r.elapsed.Round(time.Millisecond), r.jobs,
			float64(records)/r.elapsed.Seconds(), r.plain.Round(time.Millisecond), r.elapsed.Seconds()/r.plain.Seconds())
	}
	fmt.Fprintf(&t, `
Billable Temporal actions (the dev server's counter, the benchmark's own
queries taken out): one subject working off a backlog of %d batches of 100
messages: **%.1f actions per batch** (%s); idle: **%.1f actions per minute**
(%s) for a connector of one subject (one SourceWait activity per subject
per minute with its heartbeats, one unit listing and one timer per
connector per minute): above issue #15's 2 per idle minute; a watcher per
connector, as Kafka's and Kinesis' have, would take the per-subject waits
and their heartbeats away.
`, cost.batches, cost.perBatch(), perUnit(cost.spent, float64(cost.batches)), cost.idlePerMinute, perUnit(cost.idle, window.Minutes()))
	fmt.Println(t.String())
	if out := os.Getenv("BENCH_OUT_NATS"); out != "" {
		if err := os.WriteFile(out, []byte(t.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// publishBench publishes messages from..from+n-1 (log lines) over the
// stream's subjects <stream>.s0 … in turn, acknowledged in bulk.
func publishBench(b *testing.B, js jetstream.JetStream, stream string, subjects, from, n int) {
	ctx := context.Background()
	var acks []jetstream.PubAckFuture
	for i := from; i < from+n; i++ {
		f, err := js.PublishAsync(fmt.Sprintf("%s.s%d", stream, i%subjects), []byte(logLine(i)))
		if err != nil {
			b.Fatal(err)
		}
		acks = append(acks, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
	case <-time.After(time.Minute):
		b.Fatal("publishing: no acknowledgement within a minute")
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
}

func natsBenchConfig(b *testing.B, env *testenv.Env, url, template, name, stream, mode string, maxRecords int) workflows.SourceStreamConfig {
	raw, err := json.Marshal(natssource.Config{URL: url, Stream: stream})
	if err != nil {
		b.Fatal(err)
	}
	cfg := workflows.SourceStreamConfig{Name: name, SourceKind: spec.SourceKindOf(natssource.Kind()), Source: raw, Describe: "stream " + stream,
		Start:          workflows.StartEarliest,
		StreamBatching: workflows.StreamBatching{MaxRecords: maxRecords, MaxBytes: workflows.MaxInlineBatchBytes, MaxWait: time.Second, Mode: mode, Bisect: true},
		TaskConfig:     workflows.TaskConfig{Template: template, ExecutionTimeout: 5 * time.Minute, Retry: workflows.TaskRetryPolicy{MaxAttempts: 3}}}
	if mode == workflows.ModeStaged {
		cfg.MaxBytes = 64 << 20
		cfg.Staging = &workflows.S3Location{Bucket: "bench-nats-stage", Prefix: name + "/", Endpoint: env.S3.Endpoint(), Region: env.S3.Region()}
	}
	return cfg
}

// viaNATSConnector runs a connector over the stream until it has
// processed want messages and returns the wall time and its batches.
func viaNATSConnector(b *testing.B, env *testenv.Env, url, template, name, stream, mode string, maxRecords, want int) (time.Duration, int64) {
	ctx := context.Background()
	cfg := natsBenchConfig(b, env, url, template, name, stream, mode, maxRecords)
	id := cfg.WorkflowID(name)
	start := time.Now()
	if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		cfg.ConnectorType, workflows.SourceConnectorInput{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	var st workflows.SourceConnectorStatus
	err := testenv.Eventually(30*time.Minute, func() error {
		v, err := env.Client.QueryWorkflow(ctx, id, "", workflows.QuerySourceStatus)
		if err != nil {
			return err
		}
		if err := v.Get(&st); err != nil {
			return err
		}
		if st.Records < int64(want) {
			return fmt.Errorf("%s: %d of %d messages (%s)", name, st.Records, want, st.LastError)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	_ = env.Client.CancelWorkflow(ctx, id, "")
	return elapsed, st.Batches
}

// plainNATS is the baseline: per subject, read a batch of up to 1,000
// messages, submit the inline job, poll it to completion, next batch;
// every subject at once, until each subject's read comes back empty.
func plainNATS(b *testing.B, env *testenv.Env, url, template, stream string) {
	ctx := context.Background()
	src, err := natssource.Open(ctx, natssource.Config{URL: url, Stream: stream})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	units, err := src.Units(ctx)
	if err != nil {
		b.Fatal(err)
	}
	api := env.Bacalhau.Client()
	var wg sync.WaitGroup
	for _, unit := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := uint64(1)
			for {
				recs, err := src.Read(ctx, unit, from, 0, source.Limits{MaxRecords: 1000, MaxBytes: workflows.MaxInlineBatchBytes, MaxWait: time.Second})
				if err != nil {
					b.Error(err)
					return
				}
				if len(recs.Items) == 0 {
					return
				}
				var lines []byte
				for _, r := range recs.Items {
					l, _ := json.Marshal(map[string]any{"unit": unit, "position": r.Position, "value": string(r.Value)})
					lines = append(append(lines, l...), '\n')
				}
				job, err := tasktemplate.Build(template, tasktemplate.Batch{Connector: "bench-plain-nats", ID: fmt.Sprintf("%s@%d", unit, from), Attempt: 1,
					Inputs: []tasktemplate.Input{{Target: activities.BatchInputTarget, Inline: lines}}, ExecutionTimeout: 5 * time.Minute})
				if err != nil {
					b.Error(err)
					return
				}
				if err := submitAndWait(ctx, api, job); err != nil {
					b.Error(err)
					return
				}
				from = recs.Items[len(recs.Items)-1].Position + 1
			}
		}()
	}
	wg.Wait()
}
