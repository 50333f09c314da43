package workflows

import (
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// KafkaStreamInput starts (or continues) the stream engine's consumer of
// one Kafka partition. Positions are offsets: State.Checkpoint is the next
// offset to process (-1 resolves the spec's start), a range's Until the
// last offset it holds.
type KafkaStreamInput struct {
	Config    KafkaConfig
	Partition int32
	State     StreamState[int64, int64]
	// End is the partition's end offset as last seen (for lag).
	End int64 `json:",omitempty"`
	// Watched: when idle, wait for the connector's wake signal (its idle
	// watcher polls the topic) instead of polling the partition.
	Watched bool `json:",omitempty"`
}

// KafkaStreamConsumer consumes one Kafka partition on the stream engine:
// loop { wait for records unless a backlog is known (no lease); lease;
// RunBatch: read from the checkpoint, submit the batch, await the job, in
// one activity (records never in history); on success the checkpoint moves
// past the batch, and the next batch or wait mirrors it to the consumer
// group }. Failed batches are retried over the same offsets, then bisected
// and dead-lettered (or block the partition), as the engine decides.
// Controls from the connector (pause, resume, reset, config) apply between
// batches, in the order sent.
func KafkaStreamConsumer(ctx workflow.Context, in KafkaStreamInput) error {
	u := &kafkaUnit{cfg: in.Config, partition: in.Partition, end: in.End, committed: -1, watch: in.Watched}
	return runStream[KafkaConfig, int64, int64](ctx, u, in.State)
}

// kafkaUnit is a Kafka partition as a stream engine source.
type kafkaUnit struct {
	cfg       KafkaConfig
	partition int32
	// end is the partition's end offset as last seen; committed the
	// offset last mirrored into the group by this run (-1: none yet).
	end, committed int64
	// watch: the connector's watcher wakes it when idle.
	watch bool
	// k names the activities (nil receiver: methods as names).
	k *activities.Kafka
}

func (u *kafkaUnit) kind() string            { return KindKafka }
func (u *kafkaUnit) unit() string            { return "partition " + itoa32(u.partition) }
func (u *kafkaUnit) setConfig(c KafkaConfig) { u.cfg = c }
func (u *kafkaUnit) controlSignal() string   { return SignalPartitionControl }
func (u *kafkaUnit) watched() bool           { return u.watch }

func (u *kafkaUnit) settings() streamSettings {
	return streamSettings{Name: u.cfg.Name, MaxInFlight: u.cfg.MaxInFlight, StreamBatching: u.cfg.StreamBatching,
		TaskConfig: u.cfg.TaskConfig, HasDeadLetter: u.cfg.hasDeadLetter()}
}

func (u *kafkaUnit) begin(ctx workflow.Context, st *StreamState[int64, int64]) error {
	if st.Checkpoint >= 0 {
		return nil
	}
	start := activities.StartInput{TopicRef: u.cfg.topicRef(), Partition: u.partition, Start: u.cfg.Start, StartTime: u.cfg.StartTime}
	if u.cfg.Start == StartOffsets {
		start.Offset = u.cfg.StartOffsets[u.partition]
	}
	if err := workflow.ExecuteActivity(shortOptions(ctx), u.k.ResolveStart, start).Get(ctx, &st.Checkpoint); err != nil {
		return temporal.NewApplicationErrorWithCause("resolving the start of partition "+itoa32(u.partition), ErrTypeResolveStart, err)
	}
	return nil
}

// group is the group to mirror offset into, when it is not there yet.
func (u *kafkaUnit) group(offset int64) string {
	if u.cfg.Group == "" || offset == u.committed {
		return ""
	}
	u.committed = offset
	return u.cfg.Group
}

func (u *kafkaUnit) wait(ctx workflow.Context, from int64) workflow.Future {
	return workflow.ExecuteActivity(ctx, u.k.WaitForRecords, activities.WaitInput{
		TopicRef: u.cfg.topicRef(), Partition: u.partition, From: from, Timeout: streamWaitTimeout, Group: u.group(from),
	})
}

func (u *kafkaUnit) waited(ctx workflow.Context, f workflow.Future) (has, end bool, err error) {
	err = f.Get(ctx, &has)
	return has, false, err
}

func (u *kafkaUnit) start(ctx workflow.Context, r streamRead[int64, int64]) workflow.Future {
	cfg := u.cfg
	until := int64(-1)
	if r.Until != nil {
		until = *r.Until
	}
	in := activities.KafkaBatchInput{
		StreamSubmitInput: activities.StreamSubmitInput{
			Read: activities.KafkaRead{KafkaCluster: cfg.cluster(), Topic: cfg.Topic, Partition: u.partition, From: r.From,
				MaxRecords: cfg.MaxRecords, MaxBytes: cfg.MaxBytes, MaxWait: cfg.MaxWait, OnOutOfRange: cfg.OnOffsetOutOfRange, Until: until,
				WaitSince: r.WaitSince},
			BatchID: r.BatchID, StreamJob: r.job(cfg.streamJob(r.Attempt)),
		},
		Group: u.group(r.Checkpoint),
		// The batch may hand its job over to a batch of its own when records
		// behind it are due: the next batch runs beside it.
		ReturnWhenDue: r.MayLeave && cfg.MaxInFlight > 1,
	}
	if r.Checkpoint != r.From {
		in.Mirror = &r.Checkpoint
	}
	return workflow.ExecuteActivity(batchRunOptions(ctx, cfg.StreamBatching, cfg.TaskConfig), u.k.RunBatch, in)
}

func (u *kafkaUnit) ran(ctx workflow.Context, f workflow.Future) (streamBatch[int64], error) {
	var res activities.KafkaBatchRun
	if err := f.Get(ctx, &res); err != nil {
		u.committed = -1 // the commit may not have happened
		return streamBatch[int64]{}, err
	}
	u.end = max(u.end, res.End)
	b := streamBatch[int64]{JobID: res.JobID, First: res.First, Last: res.Last, Count: res.Count, Skipped: res.Skipped,
		RangeDone: res.RangeDone, FirstTime: res.FirstTime, Rejected: res.Rejected, Failure: res.Failure,
		Backlog: res.End > res.Last+1, BatchID: res.BatchID, ReadClosed: res.ReadClosed, Awaiting: res.Awaiting, Unseen: res.Unseen}
	b.Mid = b.First + (b.Last-b.First)/2
	return b, nil
}

// batchRunOptions are for a batch activity: it reads (up to MaxWait),
// submits and awaits the job (up to its timeouts). Cancellation is waited
// for: the activity stops the job.
func batchRunOptions(ctx workflow.Context, b StreamBatching, t TaskConfig) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: b.MaxWait + t.QueueTimeout + t.ExecutionTimeout + 3*time.Minute,
		HeartbeatTimeout:    b.MaxWait + awaitHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
}

