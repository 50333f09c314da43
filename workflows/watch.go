package workflows

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// idleWatch is a stream connector's idle watcher: one watch activity at a
// time (WatchPartitions, WatchShards) over the idle consumers' positions
// (A), whose result (R) names the units that have records. The connector
// wakes those consumers by signal; idle consumers cost nothing while they
// wait.
type idleWatch[A comparable, R any] struct {
	// f is the running watch (nil: none), watching the idle set it was
	// started with, known the unit count it was told; cancel cancels it.
	f        workflow.Future
	watching []A
	known    int
	cancel   workflow.CancelFunc
	// ready is f, or a retry timer after a problem, or nil.
	ready workflow.Future
	// result is what the last finished watch saw.
	result R
	// discover: list units again (the watcher saw more, or failed).
	discover bool
	// problem reads why a result could not tell (""), more whether it saw
	// new units, failed makes the result of a watch that failed.
	problem func(R) string
	more    func(R) bool
	failed  func(string) R
}

// Watch activity bounds: watchTimeout bounds one watch; watchHeartbeat is
// how long a watch on a killed worker goes unnoticed. With quiet
// heartbeats an idle watch costs one heartbeat every ~32 s.
const (
	watchTimeout   = 10 * time.Minute
	watchHeartbeat = 40 * time.Second
)

// stale tells whether the running watch watches another idle set.
func (w *idleWatch[A, R]) stale(want []A) bool {
	return w.f != nil && !slices.Equal(want, w.watching)
}

// arm makes sure a watch over want (with known units) runs, restarting
// one that watches another set, and adds it to sel; done is set when it
// returns (or its retry timer fires). start starts the watch activity.
func (w *idleWatch[A, R]) arm(ctx workflow.Context, sel workflow.Selector, want []A, known int, lastError *string, done *bool,
	start func(ctx workflow.Context, want []A) workflow.Future) {
	if w.f != nil && (!slices.Equal(want, w.watching) || w.known != known) {
		w.stop()
	}
	if w.ready == nil {
		wctx, cancel := workflow.WithCancel(ctx)
		wctx = workflow.WithActivityOptions(wctx, workflow.ActivityOptions{
			StartToCloseTimeout: watchTimeout + time.Minute,
			HeartbeatTimeout:    watchHeartbeat,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
		})
		w.f = start(wctx, want)
		w.ready, w.watching, w.known, w.cancel = w.f, want, known, cancel
	}
	sel.AddFuture(w.ready, func(f workflow.Future) {
		*done = true
		if f != w.f {
			// The retry timer after a problem: watch again.
			w.ready, w.discover = nil, true
			return
		}
		var zero R
		w.result = zero
		if err := f.Get(ctx, &w.result); err != nil && ctx.Err() == nil {
			w.result = w.failed(err.Error())
		}
		w.f, w.cancel = nil, nil
		w.ready = nil
		w.discover = w.more(w.result)
		*lastError = ""
		if p := w.problem(w.result); p != "" {
			// Say so in the status and look again in a while.
			*lastError = p
			w.ready = workflow.NewTimer(ctx, partitionRecheck)
		}
	})
}

// stop cancels the running watch, if any.
func (w *idleWatch[A, R]) stop() {
	if w.f != nil && w.cancel != nil {
		w.cancel()
	}
	if w.f != nil {
		w.f, w.ready, w.cancel = nil, nil, nil
	}
}

// newKafkaWatch is a Kafka connector's watcher (WatchPartitions).
func newKafkaWatch() *idleWatch[activities.PartitionAt, activities.Watched] {
	return &idleWatch[activities.PartitionAt, activities.Watched]{discover: true,
		problem: func(r activities.Watched) string { return r.Problem },
		more:    func(r activities.Watched) bool { return r.Partitions > 0 },
		failed:  func(p string) activities.Watched { return activities.Watched{Problem: p} },
	}
}

// idleList is the idle set in partition order.
func idleList(idle map[int32]int64) []activities.PartitionAt {
	var at []activities.PartitionAt
	//workflowcheck:ignore the list is sorted below
	for p, from := range idle {
		at = append(at, activities.PartitionAt{Partition: p, From: from})
	}
	slices.SortFunc(at, func(a, b activities.PartitionAt) int { return int(a.Partition) - int(b.Partition) })
	return at
}

// wakePartitions signals the consumers whose partitions have records past
// the checkpoint they wait at (as the last watch saw), once each.
func wakePartitions(ctx workflow.Context, cfg KafkaConfig, idle map[int32]int64, seen *activities.Watched) {
	for _, p := range seen.Ready {
		from, ok := idle[p]
		if !ok {
			continue // it moved on since (a control woke it)
		}
		delete(idle, p)
		workflow.SignalExternalWorkflow(ctx, PartitionWorkflowID(cfg.Name, cfg.Topic, p), "", SignalStreamWake, StreamWake{Checkpoint: strconv.FormatInt(from, 10)})
	}
	seen.Ready = nil
}

