package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

func itoa32(v int32) string { return strconv.Itoa(int(v)) }

// KafkaConnectorInput starts (or continues) a Kafka connector.
type KafkaConnectorInput struct {
	Config KafkaConfig
	// Started lists the partitions whose consumers run already.
	Started []int32 `json:",omitempty"`
}

// KafkaConnectorStatus answers QueryPartitionStatus on the connector.
type KafkaConnectorStatus struct {
	Name       string
	Topic      string
	Partitions []int32
}

// partitionRecheck is how often the connector looks for new partitions.
const partitionRecheck = 10 * time.Second

// KafkaConnector runs one PartitionConsumer child per partition of its
// topic (IDs from connector, topic and partition), and looks for new
// partitions every few seconds, starting consumers for them without a
// restart. Children are abandoned on continue-as-new and cancelled when
// the connector is cancelled (starter delete).
func KafkaConnector(ctx workflow.Context, in KafkaConnectorInput) error {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError("invalid kafka config: "+err.Error(), "InvalidConfig", nil)
	}
	started := append([]int32(nil), in.Started...)
	if err := workflow.SetQueryHandler(ctx, QueryPartitionStatus, func() (KafkaConnectorStatus, error) {
		return KafkaConnectorStatus{Name: cfg.Name, Topic: cfg.Topic, Partitions: started}, nil
	}); err != nil {
		return err
	}
	var k *activities.Kafka
	actx := shortOptions(ctx)
	for rounds := 0; ; rounds++ {
		var parts []int32
		if err := workflow.ExecuteActivity(actx, k.Partitions, activities.TopicRef{Brokers: cfg.Brokers, Topic: cfg.Topic}).Get(ctx, &parts); err != nil {
			return fmt.Errorf("listing partitions of %s: %w", cfg.Topic, err)
		}
		for _, p := range parts {
			if slices.Contains(started, p) {
				continue
			}
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:        PartitionWorkflowID(cfg.Name, cfg.Topic, p),
				ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
			})
			f := workflow.ExecuteChildWorkflow(cctx, PartitionConsumer, PartitionInput{Config: cfg, Partition: p, Checkpoint: -1})
			if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
				var already *temporal.ChildWorkflowExecutionAlreadyStartedError
				if !errors.As(err, &already) {
					return fmt.Errorf("starting consumer of partition %d: %w", p, err)
				}
			}
			started = append(started, p)
			workflow.GetLogger(ctx).Info("Partition consumer started", "Partition", p)
		}
		if err := workflow.Sleep(ctx, partitionRecheck); err != nil {
			cancelConsumers(ctx, cfg, started)
			return err
		}
		if rounds >= 500 || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return workflow.NewContinueAsNewError(ctx, KafkaConnector, KafkaConnectorInput{Config: cfg, Started: started})
		}
	}
}

func cancelConsumers(ctx workflow.Context, cfg KafkaConfig, parts []int32) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	for _, p := range parts {
		_ = workflow.RequestCancelExternalWorkflow(dctx, PartitionWorkflowID(cfg.Name, cfg.Topic, p), "").Get(dctx, nil)
	}
}

// PartitionInput starts (or continues) one partition's consumer.
type PartitionInput struct {
	Config    KafkaConfig
	Partition int32
	// Checkpoint is the next offset to process; -1 resolves the spec's start.
	Checkpoint int64
	Batches    int64 `json:",omitempty"`
	Records    int64 `json:",omitempty"`
	Attempts   int   `json:",omitempty"`
}

// PartitionStatus answers QueryPartitionStatus on a partition consumer.
type PartitionStatus struct {
	Partition  int32
	Checkpoint int64
	Batches    int64
	Records    int64
	Skipped    int64
	LastJob    string `json:",omitempty"`
	LastError  string `json:",omitempty"`
	Phase      string
}

// partitionBatchesPerRun bounds one run's history before continue-as-new.
const partitionBatchesPerRun = 100

