package workflows

// Names shared by the worker, the starter and the workflows. Use these
// constants; never type the strings again.
const (
	// TaskQueue is the default task queue of the worker and the starter.
	TaskQueue = "bacalhau-connect"

	// RunTaskWorkflowType is the registered name of RunTask.
	RunTaskWorkflowType = "RunTask"
	// BudgetWorkflowType is the registered name of Budget.
	BudgetWorkflowType = "Budget"
	// BudgetWorkflowID is the ID of the in-flight job budget of the default
	// task queue; see BudgetWorkflowIDFor.
	BudgetWorkflowID = "bacalhau-connect-budget"

	// SignalAcquireLease asks the budget for a lease (payload LeaseRequest).
	SignalAcquireLease = "acquire-lease"
	// SignalReleaseLease gives a lease back (payload LeaseRelease).
	SignalReleaseLease = "release-lease"
	// SignalLeaseGranted tells a holder its lease was granted (payload LeaseGrant).
	SignalLeaseGranted = "lease-granted"
	// SignalLeaseRecall asks a holder that keeps its lease across batches
	// (LeaseRequest.Keeps) to give it back after its batch: others wait
	// (payload LeaseRecall).
	SignalLeaseRecall = "lease-recall"
	// QueryBudgetStatus returns the budget's BudgetStatus.
	QueryBudgetStatus = "status"
	// UpdateBudgetResize sets the budget's size (argument int, >= 1).
	UpdateBudgetResize = "resize"
	// QueryRunTaskStatus returns a RunTask's RunTaskStatus.
	QueryRunTaskStatus = "status"
)

// Connector kinds: the spec's `kind:` values, the ConnectorKind search
// attribute, the "kind" metrics tag and the connect-kind job label. KindSQS
// and KindSNS are the two spec kinds of the queue connector (KindQueue).
const (
	KindCron    = "cron"
	KindKafka   = "kafka"
	KindKinesis = "kinesis"
	KindQueue   = "queue"
	KindNATS    = "nats"
	KindPubSub  = "pubsub"
)

// BudgetWorkflowIDFor is the ID of the budget shared by the workers of a
// task queue. The budget runs on that queue, so a deployment keeps all its
// workers on one queue and gets one budget; a second queue (another
// deployment, or a test) gets a budget of its own instead of leasing from
// one that no worker of it polls.
func BudgetWorkflowIDFor(taskQueue string) string {
	if taskQueue == "" || taskQueue == TaskQueue {
		return BudgetWorkflowID
	}
	return BudgetWorkflowID + "-" + taskQueue
}

// Cron connector names.
const (
	// CronWorkflowType is the registered name of Cron.
	CronWorkflowType = "Cron"
	// CronBackfillWorkflowType is the registered name of CronBackfill.
	CronBackfillWorkflowType = "CronBackfill"
	// CronWorkflowIDPrefix + connector name is a cron connector's workflow ID.
	CronWorkflowIDPrefix = "cron-"

	// SignalPause stops ticks until SignalResume; a running tick finishes.
	SignalPause = "pause"
	// SignalResume resumes ticks from the cursor.
	SignalResume = "resume"
	// SignalTrigger runs a tick now (also when paused).
	SignalTrigger = "trigger"
	// UpdateSpec replaces the connector's CronConfig (validated; applied
	// between ticks).
	UpdateSpec = "update-spec"
	// UpdateBackfill starts a backfill of a time range (argument
	// BackfillRequest) and returns its workflow ID.
	UpdateBackfill = "backfill"
	// QueryCronStatus returns a CronStatus.
	QueryCronStatus = "status"
	// QueryBackfillProgress returns a backfill's BackfillProgress.
	QueryBackfillProgress = "progress"
	// QueryConfig returns a connector's current configuration (of any
	// kind: CronConfig, KafkaConfig, QueueConfig, KinesisConfig), as
	// applied, updates included.
	QueryConfig = "config"
)

// CronWorkflowID is the workflow ID of the cron connector called name.
func CronWorkflowID(name string) string { return CronWorkflowIDPrefix + name }