// pausedEnds are the paused partitions (as their latest reports say), in
// partition order, with the end offsets last known: the watcher reports
// when they move.
func pausedEnds(started []int32, reports map[int32]PartitionStatus) []activities.PartitionAt {
	var at []activities.PartitionAt
	for _, p := range slices.Sorted(slices.Values(started)) {
		if r, ok := reports[p]; ok && r.Paused {
			at = append(at, activities.PartitionAt{Partition: p, From: r.End, Observe: true})
		}
	}
	return at
}

// observedEnds moves the reported ends of the paused partitions the last
// watch saw move (status, list and the lag gauge stay true), once.
func observedEnds(ctx workflow.Context, cfg KafkaConfig, reports map[int32]PartitionStatus, seen *activities.Watched) {
	m := connectorMetrics(ctx, KindKafka, cfg.Name)
	for _, e := range seen.Ends {
		r, ok := reports[e.Partition]
		if !ok || e.From <= r.End {
			continue
		}
		r.End, r.Lag = e.From, max(0, e.From-r.Checkpoint)
		reports[e.Partition] = r
		m.WithTags(map[string]string{"partition": itoa32(e.Partition)}).Gauge(MetricPartitionLag).Update(float64(r.Lag))
	}
	seen.Ends = nil
}

// newKinesisWatch is a Kinesis connector's watcher (WatchShards).
func newKinesisWatch() *idleWatch[activities.ShardAt, activities.ShardsWatched] {
	return &idleWatch[activities.ShardAt, activities.ShardsWatched]{discover: true,
		problem: func(r activities.ShardsWatched) string { return r.Problem },
		more:    func(r activities.ShardsWatched) bool { return r.NewShards },
		failed:  func(p string) activities.ShardsWatched { return activities.ShardsWatched{Problem: p} },
	}
}

// idleShards is the idle set in shard ID order.
func idleShards(idle map[string]activities.ShardPosition) []activities.ShardAt {
	var at []activities.ShardAt
	//workflowcheck:ignore the list is sorted below
	for s, pos := range idle {
		at = append(at, activities.ShardAt{Shard: s, ShardPosition: pos})
	}
	slices.SortFunc(at, func(a, b activities.ShardAt) int { return strings.Compare(a.Shard, b.Shard) })
	return at
}

// wakeShards signals the consumers whose shards have records past the
// position they wait at (or are closed and read to their end), once each.
func wakeShards(ctx workflow.Context, cfg KinesisConfig, idle map[string]activities.ShardPosition, seen *activities.ShardsWatched) {
	for _, s := range seen.Ready {
		pos, ok := idle[s]
		if !ok {
			continue // it moved on since (a control woke it)
		}
		delete(idle, s)
		workflow.SignalExternalWorkflow(ctx, ShardWorkflowID(cfg.Name, s), "", SignalStreamWake, StreamWake{Checkpoint: shardLabel(pos)})
	}
	seen.Ready = nil
}

// pausedShards are the paused shards (as their latest reports say) that
// are not finished, in shard order, at the positions they wait at, with
// what is known of their oldest waiting record: the watcher observes them.
func pausedShards(shards []KinesisShard, reports map[string]ShardStatus) []activities.ShardAt {
	var at []activities.ShardAt
	for _, s := range shards {
		r, ok := reports[s.ID]
		if !ok || !r.Paused || r.Finished || r.WaitsAt == nil {
			continue
		}
		at = append(at, activities.ShardAt{Shard: s.ID, ShardPosition: *r.WaitsAt, Observe: true, BehindSince: r.BehindSince})
	}
	slices.SortFunc(at, func(a, b activities.ShardAt) int { return strings.Compare(a.Shard, b.Shard) })
	return at
}

// samePause tells whether two reports of a shard are paused at the same
// position (what the watcher saw of one holds for the other).
func samePause(a, b ShardStatus) bool {
	return a.Paused && b.Paused && a.WaitsAt != nil && b.WaitsAt != nil && samePosition(*a.WaitsAt, *b.WaitsAt)
}

// samePosition compares shard positions (times by instant).
func samePosition(a, b activities.ShardPosition) bool {
	return a.After == b.After && a.Start == b.Start && a.StartTime.Equal(b.StartTime)
}

// observedBehind records how far behind the paused shards the last watch
// observed are (status, list and the millis-behind gauge stay true), once.
// An observation of a position the shard has since left is dropped.
func observedBehind(ctx workflow.Context, cfg KinesisConfig, reports map[string]ShardStatus, seen *activities.ShardsWatched) {
	m := connectorMetrics(ctx, KindKinesis, cfg.Name)
	now := workflow.Now(ctx)
	for _, o := range seen.Behind {
		r, ok := reports[o.Shard]
		if !ok || !r.Paused || r.WaitsAt == nil || !samePosition(*r.WaitsAt, o.ShardPosition) {
			continue
		}
		r.BehindSince, r.MillisBehind = o.BehindSince, 0
		if !o.BehindSince.IsZero() {
			r.MillisBehind = max(0, now.Sub(o.BehindSince).Milliseconds())
		}
		reports[o.Shard] = r
		m.WithTags(map[string]string{"shard": o.Shard}).Gauge(MetricShardBehind).Update(float64(r.MillisBehind))
	}
	seen.Behind = nil
}
