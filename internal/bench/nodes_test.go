package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestMain lets this test binary be a Bacalhau node of devstack.StartNetwork.
func TestMain(m *testing.M) {
	if devstack.IsNodeProcess() {
		os.Exit(devstack.NodeProcessMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// BenchmarkComputeNodes measures how a Kafka connector's throughput grows
// with the Bacalhau network: for BENCH_NODES_LIST compute nodes (default
// 1, 2 and 4, each its own process offering 1 CPU: two 500m tasks at
// once) it drains BENCH_NODES_BATCHES_PER_NODE batches of 20 records per
// node (default 32, over 16 partitions: every network runs the same 16
// rounds of 2 tasks per node, so each run lasts about as long and its
// start and tail weigh the same) with tasks that sleep BENCH_NODES_DELAY
// (default 30 s: the sample task's -delay, so the tasks wait on I/O more
// than on the 2 cores) and reports the throughput's speed-up over 1 node,
// measured in the same process, with each network's job timeline, task
// execution time and the nodes' CPU time. The budget follows each network
// (a fresh task queue and budget per network). Bacalhau's own placement can be varied to see what
// limits scaling: BENCH_NODES_HEARTBEAT (how often compute nodes report
// their capacity, default 1 s as docs/scaling.md advises for networks of
// short tasks; Bacalhau's own default is 15 s, devstack's single node 5 s),
// BENCH_NODES_OVERSUBSCRIPTION (default 1.5), BENCH_NODES_BUDGET_FACTOR
// (the budget set to factor × tasks at once instead of following the
// network); BENCH_NODES_DEBUG logs the history of executions over 40 s.
// BENCH_OUT_NODES writes the table.
func BenchmarkComputeNodes(b *testing.B) {
	perNode := envInt("BENCH_NODES_BATCHES_PER_NODE", 32)
	delay, err := time.ParseDuration(envOr("BENCH_NODES_DELAY", "30s"))
	if err != nil {
		b.Fatal(err)
	}
	const partitions, perBatch = 16, 20
	heartbeat, err := time.ParseDuration(envOr("BENCH_NODES_HEARTBEAT", "1s"))
	if err != nil {
		b.Fatal(err)
	}
	var oversubscription float64
	if _, err := fmt.Sscan(envOr("BENCH_NODES_OVERSUBSCRIPTION", "1.5"), &oversubscription); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	env, template, stop := startStack(b)
	defer stop()
	anchor := "          - -outputs=/outputs\n"
	if !strings.Contains(template, anchor) {
		b.Fatal("the sample template has no -outputs parameter to put -delay after")
	}
	template = strings.Replace(template, anchor, anchor+"          - -delay="+delay.String()+"\n", 1)

	type row struct {
		nodes, budget, jobs int
		wall                time.Duration
		steady              float64 // batches/s between the 10th and 90th percentile completion
		perNode             []int
		timeline            string
		nodeCPU             time.Duration // every compute node's CPU time over the run
		execP50             time.Duration // a task's execution, median
		machineBusy         float64       // cores busy on the machine, every process
	}
	var rows []row
	b.ResetTimer()
	for _, nodes := range envCounts(b, "BENCH_NODES_LIST", "1,2,4") {
		batches := perNode * nodes
		net, err := devstack.StartNetwork(ctx, devstack.NetworkOptions{Command: []string{os.Args[0]},
			Dir: filepath.Join(b.TempDir(), fmt.Sprintf("net-%d", nodes)), ComputeNodes: nodes, CPU: "1", Heartbeat: heartbeat, OverSubscription: oversubscription})
		if err != nil {
			b.Fatal(err)
		}
		queue := fmt.Sprintf("bench-nodes-%d", nodes)
		w, err := env.StartWorkerWith(workerapp.Options{TaskQueue: queue, BacalhauAddress: net.Address(), Gateway: env.Gateway})
		if err != nil {
			net.Stop()
			b.Fatal(err)
		}
		k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{"bench-nodes": partitions}})
		if err != nil {
			b.Fatal(err)
		}
		produceTo(b, k, "bench-nodes", partitions, batches*perBatch)
		var cpuBefore []time.Duration
		for _, p := range net.Compute() {
			cpu, err := p.CPUTime()
			if err != nil {
				b.Fatal(err)
			}
			cpuBefore = append(cpuBefore, cpu)
		}
		name := fmt.Sprintf("bench-nodes-%d", nodes)
		cfg := kafkaConfig(env, k, template, name, "bench-nodes", workflows.ModeInline, perBatch)
		busy0, total0 := machineCPU(b)
		start := time.Now()
		id := workflows.KafkaWorkflowID(name)
		if _, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue},
			workflows.KafkaConnectorWorkflowType, workflows.KafkaConnectorInput{Config: cfg}); err != nil {
			b.Fatal(err)
		}
		if f := os.Getenv("BENCH_NODES_BUDGET_FACTOR"); f != "" {
			var factor float64
			if _, err := fmt.Sscan(f, &factor); err != nil {
				b.Fatal(err)
			}
			resizeBudget(b, env, queue, int(factor*float64(2*nodes)))
		}
		waitDrained(b, env, name, "bench-nodes", endOffsets(b, k, "bench-nodes"))
		wall := time.Since(start)
		busy1, total1 := machineCPU(b)
		_ = env.Client.CancelWorkflow(ctx, id, "")

		r := row{nodes: nodes, wall: wall, budget: budgetOf(b, env, queue),
			machineBusy: float64(runtimeCPUs()) * float64(busy1-busy0) / float64(max(total1-total0, 1))}
		for i, p := range net.Compute() {
			cpu, err := p.CPUTime()
			if err != nil {
				b.Fatal(err)
			}
			r.nodeCPU += cpu - cpuBefore[i]
		}
		byNode := map[string]int{}
		api := net.Client().Jobs()
		jobs, err := activities.NewBacalhau(net.Address(), nil).ListJobs(ctx, tasktemplate.LabelConnector+"="+name)
		if err != nil {
			b.Fatal(err)
		}
		times, execP50 := execTimes(b, net, jobs)
		r.timeline, r.execP50 = slotTimeline(jobs, start, wall)+"; "+times, execP50
		r.steady = steadyRate(jobs)
		for _, j := range jobs {
			if j.State.StateType != models.JobStateTypeCompleted {
				continue
			}
			r.jobs++
			resp, err := api.Executions(ctx, &apimodels.ListJobExecutionsRequest{JobID: j.ID})
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range resp.Items {
				if e.ComputeState.StateType == models.ExecutionStateCompleted {
					byNode[e.NodeID]++
				}
			}
		}
		for _, n := range byNode {
			r.perNode = append(r.perNode, n)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(r.perNode)))
		b.Logf("%d nodes: %d jobs in %s (steady %.4f batches/s, budget %d, jobs per node %v, node CPU %s): %s", nodes, r.jobs, wall.Round(time.Millisecond),
			r.steady, r.budget, r.perNode, r.nodeCPU.Round(time.Millisecond), r.timeline)
		rows = append(rows, r)
		k.Stop()
		w.Stop()
		net.Stop()
	}
	b.StopTimer()

	var t strings.Builder
	fmt.Fprintf(&t, `## Compute nodes: throughput as Bacalhau compute nodes are added

Generated by `+"`make bench`"+` (BenchmarkComputeNodes) on %s. Machine: %s, %d CPUs.
Each network is an orchestrator and N compute nodes, each a process of its
own (devstack.StartNetwork) offering 1 CPU, so two sample tasks (500m) at
once; the budget follows the network (1.5 × tasks at once). One Kafka
connector drains %d batches of %d records per compute node over %d
partitions (max_in_flight 2), so every network runs %d rounds of tasks on
each of its slots, each task sleeping %s before it reads its batch (the
sample task's -delay: I/O-bound tasks, so the 2 cores are not what limits
the first networks). Throughput: batches over the wall time from the
connector's start to every checkpoint at the end; steady: the jobs
completed between the 10th and the 90th percentile completion over the
time between them (without the first round's start and the last round's
tail). Compute nodes report their capacity every %s. Baseline: the 1-node
network, in the same run.

| Compute nodes | Budget | Jobs | Wall time | Batches/s | Speed-up over 1 node | Steady batches/s | Speed-up (steady) | Target (0.9 × nodes) | Jobs per node | Task execution p50 | Nodes' CPU per task | Nodes' CPU (cores) | Machine busy (of %d cores) |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
`, time.Now().UTC().Format("2006-01-02"), cpuModel(), runtimeCPUs(), perNode, perBatch, partitions, perNode/2, delay, heartbeat, runtimeCPUs())
	for _, r := range rows {
		rate := float64(r.jobs) / r.wall.Seconds()
		speed := rate / (float64(rows[0].jobs) / rows[0].wall.Seconds())
		jobsPerNode := make([]string, len(r.perNode))
		for i, n := range r.perNode {
			jobsPerNode[i] = fmt.Sprint(n)
		}
		fmt.Fprintf(&t, "| %d | %d | %d | %s | %.4f | **%.2f×** | %.4f | %.2f× | %.1f× | %s | %s | %.2f s | %.2f | %.2f |\n", r.nodes, r.budget, r.jobs, r.wall.Round(time.Millisecond),
			rate, speed, r.steady, r.steady/max(rows[0].steady, 1e-9), 0.9*float64(r.nodes), strings.Join(jobsPerNode, ", "), r.execP50.Round(100*time.Millisecond),
			r.nodeCPU.Seconds()/float64(max(r.jobs, 1)), r.nodeCPU.Seconds()/r.wall.Seconds(), r.machineBusy)
	}
	t.WriteString("\nWhere the time went (job timeline from Bacalhau's records):\n\n")
	for _, r := range rows {
		fmt.Fprintf(&t, "- %d node(s): %s.\n", r.nodes, r.timeline)
	}
	writeResult(b, "BENCH_OUT_NODES", t.String())
}

