package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// KinesisConnectorInput starts (or continues) a Kinesis connector.
type KinesisConnectorInput struct {
	Config KinesisConfig
	// StartedAt is the connector's first start (start: latest reads from
	// there); zero at the first start.
	StartedAt time.Time `json:",omitempty"`
	// Shards are the shards known so far, with lineage and progress.
	Shards []KinesisShard `json:",omitempty"`
	Paused bool           `json:",omitempty"`
	// Reports are the consumers' last status reports.
	Reports []ShardStatus `json:",omitempty"`
	// Engine: the consumers run on the stream engine
	// (KinesisStreamConsumer). Moving lists the shards whose older
	// consumer was told to hand off and whose engine consumer has not
	// started yet.
	Engine bool     `json:",omitempty"`
	Moving []string `json:",omitempty"`
}

// KinesisShard is a shard as the connector tracks it.
type KinesisShard struct {
	activities.Shard
	// Started: its consumer was started; Finished: it reported the shard
	// closed and fully processed.
	Started  bool `json:",omitempty"`
	Finished bool `json:",omitempty"`
}

// KinesisConnectorStatus answers QueryShardStatus on the connector.
type KinesisConnectorStatus struct {
	Name   string
	Stream string
	Mode   string
	Paused bool
	// Shards holds every known shard's last report (or its waiting state).
	Shards []ShardStatus
	// Totals over the shards.
	Records, Batches, DeadLettered int64
	// LastError is the connector's own last problem (shard discovery).
	LastError string `json:",omitempty"`
}

// Behind is the most any shard is behind at now (ShardStatus.Behind).
func (st KinesisConnectorStatus) Behind(now time.Time) time.Duration {
	var most time.Duration
	for _, s := range st.Shards {
		most = max(most, s.Behind(now))
	}
	return most
}

// PhaseWaitingForParents is the phase the connector reports for a shard
// whose consumer has not started: it waits for its parents to finish.
const PhaseWaitingForParents = "waiting-for-parents"

// shardRecheck is how often the connector looks for new shards.
const shardRecheck = 10 * time.Second

