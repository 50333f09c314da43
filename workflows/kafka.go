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
	// Paused is carried across continue-as-new.
	Paused bool `json:",omitempty"`
	// Reports are the partitions' last status reports.
	Reports []PartitionStatus `json:",omitempty"`
	// Engine: the consumers run on the stream engine (KafkaStreamConsumer).
	// Moving lists the partitions whose older consumer was told to hand
	// off and whose engine consumer has not started yet.
	Engine bool    `json:",omitempty"`
	Moving []int32 `json:",omitempty"`
}

// KafkaConnectorStatus answers QueryPartitionStatus on the connector: the
// connector's state and the last report of every partition consumer.
type KafkaConnectorStatus struct {
	Name   string
	Topic  string
	Group  string
	Mode   string
	Paused bool
	// Started lists the partitions with a consumer.
	Started []int32
	// Partitions holds each consumer's last report, by partition.
	Partitions []PartitionStatus
	// Totals over the partitions.
	Records, Batches, DeadLettered, Lag int64
	// LastError is the connector's own last problem (partition discovery).
	LastError string `json:",omitempty"`
}

// ResetRequest moves the checkpoints of a paused connector: To is
// earliest, latest, timestamp (Time), offsets (Kafka: Offsets, by
// partition; partitions not listed keep their checkpoint) or key (cron: the
// S3 cursor's start-after Key).
type ResetRequest struct {
	To      string
	Time    time.Time       `json:",omitempty"`
	Offsets map[int32]int64 `json:",omitempty"`
	Key     string          `json:",omitempty"`
	// ID names this reset (the starter sets it) so its progress can be
	// followed: each consumer reports the ID of the last reset it applied
	// as LastReset.
	ID string `json:",omitempty"`
}

// Validate checks a reset request.
func (r ResetRequest) Validate() error {
	switch r.To {
	case StartEarliest, StartLatest:
	case StartTimestamp:
		if r.Time.IsZero() {
			return errors.New("reset to timestamp needs a time")
		}
	case StartOffsets:
		if len(r.Offsets) == 0 {
			return errors.New("reset to offsets needs at least one partition=offset")
		}
		// The lowest bad partition is reported, whatever the map's order.
		bad, found := int32(0), false
		//workflowcheck:ignore the outcome does not depend on the order
		for p, o := range r.Offsets {
			if (p < 0 || o < 0) && (!found || p < bad) {
				bad, found = p, true
			}
		}
		if found {
			return fmt.Errorf("reset: partition %d offset %d: both must be >= 0", bad, r.Offsets[bad])
		}
	default:
		return fmt.Errorf("reset: unknown position %q: use earliest, latest, timestamp or offsets", r.To)
	}
	return nil
}

// PartitionControl is what the connector tells a partition consumer.
type PartitionControl struct {
	// Op is pause, resume, reset or config.
	Op     string
	Reset  *ResetRequest `json:",omitempty"`
	Config *KafkaConfig  `json:",omitempty"`
}

// Partition control operations.
const (
	ControlPause  = "pause"
	ControlResume = "resume"
	ControlReset  = "reset"
	ControlConfig = "config"
	// ControlHandoff ends a consumer of the older workflow types between
	// batches: it sends its state to the connector (SignalPartitionHandoff,
	// SignalShardHandoff), which continues it on the stream engine.
	ControlHandoff = "handoff"
)

// partitionRecheck is how often the connector looks for new partitions.
const partitionRecheck = 10 * time.Second

