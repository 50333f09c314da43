package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// scrape reads a Prometheus text endpoint and sums, per metric name, the
// samples whose labels contain every one of want (label="value" pairs).
func scrape(t *testing.T, url string, want ...string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sums := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		series, value := line[:sp], line[sp+1:]
		name, labels, _ := strings.Cut(series, "{")
		ok := true
		for _, w := range want {
			if !strings.Contains(labels, w) {
				ok = false
			}
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil && ok {
			sums[name] += v
		}
	}
	require.NoError(t, sc.Err())
	return sums
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// startMetricsWorker starts a worker process on queue that serves
// /metrics, waits until it is ready, and returns its base URL; the process
// is killed when the test ends.
func startMetricsWorker(t *testing.T, queue, log string) string {
	t.Helper()
	listen, err := testenv.FreeAddr()
	require.NoError(t, err)
	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	w, err := env.StartWorkerProcess(context.Background(), testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw,
		GatewaySecret: strings.Repeat("m", 32), MetricsListen: listen, Log: filepath.Join(env.Dir, log)})
	require.NoError(t, err)
	t.Cleanup(w.Kill)
	base := "http://" + listen
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		if s := getStatus(t, base+"/readyz"); s != http.StatusOK {
			return fmt.Errorf("/readyz: %d", s)
		}
		return nil
	}))
	return base
}

// TestWorkerMetricsMatchTheLedger runs a Kafka connector on a worker
// process serving /metrics: the connector counters it shows (records,
// successful batches) equal the ledger built from the tasks' outputs, the
// Temporal SDK's own metrics are there too, and /healthz and /readyz
// answer.
func TestWorkerMetricsMatchTheLedger(t *testing.T) {
	ctx := context.Background()
	const topic, name, queue, records = "metrics-events", "e2e-metrics", "e2e-metrics", 300
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: 2}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	var lines []string
	for i := 0; i < records/2; i++ {
		lines = append(lines, nginxLine(i))
	}
	produce(t, c, topic, 0, lines...)
	produce(t, c, topic, 1, lines...)

	base := startMetricsWorker(t, queue, "worker-metrics.log")
	assert.Equal(t, http.StatusOK, getStatus(t, base+"/healthz"))

	spec := kafkaSpecFile(t, name, k.Brokers()[0], topic, "batch: {max_records: 40, max_wait: 1s}\n")
	out, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, out)
	defer func() { _, _ = starter(t, queue, "delete", name) }()
	waitCheckpoints(t, name, topic, map[int32]int64{0: records / 2, 1: records / 2}, 3*time.Minute)

	// Cron-only verbs say what kind the connector is.
	_, err = starter(t, queue, "trigger", name)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a kafka connector; trigger is for cron connectors")

	seen, jobs := kafkaLedger(t, name)
	require.Len(t, seen, records)
	label := `connector="` + name + `"`
	var m map[string]float64
	require.NoError(t, testenv.Eventually(20*time.Second, func() error { // tally reports every second
		m = scrape(t, base+"/metrics", label)
		if m[workflows.MetricRecords+"_total"] < records {
			return fmt.Errorf("%s_total = %v; connector metrics: %v", workflows.MetricRecords, m[workflows.MetricRecords+"_total"], scrape(t, base+"/metrics", "connector="))
		}
		return nil
	}))
	assert.EqualValues(t, len(seen), m[workflows.MetricRecords+"_total"], "records processed = the ledger")
	ok := scrape(t, base+"/metrics", label, `outcome="succeeded"`)
	assert.EqualValues(t, jobs, ok[workflows.MetricBatches+"_total"], "successful batches = the ledger's jobs")
	assert.Positive(t, m[workflows.MetricTaskLatency+"_seconds_count"], "task latency histogram")
	assert.Contains(t, m, workflows.MetricPartitionLag)
	all := scrape(t, base+"/metrics")
	assert.Positive(t, all["temporal_workflow_task_execution_latency_seconds_count"]+all["temporal_activity_execution_latency_seconds_count"],
		"the Temporal SDK's metrics are served too")
	t.Logf("metrics: %v records, %v successful batches, ledger %d records in %d jobs", m[workflows.MetricRecords+"_total"], ok[workflows.MetricBatches+"_total"], len(seen), jobs)
}