// produceTo produces n log lines spread evenly over the topic's partitions.
func produceTo(b *testing.B, k *devstack.Kafka, topic string, partitions, n int) {
	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Partition: int32(i % partitions), Value: []byte(logLine(i))})
	}
	if err := c.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
}

// budgetOf is the size of a task queue's budget.
func budgetOf(b *testing.B, env *testenv.Env, queue string) int {
	v, err := env.Client.QueryWorkflow(context.Background(), workflows.BudgetWorkflowIDFor(queue), "", workflows.QueryBudgetStatus)
	if err != nil {
		b.Fatal(err)
	}
	var st workflows.BudgetStatus
	if err := v.Get(&st); err != nil {
		b.Fatal(err)
	}
	return st.Size
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// execTimes sums up where the completed jobs' time went, from Bacalhau's
// execution records: median job creation → execution start (queueing and
// placement) and execution start → end (the task itself).
func execTimes(b *testing.B, net *devstack.Network, jobs []*models.Job) (string, time.Duration) {
	var wait, run []time.Duration
	api := net.Client().Jobs()
	for _, j := range jobs {
		if j.State.StateType != models.JobStateTypeCompleted {
			continue
		}
		resp, err := api.Executions(context.Background(), &apimodels.ListJobExecutionsRequest{JobID: j.ID})
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range resp.Items {
			if e.ComputeState.StateType == models.ExecutionStateCompleted {
				wait = append(wait, time.Duration(e.CreateTime-j.CreateTime))
				run = append(run, time.Duration(e.ModifyTime-e.CreateTime))
				if d := time.Duration(e.ModifyTime - e.CreateTime); os.Getenv("BENCH_NODES_DEBUG") != "" && d > 40*time.Second {
					h, err := api.History(context.Background(), &apimodels.ListJobHistoryRequest{JobID: j.ID})
					if err == nil {
						for _, ev := range h.Items {
							b.Logf("slow %s on %s: +%s %s %s", e.ID, e.NodeID, ev.Time.Sub(time.Unix(0, j.CreateTime)).Round(100*time.Millisecond), ev.Event.Topic, ev.Event.Message)
						}
					}
				}
			}
		}
	}
	if len(run) == 0 {
		return "no executions", 0
	}
	w50, w99 := percentiles(wait)
	r50, r99 := percentiles(run)
	return fmt.Sprintf("job → execution p50 %s p99 %s, execution p50 %s p99 %s",
		w50.Round(time.Millisecond), w99.Round(time.Millisecond), r50.Round(time.Millisecond), r99.Round(time.Millisecond)), r50
}

// resizeBudget sets a task queue's budget size once the budget runs.
func resizeBudget(b *testing.B, env *testenv.Env, queue string, size int) {
	err := testenv.Eventually(time.Minute, func() error {
		h, err := env.Client.UpdateWorkflow(context.Background(), client.UpdateWorkflowOptions{
			WorkflowID: workflows.BudgetWorkflowIDFor(queue), UpdateName: workflows.UpdateBudgetResize,
			Args: []any{size}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err != nil {
			return err
		}
		return h.Get(context.Background(), nil)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// machineCPU reads the machine's busy and total CPU time (clock ticks,
// every CPU) from /proc/stat.
func machineCPU(b *testing.B) (busy, total int64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(line)[1:]
	for i, f := range fields {
		var n int64
		if _, err := fmt.Sscan(f, &n); err != nil {
			b.Fatal(err)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// steadyRate is a run's throughput once it is under way: the completed
// jobs between the 10th and the 90th percentile completion over the time
// between them (batches/s). Wall time from start to end also counts the
// first round's start and the last round's tail, about one task's length
// whatever the network's size: a larger share of a shorter run.
func steadyRate(jobs []*models.Job) float64 {
	var ends []int64
	for _, j := range jobs {
		if j.State.StateType == models.JobStateTypeCompleted {
			ends = append(ends, j.ModifyTime)
		}
	}
	slices.Sort(ends)
	lo, hi := len(ends)/10, len(ends)-1-len(ends)/10
	if hi <= lo || ends[hi] == ends[lo] {
		return 0
	}
	return float64(hi-lo) / time.Duration(ends[hi]-ends[lo]).Seconds()
}