// KafkaConnector runs one PartitionConsumer child per partition of its
// topic (IDs from connector, topic and partition), and looks for new
// partitions every few seconds, starting consumers for them without a
// restart. It fans out pause, resume, reset and spec updates to the
// consumers, and aggregates their status reports for its status query.
// Children are abandoned on continue-as-new and cancelled when the
// connector is cancelled (starter delete).
func KafkaConnector(ctx workflow.Context, in KafkaConnectorInput) error {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError("invalid kafka config: "+err.Error(), "InvalidConfig", nil)
	}
	started := append([]int32(nil), in.Started...)
	paused := in.Paused
	lastError := ""
	reports := map[int32]PartitionStatus{}
	for _, r := range in.Reports {
		reports[r.Partition] = r
	}
	// A run that starts on this code runs its consumers on the stream
	// engine; consumers of the older type are told to hand off, between
	// batches, and continue on the engine from their state.
	engine := in.Engine || workflow.GetVersion(ctx, changeKafkaStreamEngine, workflow.DefaultVersion, 1) == 1
	moving := append([]int32(nil), in.Moving...)
	if engine && !in.Engine {
		moving = append(moving, started...)
	}
	// moveNow: an apply asked a run on the older consumers to move now.
	moveNow := false
	// watching: idle consumers wait for this connector's wake signal, and
	// one watcher activity long-polls the topic for all of them (and for
	// new partitions) instead of a poll per partition and a discovery
	// round every 10 s. idle holds the checkpoints they wait at.
	watching := engine && workflow.GetVersion(ctx, changeKafkaIdleWatcher, workflow.DefaultVersion, 1) == 1
	// batchReports: the reports that arrived together change the watch
	// once, not once each (a thousand partitions going idle in one
	// workflow task would otherwise start and cancel a thousand watches).
	batchReports := watching && workflow.GetVersion(ctx, changeKafkaWatchOnce, workflow.DefaultVersion, 1) == 1
	// observePaused: the watcher also follows paused partitions' end
	// offsets, so their lag (status, list, gauges) stays true while paused.
	observePaused := watching && workflow.GetVersion(ctx, changeKafkaObservePaused, workflow.DefaultVersion, 1) == 1
	idle := map[int32]int64{}
	for _, r := range in.Reports {
		if r.Phase == "idle" && r.Watched {
			idle[r.Partition] = r.Checkpoint
		}
	}
	tell := func(c PartitionControl) {
		for _, p := range started {
			if slices.Contains(moving, p) {
				// Its engine consumer starts with the connector's state.
				continue
			}
			// Fire and forget, in order: a consumer that is gone has nothing to do.
			workflow.SignalExternalWorkflow(ctx, PartitionWorkflowID(cfg.Name, cfg.Topic, p), "", SignalPartitionControl, c)
		}
	}
	if engine && !in.Engine {
		for _, p := range moving {
			workflow.SignalExternalWorkflow(ctx, PartitionWorkflowID(cfg.Name, cfg.Topic, p), "", SignalPartitionControl, PartitionControl{Op: ControlHandoff})
		}
	}
	if err := workflow.SetQueryHandler(ctx, QueryConfig, func() (KafkaConfig, error) { return cfg, nil }); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryPartitionStatus, func() (KafkaConnectorStatus, error) {
		st := KafkaConnectorStatus{Name: cfg.Name, Topic: cfg.Topic, Group: cfg.Group, Mode: cfg.Mode, Paused: paused, Started: started, LastError: lastError}
		for _, p := range started {
			r, ok := reports[p]
			if !ok {
				r = PartitionStatus{Partition: p, Checkpoint: -1, Phase: "starting"}
			}
			st.Partitions = append(st.Partitions, r)
			st.Records += r.Records
			st.Batches += r.Batches
			st.DeadLettered += r.DeadLettered
			st.Lag += r.Lag
		}
		return st, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateSpec, func(ctx workflow.Context, next KafkaConfig) (string, error) {
		cfg = next
		tell(PartitionControl{Op: ControlConfig, Config: &next})
		if !engine && workflow.GetVersion(ctx, changeKafkaMoveOnApply, workflow.DefaultVersion, 1) == 1 {
			moveNow = true // the next run moves the consumers onto the engine
			return "updated; moving its consumers onto the stream engine", nil
		}
		return "updated", nil
	}, workflow.UpdateHandlerOptions{Validator: func(next KafkaConfig) error {
		if err := next.Validate(); err != nil {
			return err
		}
		if next.Name != cfg.Name || next.Topic != cfg.Topic {
			return fmt.Errorf("name and source.kafka.topic cannot change (%s, %s): delete the connector and apply a new one", cfg.Name, cfg.Topic)
		}
		return nil
	}}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReset, func(ctx workflow.Context, r ResetRequest) (int, error) {
		tell(PartitionControl{Op: ControlReset, Reset: &r})
		return len(started), nil
	}, workflow.UpdateHandlerOptions{Validator: func(r ResetRequest) error {
		if !paused {
			return errors.New("reset needs a paused connector: pause it, reset, then resume")
		}
		if len(moving) > 0 {
			return fmt.Errorf("partitions %v are moving onto the stream engine: reset again in a few seconds", moving)
		}
		return r.Validate()
	}}); err != nil {
		return err
	}

	parallelStart := workflow.GetVersion(ctx, changeKafkaParallelStart, workflow.DefaultVersion, 1) == 1
	statusCh := workflow.GetSignalChannel(ctx, SignalPartitionStatus)
	handoffCh := workflow.GetSignalChannel(ctx, SignalPartitionHandoff)
	// handoffs counts engine consumers being started from a handoff.
	handoffs := 0
	continueOnEngine := func(h PartitionInput) {
		st := kafkaStreamState(h)
		st.Paused = paused // a pause or resume since the handoff was not told to it
		in := KafkaStreamInput{Config: cfg, Partition: h.Partition, State: st, Watched: watching}
		handoffs++
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer func() { handoffs-- }()
			if err := startMoved(ctx, PartitionWorkflowID(cfg.Name, cfg.Topic, h.Partition), KafkaStreamConsumer, in); err != nil {
				lastError = fmt.Sprintf("partition %d: %v", h.Partition, err)
				return
			}
			moving = slices.DeleteFunc(moving, func(p int32) bool { return p == h.Partition })
			workflow.GetLogger(ctx).Info("Partition consumer moved onto the stream engine", "Partition", h.Partition, "Checkpoint", h.Checkpoint)
		})
	}
	pauseCh := workflow.GetSignalChannel(ctx, SignalPause)
	resumeCh := workflow.GetSignalChannel(ctx, SignalResume)
	var k *activities.Kafka
	// Discovery runs every partitionRecheck anyway: an outage shows in the
	// status within seconds instead of after long retries.
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	w := newKafkaWatch()
	for rounds := 0; ; rounds++ {
		var parts []int32
		if watching && !w.discover {
			parts = started // nothing new to look for: the watcher says when
		} else if err := workflow.ExecuteActivity(actx, k.Partitions, cfg.topicRef()).Get(ctx, &parts); err != nil {
			var appErr *temporal.ApplicationError
			if len(started) == 0 && errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeKafkaTopicNotFound {
				// Most likely a typo in the spec: fail loudly.
				return fmt.Errorf("listing partitions of %s: %w", cfg.Topic, err)
			}
			// The topic went away (deleted) or the brokers are down: the
			// consumers keep their checkpoints and wait; say so and look again.
			lastError = fmt.Sprintf("listing partitions of %s: %v", cfg.Topic, err)
			workflow.GetLogger(ctx).Warn("Listing partitions failed; consumers keep their checkpoints", "Error", err)
		} else {
			lastError = ""
		}
		w.discover = false
		var fresh []int32
		var starting []workflow.ChildWorkflowFuture
		for _, p := range parts {
			if slices.Contains(started, p) || slices.Contains(fresh, p) {
				continue
			}
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:        PartitionWorkflowID(cfg.Name, cfg.Topic, p),
				ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
			})
			var f workflow.ChildWorkflowFuture
			if engine {
				f = workflow.ExecuteChildWorkflow(cctx, KafkaStreamConsumer, KafkaStreamInput{Config: cfg, Partition: p, Watched: watching,
					State: StreamState[int64, int64]{Checkpoint: -1, Paused: paused, Epoch: consumerEpoch(ctx), Indexed: indexedJobs(ctx)}})
			} else {
				f = workflow.ExecuteChildWorkflow(cctx, PartitionConsumer, PartitionInput{Config: cfg, Partition: p, Checkpoint: -1, Paused: paused})
			}
			fresh, starting = append(fresh, p), append(starting, f)
			if !parallelStart {
				if err := childStarted(ctx, f, p); err != nil {
					return err
				}
			}
		}
		for i, f := range starting {
			if parallelStart {
				// All started in one workflow task: a thousand partitions
				// take one round trip, not a thousand.
				if err := childStarted(ctx, f, fresh[i]); err != nil {
					return err
				}
			}
			started = append(started, fresh[i])
			workflow.GetLogger(ctx).Info("Partition consumer started", "Partition", fresh[i])
		}

		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		recheck := false
		sel := workflow.NewSelector(ctx)
		if watching {
			want := idleList(idle)
			if observePaused {
				want = append(want, pausedEnds(started, reports)...)
			}
			w.arm(ctx, sel, want, len(started), &lastError, &recheck, func(ctx workflow.Context, want []activities.PartitionAt) workflow.Future {
				var k *activities.Kafka
				return workflow.ExecuteActivity(ctx, k.WatchPartitions, activities.WatchInput{TopicRef: cfg.topicRef(), Group: cfg.Group,
					Idle: want, Known: len(started), Timeout: watchTimeout})
			})
		} else {
			sel.AddFuture(workflow.NewTimer(timerCtx, partitionRecheck), func(workflow.Future) { recheck = true })
		}
		onStatus := func(r PartitionStatus) {
			if held := reports[r.Partition]; watching && !reportBefore(r.Reported, r.Seq, held.Reported, held.Seq) {
				if r.Phase == "idle" && r.Watched {
					idle[r.Partition] = r.Checkpoint
				} else {
					delete(idle, r.Partition)
				}
				if !observePaused {
					recheck = recheck || w.stale(idleList(idle))
				}
			}
			if held, ok := reports[r.Partition]; ok && observePaused && held.End > r.End {
				// The watcher saw the end further on than the consumer did.
				r.End, r.Lag = held.End, max(0, held.End-r.Checkpoint)
			}
			reports[r.Partition] = newerReport(reports[r.Partition], r, func(p PartitionStatus) (time.Time, int64) { return p.Reported, p.Seq })
			if observePaused {
				recheck = recheck || w.stale(append(idleList(idle), pausedEnds(started, reports)...))
			}
		}
		sel.AddReceive(statusCh, func(c workflow.ReceiveChannel, _ bool) {
			var r PartitionStatus
			c.Receive(ctx, &r)
			onStatus(r)
		})
		if engine {
			sel.AddReceive(handoffCh, func(c workflow.ReceiveChannel, _ bool) {
				var h PartitionInput
				c.Receive(ctx, &h)
				if slices.Contains(moving, h.Partition) {
					continueOnEngine(h)
				}
			})
		}
		sel.AddReceive(pauseCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			paused = true
			tell(PartitionControl{Op: ControlPause})
			syncConnectorState(ctx, paused)
		})
		sel.AddReceive(resumeCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			paused = false
			tell(PartitionControl{Op: ControlResume})
			syncConnectorState(ctx, paused)
		})
		for !recheck && !moveNow && ctx.Err() == nil {
			sel.Select(ctx)
		}
		cancelTimer()
		if ctx.Err() != nil {
			w.stop()
			cancelConsumers(ctx, cfg, started)
			return temporal.NewCanceledError("kafka connector cancelled")
		}
		if batchReports {
			// Take in every report that arrived with this one first.
			var r PartitionStatus
			for statusCh.ReceiveAsync(&r) {
				onStatus(r)
				r = PartitionStatus{}
			}
		}
		if watching {
			wakePartitions(ctx, cfg, idle, &w.result)
			observedEnds(ctx, cfg, reports, &w.result)
		}
		if moveNow || rounds >= 500 && !watching || rounds >= 5000 || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			w.stop()
			// Take in what arrived, so nothing is lost across continue-as-new.
			for sel.HasPending() {
				sel.Select(ctx)
			}
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) && handoffs == 0 }); err != nil {
				return err
			}
			next := KafkaConnectorInput{Config: cfg, Started: started, Paused: paused, Engine: engine, Moving: moving}
			for _, p := range started {
				if r, ok := reports[p]; ok {
					next.Reports = append(next.Reports, r)
				}
			}
			return workflow.NewContinueAsNewError(ctx, KafkaConnector, next)
		}
	}
}