// KinesisConnector runs one ShardConsumer child per shard (IDs from
// connector and shard ID), following lineage from ListShards: a shard's
// consumer starts only once its parent and adjacent parent (when they are
// known) reported themselves finished — closed and read to their end — so
// per-key order holds across splits and merges. It looks for new shards
// every few seconds (and at once when a shard finishes), fans out pause,
// resume, reset and spec updates, and aggregates status reports. Children
// are abandoned on continue-as-new and cancelled with the connector.
func KinesisConnector(ctx workflow.Context, in KinesisConnectorInput) error {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError("invalid kinesis config: "+err.Error(), "InvalidConfig", nil)
	}
	startedAt := in.StartedAt
	if startedAt.IsZero() {
		startedAt = workflow.Now(ctx)
	}
	shards := append([]KinesisShard(nil), in.Shards...)
	paused := in.Paused
	lastError := ""
	reports := map[string]ShardStatus{}
	for _, r := range in.Reports {
		reports[r.Shard] = r
	}
	index := func(id string) int {
		for i, s := range shards {
			if s.ID == id {
				return i
			}
		}
		return -1
	}
	// A run that starts on this code runs its consumers on the stream
	// engine; consumers of the older type hand off between batches.
	engine := in.Engine || workflow.GetVersion(ctx, changeKinesisStreamEngine, workflow.DefaultVersion, 1) == 1
	moving := append([]string(nil), in.Moving...)
	if engine && !in.Engine {
		for _, s := range shards {
			if s.Started && !s.Finished {
				moving = append(moving, s.ID)
				workflow.SignalExternalWorkflow(ctx, ShardWorkflowID(cfg.Name, s.ID), "", SignalShardControl, ShardControl{Op: ControlHandoff})
			}
		}
	}
	moveNow := false
	// watching: idle consumers wait for this connector's wake signal, and
	// one watcher activity polls the idle shards' tips (and lists shards)
	// for all of them, instead of a poll per shard and a listing every
	// 10 s. idle holds the positions they wait at.
	watching := engine && workflow.GetVersion(ctx, changeKinesisIdleWatcher, workflow.DefaultVersion, 1) == 1
	// observePaused: the watcher also follows the paused shards, so how
	// far they fall behind (status, list, gauge) stays true while paused.
	observePaused := watching && workflow.GetVersion(ctx, changeKinesisObservePaused, workflow.DefaultVersion, 1) == 1
	idle := map[string]activities.ShardPosition{}
	for _, r := range in.Reports {
		if r.Phase == "idle" && r.Watched && r.WaitsAt != nil {
			idle[r.Shard] = *r.WaitsAt
		}
	}
	tell := func(c ShardControl) {
		for _, s := range shards {
			if s.Started && !s.Finished && !slices.Contains(moving, s.ID) {
				workflow.SignalExternalWorkflow(ctx, ShardWorkflowID(cfg.Name, s.ID), "", SignalShardControl, c)
			}
		}
	}
	if err := workflow.SetQueryHandler(ctx, QueryConfig, func() (KinesisConfig, error) { return cfg, nil }); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryShardStatus, func() (KinesisConnectorStatus, error) {
		st := KinesisConnectorStatus{Name: cfg.Name, Stream: cfg.streamName(), Mode: cfg.Mode, Paused: paused, LastError: lastError}
		for _, s := range shards {
			r, ok := reports[s.ID]
			switch {
			case !ok && s.Started:
				r = ShardStatus{Shard: s.ID, Phase: "starting"}
			case !ok:
				r = ShardStatus{Shard: s.ID, Phase: PhaseWaitingForParents}
			}
			r.Parents = s.parents()
			st.Shards = append(st.Shards, r)
			st.Records += r.Records
			st.Batches += r.Batches
			st.DeadLettered += r.DeadLettered
		}
		return st, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateSpec, func(ctx workflow.Context, next KinesisConfig) (string, error) {
		cfg = next
		tell(ShardControl{Op: ControlConfig, Config: &next})
		if !engine && workflow.GetVersion(ctx, changeKinesisMoveOnApply, workflow.DefaultVersion, 1) == 1 {
			moveNow = true // the next run moves the consumers onto the engine
			return "updated; moving its consumers onto the stream engine", nil
		}
		return "updated", nil
	}, workflow.UpdateHandlerOptions{Validator: func(next KinesisConfig) error {
		if err := next.Validate(); err != nil {
			return err
		}
		if next.Name != cfg.Name || next.streamName() != cfg.streamName() {
			return fmt.Errorf("name and source.kinesis.stream cannot change (%s, %s): delete the connector and apply a new one", cfg.Name, cfg.streamName())
		}
		return nil
	}}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReset, func(ctx workflow.Context, r ResetRequest) (int, error) {
		n := 0
		for _, s := range shards {
			if s.Started && !s.Finished {
				n++
			}
		}
		tell(ShardControl{Op: ControlReset, Reset: &r})
		return n, nil
	}, workflow.UpdateHandlerOptions{Validator: func(r ResetRequest) error {
		if !paused {
			return errors.New("reset needs a paused connector: pause it, reset, then resume")
		}
		if r.To == StartOffsets {
			return errors.New("reset: a Kinesis connector resets to earliest, latest or timestamp")
		}
		if len(moving) > 0 {
			return fmt.Errorf("shards %v are moving onto the stream engine: reset again in a few seconds", moving)
		}
		return r.Validate()
	}}); err != nil {
		return err
	}

	statusCh := workflow.GetSignalChannel(ctx, SignalShardStatus)
	handoffCh := workflow.GetSignalChannel(ctx, SignalShardHandoff)
	handoffs := 0
	continueOnEngine := func(h ShardInput) {
		st := kinesisStreamState(h)
		st.Paused = paused // a pause or resume since the handoff was not told to it
		in := KinesisStreamInput{Config: cfg, Shard: h.Shard, State: st, Watched: watching}
		handoffs++
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer func() { handoffs-- }()
			if err := startMoved(ctx, ShardWorkflowID(cfg.Name, h.Shard), KinesisStreamConsumer, in); err != nil {
				lastError = fmt.Sprintf("shard %s: %v", h.Shard, err)
				return
			}
			moving = slices.DeleteFunc(moving, func(id string) bool { return id == h.Shard })
			workflow.GetLogger(ctx).Info("Shard consumer moved onto the stream engine", "Shard", h.Shard, "Checkpoint", h.Position.After)
		})
	}
	pauseCh := workflow.GetSignalChannel(ctx, SignalPause)
	resumeCh := workflow.GetSignalChannel(ctx, SignalResume)
	var k *activities.Kinesis
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	w := newKinesisWatch()
	for rounds := 0; ; rounds++ {
		var listed []activities.Shard
		// A watching connector lists shards when its watcher saw new ones
		// (or a shard finished), not every round.
		if !watching || w.discover {
			if err := workflow.ExecuteActivity(actx, k.ListShards, cfg.streamRef()).Get(ctx, &listed); err != nil {
				var appErr *temporal.ApplicationError
				if len(shards) == 0 && errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeKinesisStreamNotFound {
					return fmt.Errorf("listing shards of %s: %w", cfg.streamName(), err)
				}
				lastError = fmt.Sprintf("listing shards of %s: %v", cfg.streamName(), err)
				workflow.GetLogger(ctx).Warn("Listing shards failed; consumers keep their checkpoints", "Error", err)
			} else {
				lastError = ""
			}
			w.discover = false
		}
		for _, l := range listed {
			if i := index(l.ID); i >= 0 {
				shards[i].Closed = l.Closed
			} else {
				shards = append(shards, KinesisShard{Shard: l})
			}
		}
		// Start every shard whose known parents are finished, all in one
		// workflow task.
		ready := func(s KinesisShard) bool {
			for _, p := range s.parents() {
				if i := index(p); i >= 0 && !shards[i].Finished {
					return false
				}
			}
			return true
		}
		var fresh []int
		var starting []workflow.ChildWorkflowFuture
		for i, s := range shards {
			if s.Started || !ready(s) {
				continue
			}
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:        ShardWorkflowID(cfg.Name, s.ID),
				ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
			})
			var f workflow.ChildWorkflowFuture
			if engine {
				f = workflow.ExecuteChildWorkflow(cctx, KinesisStreamConsumer, KinesisStreamInput{Config: cfg, Shard: s.ID, Watched: watching,
					State: StreamState[activities.ShardPosition, string]{Checkpoint: cfg.startPosition(startedAt), Paused: paused, Epoch: consumerEpoch(ctx),
						Indexed: indexedJobs(ctx)}})
			} else {
				f = workflow.ExecuteChildWorkflow(cctx, ShardConsumer, ShardInput{Config: cfg, Shard: s.ID, Position: cfg.startPosition(startedAt), Paused: paused})
			}
			fresh, starting = append(fresh, i), append(starting, f)
		}
		for j, f := range starting {
			id := shards[fresh[j]].ID
			if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
				var already *temporal.ChildWorkflowExecutionAlreadyStartedError
				if !errors.As(err, &already) {
					return fmt.Errorf("starting consumer of shard %s: %w", id, err)
				}
			}
			shards[fresh[j]].Started = true
			workflow.GetLogger(ctx).Info("Shard consumer started", "Shard", id, "Parents", shards[fresh[j]].parents())
		}

		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		recheck := false
		sel := workflow.NewSelector(ctx)
		if watching {
			known := make([]string, 0, len(shards))
			for _, s := range shards {
				known = append(known, s.ID)
			}
			want := idleShards(idle)
			if observePaused {
				want = append(want, pausedShards(shards, reports)...)
			}
			w.arm(ctx, sel, want, len(shards), &lastError, &recheck, func(ctx workflow.Context, want []activities.ShardAt) workflow.Future {
				return workflow.ExecuteActivity(ctx, k.WatchShards, activities.WatchShardsInput{KinesisStreamRef: cfg.streamRef(), Idle: want,
					Known: known, Timeout: watchTimeout})
			})
		} else {
			sel.AddFuture(workflow.NewTimer(timerCtx, shardRecheck), func(workflow.Future) { recheck = true })
		}
		onStatus := func(r ShardStatus) {
			if held := reports[r.Shard]; watching && !reportBefore(r.Reported, r.Seq, held.Reported, held.Seq) {
				if r.Phase == "idle" && r.Watched && r.WaitsAt != nil {
					idle[r.Shard] = *r.WaitsAt
				} else {
					delete(idle, r.Shard)
				}
				if !observePaused {
					recheck = recheck || w.stale(idleShards(idle))
				}
			}
			if held, ok := reports[r.Shard]; ok && observePaused && samePause(held, r) {
				// What the watcher saw still holds at this position.
				r.BehindSince, r.MillisBehind = held.BehindSince, held.MillisBehind
			} else if ok && observePaused && !held.BehindSince.IsZero() {
				// Reset or resumed: the consumer's own figure holds again.
				connectorMetrics(ctx, KindKinesis, cfg.Name).WithTags(map[string]string{"shard": r.Shard}).Gauge(MetricShardBehind).Update(float64(r.MillisBehind))
			}
			reports[r.Shard] = newerReport(reports[r.Shard], r, func(s ShardStatus) (time.Time, int64) { return s.Reported, s.Seq })
			if observePaused {
				recheck = recheck || w.stale(append(idleShards(idle), pausedShards(shards, reports)...))
			}
			if i := index(r.Shard); i >= 0 && r.Finished && !shards[i].Finished {
				shards[i].Finished = true
				recheck = true // its children may start now
				// (and a watching connector lists shards once: its
				// children may not be known yet)
				w.discover = w.discover || watching
			}
		}
		sel.AddReceive(statusCh, func(c workflow.ReceiveChannel, _ bool) {
			var r ShardStatus
			c.Receive(ctx, &r)
			onStatus(r)
		})
		sel.AddReceive(pauseCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			paused = true
			tell(ShardControl{Op: ControlPause})
			syncConnectorState(ctx, paused)
		})
		sel.AddReceive(resumeCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			paused = false
			tell(ShardControl{Op: ControlResume})
			syncConnectorState(ctx, paused)
		})
		if engine {
			sel.AddReceive(handoffCh, func(c workflow.ReceiveChannel, _ bool) {
				var h ShardInput
				c.Receive(ctx, &h)
				if slices.Contains(moving, h.Shard) {
					continueOnEngine(h)
				}
			})
		}
		for !recheck && !moveNow && ctx.Err() == nil {
			sel.Select(ctx)
		}
		cancelTimer()
		if ctx.Err() != nil {
			w.stop()
			dctx, cancel := workflow.NewDisconnectedContext(ctx)
			for _, s := range shards {
				if s.Started && !s.Finished {
					_ = workflow.RequestCancelExternalWorkflow(dctx, ShardWorkflowID(cfg.Name, s.ID), "").Get(dctx, nil)
				}
			}
			cancel()
			return temporal.NewCanceledError("kinesis connector cancelled")
		}
		if watching {
			// Take in every report that arrived with this one first, then
			// wake the consumers whose shards have records.
			var r ShardStatus
			for statusCh.ReceiveAsync(&r) {
				onStatus(r)
				r = ShardStatus{}
			}
			wakeShards(ctx, cfg, idle, &w.result)
			observedBehind(ctx, cfg, reports, &w.result)
		}
		if moveNow || rounds >= 500 && !watching || rounds >= 5000 || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			w.stop()
			for sel.HasPending() {
				sel.Select(ctx)
			}
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) && handoffs == 0 }); err != nil {
				return err
			}
			next := KinesisConnectorInput{Config: cfg, StartedAt: startedAt, Shards: shards, Paused: paused, Engine: engine, Moving: moving}
			for _, s := range shards {
				if r, ok := reports[s.ID]; ok {
					next.Reports = append(next.Reports, r)
				}
			}
			return workflow.NewContinueAsNewError(ctx, KinesisConnector, next)
		}
	}
}

// parents are the shard's parent and adjacent parent, when it has them.
func (s KinesisShard) parents() []string {
	var ps []string
	for _, p := range []string{s.Parent, s.AdjacentParent} {
		if p != "" {
			ps = append(ps, p)
		}
	}
	return ps
}