// cut bounds a batch read ahead of those in flight: at most n offsets
// from `from`, and only offsets below the end last seen (records are
// there, so the read fills without waiting).
func (u *kafkaUnit) cut(from int64, n int) (int64, bool) {
	if from >= u.end || n < 1 {
		return 0, false
	}
	return min(from+int64(n)-1, u.end-1), true
}

func (u *kafkaUnit) after(s int64) int64            { return s + 1 }
func (u *kafkaUnit) less(a, b int64) bool           { return a < b }
func (u *kafkaUnit) label(p int64) string           { return strconv.FormatInt(p, 10) }
func (u *kafkaUnit) mid(b streamBatch[int64]) int64 { return b.Mid }

func (u *kafkaUnit) rangeID(r StreamRange[int64, int64]) string {
	return activities.StreamRangeID(u.cfg.Topic, u.partition, r.From, r.Until)
}

func (u *kafkaUnit) deadLetter(ctx workflow.Context, from, last int64, errText string, jobs []string) (activities.DeadLettered, error) {
	cfg := u.cfg
	in := activities.DeadLetterRecordsInput{
		Read: activities.KafkaRead{KafkaCluster: cfg.cluster(), Topic: cfg.Topic, Partition: u.partition,
			From: from, Until: last, MaxWait: cfg.MaxWait, OnOutOfRange: cfg.OnOffsetOutOfRange},
		Connector: cfg.Name, Error: errText, JobIDs: jobs, Topic: cfg.DeadLetterTopic, S3: s3Prefix(cfg.DeadLetterS3),
	}
	var res activities.DeadLettered
	err := workflow.ExecuteActivity(deadLetterOptions(ctx, cfg.MaxWait), u.k.DeadLetterRecords, in).Get(ctx, &res)
	return res, err
}