// Kafka connector names.
const (
	// KafkaConnectorWorkflowType is the registered name of KafkaConnector.
	KafkaConnectorWorkflowType = "KafkaConnector"
	// PartitionConsumerWorkflowType is the registered name of
	// PartitionConsumer, the partition consumer before the stream engine
	// (kept so running ones finish their turn and move).
	PartitionConsumerWorkflowType = "KafkaPartitionConsumer"
	// KafkaStreamConsumerWorkflowType is the registered name of
	// KafkaStreamConsumer, the stream engine's partition consumer.
	KafkaStreamConsumerWorkflowType = "KafkaStreamConsumer"
	// KafkaWorkflowIDPrefix + connector name is a Kafka connector's workflow ID.
	KafkaWorkflowIDPrefix = "kafka-"
	// QueryPartitionStatus returns a PartitionStatus from a partition
	// consumer, and a KafkaConnectorStatus (every partition) from the
	// connector.
	QueryPartitionStatus = "status"
	// UpdateReset moves the position of a paused connector (argument
	// ResetRequest): a Kafka or Kinesis connector returns the partitions or
	// shards told (int), a cron connector the new S3 cursor in words
	// (string).
	UpdateReset = "reset"
	// SignalPartitionControl carries a PartitionControl from the connector
	// to its partition consumers (pause, resume, reset, config), in order.
	SignalPartitionControl = "partition-control"
	// SignalPartitionStatus carries a consumer's PartitionStatus to its
	// connector, which aggregates them for its status query.
	SignalPartitionStatus = "partition-status"
	// SignalPartitionHandoff carries a PartitionConsumer's PartitionInput
	// to its connector when it ends on ControlHandoff: the connector starts
	// the partition's KafkaStreamConsumer from it.
	SignalPartitionHandoff = "partition-handoff"
	// SignalStreamWake wakes an idle stream consumer that waits for its
	// connector's watcher (payload StreamWake).
	SignalStreamWake = "stream-wake"
)

// KafkaWorkflowID is the workflow ID of the Kafka connector called name.
func KafkaWorkflowID(name string) string { return KafkaWorkflowIDPrefix + name }

// PartitionWorkflowID is the ID of the consumer of one partition: Temporal
// then guarantees one running consumer per partition.
func PartitionWorkflowID(name, topic string, partition int32) string {
	return KafkaWorkflowID(name) + "-" + topic + "-" + itoa32(partition)
}

// Kinesis connector names.
const (
	// KinesisConnectorWorkflowType is the registered name of KinesisConnector.
	KinesisConnectorWorkflowType = "KinesisConnector"
	// ShardConsumerWorkflowType is the registered name of ShardConsumer,
	// the shard consumer before the stream engine.
	ShardConsumerWorkflowType = "KinesisShardConsumer"
	// KinesisStreamConsumerWorkflowType is the registered name of
	// KinesisStreamConsumer, the stream engine's shard consumer.
	KinesisStreamConsumerWorkflowType = "KinesisStreamConsumer"
	// KinesisWorkflowIDPrefix + connector name is a Kinesis connector's
	// workflow ID.
	KinesisWorkflowIDPrefix = "kinesis-"
	// QueryShardStatus returns a ShardStatus from a shard consumer and a
	// KinesisConnectorStatus (every shard) from the connector.
	QueryShardStatus = "status"
	// SignalShardControl carries a ShardControl from the connector to its
	// shard consumers (pause, resume, reset, config), in order.
	SignalShardControl = "shard-control"
	// SignalShardStatus carries a consumer's ShardStatus to its connector.
	SignalShardStatus = "shard-status"
	// SignalShardHandoff carries a ShardConsumer's ShardInput to its
	// connector when it ends on ControlHandoff.
	SignalShardHandoff = "shard-handoff"
)

// KinesisWorkflowID is the workflow ID of the Kinesis connector called name.
func KinesisWorkflowID(name string) string { return KinesisWorkflowIDPrefix + name }

// ShardWorkflowID is the ID of the consumer of one shard: Temporal then
// guarantees one running consumer per shard.
func ShardWorkflowID(name, shard string) string { return KinesisWorkflowID(name) + "-" + shard }

// Queue connector names.
const (
	// QueueWorkflowType is the registered name of QueueConnector.
	QueueWorkflowType = "QueueConnector"
	// QueueWorkflowIDPrefix + connector name is a queue connector's workflow ID.
	QueueWorkflowIDPrefix = "queue-"
	// QueryQueueStatus returns a QueueStatus.
	QueryQueueStatus = "status"
)

// QueueWorkflowID is the workflow ID of the queue connector called name.
func QueueWorkflowID(name string) string { return QueueWorkflowIDPrefix + name }

// Source stream connector names (the kinds on the public source.Stream
// interface; each kind's workflow types and ID prefix are its SourceKind).
const (
	// QuerySourceStatus returns a SourceUnitStatus from a unit's consumer
	// and a SourceConnectorStatus (every unit) from the connector.
	QuerySourceStatus = "status"
	// SignalUnitControl carries a control (pause, resume, reset, config)
	// from the connector to its unit consumers, in order.
	SignalUnitControl = "unit-control"
	// SignalUnitStatus carries a consumer's SourceUnitStatus to its
	// connector.
	SignalUnitStatus = "unit-status"
)