// PartitionConsumer consumes one partition: loop { lease; read from the
// checkpoint and submit the batch (one activity, records never in
// history); await the job; on success advance the checkpoint and mirror it
// to the consumer group }. A failed batch runs again as a new attempt over
// exactly the same offsets; it is retried, never skipped (bisection and
// dead letters come next). At most one batch per partition is in flight.
func PartitionConsumer(ctx workflow.Context, in PartitionInput) error {
	cfg := in.Config
	st := &PartitionStatus{Partition: in.Partition, Checkpoint: in.Checkpoint, Batches: in.Batches, Records: in.Records, Phase: "starting"}
	if err := workflow.SetQueryHandler(ctx, QueryPartitionStatus, func() (PartitionStatus, error) { return *st, nil }); err != nil {
		return err
	}
	var k *activities.Kafka
	var b *activities.Bacalhau
	short := shortOptions(ctx)
	topic := activities.TopicRef{Brokers: cfg.Brokers, Topic: cfg.Topic}
	if st.Checkpoint < 0 {
		start := activities.StartInput{TopicRef: topic, Partition: in.Partition, Start: cfg.Start, StartTime: cfg.StartTime}
		if cfg.Start == StartOffsets {
			start.Offset = cfg.StartOffsets[in.Partition]
		}
		if err := workflow.ExecuteActivity(short, k.ResolveStart, start).Get(ctx, &st.Checkpoint); err != nil {
			return fmt.Errorf("resolving the start of partition %d: %w", in.Partition, err)
		}
	}
	policy := cfg.Retry.withDefaults()
	leases := newLeaseClient(ctx, BudgetRef{})
	attempts := in.Attempts // attempts of the current batch so far
	until := int64(-1)      // fixed once a batch was first submitted
	wctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
	for run := 0; run < partitionBatchesPerRun && !workflow.GetInfo(ctx).GetContinueAsNewSuggested(); {
		if attempts == 0 {
			st.Phase = "idle"
			var has bool
			if err := workflow.ExecuteActivity(wctx, k.WaitForRecords, activities.WaitInput{
				TopicRef: topic, Partition: in.Partition, From: st.Checkpoint, Timeout: 30 * time.Second,
			}).Get(ctx, &has); err != nil {
				if ctx.Err() != nil {
					return temporal.NewCanceledError("partition consumer cancelled")
				}
				return fmt.Errorf("partition %d: waiting for records: %w", in.Partition, err)
			}
			if !has {
				run++ // idle rounds count too: history stays bounded
				continue
			}
		}
		leaseID := workflow.GetInfo(ctx).WorkflowExecution.ID + "@" + strconv.FormatInt(st.Checkpoint, 10) + "#" + strconv.Itoa(attempts+1)
		st.Phase = "waiting-for-lease"
		if err := leases.acquire(ctx, leaseID, cfg.MaxWait+leaseTTL(RunTaskInput{QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout})); err != nil {
			return err
		}
		st.Phase = "reading"
		rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: cfg.MaxWait + time.Minute,
			HeartbeatTimeout:    cfg.MaxWait + 30*time.Second,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
		})
		var batch activities.StreamBatch
		err := workflow.ExecuteActivity(rctx, b.ReadAndSubmit, activities.StreamSubmitInput{
			Read: activities.KafkaRead{Brokers: cfg.Brokers, Topic: cfg.Topic, Partition: in.Partition, From: st.Checkpoint,
				MaxRecords: cfg.MaxRecords, MaxBytes: cfg.MaxBytes, MaxWait: cfg.MaxWait, OnOutOfRange: cfg.OnOffsetOutOfRange, Until: until},
			Connector: cfg.Name, Attempt: attempts + 1, Template: cfg.Template,
			QueueTimeout: cfg.QueueTimeout, ExecutionTimeout: cfg.ExecutionTimeout,
		}).Get(ctx, &batch)
		if err != nil {
			leases.release(ctx, leaseID)
			st.LastError = err.Error()
			return fmt.Errorf("partition %d at offset %d: %w", in.Partition, st.Checkpoint, err)
		}
		if batch.Count == 0 {
			leases.release(ctx, leaseID)
			continue
		}
		until = batch.Last
		st.LastJob = batch.JobID
		st.Phase = "running"
		actx := awaitOptions(ctx, batch.QueueTimeout, batch.ExecutionTimeout)
		err = workflow.ExecuteActivity(actx, b.Await, activities.AwaitInput{JobID: batch.JobID}).Get(ctx, nil)
		leases.release(ctx, leaseID)
		if ctx.Err() != nil {
			stopJob(ctx, batch.JobID)
			return temporal.NewCanceledError("partition consumer cancelled")
		}
		if err != nil {
			attempts++
			st.LastError = err.Error()
			wait := min(time.Duration(float64(policy.InitialInterval)*pow(policy.BackoffCoefficient, attempts-1)), policy.MaxInterval)
			workflow.GetLogger(ctx).Warn("Batch failed; it runs again over the same offsets", "First", batch.First, "Last", batch.Last, "Attempt", attempts, "Wait", wait, "Error", err)
			st.Phase = "backoff"
			if err := workflow.Sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		// Success: the checkpoint moves past the batch, then the group mirrors it.
		st.Checkpoint = batch.Last + 1
		st.Batches++
		st.Records += int64(batch.Count)
		st.Skipped += batch.Skipped
		st.LastError = ""
		attempts, until = 0, -1
		run++
		if err := workflow.ExecuteActivity(short, k.CommitOffset, activities.CommitInput{
			TopicRef: topic, Group: cfg.Group, Partition: in.Partition, Offset: st.Checkpoint,
		}).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("Mirroring the checkpoint to the group failed; the next batch mirrors it", "Error", err)
		}
	}
	return workflow.NewContinueAsNewError(ctx, PartitionConsumer, PartitionInput{Config: cfg, Partition: in.Partition,
		Checkpoint: st.Checkpoint, Batches: st.Batches, Records: st.Records, Attempts: attempts})
}

func pow(b float64, n int) float64 {
	r := 1.0
	for i := 0; i < n; i++ {
		r *= b
	}
	return r
}