// deadLetterOptions are for writing a failed range to its dead letter.
func deadLetterOptions(ctx workflow.Context, maxWait time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: maxWait + time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
}

func (u *kafkaUnit) reset(ctx workflow.Context, r ResetRequest, st *StreamState[int64, int64]) (bool, string, error) {
	var to int64
	switch r.To {
	case StartOffsets:
		o, ok := r.Offsets[u.partition]
		if !ok {
			return false, "", nil // not listed: its checkpoint stays
		}
		to = o
	default:
		start := activities.StartInput{TopicRef: u.cfg.topicRef(), Partition: u.partition, Start: r.To, StartTime: r.Time}
		if err := workflow.ExecuteActivity(shortOptions(ctx), u.k.ResolveStart, start).Get(ctx, &to); err != nil {
			return false, "", temporal.NewApplicationErrorWithCause("partition "+itoa32(u.partition)+": resolving reset position "+r.To, ErrTypeResolveStart, err)
		}
	}
	st.Checkpoint = to
	// The end is at least where the reset put the checkpoint (latest
	// resolves to the end itself): the status never shows it below.
	u.end = max(u.end, to)
	u.commit(ctx, to)
	return true, "", nil
}

// paused mirrors the checkpoint into the group when the last batch's end
// is not there yet: Kafka tooling shows the paused connector's true lag.
func (u *kafkaUnit) paused(ctx workflow.Context, st *StreamState[int64, int64]) {
	if u.cfg.Group != "" && u.committed != st.Checkpoint {
		u.commit(ctx, st.Checkpoint)
	}
}

func (u *kafkaUnit) commit(ctx workflow.Context, offset int64) {
	if u.cfg.Group == "" {
		return
	}
	if err := workflow.ExecuteActivity(shortOptions(ctx), u.k.CommitOffset, activities.CommitInput{
		TopicRef: u.cfg.topicRef(), Group: u.cfg.Group, Partition: u.partition, Offset: offset,
	}).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Mirroring the checkpoint to the group failed; the next batch mirrors it", "Error", err)
		u.committed = -1
		return
	}
	u.committed = offset
}

func (u *kafkaUnit) observe(m client.MetricsHandler, st *StreamState[int64, int64]) {
	m.WithTags(map[string]string{"partition": itoa32(u.partition)}).Gauge(MetricPartitionLag).Update(float64(max(0, u.end-st.Checkpoint)))
}

func (u *kafkaUnit) status(st *StreamState[int64, int64], p streamProgress) any {
	s := PartitionStatus{Partition: u.partition, Checkpoint: st.Checkpoint, End: u.end, Lag: max(0, u.end-st.Checkpoint),
		Batches: st.Batches, Records: st.Records, Skipped: st.Skipped, DeadLettered: st.DeadLettered, Paused: st.Paused,
		LastJob: p.LastJob, LastError: p.LastError, LastDeadLetter: p.LastDeadLetter, LastReset: p.LastReset,
		Phase: p.Phase, Reported: p.Reported, Seq: p.Seq, Watched: u.watch}
	for _, r := range st.Ranges {
		if r.Done {
			continue // passed while an earlier batch ran
		}
		s.Bisecting = append(s.Bisecting, OffsetRange{From: r.From, Until: r.Until})
	}
	return s
}

func (u *kafkaUnit) report(ctx workflow.Context, status any) workflow.Future {
	return workflow.SignalExternalWorkflow(ctx, KafkaWorkflowID(u.cfg.Name), "", SignalPartitionStatus, status)
}

func (u *kafkaUnit) continueAsNew(ctx workflow.Context, st StreamState[int64, int64]) error {
	return workflow.NewContinueAsNewError(ctx, KafkaStreamConsumer, KafkaStreamInput{Config: u.cfg, Partition: u.partition, State: st, End: u.end, Watched: u.watch})
}

// kafkaStreamState is where a partition consumer of the older workflow
// type (PartitionConsumer) left off, as the engine's state.
func kafkaStreamState(in PartitionInput) StreamState[int64, int64] {
	st := StreamState[int64, int64]{Checkpoint: in.Checkpoint, Attempts: in.Attempts, Batches: in.Batches, Records: in.Records,
		DeadLettered: in.DeadLettered, Paused: in.Paused}
	for _, r := range in.Ranges {
		st.Ranges = append(st.Ranges, StreamRange[int64, int64]{From: r.From, Until: r.Until, Split: true})
	}
	return st
}
