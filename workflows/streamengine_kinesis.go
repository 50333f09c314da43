package workflows

import (
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// KinesisStreamInput starts (or continues) the stream engine's consumer of
// one Kinesis shard. A read position is a ShardPosition (after a sequence
// number, or the spec's start before the first checkpoint); a range's
// Until is the last sequence number it holds.
type KinesisStreamInput struct {
	Config KinesisConfig
	Shard  string
	State  StreamState[activities.ShardPosition, string]
	// Watched: when idle, wait for the connector's wake signal (its idle
	// watcher polls the shard's tip) instead of polling the shard.
	Watched bool `json:",omitempty"`
}

// KinesisStreamConsumer consumes one Kinesis shard on the stream engine,
// with the Kafka consumer's loop and invariants (see KafkaStreamConsumer).
// When the shard is closed (split or merged) and read to its end, it
// reports itself finished to its connector, which then starts the shard's
// children, and ends.
func KinesisStreamConsumer(ctx workflow.Context, in KinesisStreamInput) error {
	u := &kinesisUnit{cfg: in.Config, shard: in.Shard, watch: in.Watched}
	return runStream[KinesisConfig, activities.ShardPosition, string](ctx, u, in.State)
}

// kinesisUnit is a Kinesis shard as a stream engine source.
type kinesisUnit struct {
	cfg   KinesisConfig
	shard string
	// millisBehind is how far the last read was behind the shard's tip.
	millisBehind int64
	// watch: the connector's watcher wakes it when idle.
	watch bool
	// k names the activities (nil receiver: methods as names).
	k *activities.Kinesis
}

func (u *kinesisUnit) kind() string              { return KindKinesis }
func (u *kinesisUnit) unit() string              { return "shard " + u.shard }
func (u *kinesisUnit) setConfig(c KinesisConfig) { u.cfg = c }
func (u *kinesisUnit) controlSignal() string     { return SignalShardControl }
func (u *kinesisUnit) watched() bool             { return u.watch }

func (u *kinesisUnit) settings() streamSettings {
	return streamSettings{Name: u.cfg.Name, StreamBatching: u.cfg.StreamBatching, TaskConfig: u.cfg.TaskConfig, HasDeadLetter: u.cfg.DeadLetterS3 != nil}
}

func (u *kinesisUnit) begin(workflow.Context, *StreamState[activities.ShardPosition, string]) error {
	return nil // the position holds the spec's start until the first checkpoint
}

func (u *kinesisUnit) wait(ctx workflow.Context, from activities.ShardPosition) workflow.Future {
	return workflow.ExecuteActivity(ctx, u.k.WaitForShardRecords, activities.WaitShardInput{
		KinesisStreamRef: u.cfg.streamRef(), Shard: u.shard, ShardPosition: from, Timeout: streamWaitTimeout,
	})
}

func (u *kinesisUnit) waited(ctx workflow.Context, f workflow.Future) (has, end bool, err error) {
	var w activities.ShardWait
	err = f.Get(ctx, &w)
	return w.Has, w.ShardEnd, err
}

func (u *kinesisUnit) start(ctx workflow.Context, r streamRead[activities.ShardPosition, string]) workflow.Future {
	cfg := u.cfg
	until := ""
	if r.Until != nil {
		until = *r.Until
	}
	in := activities.ShardSubmitInput{
		Read: activities.ShardRead{KinesisStreamRef: cfg.streamRef(), Shard: u.shard, ShardPosition: r.From, Until: until,
			MaxRecords: cfg.MaxRecords, MaxBytes: cfg.MaxBytes, MaxWait: cfg.MaxWait},
		BatchID: r.BatchID, StreamJob: r.job(cfg.streamJob(r.Attempt)),
	}
	return workflow.ExecuteActivity(batchRunOptions(ctx, cfg.StreamBatching, cfg.TaskConfig), u.k.RunShardBatch, in)
}

func (u *kinesisUnit) ran(ctx workflow.Context, f workflow.Future) (streamBatch[string], error) {
	var res activities.ShardBatchRun
	if err := f.Get(ctx, &res); err != nil {
		return streamBatch[string]{}, err
	}
	u.millisBehind = res.MillisBehind
	return streamBatch[string]{JobID: res.JobID, First: res.First, Mid: res.Mid, Last: res.Last, Count: res.Count,
		RangeDone: res.RangeDone, End: res.ShardEnd, FirstTime: res.FirstTime, Rejected: res.Rejected, Failure: res.Failure,
		Backlog: res.MillisBehind > 0 || res.Count >= u.cfg.MaxRecords, Unseen: res.Unseen}, nil
}

// cut: sequence numbers are not contiguous, so a shard cannot cut a batch
// ahead of the one in flight; it runs one batch at a time.
func (u *kinesisUnit) cut(activities.ShardPosition, int) (string, bool) { return "", false }

func (u *kinesisUnit) after(s string) activities.ShardPosition {
	return activities.ShardPosition{After: s}
}
func (u *kinesisUnit) less(a, b string) bool            { return activities.SeqLess(a, b) }
func (u *kinesisUnit) mid(b streamBatch[string]) string { return b.Mid }

func (u *kinesisUnit) label(p activities.ShardPosition) string { return shardLabel(p) }

// shardLabel writes a shard position for IDs, logs and wake signals.
func shardLabel(p activities.ShardPosition) string {
	if p.After == "" {
		return "start"
	}
	return p.After
}

func (u *kinesisUnit) rangeID(r StreamRange[activities.ShardPosition, string]) string {
	return activities.ShardRangeID(u.cfg.streamName(), u.shard, r.From.After, r.Until)
}

func (u *kinesisUnit) deadLetter(ctx workflow.Context, from activities.ShardPosition, last, errText string, jobs []string) (activities.DeadLettered, error) {
	in := activities.DeadLetterShardInput{
		Read:      activities.ShardRead{KinesisStreamRef: u.cfg.streamRef(), Shard: u.shard, ShardPosition: from, Until: last, MaxWait: u.cfg.MaxWait},
		Connector: u.cfg.Name, Error: errText, JobIDs: jobs, S3: s3Prefix(u.cfg.DeadLetterS3),
	}
	var res activities.DeadLettered
	err := workflow.ExecuteActivity(deadLetterOptions(ctx, u.cfg.MaxWait), u.k.DeadLetterShardRecords, in).Get(ctx, &res)
	return res, err
}

// reset moves the checkpoint to the shard's start (earliest), the time of
// the reset (latest) or a time.
func (u *kinesisUnit) reset(ctx workflow.Context, r ResetRequest, st *StreamState[activities.ShardPosition, string]) (bool, string, error) {
	switch r.To {
	case StartEarliest:
		st.Checkpoint = activities.ShardPosition{Start: activities.ShardStartTrimHorizon}
	case StartLatest:
		st.Checkpoint = activities.ShardPosition{Start: activities.ShardStartAtTimestamp, StartTime: workflow.Now(ctx)}
	case StartTimestamp:
		st.Checkpoint = activities.ShardPosition{Start: activities.ShardStartAtTimestamp, StartTime: r.Time}
	default:
		return false, fmt.Sprintf("reset to %q is not supported for Kinesis: use earliest, latest or timestamp", r.To), nil
	}
	return true, "", nil
}

func (u *kinesisUnit) paused(workflow.Context, *StreamState[activities.ShardPosition, string]) {}

func (u *kinesisUnit) observe(m client.MetricsHandler, _ *StreamState[activities.ShardPosition, string]) {
	m.WithTags(map[string]string{"shard": u.shard}).Gauge(MetricShardBehind).Update(float64(u.millisBehind))
}

func (u *kinesisUnit) status(st *StreamState[activities.ShardPosition, string], p streamProgress) any {
	s := ShardStatus{Shard: u.shard, Checkpoint: st.Checkpoint.After, Batches: st.Batches, Records: st.Records,
		DeadLettered: st.DeadLettered, Paused: st.Paused, LastJob: p.LastJob, LastError: p.LastError,
		LastDeadLetter: p.LastDeadLetter, LastReset: p.LastReset, MillisBehind: u.millisBehind,
		Finished: p.Finished, Phase: p.Phase, Reported: p.Reported, Seq: p.Seq}
	if p.Finished {
		s.MillisBehind = 0
	}
	if u.watch {
		s.Watched = true
		if p.Phase == "idle" || st.Paused {
			at := st.Checkpoint
			s.WaitsAt = &at
		}
	}
	for _, r := range st.Ranges {
		if r.Done {
			continue // passed while an earlier batch ran
		}
		s.Bisecting = append(s.Bisecting, SeqRange{From: r.From, Until: r.Until, Split: r.Split})
	}
	return s
}

func (u *kinesisUnit) report(ctx workflow.Context, status any) workflow.Future {
	return workflow.SignalExternalWorkflow(ctx, KinesisWorkflowID(u.cfg.Name), "", SignalShardStatus, status)
}

func (u *kinesisUnit) continueAsNew(ctx workflow.Context, st StreamState[activities.ShardPosition, string]) error {
	return workflow.NewContinueAsNewError(ctx, KinesisStreamConsumer, KinesisStreamInput{Config: u.cfg, Shard: u.shard, State: st, Watched: u.watch})
}

// kinesisStreamState is where a shard consumer of the older workflow type
// (ShardConsumer) left off, as the engine's state.
func kinesisStreamState(in ShardInput) StreamState[activities.ShardPosition, string] {
	st := StreamState[activities.ShardPosition, string]{Checkpoint: in.Position, Attempts: in.Attempts, Batches: in.Batches,
		Records: in.Records, DeadLettered: in.DeadLettered, Paused: in.Paused}
	for _, r := range in.Ranges {
		st.Ranges = append(st.Ranges, StreamRange[activities.ShardPosition, string]{From: r.From, Until: r.Until, Split: r.Split})
	}
	return st
}
