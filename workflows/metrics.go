package workflows

import (
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"
)

// Connector metrics, recorded through the worker's metrics handler (in
// Prometheus: counters end in _total, timers in _seconds). Every one is
// tagged connector and kind, besides the SDK's namespace, task_queue and
// workflow_type. workflow.GetMetricsHandler records nothing during replay,
// so a replayed batch is not counted twice.
const (
	// MetricRecords counts records, messages or objects in successful batches.
	MetricRecords = "connect_records_processed"
	// MetricBatches counts finished batches, tagged outcome (succeeded,
	// failed).
	MetricBatches = "connect_batches"
	// MetricDeadLettered counts records sent to a dead letter.
	MetricDeadLettered = "connect_dead_lettered"
	// MetricRetries counts batches run again after a failure.
	MetricRetries = "connect_batch_retries"
	// MetricTaskLatency times a batch's task from submission to its end.
	MetricTaskLatency = "connect_task_latency"
	// MetricPartitionLag is a Kafka partition's records behind its end
	// (tagged partition).
	MetricPartitionLag = "connect_partition_lag"
	// MetricShardBehind is how many milliseconds a Kinesis shard's last
	// read was behind its tip (tagged shard).
	MetricShardBehind = "connect_shard_millis_behind"
	// MetricUnitLag is a source stream unit's records at or after its
	// checkpoint, as last seen (tagged unit).
	MetricUnitLag = "connect_unit_lag"
)

// connectorMetrics is the metrics handler tagged with a connector.
func connectorMetrics(ctx workflow.Context, kind, name string) client.MetricsHandler {
	return workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"connector": name, "kind": kind})
}

// batchDone records a finished batch: its outcome, records and task time.
func batchDone(m client.MetricsHandler, succeeded bool, records int, task time.Duration) {
	outcome := "failed"
	if succeeded {
		outcome = "succeeded"
		m.Counter(MetricRecords).Inc(int64(records))
	}
	m.WithTags(map[string]string{"outcome": outcome}).Counter(MetricBatches).Inc(1)
	if task > 0 {
		m.Timer(MetricTaskLatency).Record(task)
	}
}