// Version changes of the connectors.
const (
	// changeKafkaStreamEngine: a run's consumers run on the stream engine.
	changeKafkaStreamEngine = "kafka-stream-engine"
	// changeKafkaMoveOnApply: an apply to a run on the older consumers
	// continues it as new, which moves them.
	changeKafkaMoveOnApply = "kafka-move-on-apply"
	// changeKafkaIdleWatcher: one watcher per connector wakes idle
	// consumers (which then wait for its signal, not poll themselves).
	changeKafkaIdleWatcher = "kafka-idle-watcher"
	// changeKafkaWatchOnce: status reports that arrive together restart
	// the watch once.
	changeKafkaWatchOnce = "kafka-watch-once-per-task"
	// changeKafkaObservePaused: the watcher follows paused partitions' ends.
	changeKafkaObservePaused = "kafka-observe-paused-ends"
	// changeKinesisStreamEngine and changeKinesisMoveOnApply are the same
	// for the Kinesis connector.
	changeKinesisStreamEngine = "kinesis-stream-engine"
	changeKinesisMoveOnApply  = "kinesis-move-on-apply"
	// changeKinesisIdleWatcher: one watcher per Kinesis connector wakes
	// idle shard consumers (and lists shards when it sees new ones).
	changeKinesisIdleWatcher = "kinesis-idle-watcher"
	// changeKinesisObservePaused: the watcher follows how far paused
	// shards fall behind.
	changeKinesisObservePaused = "kinesis-observe-paused-behind"
	// changeKafkaParallelStart: a connector starts its partition consumers
	// all in one workflow task.
	changeKafkaParallelStart = "kafka-connector-parallel-start"
)

// startMoved starts the stream engine consumer of a unit whose older
// consumer handed off: that one closes right after its handoff signal, so
// a start that finds it still running tries again a second later.
func startMoved(ctx workflow.Context, id string, consumer any, in any) error {
	for try := 0; ; try++ {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id, ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON})
		err := workflow.ExecuteChildWorkflow(cctx, consumer, in).GetChildWorkflowExecution().Get(ctx, nil)
		var already *temporal.ChildWorkflowExecutionAlreadyStartedError
		if err == nil || !errors.As(err, &already) || try >= 60 {
			if err != nil {
				return fmt.Errorf("starting its stream engine consumer: %w", err)
			}
			return nil
		}
		if err := workflow.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// childStarted waits until a consumer's workflow started; one that runs
// already (started by an earlier run of the connector) is fine.
func childStarted(ctx workflow.Context, f workflow.ChildWorkflowFuture, p int32) error {
	if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		var already *temporal.ChildWorkflowExecutionAlreadyStartedError
		if !errors.As(err, &already) {
			return fmt.Errorf("starting consumer of partition %d: %w", p, err)
		}
	}
	return nil
}

func cancelConsumers(ctx workflow.Context, cfg KafkaConfig, parts []int32) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	for _, p := range parts {
		_ = workflow.RequestCancelExternalWorkflow(dctx, PartitionWorkflowID(cfg.Name, cfg.Topic, p), "").Get(dctx, nil)
	}
}

// newerReport keeps the later of a consumer's reports: signals from one
// consumer can arrive out of order, even two sent in the same workflow
// task, and a stale report must not overwrite a newer one. Reports are
// ordered by their consumer's workflow time, then by its report sequence
// number (Seq: two reports of one task share a time); reports from before
// Seq existed (0) keep the arrival order at equal times. No command:
// recorded histories replay unchanged.
func newerReport[T any](held, got T, order func(T) (time.Time, int64)) T {
	gt, gs := order(got)
	ht, hs := order(held)
	if reportBefore(gt, gs, ht, hs) {
		return held
	}
	return got
}

// reportBefore tells whether a report at (t, seq) is older than one at
// (than, thanSeq).
func reportBefore(t time.Time, seq int64, than time.Time, thanSeq int64) bool {
	return t.Before(than) || t.Equal(than) && seq < thanSeq
}
